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

import numbers
import os
import re
import warnings
from collections.abc import Mapping

import numpy as np

from .struct import Struct
from .tidy import vl_simplenn_tidy

__all__ = ["load_net", "save_net"]


# --------------------------------------------------------------------------
# MATLAB values as read from a file (format-independent)

class _MatStruct:
    """A MATLAB struct array: its shape, field names and one dict per
    element, in MATLAB's column-major element order."""

    __slots__ = ("shape", "fields", "records")

    def __init__(self, shape, fields, records):
        self.shape, self.fields, self.records = tuple(shape), tuple(fields), records


class _MatCell:
    """A MATLAB cell array: its shape and items in column-major order."""

    __slots__ = ("shape", "items")

    def __init__(self, shape, items):
        self.shape, self.items = tuple(shape), items


class _MatOpaque:
    """A MATLAB value with no Python counterpart (function handle, object)."""

    __slots__ = ("kind", "description")

    def __init__(self, kind, description):
        self.kind, self.description = kind, description


class MatlabFunctionHandle:
    """Stands for a MATLAB function handle read from a .mat file.

    The network keeps its place (so that a custom layer can still be
    displayed), but MATLAB code cannot run in Python: calling it raises
    ``TypeError``.  Replace it with a Python callable.
    """

    def __init__(self, description):
        self.description = description

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"MATLAB function handle {self.description} was read from a .mat file and cannot "
            "run in Python; replace it with a Python callable")

    def __repr__(self):
        return f"MatlabFunctionHandle({self.description!r})"


class _FileError(ValueError):
    """A malformed file; :func:`load_net` adds the file name."""


# --------------------------------------------------------------------------
# MATLAB values -> Python

# Layer fields MatConvNet treats as logical or scalar flags/numbers.
_LAYER_BOOL_FIELDS = ("precious", "noRoot", "aggregate")
_LAYER_SCALAR_FIELDS = ("leak", "rate", "epsilon", "p", "numGroups")
# Layer fields that hold cells which are lists even when empty.
_LAYER_LIST_FIELDS = ("weights", "opts")


def _number(x):
    """A real scalar as a Python int when integral (MATLAB stores every
    number as a double: ``stride = 1`` comes back as ``1``), else float."""
    x = float(x)
    if x.is_integer() and abs(x) < 2 ** 53:
        return int(x)
    return x


def _is_empty(value):
    if isinstance(value, np.ndarray):
        return value.size == 0
    if isinstance(value, (_MatCell, _MatStruct)):
        return len(value.records if isinstance(value, _MatStruct) else value.items) == 0
    return isinstance(value, str) and value == ""


def _python(value, where):
    """Generic conversion of a MATLAB value (the table in :func:`load_net`)."""
    if isinstance(value, _MatStruct):
        records = [Struct((name, _python(rec[name], f"{where}.{name}")) for name in value.fields)
                   for rec in value.records]
        return records[0] if len(records) == 1 else records
    if isinstance(value, _MatCell):
        items = [_python(item, f"{where}{{{i + 1}}}") for i, item in enumerate(value.items)]
        if len(value.shape) <= 2 and min(value.shape, default=0) <= 1:
            return items
        out = np.empty(value.shape, dtype=object)
        for i, item in enumerate(items):
            out[np.unravel_index(i, value.shape, order="F")] = item
        return out
    if isinstance(value, _MatOpaque):
        if value.kind == "function_handle":
            return MatlabFunctionHandle(value.description)
        warnings.warn(f"{where}: {value.description} has no Python counterpart; read as None",
                      stacklevel=4)
        return None
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        if value.size == 1:
            if value.dtype == np.bool_:
                return bool(value.flat[0])
            if value.dtype == np.float64:
                return _number(value.flat[0])
            if value.dtype == np.complex128:
                return complex(value.flat[0])
        return value
    return value  # str, list of str


