"""Reading and writing MATLAB values in .mat files, shared by the wrappers.

:func:`read_mat` turns a MAT v5/v7 file (read with :func:`scipy.io.loadmat`)
or a MAT v7.3 file (HDF5, read with h5py, an optional dependency) into the
same small description of MATLAB values: :class:`MatStruct`, :class:`MatCell`,
:class:`MatOpaque`, char as ``str``, numeric or logical arrays, and sparse
matrices (``scipy.sparse.csc_matrix``, never densified).
:func:`to_python` maps that description to Python values
(:class:`~simplenn.struct.Struct`, lists, str, bool, numbers, arrays).
In the other direction :func:`to_mat` turns Python values into what
:func:`scipy.io.savemat` writes as MATLAB's, and :func:`write_mat` writes a
file.  ``simplenn.io`` (SimpleNN models, ``cnn_train`` checkpoints) and
``dagnn`` (DagNN models) are built on these.  Reading never executes code
from the file.

A file is untrusted input (models are downloaded from strangers): before
any data are read, every size a file declares is checked against the bytes
really there, and values may nest at most :data:`MAX_DEPTH` deep; see
:func:`read_mat`.
"""

import math
import numbers
import os
import re
import struct
import warnings
import zlib
from collections.abc import Mapping

import numpy as np

from vlnn._backend import to_host

from .struct import Struct

__all__ = ["MatStruct", "MatCell", "MatOpaque", "MatFileError", "MatlabFunctionHandle",
           "read_mat", "from_loadmat", "to_python", "to_mat", "cell", "struct_value", "host", "number",
           "is_empty", "is_scalar", "is_number", "write_mat", "MAX_DEPTH"]

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
        return _checked_sparse(scipy.sparse.csc_matrix(value), "a sparse matrix")
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


def from_loadmat(variables, where="the variables"):
    """The variables returned by :func:`scipy.io.loadmat` (called with its
    default ``squeeze_me=False`` and ``struct_as_record=True``) as the
    MATLAB values :func:`read_mat` gives, so that code written as
    MATLAB's ``s = load(file)`` (``s = scipy.io.loadmat(file)``) can hand
    ``s`` on.  scipy's own ``__header__``-style entries are dropped.  The
    arrays were already allocated by scipy: prefer :func:`read_mat` for
    files from untrusted sources."""
    try:
        return {name: _from_scipy(value) for name, value in variables.items()
                if not (isinstance(name, str) and name.startswith("__"))}
    except MatFileError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _describe_function(handle):
    """The name of a function handle's function, for messages: the text of
    the first field called ``function`` in the nested structs scipy reads
    (MATLAB stores the install path first, in ``matlabroot``: it is never
    taken for the name)."""
    level = [np.asarray(handle)]
    for _ in range(8):   # breadth first, a few levels
        deeper = []
        for value in level:
            if not isinstance(value, np.ndarray) or value.size == 0:
                continue
            if value.dtype.names:
                if "function" in value.dtype.names:
                    text = value["function"].ravel()[0]
                    text = np.asarray(text) if text is not None else None
                    if text is not None and text.dtype.kind in "US" and text.size:
                        return f"'{text.ravel()[0]}'"
                deeper.extend(value[name].ravel()[0] for name in value.dtype.names)
            elif value.dtype == object:
                deeper.extend(value.ravel())
        level = [np.asarray(v) if isinstance(v, np.ndarray) or hasattr(v, "dtype") else v
                 for v in deeper]
        if not level:
            break
    return "(unknown function)"


# --------------------------------------------------------------------------
# Untrusted files: the limits every file is checked against before its data
# are read.  No network comes near them.

MAX_DEPTH = 64
"""Deepest nesting of values (a cell in a cell, a struct in a struct, ...)
that a file may hold; MatConvNet's networks and checkpoints nest fewer than
ten deep."""

