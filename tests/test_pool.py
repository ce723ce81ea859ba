"""Tests of vl_nnpool (MATCONVNET_SEMANTICS.md section 3).

The oracle is a plain reference written below with explicit loops over the
output pixels: each window is clipped to the image, max pooling ignores the
padding and scans the window in column-major order (columns outer, rows
inner) keeping the first strictly greater value, average pooling divides by
the number of in-image pixels.  Only the channel and image axes are
vectorised.
"""

import itertools

import numpy as np
import pytest

from _checks import check_derivative, rng
from vlnn import vl_nnconv, vl_nnpool

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # hypothesis is a test extra; only the property test needs it
    given = None


# ---------------------------------------------------------------------------
# the loop reference

def _as4(x):
    s = x.shape + (1,) * (4 - x.ndim)
    if len(s) > 4:
        s = s[:3] + (int(np.prod(s[3:])),)
    return x.reshape(s, order="F")


def _geometry(shape4, ph, pw, stride, pad):
    h, w = shape4[:2]
    sy, sx = stride
    pt, pb, pl, pr = pad
    ho = (h + pt + pb - ph) // sy + 1
    wo = (w + pl + pr - pw) // sx + 1
    for i in range(ho):
        r0 = i * sy - pt
        rows = range(max(r0, 0), min(r0 + ph, h))
        for j in range(wo):
            s0 = j * sx - pl
            cols = range(max(s0, 0), min(s0 + pw, w))
            yield i, j, rows, cols