def _weight(value, where):
    """A weight array: kept an array (even 1 x 1) in its stored precision
    (single, or double as MATLAB's ``save`` keeps it)."""
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        if value.dtype.kind == "f" and value.dtype not in (np.float32, np.float64):
            return value.astype(np.float32)
        return value
    return _python(value, where)


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
    if not (isinstance(value, _MatStruct) and len(value.records) == 1):
        return _python(value, where)
    rec = value.records[0]
    layer = Struct()
    for name in value.fields:
        raw, here = rec[name], f"{where}.{name}"
        if name in _LAYER_LIST_FIELDS and _is_empty(raw):
            out = []
        elif name == "weights" and isinstance(raw, _MatCell):
            out = _same_precision(
                [_weight(w, f"{here}{{{i + 1}}}") for i, w in enumerate(raw.items)])
        elif name in ("filters", "biases"):
            out = _weight(raw, here)
        else:
            out = _python(raw, here)
            if name in _LAYER_BOOL_FIELDS and _is_scalar(out):
                out = bool(np.asarray(out).flat[0])
            elif name in _LAYER_SCALAR_FIELDS and _is_scalar(out) and not isinstance(out, bool):
                out = _number(np.asarray(out).flat[0])
        layer[name] = out
    if "filters" in layer and "biases" in layer:   # legacy layout: the same rule
        layer["filters"], layer["biases"] = _same_precision([layer["filters"], layer["biases"]])
    return layer


def _is_scalar(x):
    if isinstance(x, (bool, numbers.Real)):
        return True
    return isinstance(x, np.ndarray) and x.size == 1 and x.dtype.kind in "biuf"


def _network(variables, path):
    """The plain network (before tidy) from the variables of a file."""
    names = ", ".join(sorted(variables)) or "none"
    fields = variables
    source = "the file"
    net = variables.get("net")
    if isinstance(net, _MatStruct) and len(net.records) == 1:
        fields, source = net.records[0], "variable 'net'"
    if "params" in fields:
        raise ValueError(
            f"{path}: this is a DagNN model ({source} has 'params'), not a SimpleNN network; "
            "load_net reads SimpleNN models only (in MatConvNet, dagnn.DagNN.loadobj reads it)")
    if "layers" not in fields:
        raise ValueError(
            f"{path}: not a SimpleNN network: no 'layers' variable and no 'net' variable with "
            f"'layers' (variables: {names})")
    layers = fields["layers"]
    if isinstance(layers, _MatCell):
        layers = [_layer(item, f"layers{{{i + 1}}}") for i, item in enumerate(layers.items)]
    elif isinstance(layers, _MatStruct):
        # a struct array of layers with identical fields
        layers = [_layer(_MatStruct((1, 1), layers.fields, [rec]), f"layers({i + 1})")
                  for i, rec in enumerate(layers.records)]
    else:
        raise ValueError(f"{path}: 'layers' in {source} is not a cell array of layer structs")
    net = {"layers": layers}
    for name in ("meta", "classes", "normalization"):
        if name in fields:
            net[name] = _python(fields[name], name)
    return net


# --------------------------------------------------------------------------
# MAT v5/v7 via scipy

def _from_scipy(value):
    from scipy.io.matlab import MatlabFunction, MatlabOpaque
    import scipy.sparse

    if isinstance(value, MatlabFunction):
        return _MatOpaque("function_handle", _describe_function(value))
    if isinstance(value, MatlabOpaque):
        return _MatOpaque("object", "a MATLAB object")
    if scipy.sparse.issparse(value):
        return value.toarray()
    if not isinstance(value, np.ndarray):
        raise _FileError(f"unexpected value of type {type(value).__name__}")
    if value.dtype.names:  # struct array (also old-style objects)
        names = value.dtype.names
        records = [{name: _from_scipy(rec[name]) for name in names}
                   for rec in value.ravel(order="F")]
        return _MatStruct(value.shape, names, records)
    if value.dtype == object:
        flat = value.ravel(order="F")
        if flat.size and all(item is None for item in flat):
            # scipy's reading of a struct without fields
            return _MatStruct(value.shape, (), [{} for _ in flat])
        return _MatCell(value.shape, [_from_scipy(item) for item in flat])
    if value.dtype.kind in "US":
        rows = [str(row) for row in value.ravel()]
        if not rows:
            return ""
        return rows[0] if len(rows) == 1 else rows
    if value.dtype.kind not in "biufc":
        raise _FileError(f"unsupported MATLAB data of dtype {value.dtype}")
    return np.asarray(value)


