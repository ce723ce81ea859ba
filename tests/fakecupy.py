"""A test-only stand-in for CuPy: NumPy underneath, CuPy's manners on top.

No GPU is needed to exercise the library's GPU code paths: this module is an
array module with CuPy's interface (``fakecupy.asarray``, ``fakecupy.zeros``,
``fakecupy.random.RandomState``, ``fakecupy.cuda.Device``, ...), whose arrays
(:class:`ndarray`) hold a NumPy array "on the device" and behave like CuPy's
where code usually breaks:

- implicit conversion to NumPy is refused: ``np.asarray(a)``, ``np.array(a)``
  and everything else that calls ``__array__`` raise CuPy's ``TypeError``;
  the explicit transfers are ``a.get()`` and ``fakecupy.asnumpy(a)``
  (device -> host) and ``fakecupy.asarray(h)`` (host -> device);
- a NumPy array is refused as an operand of the device's arithmetic and
  functions (``a * np.ones(3)``, ``fakecupy.maximum(a, h)``), as CuPy
  refuses it, except where CuPy accepts one: indices, and ``a[:] = h``;
- NumPy's ufuncs and array functions called on device arrays run on the
  device and return device arrays (CuPy's ``__array_ufunc__`` and
  ``__array_function__``); indexing an element, and reductions, give 0-d
  device arrays, not NumPy scalars;
- ``float(a)``, ``int(a)``, ``bool(a)``, ``a.item()``, ``a.tolist()`` work on
  one-element arrays (CuPy synchronises and copies the value);
- ``empty`` gives memory that is not zeroed (filled with NaN or 0xA5
  bytes, as reused device memory holds garbage), and ``isneginf`` /
  ``isposinf`` ignore their ``out`` argument, as CuPy's do.

The library recognises these arrays once the module is registered as a
device module of :mod:`vlnn._backend` (see ``tests/test_gpu_path.py``).
"""

import functools
import sys
import types

import numpy as np

__all__ = ["ndarray", "asarray", "array", "asanyarray", "asnumpy", "get_array_module"]

_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
             "Please use `.get()` to construct a NumPy array explicitly.")


def _refuse_host(value):
    raise TypeError(f"Unsupported type {type(value)} (fakecupy: a NumPy array given to a "
                    "device operation; move it with fakecupy.asarray first)")


def _dev(value):
    """An argument of a device operation, unwrapped for NumPy: device arrays
    give their data, NumPy arrays are refused, containers are walked."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, np.ndarray):
        _refuse_host(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_dev(v) for v in value)
    return value


def _index(key):
    """An index: device arrays unwrapped; NumPy index arrays are accepted
    (CuPy copies them to the device)."""
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, list):
        return [_index(k) for k in key]
    return key


def _wrap(value):
    """A NumPy result as the device's: arrays and NumPy scalars become device
    arrays (CuPy's reductions give 0-d arrays), containers are walked."""
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic):
        return ndarray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _kwargs(kwargs):
    out = {}
    for key, value in kwargs.items():
        if key == "out" and isinstance(value, tuple):
            out[key] = tuple(_dev(v) for v in value)
        else:
            out[key] = _dev(value)
    return out


