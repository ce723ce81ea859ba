"""Reading and writing MATLAB values in .mat files, shared by the wrappers.

:func:`read_mat` turns a MAT v5/v7 file (read with :func:`scipy.io.loadmat`)
or a MAT v7.3 file (HDF5, read with h5py, an optional dependency) into the
same small description of MATLAB values: :class:`MatStruct`, :class:`MatCell`,
:class:`MatOpaque`, char as ``str``, and numeric or logical arrays.
:func:`to_python` maps that description to Python values
(:class:`~simplenn.struct.Struct`, lists, str, bool, numbers, arrays).
In the other direction :func:`to_mat` turns Python values into what
:func:`scipy.io.savemat` writes as MATLAB's, and :func:`write_mat` writes a
file.  ``simplenn.io`` (SimpleNN models, ``cnn_train`` checkpoints) and
``dagnn`` (DagNN models) are built on these.  Reading never executes code
from the file.
"""

import numbers
import os
import re
import warnings
from collections.abc import Mapping

import numpy as np

from .struct import Struct

__all__ = ["MatStruct", "MatCell", "MatOpaque", "MatFileError", "MatlabFunctionHandle",
           "read_mat", "to_python", "to_mat", "cell", "struct_value", "host", "number",
           "is_empty", "is_scalar", "is_number", "write_mat"]

# --------------------------------------------------------------------------
# MATLAB values as read from a file (format-independent)

class MatStruct:
    """A MATLAB struct array: its shape, field names and one dict per
    element, in MATLAB's column-major element order."""

    __slots__ = ("shape", "fields", "records")

    def __init__(self, shape, fields, records):
        self.shape, self.fields, self.records = tuple(shape), tuple(fields), records


class MatCell:
    """A MATLAB cell array: its shape and items in column-major order."""

    __slots__ = ("shape", "items")

    def __init__(self, shape, items):
        self.shape, self.items = tuple(shape), items


class MatOpaque:
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


class MatFileError(ValueError):
    """A malformed file; :func:`load_net` adds the file name."""



# --------------------------------------------------------------------------
# MATLAB values -> Python

def number(x):
    """A real scalar as a Python int when integral (MATLAB stores every
    number as a double: ``stride = 1`` comes back as ``1``), else float."""
    x = float(x)
    if x.is_integer() and abs(x) < 2 ** 53:
        return int(x)
    return x


def is_empty(value):
    if isinstance(value, np.ndarray):
        return value.size == 0
    if isinstance(value, (MatCell, MatStruct)):
        return len(value.records if isinstance(value, MatStruct) else value.items) == 0
    return isinstance(value, str) and value == ""


def to_python(value, where):
    """Generic conversion of a MATLAB value (the table in :func:`load_net`)."""
    if isinstance(value, MatStruct):
        records = [Struct((name, to_python(rec[name], f"{where}.{name}")) for name in value.fields)
                   for rec in value.records]
        return records[0] if len(records) == 1 else records
    if isinstance(value, MatCell):
        items = [to_python(item, f"{where}{{{i + 1}}}") for i, item in enumerate(value.items)]
        if len(value.shape) <= 2 and min(value.shape, default=0) <= 1:
            return items
        out = np.empty(value.shape, dtype=object)
        for i, item in enumerate(items):
            out[np.unravel_index(i, value.shape, order="F")] = item
        return out
    if isinstance(value, MatOpaque):
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
                return number(value.flat[0])
            if value.dtype == np.complex128:
                return complex(value.flat[0])
        return value
    return value  # str, list of str

def is_scalar(x):
    if isinstance(x, (bool, numbers.Real)):
        return True
    return isinstance(x, np.ndarray) and x.size == 1 and x.dtype.kind in "biuf"



# --------------------------------------------------------------------------
# MAT v5/v7 via scipy

