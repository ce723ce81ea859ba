"""Generic checks of the public blocks over OpInfo-style sample-input tables.

Each entry of ``SAMPLES`` describes one call of a block: a forward callable,
a backward callable and the inputs.  Every generic test below runs over the
whole table: dtypes, memory orders, input immutability, derivative shapes,
4-D outputs, numerical derivatives.  ``ERROR_INPUTS`` lists bad calls with
the exception each must raise (API.md, "Arrays" and "Calling convention").
"""

from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

import numpy as np
import pytest

from _checks import check_derivative
from vlnn import vl_nnconv, vl_nnconvt, vl_nnpool, vl_nnrelu, vl_nnsoftmaxloss
from vlnn._backend import shape4


def randn(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


@dataclass
class Sample:
    """One call of a block.

    ``forward(*args)`` returns the output; ``backward(*args, dzdy)`` returns
    a tuple of derivatives, the i-th being the derivative with respect to
    ``args[grad_of[i]]`` (``grad_of[i] is None``: that slot must be None).
    ``tensors`` are the indices of the float tensors among ``args`` (the
    others, such as labels, keep their dtype in the dtype checks)."""
    name: str
    block: str
    forward: Callable
    backward: Callable
    args: tuple
    grad_of: Tuple[Optional[int], ...]
    tensors: Tuple[int, ...] = None
    spatial: bool = True
    make_dzdy: Callable = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.tensors is None:
            self.tensors = tuple(i for i, a in enumerate(self.args) if isinstance(a, np.ndarray))

    def cast(self, dtype):
        return tuple(a.astype(dtype) if i in self.tensors else a for i, a in enumerate(self.args))

    def dzdy(self, y, dtype):
        if self.make_dzdy is not None:
            return self.make_dzdy(y, dtype)
        return randn(y.shape, seed=99).astype(dtype)


def _conv(opts=None):
    opts = opts or {}
    return (lambda x, w, b: vl_nnconv(x, w, b, **opts),
            lambda x, w, b, dy: vl_nnconv(x, w, b, dy, **opts))


def _convt(opts=None):
    opts = opts or {}
    return (lambda x, w, b: vl_nnconvt(x, w, b, **opts),
            lambda x, w, b, dy: vl_nnconvt(x, w, b, dy, **opts))


def _pool(pool, opts=None):
    opts = opts or {}
    return (lambda x: vl_nnpool(x, pool, **opts),
            lambda x, dy: (vl_nnpool(x, pool, dy, **opts),))


def _relu(*pairs):
    return (lambda x: vl_nnrelu(x, None, *pairs),
            lambda x, dy: (vl_nnrelu(x, dy, *pairs),))


def _sml(opts=None):
    opts = opts or {}
    return (lambda x, c: vl_nnsoftmaxloss(x, c, **opts),
            lambda x, c, dy: (vl_nnsoftmaxloss(x, c, dy, **opts),))


def _labels(shape, classes, seed, dtype=np.float64):
    return np.random.default_rng(seed).integers(1, classes + 1, size=shape).astype(dtype)


def make_samples():
    s = []

    def add(name, block, fb, args, grad_of, **kw):
        s.append(Sample(name, block, fb[0], fb[1], args, grad_of, **kw))

    # --- vl_nnconv
    add("conv-4d-pad", "conv", _conv({"pad": 1}),
        (randn((5, 6, 3, 2), 1), randn((3, 3, 3, 4), 2), randn((4,), 3)), (0, 1, 2))
    add("conv-3d-x-stride-asympad-b1K", "conv", _conv({"stride": [2, 1], "pad": [1, 0, 2, 1]}),
        (randn((7, 6, 3), 4), randn((3, 2, 3, 5), 5), randn((1, 5), 6)), (0, 1, 2))
    add("conv-2d-x-b11K", "conv", _conv({"Stride": 2}),
        (randn((6, 7), 7), randn((2, 3, 1, 3), 8), randn((1, 1, 3), 9)), (0, 1, 2))
    add("conv-2d-x-2d-w", "conv", _conv({"pad": [0, 1, 1, 0]}),
        (randn((5, 5), 10), randn((3, 2), 11), randn((1,), 12)), (0, 1, 2))
    add("conv-5d-x-bK1", "conv", _conv({"pad": 1, "stride": 2}),
        (randn((5, 4, 2, 2, 3), 13), randn((3, 3, 2, 3), 14), randn((3, 1), 15)), (0, 1, 2))
    add("conv-groups-dilate", "conv", _conv({"dilate": [2, 1], "pad": 2}),
        (randn((6, 5, 4, 2), 16), randn((2, 3, 2, 6), 17), randn((6,), 18)), (0, 1, 2))
    add("conv-many-channels", "conv", _conv({"pad": [1, 1, 0, 2], "stride": [1, 2]}),
        (randn((5, 6, 12, 2), 19), randn((3, 3, 12, 5), 20), randn((5,), 21)), (0, 1, 2))
    add("conv-1x1", "conv", _conv(),
        (randn((4, 5, 6, 2), 22), randn((1, 1, 6, 3), 23), randn((3,), 24)), (0, 1, 2))
    add("conv-fully-connected", "conv", _conv(),
        (randn((4, 3, 2, 5), 25), randn((4, 3, 2, 7), 26), randn((7,), 27)), (0, 1, 2))
    add("conv-wide-stride1-dilate", "conv", _conv({"pad": [1, 0, 2, 1], "dilate": [1, 2]}),
        (randn((5, 6, 16, 2), 61), randn((3, 3, 16, 4), 62), randn((4,), 63)), (0, 1, 2))
    add("conv-wide-groups", "conv", _conv({"pad": 1}),
        (randn((4, 5, 32, 1), 64), randn((2, 3, 16, 4), 65), randn((1, 4), 66)), (0, 1, 2))
    add("conv-no-bias", "conv", _conv({"pad": 1}),
        (randn((4, 4, 2, 2), 28), randn((3, 3, 2, 3), 29), None), (0, 1, None))
    add("conv-no-filters", "conv", _conv({"stride": 2, "pad": [1, 0, 0, 1]}),
        (randn((5, 6, 3, 2), 30), None, randn((3,), 31)), (0, None, 2))
    # --- vl_nnconvt
    add("convt-4d-upsample-crop", "convt", _convt({"upsample": 2, "crop": [1, 0, 0, 1]}),
        (randn((4, 3, 3, 2), 32), randn((3, 3, 2, 3), 33), randn((2,), 34)), (0, 1, 2))
    add("convt-3d-x-groups-b1K", "convt", _convt({"numGroups": 2, "upsample": [1, 2]}),
        (randn((3, 4, 4), 35), randn((2, 3, 3, 4), 36), randn((1, 6), 37)), (0, 1, 2))
    add("convt-2d-x", "convt", _convt({"crop": 1}),
        (randn((4, 5), 38), randn((4, 3, 2, 1), 39), randn((1, 1, 2), 40)), (0, 1, 2))
    add("convt-5d-x-no-bias", "convt", _convt({"upsample": 2}),
        (randn((3, 3, 2, 2, 2), 41), randn((2, 2, 3, 2), 42), None), (0, 1, None))
    add("convt-wide", "convt", _convt({"crop": [0, 1, 1, 0]}),
        (randn((3, 4, 3, 2), 67), randn((3, 2, 16, 3), 68), randn((16,), 69)), (0, 1, 2))
    # --- vl_nnpool
    add("pool-max-4d", "pool", _pool([3, 2], {"stride": 2, "pad": 1}),
        (randn((6, 7, 3, 2), 43),), (0,))
    add("pool-avg-3d", "pool", _pool(2, {"method": "avg", "pad": [1, 1, 0, 0]}),
        (randn((5, 4, 3), 44),), (0,))
    add("pool-max-2d", "pool", _pool(np.array([[2, 3]]), {"stride": [1, 2]}),
        (randn((5, 7), 45),), (0,))
    add("pool-avg-5d", "pool", _pool([2, 2], {"method": "AVG", "stride": 2, "pad": [0, 1, 1, 0]}),
        (randn((4, 5, 2, 2, 2), 46),), (0,))
    # --- vl_nnrelu (any shape)
    add("relu-4d", "relu", _relu(), (randn((3, 4, 2, 2), 47),), (0,), spatial=False)
    add("relu-2d-leak", "relu", _relu("leak", 0.1), (randn((4, 5), 48),), (0,), spatial=False)
    add("relu-5d-leak", "relu", _relu("Leak", -0.5), (randn((2, 3, 2, 2, 2), 49),), (0,),
        spatial=False)
    add("relu-1d", "relu", _relu(), (randn((7,), 50),), (0,), spatial=False)
    # --- vl_nnsoftmaxloss (labels are not tensors: no derivative, any dtype)
    add("softmaxloss-image-labels", "softmaxloss", _sml(),
        (randn((1, 1, 5, 4), 51), _labels((4,), 5, 52)), (0,), tensors=(0,), spatial=False)
    add("softmaxloss-location-labels", "softmaxloss", _sml(),
        (randn((3, 2, 4, 2), 53), _labels((3, 2, 1, 2), 4, 54, np.int32)), (0,),
        tensors=(0,), spatial=False)
    add("softmaxloss-3d-x-weights", "softmaxloss", _sml({"normalise": False}),
        (randn((2, 3, 4), 55),
         np.concatenate([_labels((2, 3, 1), 4, 56), randn((2, 3, 1), 57)], axis=2)),
        (0,), tensors=(0,), spatial=False)
    add("softmaxloss-5d-x-array-dzdy", "softmaxloss", _sml(),
        (randn((1, 1, 3, 2, 2), 58), _labels((1, 4), 3, 59)), (0,), tensors=(0,),
        spatial=False, make_dzdy=lambda y, dt: randn((1, 1, 1, 4), 60).astype(dt))
    return s


SAMPLES = make_samples()
IDS = [s.name for s in SAMPLES]
DTYPES = [np.float32, np.float64]


def as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def run_both(sample, args, dtype=None):
    """Forward output, dzdy and the backward derivatives for ``args``."""
    y = sample.forward(*args)
    dzdy = sample.dzdy(y, dtype or y.dtype)
    return y, dzdy, as_tuple(sample.backward(*args, dzdy))


# ---------------------------------------------------------------------------
# dtypes


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_output_dtype_follows_the_data(sample, dtype):
    args = sample.cast(dtype)
    y, _, ders = run_both(sample, args, dtype)
    assert y.dtype == dtype
    assert len(ders) == len(sample.grad_of)
    for d, src in zip(ders, sample.grad_of):
        if src is None:
            assert d is None
        else:
            assert isinstance(d, np.ndarray) and d.dtype == dtype


# ---------------------------------------------------------------------------
# memory orders


def _layout(a, how):
    if not isinstance(a, np.ndarray) or a.ndim == 0:
        return a
    if how == "C":
        return np.ascontiguousarray(a)
    if how == "F":
        return np.asfortranarray(a)
    if how == "reversed":   # last axis outermost in memory, as a block's output view is
        return np.moveaxis(np.ascontiguousarray(np.moveaxis(a, -1, 0)), 0, -1)
    if how == "strided":    # every other element of a larger buffer along a non-trivial axis
        axis = next((i for i, n in enumerate(a.shape) if n > 1), 0)
        big = np.zeros(a.shape[:axis] + (2 * a.shape[axis],) + a.shape[axis + 1:], a.dtype)
        view = (slice(None),) * axis + (slice(None, None, 2),)
        big[view] = a
        return big[view]
    raise ValueError(how)


LAYOUTS = ["F", "reversed", "strided"]


def assert_same_up_to_rounding(got, want):
    """Equal up to the rounding of a different summation order (reductions
    may legitimately run in memory order); a layout mix-up is off by O(1)."""
    assert got.shape == want.shape and got.dtype == want.dtype
    eps = np.finfo(want.dtype).eps
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1.0)
    np.testing.assert_allclose(got, want, rtol=64 * eps, atol=64 * eps * scale)