class ndarray:
    """A device array: a NumPy array that refuses to leave implicitly."""

    __slots__ = ("_a",)
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, data):
        if not isinstance(data, np.ndarray):
            raise TypeError("fakecupy.ndarray wraps a numpy.ndarray; use fakecupy.asarray")
        self._a = data

    # explicit transfers ---------------------------------------------------
    def get(self, stream=None, order="C", out=None):
        return np.array(self._a, order=order, copy=True)

    def set(self, host):
        self._a[...] = np.asarray(host)

    # what CuPy refuses ----------------------------------------------------
    def __array__(self, *args, **kwargs):
        raise TypeError(_IMPLICIT)

    # NumPy protocols: device in, device out ---------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if "out" in kwargs and not isinstance(kwargs["out"], tuple):
            kwargs["out"] = (kwargs["out"],)
        args = [_index(i) if method == "at" and n == 1 else _dev(i)   # at(a, indices, b)
                for n, i in enumerate(inputs)]
        result = getattr(ufunc, method)(*args, **_kwargs(kwargs))
        if kwargs.get("out") is not None and method != "at":
            outs = kwargs["out"]
            return outs[0] if len(outs) == 1 else outs
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        mine = getattr(sys.modules[__name__], func.__name__, None)
        if mine is None or not callable(mine):
            return NotImplemented
        return mine(*args, **kwargs)

    # attributes -----------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))
    real = property(lambda self: ndarray(self._a.real))
    imag = property(lambda self: ndarray(self._a.imag))
    device = property(lambda self: cuda.Device(0))

    def __getattr__(self, name):
        # methods (reshape, transpose, astype, sum, max, ravel, copy, fill,
        # view, dot, clip, ...): device arguments in, device results out
        attr = getattr(self._a, name)
        if not callable(attr):
            raise AttributeError(name)

        @functools.wraps(attr)
        def method(*args, **kwargs):
            return _wrap(attr(*(_dev(a) for a in args), **_kwargs(kwargs)))
        return method

    # one element to Python (CuPy synchronises and copies it) ------------------
    def item(self, *args):
        return self._a.item(*args)

    def tolist(self):
        return self._a.tolist()

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __complex__(self):
        return complex(self._a)

    def __bool__(self):
        return bool(self._a)

    def __index__(self):
        return self._a.__index__()

    # containers -----------------------------------------------------------
    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (ndarray(np.asarray(item)) for item in self._a)

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray) and not (isinstance(key, slice) and key == slice(None)):
            _refuse_host(value)   # CuPy copies a host array only into a[:]
        self._a[_index(key)] = value._a if isinstance(value, ndarray) else value

    def __copy__(self):
        return ndarray(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray(self._a.copy())

    def __reduce__(self):
        return (_from_host, (self._a,))

    def __repr__(self):
        return f"fakecupy.{repr(self._a)}"

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        return format(self._a.item() if self._a.size == 1 else str(self._a), spec)


def _from_host(data):
    return ndarray(np.array(data))


def _binary(ufunc):
    return (lambda self, other: self.__array_ufunc__(ufunc, "__call__", self, other),
            lambda self, other: self.__array_ufunc__(ufunc, "__call__", other, self),
            lambda self, other: self.__array_ufunc__(ufunc, "__call__", self, other,
                                                     out=(self,)))


for _name, _ufunc in [("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                      ("truediv", np.true_divide), ("floordiv", np.floor_divide),
                      ("mod", np.remainder), ("pow", np.power), ("matmul", np.matmul),
                      ("and", np.bitwise_and), ("or", np.bitwise_or), ("xor", np.bitwise_xor),
                      ("lshift", np.left_shift), ("rshift", np.right_shift)]:
    _f, _r, _i = _binary(_ufunc)
    setattr(ndarray, f"__{_name}__", _f)
    setattr(ndarray, f"__r{_name}__", _r)
    setattr(ndarray, f"__i{_name}__", _i)
for _name, _ufunc in [("lt", np.less), ("le", np.less_equal), ("gt", np.greater),
                      ("ge", np.greater_equal), ("eq", np.equal), ("ne", np.not_equal)]:
    setattr(ndarray, f"__{_name}__", _binary(_ufunc)[0])
for _name, _ufunc in [("neg", np.negative), ("pos", np.positive), ("abs", np.absolute),
                      ("invert", np.invert)]:
    setattr(ndarray, f"__{_name}__",
            (lambda u: lambda self: self.__array_ufunc__(u, "__call__", self))(_ufunc))


# --------------------------------------------------------------------------
# the module's functions

def asarray(a, dtype=None, order=None):
    """Host -> device (a device array is returned as is, or cast)."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    return ndarray(np.array(a, dtype=dtype, order=order if order is not None else "K"))


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    if isinstance(a, ndarray):
        return ndarray(np.array(a._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    return ndarray(np.array(a, dtype=dtype, order=order, ndmin=ndmin))


asanyarray = asarray


def asnumpy(a, stream=None, order="C", out=None):
    """Device -> host (a NumPy array is returned as is)."""
    if isinstance(a, ndarray):
        return a.get(order=order)
    return np.asarray(a, order=order)


def _poisoned(a):
    """Fresh device memory is not zeroed (CuPy reuses freed blocks): fill
    it with a pattern that shows a read before the first write."""
    if a.dtype.kind in "fc":
        a.fill(np.nan)
    elif a.size:
        a.view(np.uint8).fill(0xA5)
    return ndarray(a)


def empty(shape, dtype=float, order="C"):
    return _poisoned(np.empty(shape, dtype, order))


def empty_like(a, dtype=None, order="K", subok=None, shape=None):
    return _poisoned(np.empty_like(_dev(a), dtype=dtype, order=order, shape=shape))


def isneginf(x, out=None):
    """As CuPy's (13.x): ``out`` is accepted and ignored."""
    return ndarray(np.isneginf(_dev(x)))


def isposinf(x, out=None):
    """As CuPy's (13.x): ``out`` is accepted and ignored."""
    return ndarray(np.isposinf(_dev(x)))


def get_array_module(*args):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else np


class _Ufunc:
    """A NumPy ufunc on device arrays (``__call__``, ``at``, ``reduce``, ...)."""

    def __init__(self, ufunc):
        self._u = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kwargs):
        return ndarray.__array_ufunc__(None, self._u, "__call__", *args, **kwargs)

    def __getattr__(self, method):
        if method in ("at", "reduce", "accumulate", "reduceat", "outer"):
            return lambda *args, **kwargs: ndarray.__array_ufunc__(None, self._u, method,
                                                                   *args, **kwargs)
        return getattr(self._u, method)


def _function(func):
    @functools.wraps(func)
    def on_device(*args, **kwargs):
        return _wrap(func(*(_dev(a) for a in args), **_kwargs(kwargs)))
    return on_device


class _Namespace(types.ModuleType):
    """A module mirroring a NumPy namespace on the device."""

    def __init__(self, name, host, own=None):
        super().__init__(name)
        self._host = host
        self.__dict__.update(own or {})

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self._host, name)
        if isinstance(attr, np.ufunc):
            value = _Ufunc(attr)
        elif isinstance(attr, types.ModuleType):
            raise AttributeError(f"fakecupy has no submodule {name!r}")
        elif callable(attr) and not isinstance(attr, type):
            value = _function(attr)
        else:
            value = attr   # dtypes (float32, ...), constants (inf, newaxis, ...)
        setattr(self, name, value)
        return value


