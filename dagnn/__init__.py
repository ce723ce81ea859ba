"""dagnn: MatConvNet's DagNN wrapper (networks that are directed acyclic graphs).

The MATLAB package ``+dagnn`` becomes this Python package:
``net = dagnn.DagNN()``, ``dagnn.Conv('size', [3, 3, 64, 64])``,
``net.addLayer(...)``, ``net.eval({'input': x})``.  Each layer class is a thin
call of its :mod:`vlnn` block.  Models are read and written in MatConvNet's
layout with ``load_net`` / ``save_net``.  This package depends on :mod:`vlnn`
and :mod:`simplenn`, never the other way round.
"""

from .dagnn import DagNN
from .io import load_net, save_net
from .layer import Layer, layer_class, register_layer
from .layers import *  # noqa: F401,F403  (every block class: dagnn.Conv, ...)
from .layers import __all__ as _layer_names
from .train import cnn_train_dag

__all__ = ["DagNN", "load_net", "save_net", "cnn_train_dag", "layer_class", "register_layer", *_layer_names]
