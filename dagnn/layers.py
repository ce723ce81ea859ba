"""Every DagNN layer class, MatConvNet's ``matlab/+dagnn/*.m`` (one
module per family, mirroring :mod:`vlnn`).  ``dagnn/__init__.py`` does
``from .layers import *`` so that ``dagnn.Conv`` works as in MATLAB."""

from .elementwise import (DropOut, ElementWise, LRN, NormOffset, ReLU, Scale, Sigmoid,
                          SoftMax, SpatialNorm)
from .filters import Conv, ConvTranspose, Filter, Pooling
from .layer import Layer
from .loss import Loss, PDist
from .normalization import BatchNorm
from .sampling import (AffineGridGenerator, BilinearSampler, ROIPooling,
                       UniformScalingGridGenerator)
from .tensors import Concat, Crop, Sum

__all__ = ["Layer", "ElementWise", "Filter",
           "Conv", "ConvTranspose", "Pooling",
           "ReLU", "Sigmoid", "SoftMax", "LRN", "NormOffset", "SpatialNorm", "DropOut", "Scale",
           "BatchNorm", "Loss", "PDist", "Concat", "Sum", "Crop",
           "BilinearSampler", "ROIPooling", "AffineGridGenerator", "UniformScalingGridGenerator"]
