"""DagNN model files: :func:`load_net` and :func:`save_net`.

A DagNN is stored in a .mat file as its saved form (``DagNN.saveobj``):
the top-level variables ``vars``, ``params``, ``layers`` (``1 x N`` struct
arrays) and ``meta``, as MatConvNet's ``*-dag.mat`` models are
(``net = net.saveobj() ; save(file, '-struct', 'net')``), or one variable
``net`` holding them, as ``cnn_train_dag`` checkpoints are.  Reading and
writing MATLAB values is :mod:`simplenn.matfile`'s (MAT v5/v7 with scipy,
v7.3 with h5py); this module only knows the DagNN layout.
"""

import os

import numpy as np

from simplenn.matfile import (MatCell, MatStruct, is_empty, number, read_mat, struct_array,
                              to_mat, to_python, write_mat)
from simplenn.struct import Struct

__all__ = ["load_net", "save_net", "read_saved_form", "saved_variables"]

_SIMPLENN_HINT = ("load it with simplenn.load_net (and convert it with "
                  "dagnn.DagNN.fromSimpleNN if you want a DagNN)")


def _names(value, where):
    """A cell of strings as a list (a char, MATLAB's other spelling of one
    name, becomes a one-element list; an empty value an empty list)."""
    if isinstance(value, MatCell):
        names = [to_python(item, f"{where}{{{i + 1}}}") for i, item in enumerate(value.items)]
    elif isinstance(value, str):
        names = [value] if value else []
    elif is_empty(value):
        names = []
    else:
        raise ValueError(f"{where} must be a cell array of strings")
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"{where} must be a cell array of strings, got an element {name!r}")
    return names


def _struct_records(value, where):
    """The elements of a struct array (a 1 x 1 struct is one element)."""
    if isinstance(value, MatStruct):
        return value.records
    if is_empty(value):
        return []
    raise ValueError(f"{where} must be a struct array")


def _array(value, where):
    """A parameter value: an array in its stored class and shape (a
    ``1 x 1`` array stays an array), ``None`` when empty."""
    if isinstance(value, np.ndarray):
        return None if value.size == 0 else value
    return to_python(value, where)


def _scalar(value, where):
    out = to_python(value, where)
    if isinstance(out, np.ndarray) and out.size == 1:
        out = out.ravel()[0]
        out = bool(out) if out.dtype == np.bool_ else number(out)
    return out


def _block(value, where):
    if isinstance(value, MatStruct):
        if len(value.records) != 1:
            raise ValueError(f"{where} must be a 1 x 1 struct of block properties")
        return Struct((name, to_python(item, f"{where}.{name}"))
                      for name, item in value.records[0].items())
    if is_empty(value):
        return Struct()
    raise ValueError(f"{where} must be a struct of block properties")


def saved_form(fields, path):
    """The saved form (what ``DagNN.saveobj`` returns) from the MATLAB
    values of a file's DagNN fields."""
    layers = []
    for i, rec in enumerate(_struct_records(fields["layers"], f"{path}: layers")):
        where = f"{path}: layers({i + 1})"
        missing = [f for f in ("name", "type", "inputs", "outputs", "block") if f not in rec]
        if missing:
            raise ValueError(f"{where} has no field {', '.join(missing)}: not a DagNN layer")
        layers.append(Struct(
            name=to_python(rec["name"], where + ".name"),
            type=to_python(rec["type"], where + ".type"),
            inputs=_names(rec["inputs"], where + ".inputs"),
            outputs=_names(rec["outputs"], where + ".outputs"),
            params=_names(rec.get("params"), where + ".params"),
            block=_block(rec["block"], where + ".block")))
    out = Struct(layers=layers)
    if "params" in fields:
        params = []
        for i, rec in enumerate(_struct_records(fields["params"], f"{path}: params")):
            where = f"{path}: params({i + 1})"
            record = Struct()
            for name, item in rec.items():
                if name in ("value", "der"):
                    record[name] = _array(item, f"{where}.{name}")
                elif name in ("learningRate", "weightDecay", "fanout"):
                    record[name] = _scalar(item, f"{where}.{name}")
                else:
                    record[name] = to_python(item, f"{where}.{name}")
            params.append(record)
        out.params = params
    if "vars" in fields:
        variables = []
        for i, rec in enumerate(_struct_records(fields["vars"], f"{path}: vars")):
            where = f"{path}: vars({i + 1})"
            record = Struct()
            for name, item in rec.items():
                if name in ("value", "der"):
                    record[name] = _array(item, f"{where}.{name}")
                else:
                    record[name] = _scalar(item, f"{where}.{name}")
            if "precious" in record:
                record.precious = bool(record.precious)
            variables.append(record)
        out.vars = variables
    for name, value in fields.items():
        if name not in ("layers", "params", "vars"):
            out[name] = to_python(value, name)
    if "meta" in out and out.meta is None:
        out.meta = Struct()
    return out


