"""MatConvNet model files: :func:`load_net` and :func:`save_net`.

A SimpleNN network is stored in a MATLAB .mat file either as the top-level
variables ``layers`` (a ``1 x L`` cell of structs) and ``meta`` (a struct),
as MatConvNet's downloadable models are, or as one variable ``net`` with
those fields, as ``cnn_train`` checkpoints are.  MAT v5/v7 files are read
with :func:`scipy.io.loadmat`; MAT v7.3 files (HDF5, what MATLAB writes for
variables over 2 GB) with h5py, an optional dependency (the ``h5`` extra).
Reading never executes code from the file.

Both readers first turn the file into the same small description of MATLAB
values (struct arrays, cells, char, numeric and logical arrays); one
converter then maps it to Python (:class:`~simplenn.struct.Struct`, lists,
str, bool, numbers, arrays) and :func:`~simplenn.tidy.vl_simplenn_tidy`
completes the network.
"""

import os

import numpy as np

from .matfile import (MatCell, MatStruct, cell, host, is_empty, is_scalar, number,
                      read_mat, struct_value, to_mat, to_python, write_mat)
from .struct import Struct
from .tidy import vl_simplenn_tidy

__all__ = ["load_net", "save_net", "network_from_variables", "layer_to_mat"]


# --------------------------------------------------------------------------
# MATLAB values -> Python

# Layer fields MatConvNet treats as logical or scalar flags/numbers.
_LAYER_BOOL_FIELDS = ("precious", "noRoot", "aggregate")
_LAYER_SCALAR_FIELDS = ("leak", "rate", "epsilon", "p", "numGroups")
# Layer fields that hold cells which are lists even when empty.
_LAYER_LIST_FIELDS = ("weights", "opts")



def _weight(value, where):
    """A weight array: kept an array (even 1 x 1) in its stored precision
    (single, or double as MATLAB's ``save`` keeps it)."""
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        if value.dtype.kind == "f" and value.dtype not in (np.float32, np.float64):
            return value.astype(np.float32)
        return value
    return to_python(value, where)


def _same_precision(weights):
    """A layer whose weights mix single and double (old files with double
    biases) gets them all single, which the blocks accept; a layer entirely
    in double stays double."""
    kinds = {w.dtype for w in weights if isinstance(w, np.ndarray) and w.dtype.kind == "f"}
    if kinds == {np.dtype(np.float32), np.dtype(np.float64)}:
        return [w.astype(np.float32) if isinstance(w, np.ndarray) and w.dtype == np.float64
                else w for w in weights]
    return weights


def _layer(value, where):
    """A layer struct, with MatConvNet's field types where they are known."""
    if not (isinstance(value, MatStruct) and len(value.records) == 1):
        return to_python(value, where)
    rec = value.records[0]
    layer = Struct()
    for name in value.fields:
        raw, here = rec[name], f"{where}.{name}"
        if name in _LAYER_LIST_FIELDS and is_empty(raw):
            out = []
        elif name == "weights" and isinstance(raw, MatCell):
            out = _same_precision(
                [_weight(w, f"{here}{{{i + 1}}}") for i, w in enumerate(raw.items)])
        elif name in ("filters", "biases"):
            out = _weight(raw, here)
        else:
            out = to_python(raw, here)
            if name in _LAYER_BOOL_FIELDS and is_scalar(out):
                out = bool(np.asarray(out).flat[0])
            elif name in _LAYER_SCALAR_FIELDS and is_scalar(out) and not isinstance(out, bool):
                out = number(np.asarray(out).flat[0])
        layer[name] = out
    if "filters" in layer and "biases" in layer:   # legacy layout: the same rule
        layer["filters"], layer["biases"] = _same_precision([layer["filters"], layer["biases"]])
    return layer



def network_from_variables(variables, path):
    """The plain network (before tidy) from the variables of a file."""
    names = ", ".join(sorted(variables)) or "none"
    fields = variables
    source = "the file"
    net = variables.get("net")
    if isinstance(net, MatStruct) and len(net.records) == 1:
        fields, source = net.records[0], "variable 'net'"
    if "params" in fields:
        raise ValueError(
            f"{path}: this is a DagNN model ({source} has 'params'), not a SimpleNN network; "
            "load_net reads SimpleNN models only; load it with dagnn.load_net")
    if "layers" not in fields:
        raise ValueError(
            f"{path}: not a SimpleNN network: no 'layers' variable and no 'net' variable with "
            f"'layers' (variables: {names})")
    layers = fields["layers"]
    if isinstance(layers, MatCell):
        layers = [_layer(item, f"layers{{{i + 1}}}") for i, item in enumerate(layers.items)]
    elif isinstance(layers, MatStruct):
        # a struct array of layers with identical fields
        layers = [_layer(MatStruct((1, 1), layers.fields, [rec]), f"layers({i + 1})")
                  for i, rec in enumerate(layers.records)]
    else:
        raise ValueError(f"{path}: 'layers' in {source} is not a cell array of layer structs")
    net = {"layers": layers}
    for name in ("meta", "classes", "normalization"):
        if name in fields:
            net[name] = to_python(fields[name], name)
    return net

