"""Helpers shared by the layer classes: property values, option lists,
sizes and receptive fields.

MatConvNet stores a block's numeric properties as MATLAB row vectors and
its ``opts`` as a cell array of ``'Name', value`` pairs and bare flags
(``{'cuDNN'}``).  Here a vector property is a list of Python numbers (what
``simplenn.matfile`` writes back as a MATLAB double row vector), and
``opts`` is a list that :func:`block_options` turns into keyword arguments
for the ``vlnn`` block, keeping MATLAB's rule that ``opts`` come last (and
so win over the options the class sets itself).
"""

import numpy as np

from simplenn.matfile import host, number
from simplenn.struct import Struct

__all__ = ["row", "vector_value", "expand", "block_options", "size_row", "size4",
           "receptive_field", "nan_field", "empty_field", "net_mode", "host", "to_device"]

# The bare flags of MatConvNet's MEX blocks (vl_nnconv, vl_nnconvt,
# vl_nnpool, vl_nnbnorm, ...), compared case-insensitively: every other
# string in an ``opts`` list is an option name followed by its value.
MATLAB_FLAGS = frozenset({"cudnn", "nocudnn", "verbose", "noderdata", "noderfilters",
                          "noderbiases"})


def row(value):
    """A numeric value as a flat list of Python numbers, in MATLAB's
    column-major order (``None`` -> ``[]``)."""
    if value is None:
        return []
    arr = np.asarray(host(value))
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"expected a numeric vector, got {value!r}")
    return [number(v) for v in arr.ravel(order="F")]


def vector_value(value):
    """Normalise a property that MatConvNet keeps as assigned: arrays,
    tuples and lists of numbers become lists of Python numbers, numeric
    scalars Python numbers; anything else (``None``, strings, ...) is kept."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return number(value)
    if isinstance(value, (list, tuple)) or hasattr(value, "shape"):
        try:
            values = row(value)
        except (ValueError, TypeError):
            return value
        if hasattr(value, "shape") and len(values) == 1:
            return values[0]
        return values
    return value


def expand(value, counts):
    """MatConvNet's vector setters (``set.pad``, ``set.stride``, ...): a
    vector of ``len(counts)`` form ``{1: [a a a a], 2: [a a b b]}`` is
    expanded by indexing with ``counts[n]`` (0-based); any other length is
    kept as is."""
    values = row(value)
    index = counts.get(len(values))
    return [values[i] for i in index] if index is not None else values


def block_options(opts, **explicit):
    """Keyword arguments for a ``vlnn`` block: ``explicit`` (the options the
    class passes itself), then the block's ``opts`` list (MATLAB pairs and
    bare flags), which win on a clash as in MATLAB's ``..., obj.opts{:}``."""
    kwargs = dict(explicit)
    if opts is None:
        return kwargs
    if isinstance(opts, str):
        opts = [opts]
    items = list(opts)
    i = 0
    while i < len(items):
        name = items[i]
        if not isinstance(name, str):
            raise ValueError(f"opts: expected an option name at position {i + 1}, got {name!r}")
        if name.lower().replace("_", "") in MATLAB_FLAGS:
            kwargs[name] = True
            i += 1
        else:
            if i + 1 >= len(items):
                raise ValueError(f"opts: option '{name}' needs a value")
            kwargs[name] = items[i + 1]
            i += 2
    return kwargs


def size_row(values):
    """A size vector as Python numbers: ints where integral, NaN kept."""
    return [number(v) for v in values]


def size4(shape):
    """MATLAB's ``size(x, 1:4)`` of an array shape (missing dims are 1)."""
    shape = [int(d) for d in tuple(shape)[:4]]
    return shape + [1] * (4 - len(shape))


def receptive_field(size, stride, offset):
    """One receptive field record (``size``, ``stride``, ``offset``)."""
    return Struct(size=size_row(size), stride=size_row(stride), offset=size_row(offset))


def nan_field():
    """An undefined receptive field (MatConvNet's ``[NaN NaN]`` entries)."""
    nan = float("nan")
    return Struct(size=[nan, nan], stride=[nan, nan], offset=[nan, nan])


def empty_field():
    """No dependency (MatConvNet's empty ``size``, ``stride``, ``offset``)."""
    return Struct(size=[], stride=[], offset=[])


def net_mode(block):
    """The mode of the net a block is attached to (``'normal'`` for a
    block used on its own)."""
    net = block.net
    return "normal" if net is None else net.mode


def to_device(value, device):
    """An array moved to ``'cpu'`` (NumPy) or ``'gpu'`` (CuPy); ``None``
    stays ``None``.  CuPy is imported only for ``'gpu'``."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"move: device must be 'cpu' or 'gpu', got {device!r}")
    if value is None:
        return None
    if device == "gpu":
        import cupy
        return cupy.asarray(value)
    return host(value)
