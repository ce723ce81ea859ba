"""Blocks that combine or cut whole tensors: :class:`Concat`,
:class:`Sum` and :class:`Crop` (MatConvNet's ``matlab/+dagnn/Concat.m``,
``Sum.m``, ``Crop.m``)."""

import warnings

from vlnn import vl_nnconcat, vl_nncrop

from ._common import (empty_field, nan_field, receptive_field, row, size_row,
                      vector_value)
from .elementwise import ElementWise
from .layer import Layer

__all__ = ["Concat", "Sum", "Crop"]


def _shape(a):
    """MATLAB's ``size(a)``: at least two dimensions, ``[0 0]`` for ``[]``."""
    if a is None:
        return [0, 0]
    shape = [int(d) for d in a.shape]
    return shape + [1] * (2 - len(shape))


def _num_inputs(block):
    return len(block.net.layers[block.layerIndex].inputs)


class Concat(ElementWise):
    """Concatenation of the inputs along one dimension, ``vl_nnconcat``.

    ``dagnn.Concat('dim', 3)`` (channels).  The forward keeps the input
    sizes (transient ``inputSizes``) for the backward, which splits the
    derivative back with them.  A saved ``numInputs`` field (older
    MatConvNet files) is accepted and ignored.

    Properties
    ----------
    dim : int, default 3
        1-based MATLAB dimension: 1 rows, 2 columns, 3 channels, 4 images.
    """

    PROPERTIES = {"dim": 3}
    TRANSIENT = {"inputSizes": []}

    def _set_dim(self, value):
        return vector_value(value)

    def load(self, *args, **kwargs):
        """As :meth:`Layer.load`, dropping ``numInputs`` (file compatibility)."""
        fields = Layer.argsToStruct(*args, **kwargs)
        fields.pop("numInputs", None)
        return super().load(fields)

    def forward(self, inputs, params):
        y = vl_nnconcat(list(inputs), self.dim)
        self.inputSizes = [_shape(a) for a in inputs]
        return [y]

    def backward(self, inputs, params, derOutputs):
        return vl_nnconcat(list(inputs), self.dim, dzdy=derOutputs[0],
                           inputSizes=self.inputSizes), []

    def reset(self):
        """Forget the input sizes."""
        self.inputSizes = []

    def getOutputSizes(self, inputSizes):
        """The first input's size with the ``dim`` sizes summed."""
        axis = int(self.dim) - 1
        size = list(inputSizes[0]) + [1] * (axis + 1 - len(inputSizes[0]))
        for other in inputSizes[1:]:
            other = list(other) + [1] * (axis + 1 - len(other))
            size[axis] = size[axis] + other[axis]
        return [size_row(size)]

    def getReceptiveFields(self):
        """Element-wise for each input along channels or images (``dim`` 3
        or 4); undefined (NaN) along rows or columns."""
        count = _num_inputs(self)
        if self.dim in (3, 4):
            return [[receptive_field([1, 1], [1, 1], [1, 1])] for _ in range(count)]
        return [[nan_field()] for _ in range(count)]


class Sum(ElementWise):
    """The sum of all the inputs (same size): ``dagnn.Sum()``.

    Backward gives every input the output's derivative (the same array, not
    copies: the net adds derivatives into new arrays, never in place).
    Transient: ``numInputs``, set by the forward.
    """

    TRANSIENT = {"numInputs": None}

    def forward(self, inputs, params):
        self.numInputs = len(inputs)
        y = inputs[0]
        for x in inputs[1:]:
            y = y + x
        return [y]

    def backward(self, inputs, params, derOutputs):
        count = self.numInputs if self.numInputs is not None else len(inputs)
        return [derOutputs[0]] * count, []

    def getOutputSizes(self, inputSizes):
        """The first input's size; a warning when another differs."""
        out = list(inputSizes[0])
        for size in inputSizes[1:]:
            known = all(v == v for v in list(size) + out)  # no NaN
            if known and list(size) != out:
                warnings.warn("Sum layer: the dimensions of the input variables is not the same.",
                              stacklevel=2)
        return [size_row(out)]

    def getReceptiveFields(self):
        """Element-wise, one row per input."""
        return [[receptive_field([1, 1], [1, 1], [1, 1])] for _ in range(_num_inputs(self))]


class Crop(ElementWise):
    """Crop the first input to the spatial size of the second, ``vl_nncrop``
    (the FCN layer).

    ``dagnn.Crop('crop', [0 0])``.  With ``dv = H1 - H2`` rows to remove,
    ``max(0, dv - crop(1))`` are taken from the bottom and the rest from the
    top; likewise for the columns with ``crop(2)``.  The forward keeps the
    input sizes (transient ``inputSizes``) for the backward.  The second
    input gets no derivative (``None``).

    Properties
    ----------
    crop : [CY, CX], default [0, 0]
        The base crop at the top and at the left.
    """

    PROPERTIES = {"crop": [0, 0]}
    TRANSIENT = {"inputSizes": []}

    def _set_crop(self, value):
        return vector_value(value)

    def getAdaptedCrops(self):
        """``[TOP, BOTTOM, LEFT, RIGHT]`` for the kept ``inputSizes``."""
        base = row(self.crop)
        base = base * 2 if len(base) == 1 else base
        first, second = self.inputSizes[0], self.inputSizes[1]
        crop_v = first[0] - second[0]
        crop_u = first[1] - second[1]
        crop_v1 = max(0, crop_v - base[0])
        crop_u1 = max(0, crop_u - base[1])
        return [crop_v - crop_v1, crop_v1, crop_u - crop_u1, crop_u1]

    def forward(self, inputs, params):
        self.inputSizes = [_shape(a) for a in inputs]
        return [vl_nncrop(inputs[0], self.getAdaptedCrops())]

    def backward(self, inputs, params, derOutputs):
        dx = vl_nncrop(inputs[0], self.getAdaptedCrops(), dzdy=derOutputs[0],
                       input_size=self.inputSizes[0])
        return [dx, None], []

    def reset(self):
        """Forget the input sizes."""
        self.inputSizes = []

    def getOutputSizes(self, inputSizes):
        """The first input's size less the adapted crops (sets
        ``inputSizes``, as MatConvNet does)."""
        self.inputSizes = [list(size) for size in inputSizes]
        crop = self.getAdaptedCrops()
        size = list(inputSizes[0])
        return [size_row([size[0] - crop[0] - crop[1], size[1] - crop[2] - crop[3]]
                         + size[2:])]

    def getReceptiveFields(self):
        """Size and stride 1, offset ``1 + crop`` in the first input; no
        dependency on the second."""
        base = row(self.crop)
        base = base * 2 if len(base) == 1 else base
        return [[receptive_field([1, 1], [1, 1], [1 + base[0], 1 + base[1]])],
                [empty_field()]]
