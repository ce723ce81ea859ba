"""Tests of vl_nnpdist (MATCONVNET_SEMANTICS.md section 15)."""

import numpy as np
import pytest

from _checks import check_derivative, rng
from vlnn import vl_nnpdist

DTYPES = [np.float32, np.float64]
PS = [0.5, 1, 2, 3, 1.5]


def padded(a, ndim=4):
    a = np.asarray(a, np.float64)
    return a.reshape(a.shape + (1,) * (ndim - a.ndim))


def ref_forward(x, x0, p, no_root=False, weights=None, aggregate=False):
    """MatConvNet's forward formulas with plain loops over pixels and
    channels (4-D ``x``, ``x0`` broadcast as bsxfun does)."""
    x, x0 = padded(x), padded(x0)
    shape = np.broadcast_shapes(x.shape, x0.shape)
    xb, x0b = np.broadcast_to(x, shape), np.broadcast_to(x0, shape)
    h, w, depth, n = shape
    y = np.zeros((h, w, 1, n))
    for i, j, k in np.ndindex(h, w, n):
        total = 0.0
        for c in range(depth):
            d = xb[i, j, c, k] - x0b[i, j, c, k]
            total += abs(d) if p == 1 else d * d if p == 2 else abs(d) ** p
        y[i, j, 0, k] = total if no_root or p == 1 else total ** (1 / p)
    if weights is not None:
        y = padded(weights) * y
    return y.sum() if aggregate else y


def ref_backward(x, x0, p, dy, no_root=False, eps=1e-6, weights=None):
    """MatConvNet's backward formulas with plain loops; the derivative of a
    broadcast argument is accumulated over the positions it was copied to."""
    xs, x0s = np.shape(x), np.shape(x0)
    x, x0 = padded(x), padded(x0)
    shape = np.broadcast_shapes(x.shape, x0.shape)
    xb, x0b = np.broadcast_to(x, shape), np.broadcast_to(x0, shape)
    h, w, depth, n = shape
    dyb = np.broadcast_to(padded(dy), (h, w, 1, n))
    if weights is not None:
        dyb = np.broadcast_to(padded(weights), (h, w, 1, n)) * dyb
    dx, dx0 = np.zeros(x.shape), np.zeros(x0.shape)
    for i, j, k in np.ndindex(h, w, n):
        d = [xb[i, j, c, k] - x0b[i, j, c, k] for c in range(depth)]
        g = dyb[i, j, 0, k]
        sum_sq = sum(v * v for v in d)
        sum_p = sum(abs(v) ** p for v in d)
        for c in range(depth):
            s = np.sign(d[c])
            a = abs(d[c])
            if p == 1:
                v = g * s
            elif p == 2:
                v = 2 * g * d[c] if no_root else g * d[c] / np.sqrt(max(sum_sq, eps))
            elif p < 1:
                v = p * g if no_root else g * sum_p ** ((1 - p) / p)
                v *= max(a, eps) ** (p - 1) * s
            else:
                v = p * g if no_root else g * max(sum_p, eps) ** ((1 - p) / p)
                v *= a ** (p - 1) * s
            ix = tuple(0 if x.shape[a_] == 1 else q for a_, q in enumerate((i, j, c, k)))
            i0 = tuple(0 if x0.shape[a_] == 1 else q for a_, q in enumerate((i, j, c, k)))
            dx[ix] += v
            dx0[i0] -= v
    return dx.reshape(xs), dx0.reshape(x0s)


def apart(x, x0, gap=0.25, push=1.0):
    """MatConvNet's test trick: coordinates of ``x`` closer than ``gap`` to
    their target are pushed away, so that ``|x - x0|`` stays off the kinks."""
    d = x - x0
    return x + np.where(np.abs(d) < gap, np.where(d >= 0, push, -push), 0.0)


def data(one_to_one, shape=(3, 4, 5, 2), seed=0):
    x0 = rng(seed + 1).standard_normal(shape if one_to_one else (1, 1) + shape[2:])
    x = apart(rng(seed).standard_normal(shape), x0)
    return x, x0


