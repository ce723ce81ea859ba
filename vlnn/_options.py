"""The one option parser shared by every block.

MatConvNet functions take trailing ``'Name', value`` pairs and bare flags;
Python callers use keyword arguments.  Both are accepted, matched
case-insensitively with underscores ignored (``numGroups``, ``numgroups`` and
``num_groups`` are one option).  Value converters below turn scalars, lists,
tuples and arrays of any shape (a ``1 x 2`` array read from a .mat file) into
plain Python numbers, with a ``ValueError`` naming the option when the value
is unusable.
"""

import numpy as np

from ._backend import to_host

# Flags and options every MEX block accepts; they only choose GPU algorithms
# in MatConvNet and carry no numerical meaning, so they are accepted and ignored.
GPU_FLAGS = ("Cudnn", "NoCudnn", "Verbose")
GPU_OPTIONS = {"CudnnWorkspaceLimit": None}


def _norm(name):
    return name.lower().replace("_", "")


class Options(dict):
    """Parsed options: a dict keyed by the canonical (MatConvNet) name that
    also allows attribute access (``opts.Stride``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value


def parse_options(fname, args, kwargs, defaults, flags=(), gpu=False):
    """Merge MATLAB-style ``args`` and ``kwargs`` into an :class:`Options`.

    Parameters
    ----------
    fname : str
        The public function's name, used in error messages.
    args : sequence
        Trailing positional arguments: ``'Name', value`` pairs and bare flags.
    kwargs : dict
        Keyword options.
    defaults : dict
        Canonical option name -> default value (options that take a value).
    flags : sequence of str
        Canonical names of bare flags (value ``True`` when given).
    gpu : bool
        Also accept (and ignore) ``Cudnn``, ``NoCudnn``, ``Verbose`` and
        ``CudnnWorkspaceLimit``.
    """
    flags = tuple(flags) + (GPU_FLAGS if gpu else ())
    valued = dict(defaults)
    if gpu:
        valued.update(GPU_OPTIONS)
    lookup = {_norm(k): (k, False) for k in valued}
    lookup.update({_norm(k): (k, True) for k in flags})
    out = Options(valued)
    out.update({k: False for k in flags})

    def resolve(name):
        if not isinstance(name, str):
            raise TypeError(
                f"{fname}: expected an option name, got {type(name).__name__} "
                f"{name!r}; valid options: {', '.join(sorted(k for k, _ in lookup.values()))}")
        hit = lookup.get(_norm(name))
        if hit is None:
            raise TypeError(
                f"{fname}: unknown option '{name}'; valid options: "
                f"{', '.join(sorted(k for k, _ in lookup.values())) or '(none)'}")
        return hit

    i = 0
    args = list(args)
    while i < len(args):
        canon, is_flag = resolve(args[i])
        if is_flag:
            out[canon] = True
            i += 1
        else:
            if i + 1 >= len(args):
                raise TypeError(f"{fname}: option '{args[i]}' needs a value")
            out[canon] = args[i + 1]
            i += 2
    for name, value in kwargs.items():
        canon, is_flag = resolve(name)
        out[canon] = bool(value) if is_flag else value
    return out


def split_derivative(fname, args, dzdy=None):
    """A block's derivative argument and its MATLAB-style options.

    MatConvNet takes the derivative from the first extra argument when it
    is not a string; the rest are ``'Name', value`` pairs and flags.  Python
    callers may give it as the keyword-only ``dzdy=`` instead, so
    ``f(x, dy, 'pad', 1)``, ``f(x, 'pad', 1, dzdy=dy)`` and
    ``f(x, dzdy=dy, pad=1)`` are one call.

    Parameters
    ----------
    fname : str
        The block's name, used in the error message.
    args : sequence
        The extra positional arguments (after the block's fixed ones).
    dzdy : array or None
        The ``dzdy=`` keyword.

    Returns
    -------
    dzdy, args : (array or None, tuple)
        The derivative (``None`` for the forward mode) and the remaining
        pairs and flags.

    Raises
    ------
    TypeError
        The derivative given both positionally and as ``dzdy=``.
    """
    args = tuple(args)
    if args and not isinstance(args[0], str):
        if dzdy is not None:
            raise TypeError(
                f"{fname}: the derivative was given both positionally and as dzdy=; "
                f"give it once")
        return args[0], args[1:]
    return dzdy, args


def _host_array(value):
    return np.asarray(to_host(value))


def numbers_of(value, fname, name, counts):
    """Flatten ``value`` into a float64 vector whose length is in ``counts``."""
    if isinstance(value, (str, bytes)) or value is None:
        raise ValueError(f"{fname}: {name} must be numeric, got {value!r}")
    try:
        arr = _host_array(value)
    except Exception:  # ragged lists and other junk
        raise ValueError(f"{fname}: {name} must be numeric, got {value!r}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) \
            or np.iscomplexobj(arr):
        raise ValueError(f"{fname}: {name} must be real numeric, got {value!r}")
    arr = arr.astype(np.float64).ravel(order="F")
    if arr.size not in counts:
        want = " or ".join(str(c) for c in counts)
        raise ValueError(f"{fname}: {name} must have {want} elements, got {arr.size} ({value!r})")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{fname}: {name} must be finite, got {value!r}")
    return arr


def int_vector(value, fname, name, counts, minimum=None):
    """Integral vector of one of the allowed lengths, each entry >= minimum."""
    arr = numbers_of(value, fname, name, counts)
    if np.any(arr != np.round(arr)):
        raise ValueError(f"{fname}: {name} must be integral, got {value!r}")
    if minimum is not None and np.any(arr < minimum):
        raise ValueError(f"{fname}: {name} must be >= {minimum}, got {value!r}")
    return tuple(int(a) for a in arr)


def as_int(value, fname, name, minimum=None):
    """An integral scalar (``2``, ``2.0``, ``np.float64(2)``, a 1x1 array)."""
    return int_vector(value, fname, name, (1,), minimum)[0]


def as_float(value, fname, name):
    """A real scalar."""
    return float(numbers_of(value, fname, name, (1,))[0])


def as_pair(value, fname, name, minimum=1):
    """Scalar or ``[Y, X]`` -> ``(y, x)``."""
    v = int_vector(value, fname, name, (1, 2), minimum)
    return (v[0], v[0]) if len(v) == 1 else v


def as_quad(value, fname, name, minimum=0):
    """Scalar or ``[TOP, BOTTOM, LEFT, RIGHT]`` -> 4-tuple."""
    v = int_vector(value, fname, name, (1, 4), minimum)
    return v * 4 if len(v) == 1 else v
