"""Tests of vl_nnrelu (MATCONVNET_SEMANTICS.md section 4)."""

import numpy as np
import pytest

from _checks import check_derivative, check_gradient_elementwise, rng
from vlnn import vl_nnrelu


def ref_relu(x, leak=0.0):
    """MatConvNet's formulas, element by element: ``max(x, 0)`` for leak 0
    (MATLAB's max ignores NaN, so NaN maps to 0), else
    ``x * (leak + (1 - leak) * [x > 0])``."""
    x = np.asarray(x, np.float64)
    y = np.empty_like(x)
    for idx, v in np.ndenumerate(x):
        if leak == 0:
            y[idx] = 0.0 if np.isnan(v) else max(v, 0.0)
        else:
            y[idx] = v * (leak + (1 - leak) * (v > 0))
    return y


def ref_relu_backward(x, dy, leak=0.0):
    x = np.asarray(x, np.float64)
    return np.asarray(dy, np.float64) * (leak + (1 - leak) * (x > 0))


def away_from_zero(shape, seed=0, dtype=np.float64):
    """Standard normal values pushed at least 0.1 away from the kink."""
    x = rng(seed).standard_normal(shape)
    x = np.where(np.abs(x) < 0.1, np.sign(x + 1e-300) * 0.1 + x, x)
    return x.astype(dtype)


LEAKS = [0.0, 0.1, 0.5, 1.0, -0.2]


@pytest.mark.parametrize("leak", LEAKS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_formula(leak, dtype):
    x = rng(1).standard_normal((4, 5, 3, 2)).astype(dtype)
    x[0, 0, 0, 0] = 0.0
    y = vl_nnrelu(x, leak=leak)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, ref_relu(x, leak), rtol=1e-6 if dtype == np.float32 else 1e-15)
    if leak == 0:
        assert np.array_equal(y, np.maximum(x, 0))