# C and Fortran order coincide for 1-D arrays: only the strided layout differs
ORDER_CASES = [(s, layout) for s in SAMPLES for layout in LAYOUTS
               if layout == "strided" or any(isinstance(a, np.ndarray) and a.ndim > 1
                                             for a in s.args)]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("sample, layout", ORDER_CASES,
                         ids=[f"{s.name}-{layout}" for s, layout in ORDER_CASES])
def test_memory_order_does_not_change_the_result(sample, layout, dtype):
    args = sample.cast(dtype)
    y_c = sample.forward(*[_layout(a, "C") for a in args])
    dzdy = sample.dzdy(y_c, dtype)
    ders_c = as_tuple(sample.backward(*[_layout(a, "C") for a in args], _layout(dzdy, "C")))
    other = [_layout(a, layout) for a in args]
    assert any(isinstance(a, np.ndarray) and not a.flags.c_contiguous for a in other)
    y_o = sample.forward(*other)
    ders_o = as_tuple(sample.backward(*other, _layout(dzdy, layout)))
    assert_same_up_to_rounding(y_o, y_c)
    for d_o, d_c in zip(ders_o, ders_c):
        if d_c is None:
            assert d_o is None
        else:
            assert_same_up_to_rounding(d_o, d_c)


# ---------------------------------------------------------------------------
# inputs are never modified


