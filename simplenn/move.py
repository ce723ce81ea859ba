"""vl_simplenn_move: put a SimpleNN network's parameters on the CPU or the GPU
(MATCONVNET_SEMANTICS.md section 25).  The GPU is CuPy's; CuPy is imported
only when a network is moved to the GPU."""

import copy
from collections.abc import Mapping

import numpy as np

from vlnn._backend import get_array_module, gpu_module

FNAME = "vl_simplenn_move"

# Only these layers own arrays that live on a device, and only these fields.
_MOVED_TYPES = ("conv", "convt", "bnorm")
_ARRAY_FIELDS = ("filters", "biases", "filtersMomentum", "biasesMomentum")
_LIST_FIELDS = ("weights", "momentum")


def _to_cpu(value):
    """A CuPy array back as numpy (``.get()``); anything else unchanged."""
    if value is not None and hasattr(value, "shape") and get_array_module(value) is not np:
        return value.get()
    return value


def _gpu_mover():
    cupy = gpu_module(f"{FNAME}: moving a network to the GPU")

    def to_gpu(value):
        return None if value is None else cupy.asarray(value)

    return to_gpu


def _get(layer, name):
    if isinstance(layer, Mapping):
        return layer.get(name, None)
    return getattr(layer, name, None)


def _has(layer, name):
    return name in layer if isinstance(layer, Mapping) else hasattr(layer, name)


def _set(layer, name, value):
    if isinstance(layer, Mapping):
        layer[name] = value
    else:
        setattr(layer, name, value)


def _moved_list(values, move):
    """A cell (list, tuple or numpy object array) with each element moved."""
    if isinstance(values, np.ndarray) and values.dtype == object:
        out = np.empty(values.shape, dtype=object)
        for index, value in np.ndenumerate(values):
            out[index] = move(value)
        return out
    if isinstance(values, tuple):
        return tuple(move(v) for v in values)
    if values is None:
        return None
    return [move(v) for v in values]


def vl_simplenn_move(net, destination):
    """Move a SimpleNN network between CPU and GPU.

    ``net = vl_simplenn_move(net, 'gpu')`` moves the network to the
    current GPU device (CuPy arrays, via ``cupy.asarray``).
    ``net = vl_simplenn_move(net, 'cpu')`` moves the network to the CPU
    (CuPy arrays are copied back with ``.get()``; numpy arrays stay as they
    are).

    Only ``conv``, ``convt`` and ``bnorm`` layers are touched, and in them
    only the fields ``filters``, ``biases``, ``filtersMomentum``,
    ``biasesMomentum`` (when present) and every element of the lists
    ``weights`` and ``momentum`` (when present).  Nothing else moves, as in
    MatConvNet.

    Parameters
    ----------
    net : mapping
        The network (``layers`` and optionally ``meta``); plain dicts and
        Structs alike.
    destination : {'cpu', 'gpu'}
        Where the parameters go (case-insensitive).

    Returns
    -------
    net : mapping
        A new network of the same type.  The input is not modified: the net,
        its layer list and every layer are shallow copies, the moved lists
        are new lists; arrays that did not need to move are shared.

    Raises
    ------
    ValueError
        ``destination`` is not ``'cpu'`` or ``'gpu'``.
    ImportError
        ``'gpu'`` was asked for and CuPy is not installed.

    See Also
    --------
    vl_simplenn
    """
    where = destination.lower() if isinstance(destination, str) else None
    if where == "gpu":
        move = _gpu_mover()
    elif where == "cpu":
        move = _to_cpu
    else:
        raise ValueError(f"{FNAME}: unknown destination {destination!r}; "
                         f"expected 'cpu' or 'gpu'")

    layers = _get(net, "layers")
    if layers is None:
        raise ValueError(f"{FNAME}: net has no 'layers'")
    moved_layers = []
    for layer in layers:
        layer = copy.copy(layer)
        if str(_get(layer, "type")) in _MOVED_TYPES:
            for name in _ARRAY_FIELDS:
                if _has(layer, name):
                    _set(layer, name, move(_get(layer, name)))
            for name in _LIST_FIELDS:
                if _has(layer, name):
                    _set(layer, name, _moved_list(_get(layer, name), move))
        moved_layers.append(layer)

    out = copy.copy(net)
    _set(out, "layers", tuple(moved_layers) if isinstance(layers, tuple) else moved_layers)
    return out
