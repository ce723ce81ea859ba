"""dagnn: MatConvNet's DagNN wrapper (networks that are directed acyclic graphs).

The MATLAB package ``+dagnn`` becomes this Python package:
``net = dagnn.DagNN()``, ``dagnn.Conv('size', [3, 3, 64, 64])``,
``net.addLayer(...)``, ``net.eval({'input': x})``.  Each layer class is a thin
call of its :mod:`vlnn` block.  This package depends on :mod:`vlnn` and
:mod:`simplenn`, never the other way round.
"""

from .layer import Layer, layer_class, register_layer

__all__ = ["Layer", "layer_class", "register_layer"]