@pytest.mark.parametrize("layout", ["C", "F", "reversed"])
@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_inputs_are_not_modified(sample, layout):
    args = [_layout(a, layout) for a in sample.cast(np.float32)]
    saved = [None if a is None else np.array(a, copy=True) for a in args]
    y = sample.forward(*args)
    dzdy = _layout(sample.dzdy(y, np.float32), layout)
    dzdy_saved = np.array(dzdy, copy=True)
    ders = as_tuple(sample.backward(*args, dzdy))
    for a, keep in zip(args, saved):
        if a is not None:
            np.testing.assert_array_equal(a, keep)
    np.testing.assert_array_equal(dzdy, dzdy_saved)
    # results are fresh arrays: changing them in place cannot reach the inputs
    for out in (y,) + ders:
        if out is None:
            continue
        for a in list(args) + [dzdy]:
            if isinstance(a, np.ndarray):
                assert not np.shares_memory(out, a)


# ---------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_derivatives_have_exactly_the_primal_shape(sample):
    args = sample.cast(np.float64)
    _, _, ders = run_both(sample, args)
    for d, src in zip(ders, sample.grad_of):
        if src is not None:
            assert d.shape == args[src].shape, (d.shape, args[src].shape)


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_forward_output_shape(sample):
    args = sample.cast(np.float64)
    y = sample.forward(*args)
    x = args[0]
    if sample.spatial:
        assert y.ndim == 4
        # one output image per input image, dims past the 4th folded
        assert y.shape[3] == shape4(x.shape)[3]
    elif sample.block == "relu":
        assert y.shape == x.shape
    else:
        assert isinstance(y, np.ndarray) and y.shape == ()


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.spatial],
                         ids=[s.name for s in SAMPLES if s.spatial])
def test_dzdy_in_any_four_d_equivalent_shape(sample):
    # MatConvNet 4-D-ifies dzdy too: trailing singleton dims may be dropped
    # and N may be split into dims past the 4th
    args = sample.cast(np.float64)
    y = sample.forward(*args)
    dzdy = sample.dzdy(y, np.float64)
    ref = as_tuple(sample.backward(*args, dzdy))
    stripped = dzdy.shape
    while len(stripped) > 2 and stripped[-1] == 1:
        stripped = stripped[:-1]
    alternatives = [dzdy.reshape(dzdy.shape[:3] + (1, dzdy.shape[3]), order="F"),
                    dzdy.reshape(stripped, order="F")]
    for alt in alternatives:
        got = as_tuple(sample.backward(*args, alt))
        for g, r in zip(got, ref):
            if r is None:
                assert g is None
            else:
                assert_same_up_to_rounding(g, r)