@pytest.mark.parametrize("leak", LEAKS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_matches_formula(leak, dtype):
    x = rng(1).standard_normal((4, 5, 3, 2)).astype(dtype)
    x[1, 2, 0, 1] = 0.0
    dy = rng(2).standard_normal(x.shape).astype(dtype)
    dx = vl_nnrelu(x, dy, leak=leak)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, ref_relu_backward(x, dy, leak),
                               rtol=1e-6 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("leak", [0.0, 0.1, 0.3])
def test_derivative_at_zero_equals_leak(leak):
    x = np.zeros((3, 4))
    dy = rng(0).standard_normal(x.shape)
    np.testing.assert_allclose(vl_nnrelu(x, dy, leak=leak), leak * dy, rtol=1e-15)
    # and the output at zero is zero (also negative zero stays a zero)
    assert np.all(vl_nnrelu(x, leak=leak) == 0)
    assert np.all(vl_nnrelu(-x, leak=leak) == 0)


@pytest.mark.parametrize("leak", [0.0, 0.1, 0.7])
def test_backward_matches_numerical_derivative(leak):
    x = away_from_zero((5, 4, 3, 2), seed=3)

    def f(z):
        return vl_nnrelu(z, leak=leak)

    proj = rng(4).standard_normal(x.shape)
    dx = vl_nnrelu(x, proj, leak=leak)
    check_derivative(f, x, dx, proj, eps=1e-4, rtol=1e-8, atol=1e-10)
    small = x[:3, :2, :2, :1]
    check_gradient_elementwise(f, small, vl_nnrelu(small, proj[:3, :2, :2, :1], leak=leak),
                               proj[:3, :2, :2, :1], eps=1e-4)


@pytest.mark.parametrize("leak", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_with_output_in_place_of_input(leak, dtype):
    # simplenn's conserveMemory calls the backward with y instead of x
    x = rng(5).standard_normal((6, 5, 4, 3)).astype(dtype)
    x[0, :, 0, 0] = 0.0
    y = vl_nnrelu(x, leak=leak)
    dy = rng(6).standard_normal(x.shape).astype(dtype)
    np.testing.assert_array_equal(vl_nnrelu(y, dy, leak=leak), vl_nnrelu(x, dy, leak=leak))


def test_nan_maps_to_zero_without_leak():
    # MatConvNet computes max(x, 0) with MATLAB's max, which ignores NaN
    x = np.array([np.nan, -1.0, 2.0])
    np.testing.assert_array_equal(vl_nnrelu(x), [0.0, 0.0, 2.0])


def test_nan_with_leak_and_backward():
    x = np.array([np.nan, -1.0, 2.0, 0.0])
    # leak != 0: x .* (leak + (1-leak)*[x > 0]) keeps the NaN
    y = vl_nnrelu(x, leak=0.1)
    assert np.isnan(y[0])
    np.testing.assert_allclose(y[1:], [-0.1, 2.0, 0.0])
    # backward: [NaN > 0] is false, so a NaN input passes leak * dy
    dy = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(vl_nnrelu(x, dy), [0.0, 0.0, 3.0, 0.0])
    np.testing.assert_allclose(vl_nnrelu(x, dy, leak=0.1), [0.1, 0.2, 3.0, 0.4])
    # NaN in dy propagates where the gate is open
    dx = vl_nnrelu(np.array([1.0, -1.0]), np.array([np.nan, 1.0]), leak=0.5)
    assert np.isnan(dx[0]) and dx[1] == 0.5


def test_inf_values():
    x = np.array([np.inf, -np.inf, 1.0])
    np.testing.assert_array_equal(vl_nnrelu(x), [np.inf, 0.0, 1.0])
    np.testing.assert_array_equal(vl_nnrelu(x, leak=0.5), [np.inf, -np.inf, 1.0])


def test_calling_forms():
    x = rng(0).standard_normal((4, 3, 2))
    expected = ref_relu(x, 0.1)
    np.testing.assert_allclose(vl_nnrelu(x, None, "leak", 0.1), expected, rtol=1e-15)
    np.testing.assert_allclose(vl_nnrelu(x, "leak", 0.1), expected, rtol=1e-15)
    np.testing.assert_allclose(vl_nnrelu(x, None, "Leak", 0.1), expected, rtol=1e-15)
    np.testing.assert_allclose(vl_nnrelu(x, None, LEAK=0.1), expected, rtol=1e-15)
    np.testing.assert_allclose(vl_nnrelu(x, leak=np.array([[0.1]])), expected, rtol=1e-15)
    dy = rng(1).standard_normal(x.shape)
    np.testing.assert_array_equal(vl_nnrelu(x, dy, "leak", 0.1), vl_nnrelu(x, dy, leak=0.1))
    np.testing.assert_array_equal(vl_nnrelu(x, dzdy=dy, leak=0.1), vl_nnrelu(x, dy, leak=0.1))


@pytest.mark.parametrize("empty", [None, np.zeros((0,)), np.zeros((0, 3)), []])
def test_empty_dzdy_means_forward(empty):
    x = rng(0).standard_normal((4, 3, 2))
    np.testing.assert_array_equal(vl_nnrelu(x, empty), np.maximum(x, 0))
    np.testing.assert_array_equal(vl_nnrelu(x, empty, leak=0.2), ref_relu(x, 0.2))


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 4), (2, 3, 4, 2), (2, 3, 2, 2, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_any_shape_and_dtype(shape, dtype):
    x = rng(2).standard_normal(shape).astype(dtype)
    dy = rng(3).standard_normal(shape).astype(dtype)
    for leak in (0.0, 0.25):
        y = vl_nnrelu(x, leak=leak)
        dx = vl_nnrelu(x, dy, leak=leak)
        assert y.shape == x.shape and y.dtype == dtype
        assert dx.shape == x.shape and dx.dtype == dtype
        np.testing.assert_allclose(y, ref_relu(x, leak), rtol=1e-6)
        np.testing.assert_allclose(dx, ref_relu_backward(x, dy, leak), rtol=1e-6)


def test_dzdy_with_trailing_singleton_dims_accepted():
    # MATLAB hides trailing singleton dimensions: 3x4 and 3x4x1x1 are the same size
    x = rng(0).standard_normal((3, 4))
    dy = rng(1).standard_normal((3, 4, 1, 1))
    dx = vl_nnrelu(x, dy)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx, ref_relu_backward(x, dy[:, :, 0, 0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("leak", [0.0, 0.1])
def test_memory_order_and_inputs_untouched(dtype, leak):
    x = rng(7).standard_normal((5, 4, 3, 2)).astype(dtype)
    dy = rng(8).standard_normal(x.shape).astype(dtype)
    x_copy, dy_copy = x.copy(), dy.copy()
    y = vl_nnrelu(x, leak=leak)
    dx = vl_nnrelu(x, dy, leak=leak)
    xf, dyf = np.asfortranarray(x), np.asfortranarray(dy)
    np.testing.assert_array_equal(vl_nnrelu(xf, leak=leak), y)
    np.testing.assert_array_equal(vl_nnrelu(xf, dyf, leak=leak), dx)
    np.testing.assert_array_equal(vl_nnrelu(x, dyf, leak=leak), dx)
    np.testing.assert_array_equal(vl_nnrelu(xf, dy, leak=leak), dx)
    for a, b in [(x, x_copy), (xf, x_copy), (dy, dy_copy), (dyf, dy_copy)]:
        np.testing.assert_array_equal(a, b)
    # the output is a new array, not the input
    assert not np.shares_memory(y, x) and not np.shares_memory(dx, dy)


def test_float32_matches_float64():
    x = rng(9).standard_normal((5, 4, 3, 2))
    dy = rng(10).standard_normal(x.shape)
    for leak in (0.0, 0.1):
        np.testing.assert_allclose(vl_nnrelu(x.astype(np.float32), leak=leak),
                                   vl_nnrelu(x, leak=leak), rtol=1e-6)
        np.testing.assert_allclose(
            vl_nnrelu(x.astype(np.float32), dy.astype(np.float32), leak=leak),
            vl_nnrelu(x, dy, leak=leak), rtol=1e-6)


X = np.zeros((4, 5, 3, 2))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: vl_nnrelu(X, np.zeros((4, 5, 3))), ValueError,
     r"dzdy has shape \(4, 5, 3\) but x has shape \(4, 5, 3, 2\)"),
    (lambda: vl_nnrelu(X, np.zeros((5, 4, 3, 2))), ValueError, r"dzdy has shape \(5, 4, 3, 2\)"),
    (lambda: vl_nnrelu(X, np.zeros((4, 5, 3, 2), np.float32)), ValueError,
     r"must not mix float32 and float64"),
    (lambda: vl_nnrelu(X.astype(np.int32)), ValueError, r"x must be float32 or float64"),
    (lambda: vl_nnrelu(X, np.zeros((4, 5, 3, 2), np.int64)), ValueError,
     r"dzdy must be float32 or float64"),
    (lambda: vl_nnrelu(X, slope=0.1), TypeError, r"unknown option 'slope'; valid options: Leak"),
    (lambda: vl_nnrelu(X, None, "leak"), TypeError, r"option 'leak' needs a value"),
    (lambda: vl_nnrelu(X, leak=[0.1, 0.2]), ValueError, r"Leak must have 1 elements"),
    (lambda: vl_nnrelu(X, leak="big"), ValueError, r"Leak must be numeric"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