def _describe_function(handle):
    """The text of a function handle (its ``function`` field, found in the
    nested structs scipy reads), for messages."""
    def find(value, depth):
        if depth > 6 or not isinstance(value, np.ndarray) or value.size == 0:
            return None
        if value.dtype.kind in "US":
            return str(value.ravel()[0])
        if value.dtype.names:
            names = ["function"] if "function" in value.dtype.names else value.dtype.names
            items = [value[name].ravel()[0] for name in names]
            if names != ["function"]:
                items = [find(item, depth + 1) for item in items]
                return next((item for item in items if item), None)
            return find(items[0], depth + 1) if isinstance(items[0], np.ndarray) else None
        if value.dtype == object:
            return next((text for text in (find(item, depth + 1) for item in value.ravel())
                         if text), None)
        return None

    text = find(np.asarray(handle), 0)
    return f"'{text}'" if text else "(unknown function)"


def _read_v5(path):
    import scipy.io

    try:
        raw = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True, mat_dtype=True,
                               chars_as_strings=True, appendmat=False)
    except Exception as exc:  # scipy raises many types on corrupt input
        raise ValueError(f"{path}: cannot read the MAT file "
                         f"({type(exc).__name__}: {exc})") from exc
    return {name: _from_scipy(value) for name, value in raw.items()
            if not name.startswith("__")}


# --------------------------------------------------------------------------
# MAT v7.3 via h5py
#
# MATLAB writes each variable as an HDF5 dataset (arrays) or group (structs)
# with a MATLAB_class attribute.  Dimensions are stored reversed, so the
# transpose of the C-ordered dataset is the MATLAB array.  Cells are arrays
# of object references to datasets in /#refs#; a struct array is a group whose
# fields are such reference arrays (without MATLAB_class); a char array is
# uint16 (UTF-16 code units); an empty array stores its dimensions as data and
# has the attribute MATLAB_empty = 1.

_CLASS_DTYPES = {
    "double": np.float64, "single": np.float32, "logical": np.bool_,
    "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16,
    "int32": np.int32, "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64,
}


def _attr_text(value):
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.kind == "S":
            return b"".join(v if isinstance(v, bytes) else bytes(v) for v in value.ravel()).decode(
                "utf-8", "replace")
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _field_names(group):
    listed = group.attrs.get("MATLAB_fields")
    if listed is None:
        return [name for name in group if not name.startswith("#")]
    names = []
    for entry in np.asarray(listed, dtype=object).ravel():
        if isinstance(entry, np.ndarray):
            entry = b"".join(bytes(c) for c in entry.ravel())
        names.append(entry.decode("utf-8") if isinstance(entry, bytes) else str(entry))
    return [name for name in names if name in group]


def _matlab_layout(data):
    """HDF5's reversed dimensions -> the MATLAB array (a transposed view)."""
    data = np.asarray(data)
    if data.ndim == 0:
        return data.reshape(1, 1)
    if data.ndim == 1:
        return data.reshape(-1, 1)
    return data.T


def _chars(codes):
    codes = np.asarray(codes)
    rows = codes.reshape(codes.shape[0], -1, order="F") if codes.ndim > 1 else codes.reshape(1, -1)
    text = [row.astype("<u2").tobytes().decode("utf-16-le", "replace") for row in rows]
    if not text:
        return ""
    return text[0] if len(text) == 1 else text


def _flag(attrs, name):
    value = attrs.get(name)
    return value is not None and bool(np.any(np.asarray(value)))