_MAX_DIMS = 32          # dimensions of one array (scipy's limit too)
_FIELDLESS_LIMIT = 1024  # elements of a struct array without fields
_BLANK_CHAR_LIMIT = 1024  # characters of a char array stored without data
_MAX_INFLATION = 1032   # deflate's largest ratio of output to input bytes
_FILE_BYTES_PER_VALUE = 16   # a MAT v5 value takes 8 bytes or more, 48 usually
_CHUNK = 1 << 20

# MAT v5 data types (MATLAB's "MAT-File Format", table 1-1) and their sizes
_MI_INT32, _MI_UINT32, _MI_INT8, _MI_UTF8 = 5, 6, 1, 16
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_MI_SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4}
# array classes
_MX_CELL, _MX_STRUCT, _MX_OBJECT, _MX_CHAR, _MX_SPARSE = 1, 2, 3, 4, 5
_MX_NUMERIC = range(6, 16)
_MX_FUNCTION, _MX_OPAQUE = 16, 17
_MX_NAMES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 6: "double",
             7: "single", 8: "int8", 9: "uint8", 10: "int16", 11: "uint16", 12: "int32",
             13: "uint32", 14: "int64", 15: "uint64", 16: "function handle", 17: "opaque"}


class _Short(Exception):
    """The data end before what an element declares."""


class _Region:
    """The bytes of a MAT v5 file after its header, or the inflated content
    of one of its ``miCOMPRESSED`` elements, read in bounded chunks: nothing
    is allocated for data that are not there."""

    def __init__(self, stream, length, compressed):
        self.stream, self.left, self.pos = stream, length, 0
        self.inflater = zlib.decompressobj() if compressed else None
        self.pending, self.offset = b"", 0   # inflated bytes not yet taken

    def _some(self, n):
        """Up to ``n`` (> 0) next bytes; ``b""`` at the end."""
        if self.inflater is None:
            data = self.stream.read(min(n, self.left, _CHUNK))
            self.left -= len(data)
            return data
        while self.offset == len(self.pending):
            if self.inflater.eof:
                return b""
            feed = self.inflater.unconsumed_tail
            if not feed:
                if not self.left:
                    return b""
                feed = self.stream.read(min(self.left, _CHUNK))
                if not feed:
                    return b""
                self.left -= len(feed)
            try:
                self.pending, self.offset = self.inflater.decompress(feed, _CHUNK), 0
            except zlib.error as exc:
                raise MatFileError(f"corrupt compressed data ({exc})") from None
        data = self.pending[self.offset:self.offset + n]
        self.offset += len(data)
        return data

    def read(self, n):
        parts, need = [], n
        while need:
            data = self._some(need)
            if not data:
                raise _Short
            parts.append(data)
            need -= len(data)
        self.pos += n
        return b"".join(parts)

    def skip(self, n):
        if self.inflater is None:
            if n > self.left:
                raise _Short
            self.stream.seek(n, 1)
            self.left -= n
        else:
            need = n
            while need:
                data = self._some(need)
                if not data:
                    raise _Short
                need -= len(data)
        self.pos += n