def tol(dtype):
    return dict(rtol=2e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("no_root", [False, True])
@pytest.mark.parametrize("one_to_one", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_matches_loops(p, no_root, one_to_one, dtype):
    x, x0 = data(one_to_one)
    y = vl_nnpdist(x.astype(dtype), x0.astype(dtype), p, noRoot=no_root)
    assert y.shape == (3, 4, 1, 2) and y.dtype == dtype
    np.testing.assert_allclose(y, ref_forward(x, x0, p, no_root), **tol(dtype))


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("no_root", [False, True])
@pytest.mark.parametrize("one_to_one", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_matches_loops(p, no_root, one_to_one, dtype):
    x, x0 = data(one_to_one)
    dy = rng(3).uniform(size=(3, 4, 1, 2))
    dx, dx0 = vl_nnpdist(x.astype(dtype), x0.astype(dtype), p, dy.astype(dtype),
                         noRoot=no_root)
    assert dx.shape == x.shape and dx0.shape == x0.shape
    assert dx.dtype == dtype and dx0.dtype == dtype
    rdx, rdx0 = ref_backward(x, x0, p, dy, no_root)
    np.testing.assert_allclose(dx, rdx, **tol(dtype))
    np.testing.assert_allclose(dx0, rdx0, **tol(dtype))


@pytest.mark.parametrize("p", [0.5, 1, 2, 3])
@pytest.mark.parametrize("no_root", [False, True])
@pytest.mark.parametrize("one_to_one", [True, False])
@pytest.mark.parametrize("aggregate", [False, True])
def test_backward_matches_numerical_derivative(p, no_root, one_to_one, aggregate):
    # MatConvNet's nnpdist/basic grid (smaller arrays); dX0 is checked for the
    # broadcast target too, summed over the positions it was copied to
    x, x0 = data(one_to_one, seed=4)
    weights = rng(6).uniform(0.5, 1.5, size=(3, 4, 1, 2))
    opts = dict(noRoot=no_root, aggregate=aggregate, instanceWeights=weights)
    proj = np.array(rng(5).standard_normal()) if aggregate else \
        rng(5).uniform(size=(3, 4, 1, 2))
    dx, dx0 = vl_nnpdist(x, x0, p, proj, **opts)
    check_derivative(lambda z: vl_nnpdist(z, x0, p, **opts), x, dx, proj,
                     eps=1e-5, rtol=1e-7, atol=1e-9)
    check_derivative(lambda z: vl_nnpdist(x, z, p, **opts), x0, dx0, proj,
                     eps=1e-5, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("no_root", [False, True])
def test_broadcast_target_derivative_is_summed(p, no_root):
    x, x0 = data(False, seed=7)
    dy = rng(8).standard_normal((3, 4, 1, 2))
    dx, dx0 = vl_nnpdist(x, x0, p, dy, noRoot=no_root)
    full = np.broadcast_to(x0, x.shape).copy()
    dx_full, dx0_full = vl_nnpdist(x, full, p, dy, noRoot=no_root)
    np.testing.assert_allclose(dx, dx_full, rtol=1e-14)
    np.testing.assert_allclose(dx0, dx0_full.sum(axis=(0, 1), keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(vl_nnpdist(x, x0, p, noRoot=no_root),
                               vl_nnpdist(x, full, p, noRoot=no_root), rtol=1e-14)


def test_data_may_be_the_broadcast_argument():
    x0, x = data(False, seed=9)  # x is 1 x 1 x D x N, x0 is H x W x D x N
    dy = rng(10).uniform(size=(3, 4, 1, 2))
    y = vl_nnpdist(x, x0, 3)
    np.testing.assert_allclose(y, ref_forward(x, x0, 3), rtol=1e-12)
    dx, dx0 = vl_nnpdist(x, x0, 3, dy)
    assert dx.shape == x.shape and dx0.shape == x0.shape
    rdx, rdx0 = ref_backward(x, x0, 3, dy)
    np.testing.assert_allclose(dx, rdx, rtol=1e-12)
    np.testing.assert_allclose(dx0, rdx0, rtol=1e-12)


@pytest.mark.parametrize("p", [0.5, 2, 3])
@pytest.mark.parametrize("no_root", [False, True])
def test_epsilon_bounds_the_divisors(p, no_root):
    # differences near and at zero, where epsilon takes effect
    x = np.zeros((2, 2, 3, 1))
    x0 = np.zeros((2, 2, 3, 1))
    x[0, 0, :, 0] = [0.01, -0.02, 0.0]       # small norm: clamped by epsilon
    x[0, 1, :, 0] = [0.0, 0.0, 0.0]         # x == x0: derivative must stay finite
    x[1, 0, :, 0] = [1.0, -0.5, 0.05]        # one small coordinate (p < 1 clamps it)
    x[1, 1, :, 0] = [2.0, 1.0, -1.5]
    dy = np.array([0.5, -1.0, 2.0, 1.5]).reshape(2, 2, 1, 1)
    for eps in (1e-6, 0.01, 0.3):
        dx, dx0 = vl_nnpdist(x, x0, p, dy, noRoot=no_root, epsilon=eps)
        assert np.all(np.isfinite(dx))
        rdx, rdx0 = ref_backward(x, x0, p, dy, no_root, eps=eps)
        np.testing.assert_allclose(dx, rdx, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(dx0, rdx0, rtol=1e-12, atol=1e-300)
    # the forward pass does not use epsilon
    np.testing.assert_array_equal(vl_nnpdist(x, x0, p, noRoot=no_root, epsilon=0.3),
                                  vl_nnpdist(x, x0, p, noRoot=no_root))


@pytest.mark.parametrize("weights", [
    2.5, np.array(3), rng(1).uniform(size=(3, 4, 1, 2)), rng(2).uniform(size=(1, 1, 1, 2)),
    rng(3).integers(0, 4, size=(3, 4)), rng(4).uniform(size=(3, 4, 1, 2)).astype(np.float32)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_instance_weights(weights, dtype):
    x, x0 = data(True, seed=11)
    w64 = np.asarray(weights, np.float64)
    y = vl_nnpdist(x.astype(dtype), x0.astype(dtype), 2, instanceWeights=weights)
    assert y.dtype == dtype and y.shape == (3, 4, 1, 2)
    np.testing.assert_allclose(y, ref_forward(x, x0, 2, weights=w64), **tol(dtype))
    dy = rng(12).uniform(size=(3, 4, 1, 2))
    dx, dx0 = vl_nnpdist(x.astype(dtype), x0.astype(dtype), 2, dy.astype(dtype),
                         instanceWeights=weights)
    assert dx.dtype == dtype and dx0.dtype == dtype
    rdx, rdx0 = ref_backward(x, x0, 2, dy, weights=w64)
    np.testing.assert_allclose(dx, rdx, **tol(dtype))
    np.testing.assert_allclose(dx0, rdx0, **tol(dtype))


def test_all_zero_weights_give_zero():
    x, x0 = data(True)
    assert vl_nnpdist(x, x0, 2, aggregate=True, instanceWeights=np.zeros((3, 4, 1, 2))) == 0


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_aggregate(p, dtype):
    x, x0 = data(False, seed=13)
    y = vl_nnpdist(x.astype(dtype), x0.astype(dtype), p, aggregate=True)
    assert y.shape == () and y.dtype == dtype
    np.testing.assert_allclose(y, ref_forward(x, x0, p, aggregate=True), **tol(dtype))
    # the derivative of the sum is a scalar; a Python (double) scalar keeps
    # float32 data float32, as MATLAB's single arithmetic does
    for dzdy in (0.5, np.float64(0.5), np.array([[0.5]]), np.array(0.5, dtype)):
        dx, dx0 = vl_nnpdist(x.astype(dtype), x0.astype(dtype), p, dzdy, aggregate=True)
        assert dx.dtype == dtype and dx0.dtype == dtype
        assert dx.shape == x.shape and dx0.shape == x0.shape
        rdx, rdx0 = ref_backward(x, x0, p, 0.5)
        np.testing.assert_allclose(dx, rdx, **tol(dtype))
        np.testing.assert_allclose(dx0, rdx0, **tol(dtype))


def test_scalar_dzdy_without_aggregate_is_broadcast():
    x, x0 = data(True, seed=14)
    dx, dx0 = vl_nnpdist(x, x0, 3, 2.0)
    rdx, rdx0 = vl_nnpdist(x, x0, 3, np.full((3, 4, 1, 2), 2.0))
    np.testing.assert_allclose(dx, rdx, rtol=1e-15)
    np.testing.assert_allclose(dx0, rdx0, rtol=1e-15)


@pytest.mark.parametrize("p_as", [lambda p: p, float, np.float64, np.int32,
                                  lambda p: np.array([[p]]), lambda p: [p]])
@pytest.mark.parametrize("p", [1, 2, 3])
def test_p_accepts_any_numeric_scalar(p_as, p):
    x, x0 = data(True, seed=15)
    dy = rng(16).uniform(size=(3, 4, 1, 2))
    np.testing.assert_array_equal(vl_nnpdist(x, x0, p_as(p)), vl_nnpdist(x, x0, p))
    for a, b in zip(vl_nnpdist(x, x0, p_as(p), dy), vl_nnpdist(x, x0, p, dy)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape,y_shape", [
    ((4, 5), (4, 5, 1, 1)),
    ((4, 5, 3), (4, 5, 1, 1)),
    ((2, 3, 4, 2, 3), (2, 3, 1, 2, 3)),
])
def test_other_ranks(shape, y_shape):
    x0 = rng(17).standard_normal(shape)
    x = apart(rng(18).standard_normal(shape), x0)
    y = vl_nnpdist(x, x0, 2)
    assert y.shape == y_shape
    d = padded(x - x0, len(y_shape))
    np.testing.assert_allclose(y, np.sqrt((d ** 2).sum(axis=2, keepdims=True)), rtol=1e-14)
    dy = rng(19).standard_normal(y_shape)
    dx, dx0 = vl_nnpdist(x, x0, 2, dy)
    assert dx.shape == shape and dx0.shape == shape
    check_derivative(lambda z: vl_nnpdist(z, x0, 2), x, dx, dy, eps=1e-5, rtol=1e-7)


def test_calling_forms_and_empty_dzdy_means_forward():
    x, x0 = data(True)
    y = vl_nnpdist(x, x0, 2, noRoot=True)
    np.testing.assert_array_equal(vl_nnpdist(x, x0, 2, "noRoot", True), y)
    np.testing.assert_array_equal(vl_nnpdist(x, x0, 2, None, "NoRoot", 1), y)
    np.testing.assert_array_equal(vl_nnpdist(x, x0, 2, [], no_root=np.array([[1]])), y)
    np.testing.assert_array_equal(vl_nnpdist(x, x0, 2, np.zeros((0,)), noroot=True), y)
    dy = rng(1).uniform(size=y.shape)
    expected = vl_nnpdist(x, x0, 2, dy, noRoot=True, epsilon=1e-3)
    for got in (vl_nnpdist(x, x0, 2, dy, "noRoot", True, "epsilon", 1e-3),
                vl_nnpdist(x, x0, 2, dzdy=dy, NOROOT=True, Epsilon=1e-3)):
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_memory_order_and_inputs_untouched(dtype):
    x, x0 = (a.astype(dtype) for a in data(False, seed=20))
    dy = rng(21).uniform(size=(3, 4, 1, 2)).astype(dtype)
    copies = [a.copy() for a in (x, x0, dy)]
    y = vl_nnpdist(x, x0, 3)
    dx, dx0 = vl_nnpdist(x, x0, 3, dy)
    xf, x0f, dyf = (np.asfortranarray(a) for a in (x, x0, dy))
    np.testing.assert_array_equal(vl_nnpdist(xf, x0f, 3), y)
    for a, b in zip(vl_nnpdist(xf, x0f, 3, dyf), (dx, dx0)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    for a, b in zip((x, x0, dy), copies):
        np.testing.assert_array_equal(a, b)
    assert not np.shares_memory(dx, dy) and not np.shares_memory(dx0, dy)


def test_float32_matches_float64():
    x, x0 = data(False, seed=22)
    dy = rng(23).uniform(size=(3, 4, 1, 2))
    for p in PS:
        for no_root in (False, True):
            y32 = vl_nnpdist(x.astype(np.float32), x0.astype(np.float32), p, noRoot=no_root)
            np.testing.assert_allclose(y32, vl_nnpdist(x, x0, p, noRoot=no_root), rtol=1e-5)
            d32 = vl_nnpdist(x.astype(np.float32), x0.astype(np.float32), p,
                             dy.astype(np.float32), noRoot=no_root)
            d64 = vl_nnpdist(x, x0, p, dy, noRoot=no_root)
            for a, b in zip(d32, d64):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


X = np.ones((3, 4, 5, 2))
X0 = np.zeros((3, 4, 5, 2))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: vl_nnpdist(X, np.zeros((3, 4, 4, 2)), 2), ValueError,
     r"x0 of shape \(3, 4, 4, 2\) does not broadcast against x of shape \(3, 4, 5, 2\) "
     r"\(dimension 3: 4 vs 5"),
    (lambda: vl_nnpdist(X, np.zeros((1, 1, 5, 3)), 2), ValueError, r"dimension 4: 3 vs 2"),
    (lambda: vl_nnpdist(X, X0, 2, np.ones((3, 4, 1, 3))), ValueError,
     r"dzdy has shape \(3, 4, 1, 3\) but the output has shape \(3, 4, 1, 2\)"),
    (lambda: vl_nnpdist(X, X0, 2, np.ones((3, 4, 5, 2))), ValueError,
     r"dzdy has shape \(3, 4, 5, 2\) but the output has shape \(3, 4, 1, 2\)"),
    (lambda: vl_nnpdist(X, X0, 2, np.ones((3, 4, 1, 2)), aggregate=True), ValueError,
     r"with aggregate, dzdy must have one element, got shape \(3, 4, 1, 2\)"),
    (lambda: vl_nnpdist(X, X0.astype(np.float32), 2), ValueError,
     r"must not mix float32 and float64 \(x is float64, x0 is float32\)"),
    (lambda: vl_nnpdist(X, X0, 2, np.ones((3, 4, 1, 2), np.float32)), ValueError,
     r"must not mix float32 and float64"),
    (lambda: vl_nnpdist(X, X0, 2, np.ones((3, 4, 1, 2), np.int64)), ValueError,
     r"dzdy must be float32 or float64"),
    (lambda: vl_nnpdist(X, X0, 2, np.array(["a"])), ValueError, r"dzdy must be real numeric"),
    (lambda: vl_nnpdist(X.astype(np.int32), X0, 2), ValueError, r"x must be float32 or float64"),
    (lambda: vl_nnpdist(X, X0.astype(np.complex128), 2), ValueError,
     r"x0 must be float32 or float64"),
    (lambda: vl_nnpdist(None, X0, 2), ValueError, r"x must not be empty"),
    (lambda: vl_nnpdist(X, None, 2), ValueError, r"x0 must not be empty"),
    (lambda: vl_nnpdist(X, X0, 0), ValueError, r"p must be positive, got 0.0"),
    (lambda: vl_nnpdist(X, X0, -1), ValueError, r"p must be positive"),
    (lambda: vl_nnpdist(X, X0, [1, 2]), ValueError, r"p must have 1 elements"),
    (lambda: vl_nnpdist(X, X0, "two"), ValueError, r"p must be numeric"),
    (lambda: vl_nnpdist(X, X0, np.inf), ValueError, r"p must be finite"),
    (lambda: vl_nnpdist(X, X0, 2, epsilon=-1e-3), ValueError, r"epsilon must be >= 0"),
    (lambda: vl_nnpdist(X, X0, 2, noRoot="yes"), ValueError, r"noRoot must be numeric"),
    (lambda: vl_nnpdist(X, X0, 2, instanceWeights=np.ones((3, 5))), ValueError,
     r"instanceWeights of shape \(3, 5, 1, 1\) does not broadcast against the output of "
     r"shape \(3, 4, 1, 2\)"),
    (lambda: vl_nnpdist(X, X0, 2, instanceWeights=np.ones((3, 4, 2, 2))), ValueError,
     r"instanceWeights of shape \(3, 4, 2, 2\) do not broadcast to the output of shape "
     r"\(3, 4, 1, 2\)"),
    (lambda: vl_nnpdist(X, X0, 2, instanceWeights=np.array(["a"])), ValueError,
     r"instanceWeights must be real numeric"),
    (lambda: vl_nnpdist(X, X0, 2, root=False), TypeError,
     r"unknown option 'root'; valid options: aggregate, epsilon, instanceWeights, noRoot"),
    (lambda: vl_nnpdist(X, X0, 2, None, "noRoot"), TypeError, r"option 'noRoot' needs a value"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