# ---------------------------------------------------------------------------
# derivatives


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_derivatives_match_finite_differences(sample):
    args = list(sample.cast(np.float64))
    y = sample.forward(*args)
    # a loss's per-location dzdy has no scalar forward to compare with: use
    # a scalar of the output's shape here
    dzdy = sample.dzdy(y, np.float64)
    if dzdy.shape != y.shape:
        dzdy = np.asarray(0.7)
    ders = as_tuple(sample.backward(*args, dzdy))
    for d, src in zip(ders, sample.grad_of):
        if src is None:
            continue

        def f(a, src=src):
            call = list(args)
            call[src] = a
            return sample.forward(*call)
        check_derivative(f, args[src], d, dzdy, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------
# chained calls on the views the blocks return


def _chain(x, w1, b1, w2, b2, copy):
    c = (lambda a: np.array(a, order="C")) if copy else (lambda a: a)
    y1 = vl_nnconv(x, w1, b1, pad=1)
    y2 = vl_nnrelu(c(y1))
    y3 = vl_nnpool(c(y2), 2, stride=2)
    y4 = vl_nnconv(c(y3), w2, b2)
    dy4 = np.ones_like(y4)
    dy3, dw2, db2 = vl_nnconv(c(y3), w2, b2, c(dy4))
    dy2 = vl_nnpool(c(y2), 2, c(dy3), stride=2)
    dy1 = vl_nnrelu(c(y1), c(dy2))
    dx, dw1, db1 = vl_nnconv(x, w1, b1, c(dy1), pad=1)
    return (y1, y2, y3, y4), (dx, dw1, db1, dw2, db2)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_chained_calls_work_on_returned_views(dtype):
    x = randn((8, 8, 3, 2), 1).astype(dtype)
    w1, b1 = randn((3, 3, 3, 4), 2).astype(dtype), randn((4,), 3).astype(dtype)
    w2, b2 = randn((3, 3, 4, 5), 4).astype(dtype), randn((1, 5), 5).astype(dtype)
    outs, ders = _chain(x, w1, b1, w2, b2, copy=False)
    assert [o.shape for o in outs] == [(8, 8, 4, 2), (8, 8, 4, 2), (4, 4, 4, 2), (2, 2, 5, 2)]
    assert all(o.dtype == dtype for o in outs + ders)
    ref_outs, ref_ders = _chain(x, w1, b1, w2, b2, copy=True)
    for got, want in zip(outs + ders, ref_outs + ref_ders):
        assert_same_up_to_rounding(got, want)
    assert [d.shape for d in ders] == [x.shape, w1.shape, b1.shape, w2.shape, b2.shape]


def test_previous_outputs_survive_later_calls():
    x1, x2 = randn((6, 6, 3, 2), 1), randn((6, 6, 3, 2), 2)
    w, b = randn((3, 3, 3, 4), 3), randn((4,), 4)
    outs = [vl_nnconv(x1, w, b, pad=1), vl_nnpool(x1, 2, pad=1), vl_nnrelu(x1),
            vl_nnconvt(x1, randn((2, 2, 2, 3), 5), None, upsample=2)]
    saved = [o.copy() for o in outs]
    vl_nnconv(x2, w, b, pad=1)
    vl_nnconv(x2, w, b, randn((6, 6, 4, 2), 6), pad=1)
    vl_nnpool(x2, 2, pad=1)
    vl_nnconvt(x2, randn((2, 2, 2, 3), 7), None, upsample=2)
    for o, s in zip(outs, saved):
        np.testing.assert_array_equal(o, s)


# ---------------------------------------------------------------------------
# dtype rules across arguments


@pytest.mark.parametrize("dzdy", [1.0, np.float64(2.5), np.array(0.5), 3])
def test_softmaxloss_scalar_dzdy_keeps_float32(dzdy):
    x = randn((2, 2, 3, 2), 1).astype(np.float32)
    c = _labels((2,), 3, 2)
    dx = vl_nnsoftmaxloss(x, c, dzdy)
    assert dx.dtype == np.float32 and dx.shape == x.shape
    unit = vl_nnsoftmaxloss(x, c, 1.0)
    np.testing.assert_allclose(dx, float(dzdy) * unit, rtol=1e-6)
    assert vl_nnsoftmaxloss(x, c).dtype == np.float32


@pytest.mark.parametrize("label_dtype", [np.float64, np.float32, np.int8, np.int32, np.uint8,
                                         np.int64])
def test_softmaxloss_labels_of_any_real_type(label_dtype):
    x = randn((3, 2, 4, 2), 1).astype(np.float32)
    c = _labels((3, 2, 1, 2), 4, 2)
    ref = vl_nnsoftmaxloss(x, c)
    got = vl_nnsoftmaxloss(x, c.astype(label_dtype))
    assert got.dtype == np.float32
    assert got == ref
    np.testing.assert_array_equal(vl_nnsoftmaxloss(x, c.astype(label_dtype), 1.0),
                                  vl_nnsoftmaxloss(x, c, 1.0))


MIXABLE = [s for s in SAMPLES if s.block in ("conv", "convt", "pool", "relu")]


@pytest.mark.parametrize("sample", MIXABLE, ids=[s.name for s in MIXABLE])
def test_mixing_float32_and_float64_is_an_error(sample):
    args = sample.cast(np.float32)
    y = sample.forward(*args)
    dzdy = sample.dzdy(y, np.float32)
    present = [i for i in sample.tensors if args[i] is not None]
    for i in present:
        mixed = list(args)
        mixed[i] = args[i].astype(np.float64)
        if len(present) > 1:
            with pytest.raises(ValueError, match="must not mix float32 and float64"):
                sample.forward(*mixed)
        with pytest.raises(ValueError, match="must not mix float32 and float64"):
            sample.backward(*mixed, dzdy)
    with pytest.raises(ValueError, match=r"must not mix float32 and float64.*dzdy is float64"):
        sample.backward(*args, dzdy.astype(np.float64))


# ---------------------------------------------------------------------------
# calling convention: equivalent spellings of one call


def _x(shape=(6, 5, 3, 2), seed=1, dtype=np.float32):
    return randn(shape, seed).astype(dtype)


X = _x()
W = _x((3, 3, 3, 4), 2)
B = _x((4,), 3)
WT = _x((2, 2, 2, 3), 4)
DY_CONV = _x((3, 3, 4, 2), 5)          # conv(X, W, B, pad=1, stride=2) output
DY_POOL = _x((3, 3, 3, 2), 6)          # pool(X, 2, stride=2, pad=[0,1,0,1]) output
C = _labels((2,), 3, 7)

EQUIVALENT_CALLS = [
    ("conv-pairs", lambda: vl_nnconv(X, W, B, "pad", 1, "stride", 2),
     lambda: vl_nnconv(X, W, B, pad=1, stride=2)),
    ("conv-pairs-after-none", lambda: vl_nnconv(X, W, B, None, "Pad", 1, "Stride", 2),
     lambda: vl_nnconv(X, W, B, pad=1, stride=2)),
    ("conv-case", lambda: vl_nnconv(X, W, B, PAD=1, sTrIdE=2),
     lambda: vl_nnconv(X, W, B, pad=1, stride=2)),
    ("conv-numeric-forms", lambda: vl_nnconv(X, W, B, pad=np.array([[1, 1, 1, 1]]),
                                             stride=np.array([[2.0], [2.0]])),
     lambda: vl_nnconv(X, W, B, pad=1.0, stride=np.float64(2))),
    ("conv-1x1-array-options", lambda: vl_nnconv(X, W, B, pad=np.array([[1]]),
                                                 stride=np.array([[2]])),
     lambda: vl_nnconv(X, W, B, pad=1, stride=2)),
    ("conv-gpu-flags", lambda: vl_nnconv(X, W, B, "NoCudnn", "pad", 1, "Verbose", "stride", 2,
                                         "CudnnWorkspaceLimit", 1024, "Cudnn"),
     lambda: vl_nnconv(X, W, B, pad=1, stride=2)),
    ("conv-dzdy-keyword", lambda: vl_nnconv(X, W, B, dzdy=DY_CONV, pad=1, stride=2),
     lambda: vl_nnconv(X, W, B, DY_CONV, "pad", 1, "stride", 2)),
    ("conv-empty-bias", lambda: vl_nnconv(X, W, np.zeros((0, 0)), pad=1),
     lambda: vl_nnconv(X, W, None, pad=1)),
    ("conv-empty-int-bias", lambda: vl_nnconv(X, W, np.zeros(0, np.int32), pad=1),
     lambda: vl_nnconv(X, W, None, pad=1)),
    ("conv-empty-list-bias", lambda: vl_nnconv(X, W, [], pad=1),
     lambda: vl_nnconv(X, W, None, pad=1)),
    ("conv-bias-shapes", lambda: vl_nnconv(X, W, B.reshape(1, 1, 4)),
     lambda: vl_nnconv(X, W, B.reshape(4, 1))),
    ("conv-dzdy-none-is-forward", lambda: vl_nnconv(X, W, B, None),
     lambda: vl_nnconv(X, W, B)),
    ("convt-numgroups-spellings", lambda: vl_nnconvt(X[:, :, :2], WT[:, :, :, :2], None,
                                                     num_groups=2, UpSample=2),
     lambda: vl_nnconvt(X[:, :, :2], WT[:, :, :, :2], None, "NumGroups", 2.0, "upsample", 2)),
    ("convt-numgroups-lower", lambda: vl_nnconvt(X[:, :, :2], WT[:, :, :, :2], None,
                                                 numgroups=np.array([[2]])),
     lambda: vl_nnconvt(X[:, :, :2], WT[:, :, :, :2], None, numGroups=2)),
    ("convt-crop-pairs", lambda: vl_nnconvt(X[:, :, :2], WT[:, :, :, :2], None, "crop",
                                            [1, 0, 0, 1], "NoCudnn"),
     lambda: vl_nnconvt(X[:, :, :2], WT[:, :, :, :2], None, crop=(1, 0, 0, 1))),
    ("pool-pairs", lambda: vl_nnpool(X, 3, "method", "avg", "stride", [2, 1]),
     lambda: vl_nnpool(X, [3, 3], method="avg", stride=(2, 1))),
    ("pool-size-forms", lambda: vl_nnpool(X, np.array([[2.0, 3.0]])),
     lambda: vl_nnpool(X, [2, 3])),
    ("pool-size-column", lambda: vl_nnpool(X, np.array([[2], [3]])),
     lambda: vl_nnpool(X, (2.0, np.float64(3)))),
    ("pool-scalar-array", lambda: vl_nnpool(X, np.array([[2]]), method="MAX"),
     lambda: vl_nnpool(X, 2.0)),
    ("pool-dzdy-keyword", lambda: vl_nnpool(X, 2, dzdy=DY_POOL, stride=2, pad=[0, 1, 0, 1]),
     lambda: vl_nnpool(X, 2, DY_POOL, "Stride", 2, "Pad", [0, 1, 0, 1])),
    ("pool-gpu-flags", lambda: vl_nnpool(X, 2, "Cudnn", "CudnnWorkspaceLimit", 10),
     lambda: vl_nnpool(X, 2)),
    ("relu-none-then-pairs", lambda: vl_nnrelu(X, None, "leak", 0.1),
     lambda: vl_nnrelu(X, leak=0.1)),
    ("relu-string-in-dzdy-slot", lambda: vl_nnrelu(X, "Leak", 0.1),
     lambda: vl_nnrelu(X, LEAK=np.array([[0.1]]))),
    ("relu-dzdy-keyword", lambda: vl_nnrelu(X, dzdy=X, leak=0.2),
     lambda: vl_nnrelu(X, X, "leak", 0.2)),
    ("softmaxloss-dzdy-keyword", lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), C, dzdy=1.0),
     lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), C, 1.0)),
    ("softmaxloss-pairs", lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), C, "normalise", False),
     lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), C, None, Normalise=False)),
    ("softmaxloss-label-list", lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), [1, 3]),
     lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), np.array([[1.0, 3.0]]))),
]