class _V5Scan:
    """Walks every element of a MAT v5 file, checking what each declares
    against the bytes that are there, before scipy allocates anything."""

    def __init__(self, order, size):
        self.u4 = np.dtype(order + "u4")
        self.i4 = np.dtype(order + "i4")
        self.tag_format = struct.Struct(order + "II")
        # every value becomes Python objects of ~100 bytes or more: a small
        # compressed file of millions of empty cells would take gigabytes
        self.values_limit = self.values_left = max(1 << 14, size // _FILE_BYTES_PER_VALUE)

    def tag(self, region, end, where, check=True):
        """``(type, nbytes, small_data)`` of the element at the current
        position, which must lie before ``end`` (unless not ``check``);
        ``small_data`` holds the data of a small element (4 bytes packed in
        the tag), else None."""
        if end - region.pos < 8:
            raise MatFileError(f"{where}: truncated element")
        raw = region.read(8)
        first, second = self.tag_format.unpack(raw)
        if first >> 16:   # small data element: type and size in one word
            mtype, nbytes = first & 0xFFFF, first >> 16
            if nbytes > 4:
                raise MatFileError(f"{where}: malformed small data element")
            return mtype, nbytes, raw[4:4 + nbytes]
        if check and second > end - region.pos:
            raise MatFileError(
                f"{where}: an element declares {second} bytes but only {end - region.pos} "
                "remain there (a truncated or crafted file)")
        return first, second, None

    def data(self, region, end, where, limit=None):
        """The next (non-matrix) element's type and bytes."""
        mtype, nbytes, small = self.tag(region, end, where)
        if small is not None:
            return mtype, small
        if mtype == _MI_MATRIX:
            raise MatFileError(f"{where}: a nested value where data were expected")
        if limit is not None and nbytes > limit:
            raise MatFileError(f"{where}: an element of {nbytes} bytes where at most {limit} "
                               "are expected")
        content = region.read(nbytes)
        region.skip(min(-nbytes % 8, end - region.pos))
        return mtype, content

    def skip_data(self, region, end, where):
        """Skip the next (non-matrix) element; its type and byte count."""
        mtype, nbytes, small = self.tag(region, end, where)
        if small is None:
            if mtype == _MI_MATRIX:
                raise MatFileError(f"{where}: a nested value where data were expected")
            region.skip(nbytes)
            region.skip(min(-nbytes % 8, end - region.pos))
        return mtype, nbytes

    def matrix(self, region, end, where, depth, tag=None):
        """One ``miMATRIX`` element (the tag included, unless already read
        as ``tag``), and what it nests.  ``where`` names it in messages
        (None: the array's own name, for a variable)."""
        mtype, nbytes, small = tag or self.tag(region, end, where or "top level")
        if mtype != _MI_MATRIX or small is not None:
            raise MatFileError(f"{where}: expected a MATLAB array, found an element of type "
                               f"{mtype}")
        if depth > MAX_DEPTH:
            raise MatFileError(
                f"{where}: values nested more than {MAX_DEPTH} deep (cells in cells or "
                "structs in structs); no network is nested that deep")
        self.values_left -= 1
        if self.values_left < 0:
            raise MatFileError(
                f"{where or 'top level'}: the file holds more than {self.values_limit} values "
                f"(at most one per {_FILE_BYTES_PER_VALUE} bytes of file are accepted)")
        stop = region.pos + nbytes
        if stop > end:   # a variable's tag, not yet checked: name it first
            left = end - region.pos
            try:
                for _ in range(3):   # array flags, dimensions, name
                    _, name = self.data(region, end, "top level", limit=1 << 16)
                where = where or name.decode("latin1")
            except (MatFileError, _Short):
                pass
            raise MatFileError(
                f"{where or 'top level'}: declares {nbytes} bytes but only {left} remain in "
                "the file (a truncated or crafted file)")
        if nbytes:   # an empty body is MATLAB's []
            self.body(region, stop, where, depth)
        region.skip(stop - region.pos)

    def body(self, region, end, where, depth):
        here = where or "a variable"
        mtype, flags = self.data(region, end, here, limit=8)
        if mtype not in (_MI_UINT32, _MI_INT32) or len(flags) != 8:
            raise MatFileError(f"{here}: malformed array flags")
        flags_class = int(np.frombuffer(flags, self.u4)[0])
        cls = flags_class & 0xFF
        if cls == _MX_OPAQUE:
            # its name, type system and class name, then what it wraps
            while region.pos < end:
                tag = self.tag(region, end, here)
                if tag[0] == _MI_MATRIX and tag[2] is None:
                    self.matrix(region, end, here, depth + 1, tag)
                elif tag[2] is None:
                    region.skip(tag[1])
                    region.skip(min(-tag[1] % 8, end - region.pos))
            return
        mtype, raw = self.data(region, end, here, limit=4 * _MAX_DIMS)
        if mtype not in (_MI_INT32, _MI_UINT32) or len(raw) % 4 or not raw:
            raise MatFileError(f"{here}: malformed dimensions")
        dims = np.frombuffer(raw, self.i4).tolist()
        _, name = self.data(region, end, here, limit=1 << 16)   # the array's name
        if where is None:
            where = name.decode("latin1") or "__function_workspace__"
        if min(dims) < 0:
            raise MatFileError(f"{where}: negative dimensions {dims}")
        count = math.prod(dims)
        shape = " x ".join(map(str, dims))
        kind = _MX_NAMES.get(cls, f"class {cls}")
        if cls in _MX_NUMERIC:
            size = None
            for part in ("real", "imaginary")[:2 if flags_class & 0x800 else 1]:
                mtype, nbytes = self.skip_data(region, end, where)
                size = _MI_SIZES.get(mtype)
                if size is None or nbytes != count * size:
                    raise MatFileError(
                        f"{where}: declares a {shape} {kind} array ({count} elements) but its "
                        f"{part} part holds {nbytes} bytes of data type {mtype}")
        elif cls == _MX_CHAR:
            mtype, nbytes = self.skip_data(region, end, where)
            if count > nbytes and not (nbytes == 0 and count <= _BLANK_CHAR_LIMIT):
                raise MatFileError(
                    f"{where}: declares a {shape} char array but holds {nbytes} bytes of text")
        elif cls == _MX_SPARSE:
            if len(dims) != 2:
                raise MatFileError(f"{where}: a sparse matrix of {len(dims)} dimensions")
            self.skip_data(region, end, where)                    # row indices
            _, nbytes = self.skip_data(region, end, where)        # column starts
            if nbytes // 4 < dims[1] + 1:
                raise MatFileError(
                    f"{where}: declares a {shape} sparse matrix but holds {nbytes // 4} of its "
                    f"{dims[1] + 1} column starts")
        elif cls in (_MX_CELL, _MX_STRUCT, _MX_OBJECT):
            fields = 1
            if cls == _MX_OBJECT:
                self.data(region, end, where, limit=1 << 16)    # class name
            if cls != _MX_CELL:
                mtype, raw = self.data(region, end, where, limit=4)
                length = int(np.frombuffer(raw, self.i4)[0]) if len(raw) == 4 else 0
                if mtype not in (_MI_INT32, _MI_UINT32) or length <= 0:
                    raise MatFileError(f"{where}: malformed field name length")
                _, names = self.data(region, end, where)
                fields = len(names) // length
                if not fields and count > _FIELDLESS_LIMIT:
                    raise MatFileError(
                        f"{where}: declares a {shape} struct array without fields; at most "
                        f"{_FIELDLESS_LIMIT} elements are accepted")
                names = [names[k * length:(k + 1) * length].split(b"\0", 1)[0].decode(
                    "latin1") for k in range(fields)]
            left = end - region.pos
            if count * fields * 8 > left:
                what = "cells" if cls == _MX_CELL else f"elements with {fields} fields"
                raise MatFileError(
                    f"{where}: declares a {shape} {kind} array ({count} {what}) but holds "
                    f"only {left} bytes (at least 8 per value)")
            for k in range(count):
                if cls == _MX_CELL:
                    self.matrix(region, end, f"{where}{{{k + 1}}}", depth + 1)
                    continue
                item = f"{where}({k + 1})" if count > 1 else where
                for name in names:
                    self.matrix(region, end, f"{item}.{name}", depth + 1)
        elif cls == _MX_FUNCTION:
            self.matrix(region, end, where, depth + 1)
        else:
            raise MatFileError(f"{where}: unknown MATLAB array class {cls}")


def _scan_v5(path):
    """Check a MAT v5/v7 file's declared sizes and nesting before scipy
    reads it (a ``MatFileError`` naming the variable and field)."""
    size = os.path.getsize(path)
    with open(path, "rb") as stream:
        header = stream.read(128)
        if len(header) < 128 or header[126:128] not in (b"IM", b"MI"):
            raise MatFileError("not a MAT v5 file (malformed header)")
        scan = _V5Scan("<" if header[126:128] == b"IM" else ">", size)
        top = _Region(stream, size - 128, compressed=False)
        end = size - 128
        try:
            while top.pos < end:
                mtype, nbytes, small = scan.tag(top, end, "top level", check=False)
                if mtype == _MI_COMPRESSED and small is None:
                    if nbytes > end - top.pos:
                        raise MatFileError(
                            f"top level: a compressed variable declares {nbytes} bytes but "
                            f"only {end - top.pos} remain in the file (a truncated file)")
                    inner = _Region(stream, nbytes, compressed=True)
                    scan.matrix(inner, 1 << 62, None, 1)
                    stream.seek(128 + top.pos + nbytes)
                    top.left -= nbytes
                    top.pos += nbytes
                elif mtype == _MI_MATRIX and small is None:
                    scan.matrix(top, end, None, 1, (mtype, nbytes, small))
                else:
                    raise MatFileError(f"unexpected data element of type {mtype} at the top "
                                       "level")
        except _Short:
            raise MatFileError("the data end before what an element declares (a truncated "
                               "or crafted file)") from None


def _read_v5(path):
    import scipy.io

    _scan_v5(path)
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


class _Budget:
    """What reading one v7.3 file may still take: ``left`` bytes (deflate's
    largest ratio times the file's size), each dataset read once (``seen``:
    references to it share its data), each value visited costing
    ``_VALUE_COST`` (so references cannot multiply a small file into a huge
    tree of values)."""

    __slots__ = ("left", "seen")

    def __init__(self, size):
        self.left = _MAX_INFLATION * size + (1 << 16)
        self.seen = {}

    def charge(self, nbytes, where):
        self.left -= nbytes
        if self.left < 0:
            raise MatFileError(
                f"{where}: the file's values add up to more than {_MAX_INFLATION} times its "
                "size (references reaching the same values over and over)")


# Every MATLAB value of a v7.3 file is an HDF5 object of a few hundred bytes
# at least, so a file of N bytes holds well under N / 200 values; references
# that reach more than (1032 N) / 16 KiB = N / 16 values multiply values.
_VALUE_COST = 1 << 14


def _stored(dataset, where, kind, budget):
    """``dataset[()]``, once its declared size is known to be backed by the
    file: at most what its stored bytes hold (inflated at deflate's largest
    ratio when the dataset is compressed).  A crafted file declaring huge
    dimensions over no data (HDF5 reads fill values) is refused; a dataset
    reached again is not read again (``budget``, a :class:`_Budget`)."""
    if dataset.id in budget.seen:
        return budget.seen[dataset.id]
    declared = dataset.size * dataset.dtype.itemsize
    if declared > 4096:   # a few values may sit in the object header
        stored = dataset.id.get_storage_size()
        filtered = dataset.id.get_create_plist().get_nfilters() > 0
        if declared > stored * (_MAX_INFLATION if filtered else 1):
            shape = " x ".join(map(str, reversed(dataset.shape)))
            raise MatFileError(f"{where}: declares a {shape} {kind} array ({declared} bytes) "
                               f"but the file holds {stored} bytes of it")
    budget.charge(declared, where)
    data = budget.seen[dataset.id] = dataset[()]
    return data


def _from_h5(obj, h5file, h5py, where, budget, depth=1):
    if depth > MAX_DEPTH:
        raise MatFileError(
            f"{where}: values nested more than {MAX_DEPTH} deep (cells in cells or structs in "
            "structs); no network is nested that deep")
    budget.charge(_VALUE_COST, where)
    cls = _attr_text(obj.attrs.get("MATLAB_class"))
    if isinstance(obj, h5py.Group):
        if _flag(obj.attrs, "MATLAB_empty"):
            return MatStruct((0, 0), _field_names(obj), [])
        if "MATLAB_sparse" in obj.attrs:
            return _sparse(obj, cls, where, budget)
        names = _field_names(obj)
        members = [obj[name] for name in names]
        if members and all(isinstance(m, h5py.Dataset) and h5py.check_ref_dtype(m.dtype)
                           and "MATLAB_class" not in m.attrs for m in members):
            refs = [_matlab_layout(_stored(m, f"{where}.{name}", "struct", budget))
                    for name, m in zip(names, members)]
            shape = refs[0].shape
            if any(r.shape != shape for r in refs):
                raise MatFileError(f"{where}: a struct array whose fields have different sizes")
            flat = [r.ravel(order="F") for r in refs]
            count = flat[0].size
            records = [{name: _deref(flat[j][i], h5file, h5py,
                                     f"{where}({i + 1}).{name}" if count > 1
                                     else f"{where}.{name}", budget, depth)
                        for j, name in enumerate(names)} for i in range(count)]
            return MatStruct(shape, names, records)
        return MatStruct((1, 1), names, [{name: _from_h5(m, h5file, h5py, f"{where}.{name}",
                                                         budget, depth + 1)
                                          for name, m in zip(names, members)}])
    if not isinstance(obj, h5py.Dataset):
        raise MatFileError(f"{where}: unsupported HDF5 object {obj.name}")
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
        refs = _matlab_layout(_stored(obj, where, "cell", budget))
        return MatCell(refs.shape, [_deref(r, h5file, h5py, f"{where}{{{i + 1}}}", budget,
                                           depth) for i, r in enumerate(refs.ravel(order="F"))])
    if cls is not None and cls not in _CLASS_DTYPES and cls != "char":
        return MatOpaque("object", f"a MATLAB object of class '{cls}'")
    data = _matlab_layout(_stored(obj, where, cls or "numeric", budget))
    if cls == "char":
        return _chars(data)
    if data.dtype.names:
        if not {"real", "imag"} <= set(data.dtype.names):
            raise MatFileError(f"{where}: unsupported compound dataset {obj.name}")
        data = data["real"] + 1j * data["imag"]
    if data.dtype.kind not in "biufc":
        raise MatFileError(f"{where}: unsupported data of dtype {data.dtype} in {obj.name}")
    if cls in _CLASS_DTYPES:
        target = np.dtype(_CLASS_DTYPES[cls])
        if data.dtype.kind == "c" and target.kind == "f":
            target = np.result_type(target, np.complex64)
        data = data.astype(target, copy=False)
    return data


def _deref(ref, h5file, h5py, where, budget, depth):
    if not ref:  # null reference
        return np.zeros((0, 0))
    return _from_h5(h5file[ref], h5file, h5py, where, budget, depth + 1)


def _checked_sparse(matrix, where):
    """A sparse matrix whose index arrays are checked (out-of-range indices
    from a crafted file would reach scipy's C routines); kept sparse."""
    try:
        matrix.check_format(full_check=True)
    except ValueError as exc:
        raise MatFileError(f"{where}: malformed sparse matrix ({exc})") from None
    return matrix


def _sparse(group, cls, where, budget):
    import scipy.sparse

    nrows = int(np.asarray(group.attrs["MATLAB_sparse"]).ravel()[0])
    jc = np.asarray(_stored(group["jc"], f"{where} (column starts)", "sparse", budget)).ravel()
    ncols = jc.size - 1
    dtype = np.dtype(_CLASS_DTYPES.get(cls, np.float64))
    if "data" in group:
        data = np.asarray(_stored(group["data"], f"{where} (values)", "sparse", budget)).ravel()
        ir = np.asarray(_stored(group["ir"], f"{where} (row indices)", "sparse", budget)).ravel()
    else:
        data, ir = np.zeros(0, dtype), np.zeros(0, dtype=np.int64)
    if data.dtype.names:
        data = data["real"] + 1j * data["imag"]
    try:
        matrix = scipy.sparse.csc_matrix((data, ir, jc), shape=(nrows, ncols))
    except ValueError as exc:
        raise MatFileError(f"{where}: malformed sparse matrix ({exc})") from None
    if matrix.dtype != dtype and not (dtype.kind == "f" and matrix.dtype.kind == "c"):
        matrix = matrix.astype(dtype)
    return _checked_sparse(matrix, where)


def _read_v73(path):
    try:
        import h5py
    except ImportError:
        raise ImportError(
            f"{path} is a MAT v7.3 (HDF5) file; reading it needs h5py "
            "(pip install h5py, or the optional extra: pip install 'vlnn[h5]')") from None
    try:
        budget = _Budget(os.path.getsize(path))
        with h5py.File(path, "r") as h5file:
            return {name: _from_h5(h5file[name], h5file, h5py, name, budget) for name in h5file
                    if not name.startswith("#")}
    except MatFileError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except Exception as exc:
        raise ValueError(f"{path}: cannot read the MAT v7.3 (HDF5) file "
                         f"({type(exc).__name__}: {exc})") from exc


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def read_mat(path):
    """The variables of a .mat file as MATLAB values.

    The file is treated as untrusted input.  A MAT v5/v7 file is walked
    element by element first (compressed elements inflated in 1 MB chunks),
    and each array's declared dimensions are checked against the data it
    really holds: a numeric array's bytes must match its dimensions, a cell
    or struct array must hold at least 8 bytes per value, a char array a
    byte per character, a sparse matrix its column starts; values nest at
    most :data:`MAX_DEPTH` deep.  Only then does scipy read it, so nothing
    larger than what the file holds (after inflating) is allocated, and
    scipy's reader never recurses deep enough to crash.  In a MAT v7.3 file
    each dataset's declared size is checked against its stored bytes
    (times deflate's largest ratio, 1032, when compressed) before it is
    read, and references nest at most :data:`MAX_DEPTH` deep (cyclic ones
    end there).  Sparse matrices stay sparse, their indices checked.

    Raises
    ------
    ValueError
        Naming the file and the value (``layers{2}.weights{1}``), for a file
        that is not a MAT file, is truncated, or declares more than it holds.
    """
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
    if major == 0:
        raise ValueError(f"{path}: a MAT v4 file, which cannot hold a network (structs and "
                         "cells need MAT v5 or later)")
    try:
        return _read_v5(path)
    except MatFileError as exc:
        raise ValueError(f"{path}: {exc}") from None

# Python -> MAT v7

_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}\Z")