def _from_scipy(value):
    from scipy.io.matlab import MatlabFunction, MatlabOpaque
    import scipy.sparse

    if isinstance(value, MatlabFunction):
        return MatOpaque("function_handle", _describe_function(value))
    if isinstance(value, MatlabOpaque):
        return MatOpaque("object", "a MATLAB object")
    if scipy.sparse.issparse(value):
        return value.toarray()
    if not isinstance(value, np.ndarray):
        raise MatFileError(f"unexpected value of type {type(value).__name__}")
    if value.dtype.names:  # struct array (also old-style objects)
        names = value.dtype.names
        records = [{name: _from_scipy(rec[name]) for name in names}
                   for rec in value.ravel(order="F")]
        return MatStruct(value.shape, names, records)
    if value.dtype == object:
        flat = value.ravel(order="F")
        if flat.size and all(item is None for item in flat):
            # scipy's reading of a struct without fields
            return MatStruct(value.shape, (), [{} for _ in flat])
        return MatCell(value.shape, [_from_scipy(item) for item in flat])
    if value.dtype.kind in "US":
        rows = [str(row) for row in value.ravel()]
        if not rows:
            return ""
        return rows[0] if len(rows) == 1 else rows
    if value.dtype.kind not in "biufc":
        raise MatFileError(f"unsupported MATLAB data of dtype {value.dtype}")
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
            return MatStruct((0, 0), _field_names(obj), [])
        if "MATLAB_sparse" in obj.attrs:
            return _sparse(obj, cls)
        names = _field_names(obj)
        members = [obj[name] for name in names]
        if members and all(isinstance(m, h5py.Dataset) and h5py.check_ref_dtype(m.dtype)
                           and "MATLAB_class" not in m.attrs for m in members):
            refs = [_matlab_layout(m[()]) for m in members]
            shape = refs[0].shape
            if any(r.shape != shape for r in refs):
                raise MatFileError(f"struct array {obj.name} has fields of different sizes")
            flat = [r.ravel(order="F") for r in refs]
            records = [{name: _deref(flat[j][i], h5file, h5py) for j, name in enumerate(names)}
                       for i in range(flat[0].size)]
            return MatStruct(shape, names, records)
        return MatStruct((1, 1), names, [{name: _from_h5(m, h5file, h5py)
                                          for name, m in zip(names, members)}])
    if not isinstance(obj, h5py.Dataset):
        raise MatFileError(f"unsupported HDF5 object {obj.name}")
    if _flag(obj.attrs, "MATLAB_empty"):
        if cls == "char":
            return ""
        if cls == "cell":
            return MatCell((0, 0), [])
        if cls == "struct":
            return MatStruct((0, 0), (), [])
        return np.zeros((0, 0), dtype=_CLASS_DTYPES.get(cls, np.float64))
    if cls == "function_handle":
        return MatOpaque("function_handle", "(stored in a v7.3 file)")
    if h5py.check_ref_dtype(obj.dtype):
        refs = _matlab_layout(obj[()])
        return MatCell(refs.shape, [_deref(r, h5file, h5py) for r in refs.ravel(order="F")])
    if cls is not None and cls not in _CLASS_DTYPES and cls != "char":
        return MatOpaque("object", f"a MATLAB object of class '{cls}'")
    data = _matlab_layout(obj[()])
    if cls == "char":
        return _chars(data)
    if data.dtype.names:
        if not {"real", "imag"} <= set(data.dtype.names):
            raise MatFileError(f"unsupported compound dataset {obj.name}")
        data = data["real"] + 1j * data["imag"]
    if data.dtype.kind not in "biufc":
        raise MatFileError(f"unsupported data of dtype {data.dtype} in {obj.name}")
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
    except MatFileError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except Exception as exc:
        raise ValueError(f"{path}: cannot read the MAT v7.3 (HDF5) file "
                         f"({type(exc).__name__}: {exc})") from exc


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def read_mat(path):
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
    except MatFileError as exc:
        raise ValueError(f"{path}: {exc}") from None

# Python -> MAT v7

_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}\Z")


def host(value):
    """A CuPy array's host copy; anything else unchanged."""
    if type(value).__module__.split(".")[0] == "cupy" and hasattr(value, "get"):
        return value.get()
    return value


def cell(items, shape=None):
    shape = shape or ((1, len(items)) if items else (0, 0))
    out = np.empty(shape, dtype=object)
    for i, item in enumerate(items):
        out[np.unravel_index(i, shape, order="F")] = item
    return out


def is_number(x):
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def struct_value(fields, where, fname="save_net"):
    """A 1 x 1 struct from already converted field values."""
    if not fields:
        return {}  # scipy's marker for a struct without fields
    for key in fields:
        if not (isinstance(key, str) and _FIELD_NAME.match(key)):
            raise ValueError(f"{fname}: {where} has field {key!r}, which is not a valid "
                             "MATLAB field name (a letter, then letters, digits or _; "
                             "at most 63 characters)")
    out = np.empty((1, 1), dtype=[(key, object) for key in fields])
    for key, item in fields.items():
        out[key][0, 0] = item
    return out