@pytest.mark.parametrize("call, ref", [c[1:] for c in EQUIVALENT_CALLS],
                         ids=[c[0] for c in EQUIVALENT_CALLS])
def test_equivalent_calls(call, ref):
    got, want = as_tuple(call()), as_tuple(ref())
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)


EMPTY_DZDY_CASES = [
    pytest.param(lambda e: vl_nnconv(X, W, B, e, pad=1), lambda: vl_nnconv(X, W, B, pad=1),
                 id="conv"),
    pytest.param(lambda e: vl_nnconvt(X, WT, None, e), lambda: vl_nnconvt(X, WT, None),
                 id="convt"),
    pytest.param(lambda e: vl_nnpool(X, 2, e, "method", "avg"),
                 lambda: vl_nnpool(X, 2, method="avg"), id="pool"),
    pytest.param(lambda e: vl_nnrelu(X, e, "leak", 0.1), lambda: vl_nnrelu(X, leak=0.1),
                 id="relu"),
    pytest.param(
        lambda e: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), C, e),
        lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), C), id="softmaxloss"),
]


@pytest.mark.parametrize("empty", [np.zeros(0, np.float32), np.zeros((0, 3), np.float32), []],
                         ids=["zeros(0)", "zeros(0,3)", "list"])
@pytest.mark.parametrize("call, forward", EMPTY_DZDY_CASES)
def test_empty_dzdy_is_forward(call, forward, empty):
    # MATLAB's [] is None, and an array with zero elements is empty too
    got, want = call(empty), forward()
    assert not isinstance(got, tuple)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_softmaxloss_dzdy_that_does_not_fit_names_the_shapes():
    # (N,) is MATLAB's N x 1 column: it broadcasts *with* 1 x 1 x 1 x N to a
    # larger shape, but not *to* it
    x = _x((1, 1, 10, 4))
    with pytest.raises(ValueError, match=r"vl_nnsoftmaxloss: dzdy of shape \(4,\) does not "
                                         r"broadcast to 1 x 1 x 1 x 4"):
        vl_nnsoftmaxloss(x, [1, 2, 3, 4], np.ones(4))