def _out_shape(shape4, ph, pw, stride, pad):
    h, w, c, n = shape4
    return ((h + pad[0] + pad[1] - ph) // stride[0] + 1,
            (w + pad[2] + pad[3] - pw) // stride[1] + 1, c, n)


def ref_pool(x, ph, pw, stride=(1, 1), pad=(0, 0, 0, 0), method="max"):
    """Forward pooling, one output pixel at a time (float64)."""
    x4 = _as4(np.asarray(x, np.float64))
    y = np.empty(_out_shape(x4.shape, ph, pw, stride, pad))
    for i, j, rows, cols in _geometry(x4.shape, ph, pw, stride, pad):
        if method == "max":
            best = np.full(x4.shape[2:], -np.inf)
            for s in cols:            # columns outer
                for r in rows:        # rows inner
                    v = x4[r, s]
                    best = np.where(v > best, v, best)   # NaN > best is False
            y[i, j] = best
        else:
            total = np.zeros(x4.shape[2:])
            for s in cols:
                for r in rows:
                    total = total + x4[r, s]
            y[i, j] = total / (len(rows) * len(cols))
    return y


def ref_pool_backward(x, dy, ph, pw, stride=(1, 1), pad=(0, 0, 0, 0), method="max"):
    """Backward pooling: the routing rule of section 3, accumulated over
    overlapping windows (float64, shaped like ``x``)."""
    x = np.asarray(x, np.float64)
    x4 = _as4(x)
    dy4 = _as4(np.asarray(dy, np.float64))
    dx = np.zeros(x4.shape)
    for i, j, rows, cols in _geometry(x4.shape, ph, pw, stride, pad):
        if method == "max":
            best = np.full(x4.shape[2:], -np.inf)
            win_r = np.full(x4.shape[2:], -1)
            win_c = np.full(x4.shape[2:], -1)
            for s in cols:
                for r in rows:
                    better = x4[r, s] > best
                    best = np.where(better, x4[r, s], best)
                    win_r = np.where(better, r, win_r)
                    win_c = np.where(better, s, win_c)
            for c in range(x4.shape[2]):
                for n in range(x4.shape[3]):
                    if win_r[c, n] >= 0:
                        dx[win_r[c, n], win_c[c, n], c, n] += dy4[i, j, c, n]
        else:
            share = dy4[i, j] / (len(rows) * len(cols))
            for s in cols:
                for r in rows:
                    dx[r, s] += share
    return dx.reshape(x.shape, order="F")


def distinct_data(shape, seed=0, dtype=np.float64):
    """All values distinct (MatConvNet's nnpool test: a random permutation)."""
    size = int(np.prod(shape))
    return (rng(seed).permutation(size).reshape(shape) / 10.0 - size / 20.0).astype(dtype)


def tied_data(shape, seed=0, dtype=np.float64):
    """Few distinct values, so most windows hold tied maxima."""
    return rng(seed).integers(0, 3, size=shape).astype(dtype)


def valid_config(h, w, ph, pw, pad):
    pt, pb, pl, pr = pad
    return (pt < ph and pb < ph and pl < pw and pr < pw
            and h + pt + pb >= ph and w + pl + pr >= pw)


# ---------------------------------------------------------------------------
# forward and backward against the loop reference

def _grid():
    pads = [(0, 0, 0, 0), (1, 1, 1, 1), (2, 2, 2, 2), (1, 0, 2, 1), (0, 2, 0, 1), (2, 1, 0, 2)]
    strides = [(1, 1), (2, 2), (1, 3), (4, 2), (3, 4)]
    for ph, pw in itertools.product((1, 2, 3), (1, 2, 3)):
        for stride in strides:
            for pad in pads:
                if valid_config(7, 6, ph, pw, pad):
                    yield (ph, pw), stride, pad


GRID = list(_grid())


@pytest.mark.parametrize("method", ["max", "avg"])
@pytest.mark.parametrize("pool,stride,pad", GRID)
def test_forward_and_backward_match_loop_reference(method, pool, stride, pad):
    ph, pw = pool
    x = distinct_data((7, 6, 2, 2), seed=ph * 10 + pw)
    y = vl_nnpool(x, [ph, pw], stride=list(stride), pad=list(pad), method=method)
    expected = ref_pool(x, ph, pw, stride, pad, method)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-13, atol=1e-13)

    dy = rng(3).standard_normal(expected.shape)
    dx = vl_nnpool(x, [ph, pw], dy, stride=list(stride), pad=list(pad), method=method)
    assert dx.shape == x.shape
    np.testing.assert_allclose(
        dx, ref_pool_backward(x, dy, ph, pw, stride, pad, method), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("pool,stride,pad", [
    ((2, 2), (1, 1), (0, 0, 0, 0)),
    ((3, 3), (1, 1), (1, 1, 1, 1)),
    ((3, 2), (2, 1), (2, 0, 1, 0)),
    ((2, 3), (1, 2), (0, 1, 2, 1)),
    ((3, 3), (2, 2), (0, 0, 0, 0)),
])
def test_max_backward_routes_ties_like_reference(pool, stride, pad):
    ph, pw = pool
    x = tied_data((8, 7, 3, 2), seed=ph + 3 * pw)
    y = vl_nnpool(x, pool, stride=stride, pad=pad)
    dy = rng(5).standard_normal(y.shape)
    dx = vl_nnpool(x, pool, dy, stride=stride, pad=pad)
    np.testing.assert_allclose(dx, ref_pool_backward(x, dy, ph, pw, stride, pad, "max"),
                               rtol=1e-13, atol=1e-13)


def test_max_tie_goes_to_smallest_column_then_row():
    # rows x columns; the two 5s tie: column 0 is scanned first
    x = np.array([[0.0, 5.0], [5.0, 0.0]])
    assert np.array_equal(vl_nnpool(x, 2, np.array([[1.0]])), [[0, 0], [1, 0]])
    # same column: the smaller row wins
    x = np.array([[5.0, 5.0], [5.0, 5.0]])
    assert np.array_equal(vl_nnpool(x, 2, np.array([[1.0]])), [[1, 0], [0, 0]])
    # a tie in one row, different columns: the left one wins
    x = np.array([[0.0, 0.0], [7.0, 7.0]])
    assert np.array_equal(vl_nnpool(x, 2, np.array([[1.0]])), [[0, 0], [1, 0]])


def test_overlapping_max_windows_accumulate():
    # a 3x3 image whose centre is the maximum of all four 2x2 windows
    x = np.zeros((3, 3))
    x[1, 1] = 1.0
    dy = np.array([[1.0, 2.0], [3.0, 4.0]])
    dx = vl_nnpool(x, 2, dy)
    assert dx[1, 1] == 10.0
    assert np.count_nonzero(dx) == 1


def test_overlapping_avg_windows_accumulate():
    x = np.zeros((3, 3))
    dx = vl_nnpool(x, 2, np.ones((2, 2)), method="avg")
    # the centre lies in four windows, edges in two, corners in one; each gives 1/4
    np.testing.assert_allclose(dx, np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4.0)


def test_avg_divides_by_in_image_pixels():
    x = np.ones((4, 5, 2, 1))
    y = vl_nnpool(x, 3, pad=[2, 1, 0, 2], method="avg", stride=[1, 2])
    # windows clipped to the image average ones to exactly one (padding is no zero)
    np.testing.assert_array_equal(y, np.ones_like(y))


def test_max_ignores_padding():
    x = -1.0 - rng(2).random((5, 4, 2, 2))     # all negative: a zero pad would win
    y = vl_nnpool(x, 3, pad=2 - np.array([0, 0, 1, 1]), stride=2)
    assert np.all(y < 0)
    np.testing.assert_allclose(y, ref_pool(x, 3, 3, (2, 2), (2, 2, 1, 1), "max"), rtol=0, atol=0)


# ---------------------------------------------------------------------------
# numerical derivatives and the adjoint identity

DERIV_CASES = [
    ((2, 2), (1, 1), (0, 0, 0, 0)),
    ((3, 2), (2, 1), (1, 1, 1, 0)),
    ((3, 4), (2, 1), (0, 0, 2, 1)),      # MatConvNet's asym_pad1
    ((3, 4), (1, 1), (2, 1, 2, 1)),      # asym_pad2
    ((3, 3), (4, 3), (2, 2, 2, 2)),
    ((1, 3), (3, 2), (0, 0, 1, 2)),
]


@pytest.mark.parametrize("method", ["avg", "max"])
@pytest.mark.parametrize("pool,stride,pad", DERIV_CASES)
def test_backward_matches_numerical_derivative(method, pool, stride, pad):
    # MatConvNet's data: 15 x 14 x 3 x 2, a random permutation (distinct values,
    # so max pooling is differentiable there)
    x = distinct_data((15, 14, 3, 2), seed=7)

    def f(z):
        return vl_nnpool(z, pool, stride=stride, pad=pad, method=method)

    proj = rng(11).standard_normal(f(x).shape)
    dx = vl_nnpool(x, pool, proj, stride=stride, pad=pad, method=method)
    check_derivative(f, x, dx, proj, eps=1e-4, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("method", ["avg", "max"])
@pytest.mark.parametrize("pool,stride,pad", DERIV_CASES)
def test_adjoint_identity(method, pool, stride, pad):
    # avg pooling is linear: <P x, p> = <x, P^T p>; max pooling picks one
    # input per output, so the same identity holds for its routing
    x = tied_data((9, 8, 2, 3), seed=4) if method == "max" else rng(4).standard_normal((9, 8, 2, 3))
    y = vl_nnpool(x, pool, stride=stride, pad=pad, method=method)
    p = rng(6).standard_normal(y.shape)
    dx = vl_nnpool(x, pool, p, stride=stride, pad=pad, method=method)
    np.testing.assert_allclose(np.vdot(y, p), np.vdot(x, dx), rtol=1e-12)


# ---------------------------------------------------------------------------
# avg pooling == grouped convolution with a constant filter (MatConvNet 'basic')

@pytest.mark.parametrize("ph,pw", list(itertools.product((1, 2), (1, 2, 3))))
@pytest.mark.parametrize("stride", [(1, 1), (2, 3)])
def test_avg_equals_grouped_conv_with_constant_filter(ph, pw, stride):
    x = distinct_data((15, 14, 3, 2), seed=1)
    c = x.shape[2]
    filt = np.ones((ph, pw, 1, c)) / (ph * pw)
    y_conv = vl_nnconv(x, filt, np.zeros((1, c)), stride=stride)
    y_pool = vl_nnpool(x, [ph, pw], method="avg", stride=stride)
    assert y_pool.shape == y_conv.shape
    np.testing.assert_allclose(y_pool, y_conv, rtol=1e-12, atol=1e-12)
    # and so are their data derivatives
    dy = rng(2).standard_normal(y_pool.shape)
    dx_conv = vl_nnconv(x, filt, np.zeros((1, c)), dy, stride=stride)[0]
    dx_pool = vl_nnpool(x, [ph, pw], dy, method="avg", stride=stride)
    np.testing.assert_allclose(dx_pool, dx_conv, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# NaN and Inf

def test_nan_never_wins_a_max_window():
    x = np.array([[np.nan, 1.0], [2.0, np.nan]])
    assert vl_nnpool(x, 2)[0, 0, 0, 0] == 2.0
    dx = vl_nnpool(x, 2, np.array([[3.0]]))
    np.testing.assert_array_equal(dx, [[0, 0], [3, 0]])


def test_nan_data_against_reference():
    x = rng(8).standard_normal((7, 6, 2, 2))
    x[rng(9).random(x.shape) < 0.3] = np.nan
    for pad in [(0, 0, 0, 0), (1, 2, 2, 0)]:
        y = vl_nnpool(x, 3, stride=[1, 2], pad=pad)
        assert not np.isnan(y).any()
        np.testing.assert_array_equal(y, ref_pool(x, 3, 3, (1, 2), pad, "max"))
        dy = rng(10).standard_normal(y.shape)
        dx = vl_nnpool(x, 3, dy, stride=[1, 2], pad=pad)
        np.testing.assert_allclose(dx, ref_pool_backward(x, dy, 3, 3, (1, 2), pad, "max"),
                                   rtol=1e-13, atol=1e-13)
        assert np.all(dx[np.isnan(x)] == 0)


def test_all_nan_window_gives_minus_inf_and_no_gradient():
    x = np.ones((4, 4))
    x[:2, :2] = np.nan
    y = vl_nnpool(x, 2, stride=2)
    assert y[0, 0, 0, 0] == -np.inf
    assert np.all(y.ravel()[1:] == 1.0)
    dx = vl_nnpool(x, 2, np.ones(y.shape), stride=2)
    assert np.all(dx[:2, :2] == 0)
    assert dx.sum() == 3.0


def test_minus_inf_data():
    x = np.full((2, 4), -np.inf)
    x[1, 3] = 3.0
    x[0, 2] = np.nan
    y = vl_nnpool(x, 2, stride=2)
    # left window all -inf, right window {nan, -inf, -inf, 3}
    np.testing.assert_array_equal(y[:, :, 0, 0], [[-np.inf, 3.0]])
    dx = vl_nnpool(x, 2, np.array([[5.0, 7.0]]), stride=2)
    expected = np.zeros((2, 4))
    expected[1, 3] = 7.0
    np.testing.assert_array_equal(dx, expected)


def test_avg_propagates_nan_and_inf():
    x = np.zeros((4, 4))
    x[0, 0] = np.nan
    x[3, 3] = np.inf
    y = vl_nnpool(x, 2, stride=2, method="avg")[:, :, 0, 0]
    assert np.isnan(y[0, 0]) and y[1, 1] == np.inf
    assert y[0, 1] == 0 and y[1, 0] == 0


# ---------------------------------------------------------------------------
# calling forms and options

def test_matlab_style_pairs_equal_keywords():
    x = rng(0).standard_normal((9, 8, 3, 2))
    kw = vl_nnpool(x, 3, method="avg", stride=2)
    np.testing.assert_array_equal(vl_nnpool(x, 3, "method", "avg", "stride", 2), kw)
    np.testing.assert_array_equal(vl_nnpool(x, 3, "Method", "AVG", "Stride", [2, 2]), kw)
    dy = rng(1).standard_normal(kw.shape)
    np.testing.assert_array_equal(vl_nnpool(x, 3, dy, "method", "avg", "stride", 2),
                                  vl_nnpool(x, 3, dy, method="avg", stride=2))
    np.testing.assert_array_equal(vl_nnpool(x, 3, dzdy=dy, method="avg", stride=2),
                                  vl_nnpool(x, 3, dy, method="avg", stride=2))


def test_cudnn_flags_accepted():
    x = rng(0).standard_normal((6, 5, 2, 1))
    ref = vl_nnpool(x, 2, pad=1)
    for args, kw in [(("NoCudnn",), {}), (("Cudnn",), {}), (("Verbose",), {}),
                     (("CudnnWorkspaceLimit", 1024), {}), ((), {"noCudnn": True}),
                     ((), {"cudnn": True, "cudnn_workspace_limit": 2 ** 20})]:
        np.testing.assert_array_equal(vl_nnpool(x, 2, *args, pad=1, **kw), ref)
    np.testing.assert_array_equal(vl_nnpool(x, 2, "NoCudnn", "pad", 1), ref)


def test_option_value_forms():
    x = rng(0).standard_normal((9, 8, 2, 1))
    ref = vl_nnpool(x, [3, 2], stride=[2, 1], pad=[1, 0, 1, 1])
    for pool in ([3, 2], (3, 2), np.array([[3, 2]]), np.array([3.0, 2.0])):
        np.testing.assert_array_equal(
            vl_nnpool(x, pool, stride=np.array([[2.0, 1.0]]), pad=np.array([[1, 0, 1, 1]])), ref)
    square = vl_nnpool(x, 2)
    for pool in (2.0, np.float64(2), np.array([[2]]), [2, 2]):
        np.testing.assert_array_equal(vl_nnpool(x, pool), square)
    with pytest.raises(ValueError, match="pool must be integral"):
        vl_nnpool(x, 2.5)


def test_empty_dzdy_means_forward():
    x = rng(0).standard_normal((5, 5, 2, 1))
    np.testing.assert_array_equal(vl_nnpool(x, 2, None), vl_nnpool(x, 2))
    np.testing.assert_array_equal(vl_nnpool(x, 2, np.zeros((0,))), vl_nnpool(x, 2))


# ---------------------------------------------------------------------------
# errors (section 3)

X = np.zeros((4, 5, 3, 2))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: vl_nnpool(X, []), ValueError, r"pool must have 1 or 2 elements, got 0"),
    (lambda: vl_nnpool(X, [2, 2, 2]), ValueError, r"pool must have 1 or 2 elements, got 3"),
    (lambda: vl_nnpool(X, 0), ValueError, r"pool must be >= 1"),
    (lambda: vl_nnpool(X, [2, 0]), ValueError, r"pool must be >= 1"),
    (lambda: vl_nnpool(X, 2, stride=0), ValueError, r"Stride must be >= 1"),
    (lambda: vl_nnpool(X, 2, stride=[1, -1]), ValueError, r"Stride must be >= 1"),
    (lambda: vl_nnpool(X, 2, pad=-1), ValueError, r"Pad must be >= 0"),
    (lambda: vl_nnpool(X, 3, pad=[0, 0, -1, 0]), ValueError, r"Pad must be >= 0"),
    (lambda: vl_nnpool(X, 2, pad=[2, 0, 0, 0]), ValueError,
     r"Pad must be smaller than the pool size.*\[2, 0, 0, 0\].*2 x 2"),
    (lambda: vl_nnpool(X, 2, pad=[0, 2, 0, 0]), ValueError, r"Pad must be smaller than the pool"),
    (lambda: vl_nnpool(X, [3, 2], pad=[0, 0, 2, 0]), ValueError,
     r"Pad must be smaller than the pool size.*3 x 2"),
    (lambda: vl_nnpool(X, [3, 2], pad=[0, 0, 0, 2]), ValueError, r"Pad must be smaller"),
    (lambda: vl_nnpool(X, [2, 3], pad=[2, 0, 0, 0]), ValueError, r"Pad must be smaller"),
    (lambda: vl_nnpool(X, 1, pad=1), ValueError, r"Pad must be smaller"),
    (lambda: vl_nnpool(X, [5, 1]), ValueError, r"pool extent 5 x 1.*larger than the padded x 4 x 5"),
    (lambda: vl_nnpool(X, [1, 6]), ValueError, r"larger than the padded x 4 x 5"),
    (lambda: vl_nnpool(X, [6, 6], pad=[1, 0, 0, 0]), ValueError, r"larger than the padded x 5 x 5"),
    (lambda: vl_nnpool(X, 2, method="min"), ValueError, r"Method must be 'max' or 'avg'"),
    (lambda: vl_nnpool(X, 2, "method", "median"), ValueError, r"Method must be 'max' or 'avg'"),
    (lambda: vl_nnpool(X, 2, np.zeros((2, 2, 3, 2))), ValueError,
     r"dzdy has shape \(2, 2, 3, 2\) but the forward output has shape \(3, 4, 3, 2\)"),
    (lambda: vl_nnpool(X, 2, np.zeros((3, 4, 3))), ValueError, r"dzdy has shape \(3, 4, 3\)"),
    (lambda: vl_nnpool(X, 2, np.zeros((3, 4, 3, 2), np.float32)), ValueError,
     r"must not mix float32 and float64"),
    (lambda: vl_nnpool(X.astype(np.float32), 2, np.zeros((3, 4, 3, 2))), ValueError,
     r"must not mix float32 and float64"),
    (lambda: vl_nnpool(X.astype(np.int64), 2), ValueError, r"x must be float32 or float64, got int64"),
    (lambda: vl_nnpool(X.astype(np.int32), 2), ValueError, r"x must be float32 or float64"),
    (lambda: vl_nnpool(X.astype(np.complex128), 2), ValueError, r"x must be float32 or float64"),
    (lambda: vl_nnpool(X, 2, np.zeros((3, 4, 3, 2), np.int32)), ValueError,
     r"dzdy must be float32 or float64"),
    (lambda: vl_nnpool(X, 2, foo=1), TypeError,
     r"unknown option 'foo'; valid options: .*Method.*Pad.*Stride"),
    (lambda: vl_nnpool(X, 2, "Dilate", 2), TypeError, r"unknown option 'Dilate'.*Stride"),
    (lambda: vl_nnpool(X, 2, "stride"), TypeError, r"option 'stride' needs a value"),
    (lambda: vl_nnpool(X, "stride"), TypeError, r"at least 2 arguments"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------
# generic: dtypes, memory order, inputs untouched, shapes

@pytest.mark.parametrize("method", ["max", "avg"])
def test_float32_matches_float64(method):
    x64 = distinct_data((9, 8, 3, 2), seed=2)
    x32 = x64.astype(np.float32)
    opts = dict(stride=[2, 1], pad=[1, 0, 2, 1], method=method)
    y32 = vl_nnpool(x32, [3, 3], **opts)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, vl_nnpool(x64, [3, 3], **opts), rtol=1e-6, atol=1e-5)
    dy = rng(1).standard_normal(y32.shape)
    dx32 = vl_nnpool(x32, [3, 3], dy.astype(np.float32), **opts)
    assert dx32.dtype == np.float32
    np.testing.assert_allclose(dx32, vl_nnpool(x64, [3, 3], dy, **opts), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["max", "avg"])
def test_memory_order_and_inputs_untouched(dtype, method):
    x = distinct_data((9, 8, 3, 2), seed=5, dtype=dtype)
    opts = dict(stride=[1, 2], pad=[2, 1, 0, 1], method=method)
    y = vl_nnpool(x, 3, **opts)
    dy = rng(2).standard_normal(y.shape).astype(dtype)
    dx = vl_nnpool(x, 3, dy, **opts)
    xf, dyf = np.asfortranarray(x), np.asfortranarray(dy)
    x_copy, dy_copy = x.copy(), dy.copy()
    np.testing.assert_array_equal(vl_nnpool(xf, 3, **opts), y)
    np.testing.assert_array_equal(vl_nnpool(xf, 3, dyf, **opts), dx)
    np.testing.assert_array_equal(vl_nnpool(x, 3, dyf, **opts), dx)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(xf, x_copy)
    np.testing.assert_array_equal(dy, dy_copy)
    np.testing.assert_array_equal(dyf, dy_copy)
    # a non-contiguous view works too
    xv = np.repeat(x, 2, axis=1)[:, ::2]
    np.testing.assert_array_equal(vl_nnpool(xv, 3, **opts), y)


@pytest.mark.parametrize("shape", [(7, 6), (7, 6, 3), (7, 6, 2, 3, 2)])
@pytest.mark.parametrize("method", ["max", "avg"])
def test_derivative_shape_equals_input_shape(shape, method):
    x = distinct_data(shape, seed=3)
    y = vl_nnpool(x, 2, stride=2, pad=[1, 0, 0, 1], method=method)
    assert y.ndim == 4
    # missing dims are 1 and dims beyond the 4th fold into the 4th
    np.testing.assert_allclose(y, ref_pool(x, 2, 2, (2, 2), (1, 0, 0, 1), method), rtol=1e-13)
    dy = rng(1).standard_normal(y.shape)
    dx = vl_nnpool(x, 2, dy, stride=2, pad=[1, 0, 0, 1], method=method)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, ref_pool_backward(x, dy, 2, 2, (2, 2), (1, 0, 0, 1), method),
                               rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------
# property test

if given is not None:
    @st.composite
    def pool_cases(draw):
        """Shapes and options; pads are mostly below the pool size so that
        most examples are valid, with some invalid ones mixed in."""
        h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
        ph, pw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        if draw(st.integers(0, 3)) > 0:
            pad = tuple(draw(st.integers(0, p - 1)) for p in (ph, ph, pw, pw))
        else:
            pad = tuple(draw(st.integers(0, 3)) for _ in range(4))
        return (h, w, draw(st.integers(1, 2)), draw(st.integers(1, 2))), (ph, pw), stride, pad

    @settings(max_examples=60, deadline=None)
    @given(case=pool_cases(), method=st.sampled_from(["max", "avg"]),
           ties=st.booleans(), seed=st.integers(0, 2 ** 16))
    def test_property_matches_reference_or_raises(case, method, ties, seed):
        shape, (ph, pw), (sy, sx), pad = case
        x = tied_data(shape, seed) if ties else rng(seed).standard_normal(shape)
        opts = dict(stride=[sy, sx], pad=list(pad), method=method)
        if not valid_config(shape[0], shape[1], ph, pw, pad):
            with pytest.raises(ValueError, match="Pad must be smaller|larger than the padded"):
                vl_nnpool(x, [ph, pw], **opts)
            return
        y = vl_nnpool(x, [ph, pw], **opts)
        np.testing.assert_allclose(y, ref_pool(x, ph, pw, (sy, sx), pad, method),
                                   rtol=1e-12, atol=1e-12)
        dy = rng(seed + 1).standard_normal(y.shape)
        dx = vl_nnpool(x, [ph, pw], dy, **opts)
        assert dx.shape == x.shape
        np.testing.assert_allclose(dx, ref_pool_backward(x, dy, ph, pw, (sy, sx), pad, method),
                                   rtol=1e-12, atol=1e-12)
else:  # pragma: no cover
    def test_property_matches_reference_or_raises():
        pytest.importorskip("hypothesis")