def to_mat(value, where, fname="save_net"):
    """A Python value as the array scipy.io.savemat writes as MATLAB's."""
    value = host(value)
    if value is None:
        return np.zeros((0, 0))
    if isinstance(value, (bool, np.bool_)):
        return np.array([[bool(value)]])
    if isinstance(value, np.generic) and value.dtype.kind in "fc" \
            and value.dtype not in (np.float64, np.complex128):
        return np.asarray(value).reshape(1, 1)  # float32 scalars stay single
    if is_number(value):
        return np.array([[float(value)]])
    if isinstance(value, numbers.Complex):
        return np.array([[complex(value)]])
    if isinstance(value, str):
        return np.array(str(value))
    if isinstance(value, Mapping):
        return struct_value({key: to_mat(item, f"{where}.{key}", fname) for key, item in value.items()},
                       where, fname)
    if isinstance(value, (list, tuple)):
        if value and all(is_number(v) for v in value):
            return np.array([[float(v) for v in value]])
        if value and all(isinstance(v, (bool, np.bool_)) for v in value):
            return np.array([[bool(v) for v in value]])
        return cell([to_mat(v, f"{where}{{{i + 1}}}", fname) for i, v in enumerate(value)])
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            shape = value.shape if value.ndim >= 2 else (1, value.size)
            return cell([to_mat(v, f"{where}{{{i + 1}}}", fname)
                          for i, v in enumerate(value.ravel(order="F"))], shape)
        if value.dtype.kind not in "biufcUS" and not value.dtype.names:
            raise ValueError(f"{fname}: {where} is an array of dtype {value.dtype}, which "
                             "MATLAB cannot store")
        return value.reshape(1, 1) if value.ndim == 0 else value
    import scipy.sparse

    if scipy.sparse.issparse(value):
        return value
    if callable(value):
        raise ValueError(f"{fname}: {where} holds a Python callable "
                         f"({getattr(value, '__name__', type(value).__name__)}), which cannot "
                         "be stored in a .mat file")
    raise ValueError(f"{fname}: {where} has a value of type {type(value).__name__}, which "
                     "cannot be stored in a .mat file")



def write_mat(path, variables, fname="save_net", compress=True):
    """Write ``variables`` (a mapping of names to values already converted
    by :func:`to_mat`) as a compressed MAT v7 file (``compress=False``: the
    uncompressed v6 layout, which MATLAB reads as well).

    The data go to a temporary file in the same folder, which is renamed
    over ``path`` only once completely written: a failure midway (a full
    disk, a value scipy cannot store) leaves an existing file untouched and
    no partial file behind.
    """
    import tempfile

    import scipy.io

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                         dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            scipy.io.savemat(stream, dict(variables), do_compression=compress,
                             long_field_names=True, oned_as="row", format="5")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return path


def struct_array(records, where, fname="save_net", fields=None):
    """A ``1 x N`` MATLAB struct array from ``records`` (mappings of
    Python values, converted with :func:`to_mat`), as MATLAB's
    ``struct('name', {...}, ...)`` builds: the fields are ``fields`` when
    given, else the union of the records' keys in order of appearance; a
    field a record lacks is ``[]``.  No records give a ``0 x 0`` struct
    array with those fields."""
    names = list(fields) if fields is not None else []
    if fields is None:
        for record in records:
            names.extend(name for name in record if name not in names)
    for name in names:
        if not (isinstance(name, str) and _FIELD_NAME.match(name)):
            raise ValueError(f"{fname}: {where} has field {name!r}, which is not a valid "
                             "MATLAB field name (a letter, then letters, digits or _; "
                             "at most 63 characters)")
    for i, record in enumerate(records):
        extra = [name for name in record if name not in names]
        if extra:
            raise ValueError(f"{fname}: {where}({i + 1}) has fields {extra} that are not "
                             f"among the struct array's fields {names}")
    if not names:
        if records:
            raise ValueError(f"{fname}: {where} is a struct array without fields, which "
                             "cannot be written")
        return np.zeros((0, 0))
    shape = (1, len(records)) if records else (0, 0)
    out = np.empty(shape, dtype=[(name, object) for name in names])
    for i, record in enumerate(records):
        for name in names:
            out[name][0, i] = to_mat(record.get(name), f"{where}({i + 1}).{name}", fname)
    return out