# random ---------------------------------------------------------------------

class RandomState:
    """``cupy.random.RandomState``: draws on the device."""

    def __init__(self, seed=None):
        self.seed(seed)

    def random_sample(self, size=None, dtype=np.float64):
        return ndarray(np.asarray(self._rng.random_sample(size)).astype(dtype))

    rand = lambda self, *shape, dtype=np.float64: self.random_sample(shape, dtype)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        return ndarray(np.asarray(self._rng.uniform(low, high, size)).astype(dtype))

    def standard_normal(self, size=None, dtype=np.float64):
        return ndarray(np.asarray(self._rng.standard_normal(size)).astype(dtype))

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=np.float64):
        return ndarray(np.asarray(self._rng.normal(loc, scale, size)).astype(dtype))

    def randn(self, *shape, dtype=np.float64):
        return self.standard_normal(shape, dtype)

    def seed(self, seed=None):
        # CuPy takes any 64-bit seed; NumPy's legacy RandomState only 32 bits
        self._rng = np.random.RandomState(None if seed is None else int(seed) % 2 ** 32)


_GLOBAL_STATE = RandomState()


def _seed(seed=None):
    _GLOBAL_STATE.seed(seed)


def _get_random_state():
    return _GLOBAL_STATE


random = types.ModuleType(f"{__name__}.random")
random.RandomState = RandomState
random.seed = _seed
random.get_random_state = _get_random_state
random.rand = lambda *shape, dtype=np.float64: _GLOBAL_STATE.rand(*shape, dtype=dtype)
random.randn = lambda *shape, dtype=np.float64: _GLOBAL_STATE.randn(*shape, dtype=dtype)
random.random_sample = lambda size=None, dtype=np.float64: _GLOBAL_STATE.random_sample(size,
                                                                                      dtype)


# cuda -------------------------------------------------------------------------

class _Device:
    """``cupy.cuda.Device``: a context manager that selects a device."""

    current = 0

    def __init__(self, device=None):
        self.id = _Device.current if device is None else int(device)
        self._previous = []

    def __enter__(self):
        self._previous.append(_Device.current)
        _Device.current = self.id
        return self

    def __exit__(self, *exc):
        _Device.current = self._previous.pop()
        return False

    def use(self):
        _Device.current = self.id

    def synchronize(self):
        pass

    def __repr__(self):
        return f"<fakecupy.cuda.Device {self.id}>"


cuda = types.ModuleType(f"{__name__}.cuda")
cuda.Device = _Device
cuda.is_available = lambda: True


# lib.stride_tricks -----------------------------------------------------------

def _as_strided(x, shape=None, strides=None):
    return ndarray(np.lib.stride_tricks.as_strided(_dev(x), shape=shape, strides=strides))


lib = types.ModuleType(f"{__name__}.lib")
lib.stride_tricks = types.ModuleType(f"{__name__}.lib.stride_tricks")
lib.stride_tricks.as_strided = _as_strided
sys.modules.update({lib.__name__: lib, lib.stride_tricks.__name__: lib.stride_tricks})

linalg = _Namespace(f"{__name__}.linalg", np.linalg)
fft = _Namespace(f"{__name__}.fft", np.fft)


# everything else: NumPy's functions on the device (module __getattr__) -----------

_TOP = _Namespace(__name__, np)


def __getattr__(name):
    return getattr(_TOP, name)