def load_net(path):
    """Load a SimpleNN network saved by MatConvNet.

    ``net = load_net(path)`` is MatConvNet's ``net = load(path)`` followed
    by ``net = vl_simplenn_tidy(net)``.  It reads both layouts MatConvNet
    uses: model files, whose top-level variables are the fields of the
    network (``layers``, ``meta``, or the legacy ``classes`` and
    ``normalization``), and ``cnn_train`` checkpoints, which hold a variable
    ``net`` (their ``state`` and ``stats`` are not returned).  Legacy
    networks are upgraded by :func:`~simplenn.tidy.vl_simplenn_tidy`.

    MAT v5 and v7 files are read with :func:`scipy.io.loadmat`, MAT v7.3
    (HDF5) files with h5py (optional: ``pip install h5py``).  Nothing in the
    file is executed.

    MATLAB values become:

    ==================================  ======================================
    MATLAB                              Python
    ==================================  ======================================
    struct (1 x 1)                      :class:`~simplenn.struct.Struct`
    struct array, cell vector           list (column-major order)
    cell matrix                         object ``ndarray`` of that shape
    char row (matrix)                   ``str`` (list of ``str``)
    logical scalar                      ``bool``
    double scalar                       ``int`` when integral, else ``float``
    any empty array ``[]``              ``None``; an empty ``weights`` or
                                        ``opts`` is ``[]``
    other arrays                        ``ndarray`` of the MATLAB class and
                                        shape (Fortran order), e.g. ``pool``
                                        ``[3 3]`` as a ``(1, 2)`` float64
    layer ``weights``                   list of arrays, single or double as
                                        stored (a layer mixing both: single);
                                        filters 4-D (tidy restores
                                        MATLAB's dropped trailing singletons)
    layer ``precious``, ``noRoot``,     ``bool``; ``leak``, ``rate``,
    ``aggregate``                       ``epsilon``, ``p``, ``numGroups``
                                        are Python numbers
    function handle                     a callable that raises
                                        ``TypeError``
    ==================================  ======================================

    Parameters
    ----------
    path : str or os.PathLike
        The .mat file (no extension is added).

    Returns
    -------
    net : Struct
        The tidied network: ``net.layers`` (list of :class:`Struct`) and
        ``net.meta``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not a readable .mat file (empty, truncated, not
        MATLAB's format) or holds no SimpleNN network (no ``layers``, or a
        DagNN model, recognised by its ``params``); the message names the
        file.
    ImportError
        For a v7.3 file when h5py is not installed.

    See Also
    --------
    save_net, simplenn.tidy.vl_simplenn_tidy
    """
    path = os.fspath(path)
    variables = read_mat(path)
    net = network_from_variables(variables, path)
    try:
        return vl_simplenn_tidy(net)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


# --------------------------------------------------------------------------
def _weight_to_mat(value, where):
    value = host(value)
    if value is None:
        return np.zeros((0, 0), dtype=np.float32)
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise ValueError(f"save_net: {where} must be a numeric array, got {type(value).__name__}")
    if array.dtype.kind == "f" and array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float32)
    return array.reshape(1, 1) if array.ndim == 0 else array


def layer_to_mat(layer, index):
    name = layer.get("name")
    label = f" '{name}'" if isinstance(name, str) and name else ""
    where = f"layer {index + 1}{label} (net.layers[{index}], type {layer.get('type')!r})"
    for key, item in layer.items():
        if callable(item):
            raise ValueError(f"save_net: {where} holds a callable in field '{key}'; custom "
                             "layers cannot be saved to a .mat file")
    fields = {}
    for key, item in layer.items():
        if key == "weights" and isinstance(item, (list, tuple)):
            fields[key] = cell([_weight_to_mat(w, f"{where} weights[{j}]")
                                 for j, w in enumerate(item)])
        else:
            fields[key] = to_mat(item, f"{where} field '{key}'")
    return struct_value(fields, where)


def save_net(path, net):
    """Save a SimpleNN network in MatConvNet's model-file layout.

    ``save_net(path, net)`` writes ``vl_simplenn_tidy(net)`` as a MAT v7
    file (compressed) whose top-level variables are ``layers`` (a ``1 x L``
    cell of structs) and ``meta`` (a struct), the layout of MatConvNet's
    downloadable models: ``net = load(path)`` in MATLAB gives the network,
    and :func:`load_net` reads it back equal to ``vl_simplenn_tidy(net)``:
    same fields, values, dtypes and 4-D filter shapes.

    Python values are written as MATLAB's: mappings as structs, lists and
    tuples as cells (a non-empty list of numbers as a ``1 x N`` double
    array, of bools as a logical array), ``str`` as char, ``bool`` as
    logical, other numbers as double, ``None`` as ``[]``, arrays with their
    dtype (1-D arrays as ``1 x N`` rows); layer weights in their precision
    (float32 as single, float64 as double, other floats as single).
    CuPy arrays are copied to the host.

    Round-trip caveats (MATLAB cannot tell them apart): numbers come back as
    ``int`` when integral and ``float`` otherwise, lists of numbers and 1-D
    arrays as ``(1, N)`` arrays, tuples as lists, empty arrays as ``None``
    (an empty ``weights`` or ``opts`` as ``[]``).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (no extension is added).
    net : mapping
        The network; it is tidied first (and not modified).

    Returns
    -------
    path : str or os.PathLike
        ``path``, so that ``load_net(save_net(path, net))`` reads it back.

    Raises
    ------
    ValueError
        If the network holds something MATLAB cannot store: a custom layer
        (its callables), a field name that is not a MATLAB identifier, an
        object of another type; the message names the layer or field.
        Nothing is written then.

    See Also
    --------
    load_net
    """
    tnet = vl_simplenn_tidy(net)
    layers = cell([layer_to_mat(layer, i) for i, layer in enumerate(tnet.layers)])
    meta = to_mat(tnet.meta, "meta")
    write_mat(path, {"layers": layers, "meta": meta})
    return path