def _from_h5(obj, h5file, h5py):
    cls = _attr_text(obj.attrs.get("MATLAB_class"))
    if isinstance(obj, h5py.Group):
        if _flag(obj.attrs, "MATLAB_empty"):
            return _MatStruct((0, 0), _field_names(obj), [])
        if "MATLAB_sparse" in obj.attrs:
            return _sparse(obj, cls)
        names = _field_names(obj)
        members = [obj[name] for name in names]
        if members and all(isinstance(m, h5py.Dataset) and h5py.check_ref_dtype(m.dtype)
                           and "MATLAB_class" not in m.attrs for m in members):
            refs = [_matlab_layout(m[()]) for m in members]
            shape = refs[0].shape
            if any(r.shape != shape for r in refs):
                raise _FileError(f"struct array {obj.name} has fields of different sizes")
            flat = [r.ravel(order="F") for r in refs]
            records = [{name: _deref(flat[j][i], h5file, h5py) for j, name in enumerate(names)}
                       for i in range(flat[0].size)]
            return _MatStruct(shape, names, records)
        return _MatStruct((1, 1), names, [{name: _from_h5(m, h5file, h5py)
                                          for name, m in zip(names, members)}])
    if not isinstance(obj, h5py.Dataset):
        raise _FileError(f"unsupported HDF5 object {obj.name}")
    if _flag(obj.attrs, "MATLAB_empty"):
        if cls == "char":
            return ""
        if cls == "cell":
            return _MatCell((0, 0), [])
        if cls == "struct":
            return _MatStruct((0, 0), (), [])
        return np.zeros((0, 0), dtype=_CLASS_DTYPES.get(cls, np.float64))
    if cls == "function_handle":
        return _MatOpaque("function_handle", "(stored in a v7.3 file)")
    if h5py.check_ref_dtype(obj.dtype):
        refs = _matlab_layout(obj[()])
        return _MatCell(refs.shape, [_deref(r, h5file, h5py) for r in refs.ravel(order="F")])
    if cls is not None and cls not in _CLASS_DTYPES and cls != "char":
        return _MatOpaque("object", f"a MATLAB object of class '{cls}'")
    data = _matlab_layout(obj[()])
    if cls == "char":
        return _chars(data)
    if data.dtype.names:
        if not {"real", "imag"} <= set(data.dtype.names):
            raise _FileError(f"unsupported compound dataset {obj.name}")
        data = data["real"] + 1j * data["imag"]
    if data.dtype.kind not in "biufc":
        raise _FileError(f"unsupported data of dtype {data.dtype} in {obj.name}")
    if cls in _CLASS_DTYPES:
        target = np.dtype(_CLASS_DTYPES[cls])
        if data.dtype.kind == "c" and target.kind == "f":
            target = np.result_type(target, np.complex64)
        data = data.astype(target, copy=False)
    return data


def _deref(ref, h5file, h5py):
    if not ref:  # null reference
        return np.zeros((0, 0))
    return _from_h5(h5file[ref], h5file, h5py)


def _sparse(group, cls):
    import scipy.sparse

    nrows = int(np.asarray(group.attrs["MATLAB_sparse"]).ravel()[0])
    jc = np.asarray(group["jc"][()]).ravel()
    ncols = jc.size - 1
    if "data" in group:
        data = np.asarray(group["data"][()]).ravel()
        ir = np.asarray(group["ir"][()]).ravel()
    else:
        data, ir = np.zeros(0), np.zeros(0, dtype=np.int64)
    dense = scipy.sparse.csc_matrix((data, ir, jc), shape=(nrows, ncols)).toarray()
    return dense.astype(_CLASS_DTYPES.get(cls, dense.dtype), copy=False)


def _read_v73(path):
    try:
        import h5py
    except ImportError:
        raise ImportError(
            f"{path} is a MAT v7.3 (HDF5) file; reading it needs h5py "
            "(pip install h5py, or the optional extra: pip install 'vlnn[h5]')") from None
    try:
        with h5py.File(path, "r") as h5file:
            return {name: _from_h5(h5file[name], h5file, h5py) for name in h5file
                    if not name.startswith("#")}
    except _FileError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except Exception as exc:
        raise ValueError(f"{path}: cannot read the MAT v7.3 (HDF5) file "
                         f"({type(exc).__name__}: {exc})") from exc


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _read_mat(path):
    """The variables of a .mat file as MATLAB values."""
    with open(path, "rb") as stream:
        head = stream.read(1032)
    if not head:
        raise ValueError(f"{path}: the file is empty, not a MAT file")
    # MATLAB's v7.3 files start with a 512-byte text header, then HDF5
    if any(head[offset:offset + 8] == _HDF5_SIGNATURE for offset in (0, 512, 1024)):
        return _read_v73(path)
    from scipy.io.matlab import matfile_version

    try:
        major, _ = matfile_version(path)
    except Exception as exc:
        raise ValueError(f"{path}: not a MATLAB MAT file ({type(exc).__name__}: {exc})") from None
    if major == 2:
        return _read_v73(path)
    try:
        return _read_v5(path)
    except _FileError as exc:
        raise ValueError(f"{path}: {exc}") from None


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
    variables = _read_mat(path)
    net = _network(variables, path)
    try:
        return vl_simplenn_tidy(net)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


