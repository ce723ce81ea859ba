"""Tests of vl_nnsigmoid and vl_nnsoftmax (MATCONVNET_SEMANTICS.md sections
5, 6 and 34).

The oracles are plain loops: ``1 / (1 + exp(-x))`` per element with
Python's ``math``, and the softmax of every location's channel vector with
the maximum subtracted; their derivatives are section 5's and 6's formulas
in the same loops, and every backward is also checked against central
differences in float64.
"""

import math

import numpy as np
import pytest

from _checks import check_derivative, check_gradient_elementwise, rng
from vlnn import vl_nnsigmoid, vl_nnsoftmax


# ---------------------------------------------------------------------------
# the loop references

def ref_sigmoid(x):
    x = np.asarray(x, np.float64)
    y = np.empty_like(x)
    for idx, v in np.ndenumerate(x):
        # 1 / (1 + exp(-v)), written so that math.exp does not overflow
        y[idx] = 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))
    return y


def ref_sigmoid_backward(x, dy):
    y = ref_sigmoid(x)
    return np.asarray(dy, np.float64) * y * (1 - y)


def _as4(a):
    s = a.shape + (1,) * (4 - a.ndim)
    if len(s) > 4:
        s = s[:3] + (int(np.prod(s[3:])),)
    return a.reshape(s, order="F")


def ref_softmax(x):
    x = np.asarray(x, np.float64)
    x4 = _as4(x)
    y = np.empty_like(x4)
    h, w, d, n = x4.shape
    for i in range(h):
        for j in range(w):
            for k in range(n):
                v = x4[i, j, :, k]
                m = max(v)
                e = [math.exp(s - m) for s in v]
                y[i, j, :, k] = [a / sum(e) for a in e]
    return y.reshape(x.shape, order="F")


def ref_softmax_backward(x, dy):
    x = np.asarray(x, np.float64)
    y4 = _as4(ref_softmax(x))
    dy4 = _as4(np.asarray(dy, np.float64))
    dx = np.empty_like(y4)
    h, w, d, n = y4.shape
    for i in range(h):
        for j in range(w):
            for k in range(n):
                yv, gv = y4[i, j, :, k], dy4[i, j, :, k]
                inner = sum(a * b for a, b in zip(yv, gv))
                dx[i, j, :, k] = [a * (b - inner) for a, b in zip(yv, gv)]
    return dx.reshape(x.shape, order="F")


def tol(dtype):
    return dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-15)


SHAPES = [(7,), (3, 4), (2, 3, 5), (3, 2, 4, 2), (2, 2, 3, 2, 2), (1, 1, 10, 3)]
BLOCKS = [(vl_nnsigmoid, ref_sigmoid, ref_sigmoid_backward),
          (vl_nnsoftmax, ref_softmax, ref_softmax_backward)]
BLOCK_IDS = ["sigmoid", "softmax"]


# ---------------------------------------------------------------------------
# forward and backward against the references