def test_softmaxloss_dzdy_per_location():
    x = _x((2, 3, 4, 2))
    c = _labels((2,), 4, 3)
    dz = _x((2, 3, 1, 2), 4)
    dx = vl_nnsoftmaxloss(x, c, dz)
    assert dx.shape == x.shape and dx.dtype == np.float32
    # linear in dzdy: each location's derivative scales with its own dzdy
    unit = vl_nnsoftmaxloss(x, c, np.ones((2, 3, 1, 2), np.float32))
    np.testing.assert_allclose(dx, unit * dz, rtol=1e-5, atol=1e-7)


def test_conv_backward_none_slots():
    dx, dw, db = vl_nnconv(X, W, None, DY_CONV, pad=1, stride=2)
    assert dx.shape == X.shape and dw.shape == W.shape and db is None
    dx, dw, db = vl_nnconv(X, W, B, DY_CONV, "NoDerData", "NoDerBiases", pad=1, stride=2)
    assert dx is None and db is None and dw.shape == W.shape
    dx, dw, db = vl_nnconv(X, W, B, DY_CONV, pad=1, stride=2, no_der_filters=True)
    assert dw is None and dx.shape == X.shape and db.shape == B.shape


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_nan_in_the_data_is_not_an_error(sample):
    args = list(sample.cast(np.float64))
    clean = sample.forward(*args)
    x = args[0].copy()
    x.flat[::5] = np.nan
    args[0] = x
    y = sample.forward(*args)
    assert y.shape == clean.shape
    # (vl_nnrelu maps NaN to 0 as MATLAB's max(x, 0) does; max pooling skips NaN)
    if sample.block in ("conv", "convt", "softmaxloss"):
        assert np.isnan(y).any()
    ders = as_tuple(sample.backward(*args, sample.dzdy(clean, np.float64)))
    assert len(ders) == len(sample.grad_of)


# ---------------------------------------------------------------------------
# error inputs


X64 = X.astype(np.float64)