def host(value):
    """A CuPy array's host copy; anything else unchanged."""
    return to_host(value)


def cell(items, shape=None):
    shape = shape or ((1, len(items)) if items else (0, 0))
    out = np.empty(shape, dtype=object)
    for i, item in enumerate(items):
        out[np.unravel_index(i, shape, order="F")] = item
    return out


def is_number(x):
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def _check_field_names(names, where, fname):
    for key in names:
        if not (isinstance(key, str) and _FIELD_NAME.match(key)):
            raise ValueError(f"{fname}: {where} has field {key!r}, which is not a valid "
                             "MATLAB field name (a letter, then letters, digits or _; "
                             "at most 63 characters)")


def _struct_array(value, where, fname):
    """A numpy structured array as a MATLAB struct array, every field value
    converted (and checked) as :func:`to_mat` converts any value."""
    names = value.dtype.names
    _check_field_names(names, where, fname)
    shape = value.shape if value.ndim >= 2 else (1, value.size)
    out = np.empty(shape, dtype=[(key, object) for key in names])
    for i, record in enumerate(value.reshape(shape).ravel(order="F")):
        index = np.unravel_index(i, shape, order="F")
        item = f"{where}({i + 1})" if value.size > 1 else where
        for key in names:
            out[key][index] = to_mat(record[key], f"{item}.{key}", fname)
    return out


def struct_value(fields, where, fname="save_net"):
    """A 1 x 1 struct from already converted field values."""
    if not fields:
        return {}  # scipy's marker for a struct without fields
    _check_field_names(fields, where, fname)
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
        if value.dtype.names:
            return _struct_array(value, where, fname)
        if value.dtype.kind not in "biufcUS":
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
    no partial file behind.  The file gets the permissions of a plain
    ``open(path, 'w')`` (``0o666`` less the umask), not the private ones of
    the temporary file.
    """
    import tempfile

    import scipy.io

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                         dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
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