def read_saved_form(path, simplenn_ok=False):
    """The saved form of the DagNN in the file ``path`` (model file or
    ``cnn_train_dag`` checkpoint).  A SimpleNN file is a ``ValueError``
    naming :func:`simplenn.load_net`, or, with ``simplenn_ok``, returned as
    the SimpleNN network (for ``DagNN.loadobj``, which converts it)."""
    path = os.fspath(path)
    variables = read_mat(path)
    fields, source = variables, "the file"
    net = variables.get("net")
    if isinstance(net, MatStruct) and len(net.records) == 1 and "layers" in net.records[0]:
        fields, source = net.records[0], "variable 'net'"
    if "layers" not in fields:
        names = ", ".join(sorted(variables)) or "none"
        raise ValueError(f"{path}: not a DagNN model: no 'layers' variable and no 'net' "
                         f"variable with 'layers' (variables: {names})")
    if isinstance(fields["layers"], MatCell):
        if simplenn_ok:
            from simplenn.io import network_from_variables

            return network_from_variables(variables, path)
        raise ValueError(f"{path}: this is a SimpleNN network ({source} has 'layers' as a cell "
                         f"array), not a DagNN model; {_SIMPLENN_HINT}")
    return saved_form(fields, path)


def load_net(path):
    """Load a DagNN saved by MatConvNet or by :func:`save_net`.

    ``net = load_net(path)`` is MatConvNet's
    ``net = dagnn.DagNN.loadobj(load(path))``.  It reads model files, whose
    top-level variables are the saved form's ``vars``, ``params``,
    ``layers`` and ``meta`` (MatConvNet's ``*-dag.mat`` models), and
    ``cnn_train_dag`` checkpoints, whose variable ``net`` holds them (their
    ``state`` and ``stats`` are not returned).  MAT v5/v7 files are read
    with scipy, MAT v7.3 (HDF5) with h5py (optional).  Nothing in the file
    is executed.

    Each layer's ``type`` (``'dagnn.Conv'``) names its class; the block is
    built with the class defaults and then the saved properties (a
    property the file lacks keeps its default).  Parameter values keep
    their stored class and shape; ``learningRate``, ``weightDecay`` are
    Python numbers, ``precious`` a bool, names lists of strings (also a
    cell of one name), block properties as ``simplenn.load_net`` reads
    MATLAB values (a list-valued property, such as ``Conv.size``, comes back
    a list).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    net : DagNN

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not a readable .mat file, holds no DagNN, holds a
        SimpleNN network (the message names :func:`simplenn.load_net`),
        a layer of unknown type, or a block property its class does not
        have (naming the property and the class); the message names the
        file.
    ImportError
        For a v7.3 file when h5py is not installed.

    See Also
    --------
    save_net, DagNN.loadobj
    """
    from .dagnn import DagNN

    path = os.fspath(path)
    saved = read_saved_form(path)
    try:
        return DagNN.loadobj(saved)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def saved_variables(net, fname="save_net"):
    """The MATLAB values of a DagNN's saved form, as the top-level
    variables of a file (``vars``, ``params``, ``layers``: ``1 x N``
    struct arrays; ``meta``: a struct)."""
    s = net.saveobj()
    layers = []
    for i, layer in enumerate(s.layers):
        layers.append({"name": layer.name, "type": layer.type, "inputs": list(layer.inputs),
                       "outputs": list(layer.outputs), "params": list(layer.params),
                       "block": layer.block})
    return {
        "vars": struct_array([dict(v) for v in s.vars], "vars", fname,
                             fields=("name", "precious")),
        "params": struct_array([dict(p) for p in s.params], "params", fname,
                               fields=("name", "value", "learningRate", "weightDecay")),
        "layers": struct_array(layers, "layers", fname,
                               fields=("name", "type", "inputs", "outputs", "params", "block")),
        "meta": to_mat(s.meta if s.meta is not None else Struct(), "meta", fname),
    }


def save_net(path, net):
    """Save a DagNN in MatConvNet's layout.

    ``save_net(path, net)`` writes ``net.saveobj()`` as a compressed MAT v7
    file whose top-level variables are ``vars``, ``params`` and ``layers``
    (``1 x N`` struct arrays) and ``meta`` (a struct), so that MATLAB's
    ``net = dagnn.DagNN.loadobj(load(path))`` reads it and
    :func:`load_net` reads it back equal: same structure, block
    properties, parameter values, dtypes and shapes (1-D arrays come back
    as ``1 x N`` rows, MATLAB having no 1-D arrays).  Layer ``type`` is
    the MATLAB class name (``'dagnn.Conv'``); ``inputs``, ``outputs`` and
    ``params`` are cells of strings; parameter values are stored in their
    precision (CuPy arrays copied to the host).  As MatConvNet's
    ``saveobj``, ``trainMethod`` and the values of variables are not
    saved.  The file is written atomically (a temporary file renamed).

    Returns
    -------
    path

    Raises
    ------
    ValueError
        If something cannot be stored in a .mat file (the message names it).
    """
    write_mat(path, saved_variables(net), "save_net")
    return path
