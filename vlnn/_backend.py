"""Arrays: the numpy/CuPy module of the inputs, dtype and shape rules.

Every block is written once against ``xp = get_array_module(...)``; no block
calls numpy functions directly on its inputs.  CuPy is optional and never
imported unless a CuPy array is handed in.
"""

import importlib

import numpy as np

FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float64))

# The array modules of device (GPU) arrays, by the top-level package of the
# array's type: an array whose type comes from package ``key`` is computed on
# with the module named ``DEVICE_MODULES[key]``, imported only when such an
# array is met.  CuPy is the only device module of the library; the tests add
# a stand-in that wraps NumPy (tests/fakecupy.py) to run the GPU code paths
# without a GPU.
DEVICE_MODULES = {"cupy": "cupy"}

# The module that ``vl_simplenn_move(net, 'gpu')`` and ``cnn_train(gpus=...)``
# put arrays on (its ``asarray``, ``cuda.Device`` and ``random``).
GPU_MODULE = "cupy"


def _package(a):
    return type(a).__module__.split(".")[0]


def is_device_array(a):
    """Whether ``a`` is an array of a device module (a CuPy array)."""
    return _package(a) in DEVICE_MODULES and hasattr(a, "shape")


def get_array_module(*arrays):
    """``cupy`` if the (non-None) arguments are CuPy arrays, else ``numpy``.

    Mixing NumPy and CuPy arrays in one call is a ``ValueError``.  NumPy
    scalars (``np.float32(1)``) are scalars, not arrays: they go with either
    kind, as Python numbers do."""
    kinds = {_package(a) if is_device_array(a) else None
             for a in arrays if hasattr(a, "shape") and not isinstance(a, np.generic)}
    if len(kinds) > 1:
        raise ValueError("cannot mix NumPy and CuPy arrays in one call")
    if kinds and None not in kinds:
        return importlib.import_module(DEVICE_MODULES[kinds.pop()])
    return np


def to_host(a):
    """A device array's host copy as a NumPy array (``a.get()``); anything
    else is returned unchanged."""
    return a.get() if is_device_array(a) else a


def gpu_module(what):
    """The GPU array module (CuPy), imported; when it is not installed, an
    ``ImportError`` saying that ``what`` needs it."""
    try:
        return importlib.import_module(GPU_MODULE)
    except ImportError as err:
        raise ImportError(
            f"{what} needs CuPy, which is not installed (install the CuPy wheel "
            f"matching your CUDA, e.g. 'pip install cupy-cuda12x')") from err


def is_empty(a):
    """MATLAB's ``[]``: ``None`` or an array with no elements."""
    return a is None or getattr(a, "size", 1) == 0


def as_tensor(a, fname, name, xp=np):
    """Check a tensor argument: real float32/float64 (any dtype if empty).

    Returns an array of the argument's module (no copy when possible), or
    ``None`` for an empty argument."""
    if a is None:
        return None
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        try:
            a = np.asarray(a)
        except Exception:
            raise ValueError(f"{fname}: {name} must be an array, got {type(a).__name__}") from None
        if xp is not np:
            a = xp.asarray(a)
    if a.size == 0:
        return None
    if a.dtype not in FLOAT_TYPES:
        raise ValueError(
            f"{fname}: {name} must be float32 or float64, got {a.dtype} (shape {tuple(a.shape)})")
    return a


def common_dtype(fname, **tensors):
    """The single float dtype of the non-empty tensors; mixing is an error."""
    seen = {name: t.dtype for name, t in tensors.items() if t is not None}
    kinds = set(seen.values())
    if len(kinds) > 1:
        desc = ", ".join(f"{n} is {d}" for n, d in seen.items())
        raise ValueError(f"{fname}: tensor arguments must not mix float32 and float64 ({desc})")
    return kinds.pop() if kinds else np.dtype(np.float32)


def block_tensors(fname, /, *, required=("x",), others=(), **tensors):
    """A block's prologue: array module, common dtype and checked tensors.

    Parameters
    ----------
    fname : str
        The block's name, which starts every error message.
    required : tuple of str, optional
        Names (keys of ``tensors``) that must not be empty.  Default ``("x",)``.
    others : tuple, optional
        Further arguments (labels, weights, loss derivatives) that take part
        in choosing the array module but are checked by the block itself.
    **tensors
        The float tensor arguments by name, in the order they are checked
        (the order of the names in a mixed-dtype message).

    Returns
    -------
    xp : module
        ``numpy`` or ``cupy``, as :func:`get_array_module` of all the
        arguments (``tensors`` and ``others``).
    dtype : numpy.dtype
        :func:`common_dtype` of the checked tensors.
    checked : tuple
        The tensors in the order given, each checked by :func:`as_tensor`:
        ``None`` for ``None`` or an empty array (MATLAB's ``[]``; a
        ``dzdy`` of ``[]`` selects the forward mode).

    Raises
    ------
    ValueError
        On NumPy and CuPy arrays mixed, a tensor that is not float32 or
        float64, a ``required`` one that is empty (``"{fname}: {name} must
        not be empty"``, raised as soon as that tensor is reached), or
        float32 and float64 tensors mixed.

    Examples
    --------
    >>> xp, dtype, (x, w, b, dzdy) = block_tensors(
    ...     "vl_nnconv", x=np.ones((2, 2, 1), np.float32), w=None, b=None, dzdy=None)
    >>> xp.__name__, dtype, w is None
    ('numpy', dtype('float32'), True)
    """
    xp = get_array_module(*tensors.values(), *others)
    checked = {}
    for name, value in tensors.items():
        checked[name] = as_tensor(value, fname, name, xp)
        if checked[name] is None and name in required:
            raise ValueError(f"{fname}: {name} must not be empty")
    return xp, common_dtype(fname, **checked), tuple(checked.values())


def shape4(shape):
    """MATLAB's 4-D view of a shape: missing trailing dims are 1, dims past
    the 4th fold into the 4th."""
    shape = tuple(int(s) for s in shape)
    if len(shape) < 4:
        return shape + (1,) * (4 - len(shape))
    n = 1
    for s in shape[3:]:
        n *= s
    return shape[:3] + (n,)


def to4d(a):
    """View ``a`` as ``H x W x C x N`` (see :func:`shape4`)."""
    s4 = shape4(a.shape)
    return a if a.shape == s4 else a.reshape(s4, order="F")


def to_nhwc(x4, xp):
    """``H x W x C x N`` -> C-contiguous ``N x H x W x C`` (free when ``x4`` is
    itself a transposed NHWC array, as every block's output is)."""
    return xp.ascontiguousarray(x4.transpose(3, 0, 1, 2))


def from_nhwc(y):
    """C-contiguous ``N x H x W x C`` -> ``H x W x C x N`` view.

    Blocks hand out these views so that chained layers need no conversion:
    the API fixes the shape, not the memory order."""
    return y.transpose(1, 2, 3, 0)


def check_derivative(fname, dzdy, expected, what="the forward output"):
    """``dzdy`` must have exactly the (4-D) shape of the forward output."""
    if shape4(dzdy.shape) != shape4(expected):
        raise ValueError(
            f"{fname}: dzdy has shape {tuple(dzdy.shape)} but {what} has shape "
            f"{tuple(expected)}")


def like_shape(d, shape):
    """Give the derivative ``d`` exactly the shape of its primal."""
    shape = tuple(shape)
    return d if d.shape == shape else d.reshape(shape, order="F")