ERROR_INPUTS = [
    # (id, call, exception type, message regex)
    ("conv-unknown-option", lambda: vl_nnconv(X, W, B, padding=1), TypeError,
     r"vl_nnconv: unknown option 'padding'; valid options: .*Dilate.*Pad.*Stride"),
    ("conv-unknown-pair", lambda: vl_nnconv(X, W, B, "pad", 1, "method", "avg"), TypeError,
     r"unknown option 'method'.*NoDerData"),
    ("conv-missing-value", lambda: vl_nnconv(X, W, B, "pad", 1, "stride"), TypeError,
     r"option 'stride' needs a value"),
    ("conv-non-string-option", lambda: vl_nnconv(X, W, B, DY_CONV, 1), TypeError,
     r"expected an option name, got int 1"),
    ("conv-too-few-args", lambda: vl_nnconv(X, W, "pad", 1), TypeError,
     r"expected at least 3 arguments \(x, w, b\)"),
    ("conv-channel-mismatch", lambda: vl_nnconv(X, W[:, :, :2], B), ValueError,
     r"filter depth 2 .*\(3, 3, 2, 4\).*data depth 3"),
    ("conv-groups-k", lambda: vl_nnconv(_x((4, 4, 4, 1)), _x((3, 3, 2, 3)), None), ValueError,
     r"number of filters 3 .*not a multiple of the number of groups 2"),
    ("conv-filter-too-large", lambda: vl_nnconv(X, _x((7, 3, 3, 4)), B), ValueError,
     r"extent 7 x 3 .*larger than the padded x 6 x 5"),
    ("conv-dilated-too-large", lambda: vl_nnconv(X, W, B, dilate=3), ValueError,
     r"extent 7 x 7 .*dilate \[3, 3\].*larger than the padded"),
    ("conv-stride-zero", lambda: vl_nnconv(X, W, B, stride=0), ValueError,
     r"vl_nnconv: Stride must be >= 1"),
    ("conv-stride-fraction", lambda: vl_nnconv(X, W, B, stride=1.5), ValueError,
     r"vl_nnconv: Stride must be integral"),
    ("conv-pad-negative", lambda: vl_nnconv(X, W, B, pad=[0, 0, -1, 0]), ValueError,
     r"vl_nnconv: Pad must be >= 0"),
    ("conv-pad-three", lambda: vl_nnconv(X, W, B, pad=[1, 1, 1]), ValueError,
     r"vl_nnconv: Pad must have 1 or 4 elements, got 3"),
    ("conv-stride-string", lambda: vl_nnconv(X, W, B, stride="2"), ValueError,
     r"vl_nnconv: Stride must be numeric"),
    ("conv-dilate-nan", lambda: vl_nnconv(X, W, B, dilate=np.nan), ValueError,
     r"vl_nnconv: Dilate must be finite"),
    ("conv-bias-count", lambda: vl_nnconv(X, W, B[:3]), ValueError,
     r"b has 3 elements \(shape \(3,\)\) but the number of filters K is 4"),
    ("conv-no-filter-bias-count", lambda: vl_nnconv(X, None, B), ValueError,
     r"b has 4 elements .*number of data channels C is 3"),
    ("conv-no-filter-dilate", lambda: vl_nnconv(X, None, None, dilate=2), ValueError,
     r"Dilate \[2, 2\] needs filters"),
    ("conv-dzdy-shape", lambda: vl_nnconv(X, W, B, DY_CONV[:2], pad=1, stride=2), ValueError,
     r"dzdy has shape \(2, 3, 4, 2\) but the forward output has shape \(3, 3, 4, 2\)"),
    ("conv-int-data", lambda: vl_nnconv(X.astype(np.int32), W, B), ValueError,
     r"x must be float32 or float64, got int32"),
    ("conv-complex-filters", lambda: vl_nnconv(X, W.astype(np.complex64), B), ValueError,
     r"w must be float32 or float64, got complex64"),
    ("conv-bool-bias", lambda: vl_nnconv(X, W, np.ones(4, bool)), ValueError,
     r"b must be float32 or float64, got bool"),
    ("conv-empty-x", lambda: vl_nnconv(np.zeros((0, 3, 3, 1), np.float32), W, B), ValueError,
     r"x must not be empty"),
    ("conv-mixed-dtypes", lambda: vl_nnconv(X, W, B.astype(np.float64)), ValueError,
     r"must not mix float32 and float64 \(x is float32, w is float32, b is float64\)"),
    ("conv-cudnn-flag-value", lambda: vl_nnconv(X, W, B, "NoCudnn", True), TypeError,
     r"expected an option name, got bool True"),
    ("convt-depth-mismatch", lambda: vl_nnconvt(X, _x((2, 2, 2, 4)), None), ValueError,
     r"fourth dimension of w \(2, 2, 2, 4\) must equal the data depth 3"),
    ("convt-groups-divide", lambda: vl_nnconvt(X, _x((2, 2, 2, 3)), None, numGroups=2),
     ValueError, r"NumGroups 2 does not divide"),
    ("convt-groups-zero", lambda: vl_nnconvt(X, _x((2, 2, 2, 3)), None, numGroups=0),
     ValueError, r"NumGroups must be >= 1"),
    ("convt-groups-fraction", lambda: vl_nnconvt(X, _x((2, 2, 2, 3)), None, numGroups=1.5),
     ValueError, r"NumGroups must be integral"),
    ("convt-empty-output", lambda: vl_nnconvt(_x((1, 1, 3, 1)), _x((2, 2, 2, 3)), None,
                                              crop=[1, 1, 0, 0]), ValueError,
     r"output would be empty \(0 x 2\)"),
    ("convt-upsample-zero", lambda: vl_nnconvt(X, _x((2, 2, 2, 3)), None, upsample=0),
     ValueError, r"vl_nnconvt: Upsample must be >= 1"),
    ("convt-crop-negative", lambda: vl_nnconvt(X, _x((2, 2, 2, 3)), None, crop=-1),
     ValueError, r"vl_nnconvt: Crop must be >= 0"),
    ("convt-bias-count", lambda: vl_nnconvt(X, _x((2, 2, 2, 3)), B), ValueError,
     r"b has 4 elements .*K \* NumGroups is 2"),
    ("convt-empty-w", lambda: vl_nnconvt(X, None, None), ValueError, r"w must not be empty"),
    ("convt-unknown-option", lambda: vl_nnconvt(X, _x((2, 2, 2, 3)), None, dilate=2),
     TypeError, r"unknown option 'dilate'.*Crop.*NumGroups.*Upsample"),
    ("convt-dzdy-shape", lambda: vl_nnconvt(X, _x((2, 2, 2, 3)), None, _x((6, 5, 2, 2))),
     ValueError, r"dzdy has shape \(6, 5, 2, 2\) but the forward output has shape "
                 r"\(7, 6, 2, 2\)"),
    ("pool-pad-not-smaller", lambda: vl_nnpool(X, 2, pad=[0, 2, 0, 0]), ValueError,
     r"every Pad must be smaller than the pool size .*Pad \[0, 2, 0, 0\] for pool 2 x 2"),
    ("pool-pad-width", lambda: vl_nnpool(X, [3, 1], pad=[1, 1, 1, 0]), ValueError,
     r"smaller than the pool size"),
    ("pool-size-three", lambda: vl_nnpool(X, [2, 2, 2]), ValueError,
     r"vl_nnpool: pool must have 1 or 2 elements, got 3"),
    ("pool-size-zero", lambda: vl_nnpool(X, [2, 0]), ValueError, r"pool must be >= 1"),
    ("pool-size-fraction", lambda: vl_nnpool(X, 2.5), ValueError, r"pool must be integral"),
    ("pool-size-string", lambda: vl_nnpool(X, "method", "avg"), TypeError,
     r"expected at least 2 arguments \(x, pool\)"),
    ("pool-size-none", lambda: vl_nnpool(X, None), TypeError, r"expected at least 2 arguments"),
    ("pool-too-large", lambda: vl_nnpool(X, [7, 2]), ValueError,
     r"pool extent 7 x 2 .*larger than the padded x 6 x 5"),
    ("pool-method", lambda: vl_nnpool(X, 2, method="median"), ValueError,
     r"Method must be 'max' or 'avg', got 'median'"),
    ("pool-stride-zero", lambda: vl_nnpool(X, 2, "stride", [1, 0]), ValueError,
     r"vl_nnpool: Stride must be >= 1"),
    ("pool-dzdy-shape", lambda: vl_nnpool(X, 2, DY_POOL), ValueError,
     r"dzdy has shape \(3, 3, 3, 2\) but the forward output has shape \(5, 4, 3, 2\)"),
    ("pool-unknown-option", lambda: vl_nnpool(X, 2, leak=0.1), TypeError,
     r"unknown option 'leak'.*Method.*Pad.*Stride"),
    ("pool-int-data", lambda: vl_nnpool(X.astype(np.int16), 2), ValueError,
     r"x must be float32 or float64, got int16"),
    ("pool-mixed", lambda: vl_nnpool(X, 2, _x((5, 4, 3, 2), dtype=np.float64)), ValueError,
     r"must not mix float32 and float64 \(x is float32, dzdy is float64\)"),
    ("relu-dzdy-shape", lambda: vl_nnrelu(X, X[:, :, :2]), ValueError,
     r"dzdy has shape \(6, 5, 2, 2\) but x has shape \(6, 5, 3, 2\)"),
    ("relu-leak-string", lambda: vl_nnrelu(X, None, "leak", "0.1"), ValueError,
     r"vl_nnrelu: Leak must be numeric"),
    ("relu-leak-vector", lambda: vl_nnrelu(X, leak=[0.1, 0.2]), ValueError,
     r"Leak must have 1 element"),
    ("relu-unknown-option", lambda: vl_nnrelu(X, None, "slope", 0.1), TypeError,
     r"unknown option 'slope'; valid options: Leak"),
    ("relu-no-gpu-flags", lambda: vl_nnrelu(X, "NoCudnn"), TypeError,
     r"unknown option 'NoCudnn'"),
    ("relu-complex", lambda: vl_nnrelu(X.astype(np.complex128)), ValueError,
     r"x must be float32 or float64, got complex128"),
    ("relu-empty", lambda: vl_nnrelu(np.zeros((2, 0))), ValueError, r"x must not be empty"),
    ("relu-mixed", lambda: vl_nnrelu(X64, X), ValueError,
     r"must not mix float32 and float64 \(x is float64, dzdy is float32\)"),
    ("sml-label-too-large", lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), [1, 4]), ValueError,
     r"labels must be integers in 1\.\.3 .*got 4"),
    ("sml-label-fraction", lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), [1, 1.5]), ValueError,
     r"labels must be integers in 1\.\.3.*got 1\.5"),
    ("sml-label-nan", lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), [1, np.nan]), ValueError,
     r"labels must be integers"),
    ("sml-label-shape", lambda: vl_nnsoftmaxloss(_x((2, 2, 3, 2)), np.ones((2, 3, 1, 2))),
     ValueError, r"labels c of shape \(2, 3, 1, 2\) do not fit x of shape \(2, 2, 3, 2\)"),
    ("sml-label-count", lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), [1, 2, 3]), ValueError,
     r"do not fit x"),
    ("sml-label-empty", lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), np.zeros(0)), ValueError,
     r"labels c must not be empty"),
    ("sml-label-none", lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), None), ValueError,
     r"labels c must not be empty"),
    ("sml-label-complex", lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), np.array([1, 2j])),
     ValueError, r"labels c must be real numeric"),
    ("sml-label-string", lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), np.array(["a", "b"])),
     ValueError, r"labels c must be real numeric"),
    ("sml-dzdy-shape", lambda: vl_nnsoftmaxloss(_x((2, 2, 3, 2)), [1, 2], np.ones((3, 2))),
     ValueError, r"dzdy of shape \(3, 2\) does not broadcast to 2 x 2 x 1 x 2"),
    ("sml-dzdy-complex", lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), [1, 2], 1j), ValueError,
     r"dzdy must be real"),
    ("sml-int-data", lambda: vl_nnsoftmaxloss(np.ones((1, 1, 3, 2), np.int64), [1, 2]),
     ValueError, r"x must be float32 or float64, got int64"),
    ("sml-empty-x", lambda: vl_nnsoftmaxloss(np.zeros((1, 1, 0, 2)), [1, 2]), ValueError,
     r"x must not be empty"),
    ("sml-unknown-option", lambda: vl_nnsoftmaxloss(_x((1, 1, 3, 2)), [1, 2], None,
                                                    "normalize", True), TypeError,
     r"unknown option 'normalize'; valid options: normalise"),
]


@pytest.mark.parametrize("call, exc, match", [e[1:] for e in ERROR_INPUTS],
                         ids=[e[0] for e in ERROR_INPUTS])
def test_error_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_error_messages_start_with_the_function_name():
    for name, call, exc, _ in ERROR_INPUTS:
        with pytest.raises(exc) as info:
            call()
        block = "vl_nn" + {"sml": "softmaxloss"}.get(name.split("-")[0], name.split("-")[0])
        assert str(info.value).startswith(block + ":"), (name, str(info.value))