@pytest.mark.parametrize("block,ref,ref_back", BLOCKS, ids=BLOCK_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_backward_match_loop_reference(block, ref, ref_back, shape, dtype):
    x = (3 * rng(0).standard_normal(shape)).astype(dtype)
    dy = rng(1).standard_normal(shape).astype(dtype)
    y = block(x)
    assert y.shape == x.shape and y.dtype == dtype
    np.testing.assert_allclose(y, ref(x), **tol(dtype))
    dx = block(x, dy)
    assert dx.shape == x.shape and dx.dtype == dtype
    np.testing.assert_allclose(dx, ref_back(x, dy), **tol(dtype))


@pytest.mark.parametrize("block", [vl_nnsigmoid, vl_nnsoftmax], ids=BLOCK_IDS)
@pytest.mark.parametrize("shape", [(5, 5), (3, 2, 10, 3), (2, 3, 4, 2, 2)])
def test_backward_matches_numerical_derivative(block, shape):
    x = rng(2).standard_normal(shape)
    proj = rng(3).standard_normal(shape)
    dx = block(x, proj)
    check_derivative(block, x, dx, proj, eps=1e-6, rtol=1e-7, atol=1e-9)
    small = x[:2, :2, ...] if x.ndim < 3 else x[:2, :2, :4, :1]
    psmall = proj[:2, :2, ...] if x.ndim < 3 else proj[:2, :2, :4, :1]
    check_gradient_elementwise(block, small, block(small, psmall), psmall, eps=1e-6,
                               rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("h", [1, 2, 3])
@pytest.mark.parametrize("w", [1, 2])
def test_matconvnet_nnsoftmax_basic(h, w):
    # nnsoftmax/basic: d = 10, n = 3, x = randn / range (range = 128)
    x = rng(h * 10 + w).standard_normal((h, w, 10, 3)) / 128
    dy = rng(4).standard_normal(x.shape)
    dx = vl_nnsoftmax(x, dy)
    np.testing.assert_allclose(dx, ref_softmax_backward(x, dy), rtol=1e-12, atol=1e-16)
    check_gradient_elementwise(vl_nnsoftmax, x, dx, dy, eps=1e-6, rtol=1e-6, atol=1e-10)


def test_matconvnet_nnsigmoid_basic():
    # nnsigmoid/basic: x 5 x 5 = randn / range
    x = rng(5).standard_normal((5, 5)) / 128
    dy = rng(6).standard_normal(x.shape)
    dx = vl_nnsigmoid(x, dy)
    np.testing.assert_allclose(dx, ref_sigmoid_backward(x, dy), rtol=1e-13)
    check_gradient_elementwise(vl_nnsigmoid, x, dx, dy, eps=1e-6, rtol=1e-7, atol=1e-12)


# ---------------------------------------------------------------------------
# properties

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_sums_to_one_and_is_shift_invariant(dtype):
    x = (4 * rng(7).standard_normal((3, 4, 6, 2))).astype(dtype)
    y = vl_nnsoftmax(x)
    np.testing.assert_allclose(y.sum(axis=2), 1, rtol=1e-6 if dtype == np.float32 else 1e-14)
    assert np.all(y > 0)
    shift = (100 * rng(8).standard_normal((3, 4, 1, 2))).astype(dtype)
    # float32: x + shift itself rounds x by about 100 * 2**-24
    shifted = dict(rtol=5e-5, atol=1e-6) if dtype == np.float32 else tol(dtype)
    np.testing.assert_allclose(vl_nnsoftmax(x + shift), y, **shifted)
    dy = rng(9).standard_normal(x.shape).astype(dtype)
    np.testing.assert_allclose(vl_nnsoftmax(x + shift, dy), vl_nnsoftmax(x, dy), **shifted)
    # the derivative is orthogonal to constant shifts: its channel sum is 0
    np.testing.assert_allclose(vl_nnsoftmax(x, dy).sum(axis=2), 0, atol=1e-6)
    # adding a constant to dzdy changes nothing
    np.testing.assert_allclose(vl_nnsoftmax(x, dy + shift), vl_nnsoftmax(x, dy),
                               rtol=1e-4 if dtype == np.float32 else 1e-11,
                               atol=1e-4 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_scores_stay_finite(dtype):
    x = np.array([1e4, -1e4, 0.0, 1e4, 3e38 if dtype == np.float32 else 1e300,
                  -3e38 if dtype == np.float32 else -1e300], dtype)
    dy = np.ones_like(x)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = vl_nnsigmoid(x)
        dx = vl_nnsigmoid(x, dy)
        np.testing.assert_array_equal(y, [1, 0, 0.5, 1, 1, 0])
        np.testing.assert_array_equal(dx, [0, 0, 0.25, 0, 0, 0])
        # softmax over channels of one location
        x4 = x[:4].reshape(1, 1, 4, 1)
        y = vl_nnsoftmax(x4)
        np.testing.assert_array_equal(y.ravel(), [0.5, 0, 0, 0.5])
        dx = vl_nnsoftmax(x4, rng(10).standard_normal(x4.shape).astype(dtype))
        assert np.all(np.isfinite(dx))
        big = (1e4 * rng(11).standard_normal((2, 3, 5, 2))).astype(dtype)
        np.testing.assert_allclose(vl_nnsoftmax(big), ref_softmax(big), **tol(dtype))
        np.testing.assert_allclose(vl_nnsigmoid(big), ref_sigmoid(big), **tol(dtype))


def test_sigmoid_saturated_derivative_keeps_relative_precision():
    # exp(-|x|) / (1 + exp(-|x|))^2 rather than y (1 - y): no cancellation
    x = np.array([40.0, -40.0, 700.0])
    np.testing.assert_allclose(vl_nnsigmoid(x, np.ones(3)),
                               [math.exp(-40), math.exp(-40), math.exp(-700)], rtol=1e-14)


def test_sigmoid_is_symmetric_and_matches_scipy():
    from scipy.special import expit
    x = 5 * rng(12).standard_normal((4, 5, 3))
    y = vl_nnsigmoid(x)
    np.testing.assert_allclose(y, expit(x), rtol=1e-15)
    np.testing.assert_allclose(vl_nnsigmoid(-x), 1 - y, rtol=1e-14, atol=1e-16)


def test_nan_and_inf_propagate():
    x = np.array([np.nan, np.inf, -np.inf, 1.0])
    y = vl_nnsigmoid(x)
    assert np.isnan(y[0]) and y[1] == 1 and y[2] == 0
    dx = vl_nnsigmoid(x, np.ones(4))
    assert np.isnan(dx[0]) and dx[1] == 0 and dx[2] == 0
    # softmax: a NaN or +inf score makes its location NaN, the others are untouched
    x = rng(13).standard_normal((1, 2, 3, 1))
    x[0, 0, 1, 0] = np.nan
    y = vl_nnsoftmax(x)
    assert np.all(np.isnan(y[0, 0])) and np.all(np.isfinite(y[0, 1]))
    x[0, 0, 1, 0] = np.inf
    with np.errstate(invalid="ignore"):
        assert np.all(np.isnan(vl_nnsoftmax(x)[0, 0]))
    x[0, 0, 1, 0] = -np.inf
    y = vl_nnsoftmax(x)
    assert y[0, 0, 1, 0] == 0 and np.isclose(y[0, 0].sum(), 1)


def test_softmax_with_one_channel_is_one():
    for shape in [(5,), (3, 4), (3, 4, 1, 2)]:
        x = rng(14).standard_normal(shape)
        np.testing.assert_array_equal(vl_nnsoftmax(x), np.ones(shape))
        np.testing.assert_array_equal(vl_nnsoftmax(x, np.ones(shape)), np.zeros(shape))


# ---------------------------------------------------------------------------
# calling forms, dtypes, memory order

@pytest.mark.parametrize("block", [vl_nnsigmoid, vl_nnsoftmax], ids=BLOCK_IDS)
def test_calling_forms(block):
    x = rng(15).standard_normal((3, 4, 5, 2))
    dy = rng(16).standard_normal(x.shape)
    y, dx = block(x), block(x, dy)
    for empty in (None, [], np.zeros((0,)), np.zeros((0, 3), np.float32)):
        np.testing.assert_array_equal(block(x, empty), y)
    np.testing.assert_array_equal(block(x, dzdy=dy), dx)
    np.testing.assert_array_equal(block(x, dzdy=None), y)
    # dzdy with MATLAB's trailing singleton dimensions
    x2 = rng(17).standard_normal((3, 4))
    dy2 = rng(18).standard_normal((3, 4, 1, 1))
    dx2 = block(x2, dy2)
    assert dx2.shape == x2.shape
    np.testing.assert_array_equal(dx2, block(x2, dy2[:, :, 0, 0]))


@pytest.mark.parametrize("block", [vl_nnsigmoid, vl_nnsoftmax], ids=BLOCK_IDS)
def test_float32_matches_float64(block):
    x = rng(19).standard_normal((3, 4, 5, 2))
    dy = rng(20).standard_normal(x.shape)
    np.testing.assert_allclose(block(x.astype(np.float32)), block(x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(block(x.astype(np.float32), dy.astype(np.float32)),
                               block(x, dy), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("block", [vl_nnsigmoid, vl_nnsoftmax], ids=BLOCK_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_memory_order_and_inputs_untouched(block, dtype):
    x = rng(21).standard_normal((4, 3, 5, 2)).astype(dtype)
    dy = rng(22).standard_normal(x.shape).astype(dtype)
    copies = x.copy(), dy.copy()
    y, dx = block(x), block(x, dy)
    xf, dyf = np.asfortranarray(x), np.asfortranarray(dy)
    np.testing.assert_allclose(block(xf), y, rtol=1e-15 if dtype == np.float64 else 1e-7)
    np.testing.assert_allclose(block(xf, dyf), dx, rtol=1e-14 if dtype == np.float64 else 1e-6,
                               atol=1e-16)
    np.testing.assert_allclose(block(x, dyf), dx, rtol=1e-14 if dtype == np.float64 else 1e-6,
                               atol=1e-16)
    # a channel-last buffer seen as H x W x C x N (what vlnn blocks return)
    xt = np.ascontiguousarray(x.transpose(3, 0, 1, 2)).transpose(1, 2, 3, 0)
    np.testing.assert_allclose(block(xt), y, rtol=1e-15 if dtype == np.float64 else 1e-7)
    for a, b in zip((x, dy, xf, dyf), copies * 2):
        np.testing.assert_array_equal(a, b)
    assert not np.shares_memory(y, x) and not np.shares_memory(dx, dy)


# ---------------------------------------------------------------------------
# torch oracle

def test_matches_torch():
    torch = pytest.importorskip("torch")
    x = rng(23).standard_normal((3, 4, 6, 2))
    dy = rng(24).standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    y = torch.softmax(xt, dim=2)
    y.backward(torch.tensor(dy))
    np.testing.assert_allclose(vl_nnsoftmax(x), y.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(vl_nnsoftmax(x, dy), xt.grad.numpy(), rtol=1e-12, atol=1e-15)
    xt = torch.tensor(x, requires_grad=True)
    y = torch.sigmoid(xt)
    y.backward(torch.tensor(dy))
    np.testing.assert_allclose(vl_nnsigmoid(x), y.detach().numpy(), rtol=1e-14)
    np.testing.assert_allclose(vl_nnsigmoid(x, dy), xt.grad.numpy(), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------
# errors

X = np.zeros((4, 5, 3, 2))


@pytest.mark.parametrize("block,name", [(vl_nnsigmoid, "vl_nnsigmoid"),
                                        (vl_nnsoftmax, "vl_nnsoftmax")], ids=BLOCK_IDS)
@pytest.mark.parametrize("args,kwargs,exc,match", [
    ((np.zeros((4, 5, 3)),), {}, ValueError,
     r"dzdy has shape \(4, 5, 3\) but x has shape \(4, 5, 3, 2\)"),
    ((np.zeros((5, 4, 3, 2)),), {}, ValueError, r"dzdy has shape \(5, 4, 3, 2\)"),
    ((np.zeros((4, 5, 3, 2), np.float32),), {}, ValueError,
     r"tensor arguments must not mix float32 and float64"),
    ((np.zeros((4, 5, 3, 2), np.int64),), {}, ValueError, r"dzdy must be float32 or float64"),
    ((None,), {"leak": 0.1}, TypeError, r"unknown option 'leak'; valid options: \(none\)"),
    (("Leak", 0.1), {}, TypeError, r"unknown option 'Leak'"),
])
def test_errors(block, name, args, kwargs, exc, match):
    with pytest.raises(exc, match=f"{name}: {match}"):
        block(X, *args, **kwargs)


@pytest.mark.parametrize("block", [vl_nnsigmoid, vl_nnsoftmax], ids=BLOCK_IDS)
def test_bad_data(block):
    with pytest.raises(ValueError, match=r"x must be float32 or float64, got int32"):
        block(X.astype(np.int32))
    with pytest.raises(ValueError, match=r"x must be float32 or float64, got complex128"):
        block(X.astype(complex))
    with pytest.raises(ValueError, match=r"x must not be empty"):
        block(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"x must not be empty"):
        block(None)