# --------------------------------------------------------------------------
# Python -> MAT v7

_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}\Z")


def _host(value):
    """A CuPy array's host copy; anything else unchanged."""
    if type(value).__module__.split(".")[0] == "cupy" and hasattr(value, "get"):
        return value.get()
    return value


def _cell(items, shape=None):
    shape = shape or ((1, len(items)) if items else (0, 0))
    out = np.empty(shape, dtype=object)
    for i, item in enumerate(items):
        out[np.unravel_index(i, shape, order="F")] = item
    return out


def _is_number(x):
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def _struct(fields, where):
    """A 1 x 1 struct from already converted field values."""
    if not fields:
        return {}  # scipy's marker for a struct without fields
    for key in fields:
        if not (isinstance(key, str) and _FIELD_NAME.match(key)):
            raise ValueError(f"save_net: {where} has field {key!r}, which is not a valid "
                             "MATLAB field name (a letter, then letters, digits or _; "
                             "at most 63 characters)")
    out = np.empty((1, 1), dtype=[(key, object) for key in fields])
    for key, item in fields.items():
        out[key][0, 0] = item
    return out


def _to_mat(value, where):
    """A Python value as the array scipy.io.savemat writes as MATLAB's."""
    value = _host(value)
    if value is None:
        return np.zeros((0, 0))
    if isinstance(value, (bool, np.bool_)):
        return np.array([[bool(value)]])
    if isinstance(value, np.generic) and value.dtype.kind in "fc" \
            and value.dtype not in (np.float64, np.complex128):
        return np.asarray(value).reshape(1, 1)  # float32 scalars stay single
    if _is_number(value):
        return np.array([[float(value)]])
    if isinstance(value, numbers.Complex):
        return np.array([[complex(value)]])
    if isinstance(value, str):
        return np.array(str(value))
    if isinstance(value, Mapping):
        return _struct({key: _to_mat(item, f"{where}.{key}") for key, item in value.items()},
                       where)
    if isinstance(value, (list, tuple)):
        if value and all(_is_number(v) for v in value):
            return np.array([[float(v) for v in value]])
        if value and all(isinstance(v, (bool, np.bool_)) for v in value):
            return np.array([[bool(v) for v in value]])
        return _cell([_to_mat(v, f"{where}{{{i + 1}}}") for i, v in enumerate(value)])
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            shape = value.shape if value.ndim >= 2 else (1, value.size)
            return _cell([_to_mat(v, f"{where}{{{i + 1}}}")
                          for i, v in enumerate(value.ravel(order="F"))], shape)
        if value.dtype.kind not in "biufcUS" and not value.dtype.names:
            raise ValueError(f"save_net: {where} is an array of dtype {value.dtype}, which "
                             "MATLAB cannot store")
        return value.reshape(1, 1) if value.ndim == 0 else value
    import scipy.sparse

    if scipy.sparse.issparse(value):
        return value
    if callable(value):
        raise ValueError(f"save_net: {where} holds a Python callable "
                         f"({getattr(value, '__name__', type(value).__name__)}), which cannot "
                         "be stored in a .mat file")
    raise ValueError(f"save_net: {where} has a value of type {type(value).__name__}, which "
                     "cannot be stored in a .mat file")


def _weight_to_mat(value, where):
    value = _host(value)
    if value is None:
        return np.zeros((0, 0), dtype=np.float32)
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise ValueError(f"save_net: {where} must be a numeric array, got {type(value).__name__}")
    if array.dtype.kind == "f" and array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float32)
    return array.reshape(1, 1) if array.ndim == 0 else array


def _layer_to_mat(layer, index):
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
            fields[key] = _cell([_weight_to_mat(w, f"{where} weights[{j}]")
                                 for j, w in enumerate(item)])
        else:
            fields[key] = _to_mat(item, f"{where} field '{key}'")
    return _struct(fields, where)


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
    import scipy.io

    tnet = vl_simplenn_tidy(net)
    layers = _cell([_layer_to_mat(layer, i) for i, layer in enumerate(tnet.layers)])
    meta = _to_mat(tnet.meta, "meta")
    scipy.io.savemat(os.fspath(path), {"layers": layers, "meta": meta}, do_compression=True,
                     long_field_names=True, oned_as="row", appendmat=False, format="5")
    return path
