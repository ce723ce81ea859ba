"""Tests of vl_nndropout (MATCONVNET_SEMANTICS.md section 12)."""

from types import SimpleNamespace

import numpy as np
import pytest

from _checks import check_derivative, rng
import vlnn
from vlnn import dropout
from vlnn import vl_nndropout

DTYPES = [np.float32, np.float64]


def ref_dropout(x, mask):
    """``Y = MASK .* X`` element by element (the backward is the same
    product with ``DZDY`` in place of ``X``)."""
    y = np.empty(x.shape, np.float64)
    for idx in np.ndindex(*x.shape):
        y[idx] = float(mask[idx]) * float(x[idx])
    return y


def ref_mask(seed, shape, rate, dtype):
    """MatConvNet's rule ``scale * [U >= rate]`` with ``U`` single-precision
    uniform samples, written out element by element."""
    u = np.random.default_rng(seed).random(shape, dtype=np.float32)
    scale = dtype(1 / (1 - rate))
    mask = np.empty(shape, dtype)
    for idx in np.ndindex(*shape):
        mask[idx] = scale if u[idx] >= np.float32(rate) else dtype(0)
    return mask


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward(rate, dtype):
    x = rng(1).standard_normal((4, 5, 3, 2)).astype(dtype)
    y, mask = vl_nndropout(x, rate=rate, rng=7)
    assert y.shape == x.shape and mask.shape == x.shape
    assert y.dtype == dtype and mask.dtype == dtype
    scale = dtype(1 / (1 - rate))
    assert set(np.unique(mask)) <= {dtype(0), scale}
    np.testing.assert_array_equal(mask, ref_mask(7, x.shape, rate, dtype))
    np.testing.assert_allclose(y, ref_dropout(x, mask), rtol=1e-6 if dtype == np.float32 else 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rate_zero_keeps_everything(dtype):
    x = rng(2).standard_normal((6, 5, 4, 3)).astype(dtype)
    y, mask = vl_nndropout(x, rate=0)
    np.testing.assert_array_equal(mask, np.ones_like(x))
    np.testing.assert_array_equal(y, x)


def test_default_rate_is_one_half():
    x = np.ones((8, 8, 4, 2))
    _, mask = vl_nndropout(x, rng=3)
    assert set(np.unique(mask)) == {0.0, 2.0}
    np.testing.assert_array_equal(mask, ref_mask(3, x.shape, 0.5, np.float64))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_keep_fraction_on_a_large_tensor(rate):
    x = np.ones((64, 64, 8, 4), np.float32)
    _, mask = vl_nndropout(x, rate=rate, rng=11)
    kept = np.count_nonzero(mask) / mask.size
    sigma = np.sqrt(rate * (1 - rate) / mask.size)
    assert abs(kept - (1 - rate)) < 6 * sigma
    # inverted dropout keeps the expectation: mean(mask) ~ 1
    assert abs(mask.mean(dtype=np.float64) - 1) < 6 * sigma / (1 - rate)


def test_same_seed_same_mask_and_different_seeds_differ():
    x = rng(0).standard_normal((5, 6, 4, 3))
    y1, m1 = vl_nndropout(x, rng=42)
    y2, m2 = vl_nndropout(x, rng=42)
    _, m3 = vl_nndropout(x, rng=43)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(m1, m3)
    # integral seeds in any numeric form are the same seed
    for seed in (42.0, np.int64(42), np.array([[42]])):
        np.testing.assert_array_equal(vl_nndropout(x, rng=seed)[1], m1)


def test_generator_option():
    x = rng(0).standard_normal((5, 6, 4, 3))
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    a1, a2 = vl_nndropout(x, rng=g1)[1], vl_nndropout(x, rng=g1)[1]
    b1, b2 = vl_nndropout(x, rng=g2)[1], vl_nndropout(x, rng=g2)[1]
    # a generator advances from call to call, and two equal generators agree
    assert not np.array_equal(a1, a2)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    # an int seed is the same as a fresh generator with that seed
    np.testing.assert_array_equal(vl_nndropout(x, rng=5)[1], a1)


def test_default_generator_is_vlnn_rng():
    x = rng(0).standard_normal((5, 6, 4, 3))
    previous = vlnn.set_random_seed(9)
    try:
        m1 = vl_nndropout(x)[1]
        vlnn.set_random_seed(9)
        np.testing.assert_array_equal(vl_nndropout(x)[1], m1)
        np.testing.assert_array_equal(m1, ref_mask(9, x.shape, 0.5, np.float64))
    finally:
        vlnn.set_random_generator(previous)


def test_unseeded_calls_draw_fresh_masks():
    x = np.ones((16, 16, 4))
    assert not np.array_equal(vl_nndropout(x)[1], vl_nndropout(x)[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_given_mask_is_used_in_forward(dtype):
    x = rng(3).standard_normal((4, 5, 3, 2)).astype(dtype)
    mask = rng(4).standard_normal(x.shape).astype(dtype)  # any values are used as given
    y, m = vl_nndropout(x, mask=mask, rate=0.3)
    np.testing.assert_array_equal(m, mask)
    np.testing.assert_allclose(y, ref_dropout(x, mask), rtol=1e-6 if dtype == np.float32 else 0)


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.75])
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_is_mask_times_dzdy(rate, dtype):
    x = rng(5).standard_normal((4, 5, 10, 3)).astype(dtype)
    y, mask = vl_nndropout(x, rate=rate, rng=1)
    dy = rng(6).standard_normal(y.shape).astype(dtype)
    dx = vl_nndropout(x, dy, mask=mask)
    assert dx.shape == x.shape and dx.dtype == dtype
    np.testing.assert_array_equal(dx, mask * dy)
    np.testing.assert_allclose(dx, ref_dropout(dy, mask), rtol=1e-6 if dtype == np.float32 else 0)


def test_backward_matches_numerical_derivative():
    # MatConvNet's nndropout/basic: x 4x5x10x3 with a fixed mask
    x = rng(7).standard_normal((4, 5, 10, 3))
    _, mask = vl_nndropout(x, rng=2)

    def f(z):
        return vl_nndropout(z, mask=mask)[0]

    proj = rng(8).standard_normal(x.shape)
    check_derivative(f, x, vl_nndropout(x, proj, mask=mask), proj, eps=1e-3, rtol=1e-9)


def test_backward_without_x():
    # MATLAB's vl_nndropout([], dzdy, 'mask', mask): only the mask is needed
    dy = rng(9).standard_normal((3, 4, 2, 2))
    mask = ref_mask(0, dy.shape, 0.5, np.float64)
    np.testing.assert_array_equal(vl_nndropout(None, dy, mask=mask), mask * dy)


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 4), (2, 3, 4, 2), (2, 3, 2, 2, 3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_any_shape(shape, dtype):
    x = rng(10).standard_normal(shape).astype(dtype)
    y, mask = vl_nndropout(x, rng=4)
    assert y.shape == shape and mask.shape == shape and y.dtype == dtype
    np.testing.assert_array_equal(mask, ref_mask(4, shape, 0.5, dtype))
    dx = vl_nndropout(x, x, mask=mask)
    assert dx.shape == shape and dx.dtype == dtype


def test_masks_and_derivatives_with_trailing_singleton_dims_accepted():
    x = rng(0).standard_normal((3, 4))
    mask = ref_mask(1, (3, 4, 1, 1), 0.5, np.float64)
    y, m = vl_nndropout(x, mask=mask)
    assert y.shape == x.shape and m.shape == x.shape
    dx = vl_nndropout(x, np.ones((3, 4, 1)), mask=mask)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx, mask[:, :, 0, 0])


def test_calling_forms():
    x = rng(0).standard_normal((4, 3, 2))
    _, expected = vl_nndropout(x, rate=0.3, rng=8)
    np.testing.assert_array_equal(vl_nndropout(x, "rate", 0.3, "rng", 8)[1], expected)
    np.testing.assert_array_equal(vl_nndropout(x, None, "Rate", 0.3, "RNG", 8)[1], expected)
    np.testing.assert_array_equal(vl_nndropout(x, [], RATE=0.3, rng=8)[1], expected)
    dy = rng(1).standard_normal(x.shape)
    np.testing.assert_array_equal(vl_nndropout(x, dy, "mask", expected), expected * dy)
    np.testing.assert_array_equal(vl_nndropout(x, dzdy=dy, mask=expected), expected * dy)


@pytest.mark.parametrize("dtype", DTYPES)
def test_memory_order_and_inputs_untouched(dtype):
    x = rng(11).standard_normal((5, 4, 3, 2)).astype(dtype)
    dy = rng(12).standard_normal(x.shape).astype(dtype)
    x_copy, dy_copy = x.copy(), dy.copy()
    y, mask = vl_nndropout(x, rng=3)
    mask_copy = mask.copy()
    dx = vl_nndropout(x, dy, mask=mask)
    xf, dyf, mf = np.asfortranarray(x), np.asfortranarray(dy), np.asfortranarray(mask)
    yf, mask_f = vl_nndropout(xf, rng=3)
    np.testing.assert_array_equal(yf, y)
    np.testing.assert_array_equal(mask_f, mask)
    np.testing.assert_array_equal(vl_nndropout(xf, dyf, mask=mf), dx)
    np.testing.assert_array_equal(vl_nndropout(x, dyf, mask=mask), dx)
    for a, b in [(x, x_copy), (xf, x_copy), (dy, dy_copy), (dyf, dy_copy), (mask, mask_copy)]:
        np.testing.assert_array_equal(a, b)
    assert not np.shares_memory(y, x) and not np.shares_memory(dx, dy)


def test_float32_matches_float64():
    x = rng(13).standard_normal((5, 4, 3, 2))
    y64, m64 = vl_nndropout(x, rate=0.25, rng=6)
    y32, m32 = vl_nndropout(x.astype(np.float32), rate=0.25, rng=6)
    np.testing.assert_array_equal(m32 != 0, m64 != 0)
    np.testing.assert_allclose(y32, y64, rtol=1e-6)


class _FakeRandomState:
    """Stands in for cupy.random.RandomState (CuPy is optional)."""

    def __init__(self, seed=0):
        self.seed = seed

    def random_sample(self, size, dtype):
        return np.random.default_rng(self.seed).random(size, dtype=dtype)


class _FakeGenerator:
    def random(self, size, dtype):
        return np.full(size, 0.75, dtype)


def test_device_draws_use_the_device_random_module():
    # the CuPy branch, run against a fake module with CuPy's random API
    fake = SimpleNamespace(random=SimpleNamespace(
        RandomState=_FakeRandomState, Generator=_FakeGenerator))
    shape = (3, 4, 2)

    def draw(seed):
        return np.random.default_rng(seed).random(shape, dtype=np.float32)

    np.testing.assert_array_equal(dropout._uniform(5, shape, fake, "f"), draw(5))
    # None: the CuPy state of vlnn.rng, seeded from its generator on first use
    previous = vlnn.set_random_seed(4)
    try:
        first = dropout._uniform(None, shape, fake, "f")
        np.testing.assert_array_equal(
            first, draw(int(np.random.default_rng(4).integers(2 ** 63 - 1))))
        vlnn.set_random_seed(4)
        np.testing.assert_array_equal(dropout._uniform(None, shape, fake, "f"), first)
    finally:
        vlnn.set_random_generator(previous)
    np.testing.assert_array_equal(dropout._uniform(_FakeRandomState(3), shape, fake, "f"),
                                  draw(3))
    np.testing.assert_array_equal(dropout._uniform(_FakeGenerator(), shape, fake, "f"),
                                  np.full(shape, 0.75, np.float32))
    seed = int(np.random.default_rng(8).integers(2 ** 63 - 1))
    np.testing.assert_array_equal(
        dropout._uniform(np.random.default_rng(8), shape, fake, "f"), draw(seed))
    dropout._check_rng(_FakeGenerator(), fake, "f")
    with pytest.raises(ValueError, match="f: rng must be a numpy.random.Generator"):
        dropout._check_rng(object(), fake, "f")
    with pytest.raises(ValueError, match="f: rng must be a numpy.random.Generator"):
        dropout._check_rng(_FakeGenerator(), np, "f")


X = np.zeros((4, 5, 3, 2))
M = np.ones((4, 5, 3, 2))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: vl_nndropout(X, X), ValueError,
     r"backward mode needs the mask of the forward pass"),
    (lambda: vl_nndropout(X, rate=1), ValueError, r"rate must be in \[0, 1\), got 1.0"),
    (lambda: vl_nndropout(X, rate=-0.1), ValueError, r"rate must be in \[0, 1\)"),
    (lambda: vl_nndropout(X, rate=1.5), ValueError, r"rate must be in \[0, 1\)"),
    (lambda: vl_nndropout(X, rate=[0.1, 0.2]), ValueError, r"rate must have 1 elements"),
    (lambda: vl_nndropout(X, mask=np.ones((4, 5, 3))), ValueError,
     r"mask has shape \(4, 5, 3\) but x has shape \(4, 5, 3, 2\)"),
    (lambda: vl_nndropout(X, X, mask=np.ones((5, 4, 3, 2))), ValueError,
     r"mask has shape \(5, 4, 3, 2\) but x has shape \(4, 5, 3, 2\)"),
    (lambda: vl_nndropout(X, np.zeros((4, 5, 3)), mask=M), ValueError,
     r"dzdy has shape \(4, 5, 3\) but x has shape \(4, 5, 3, 2\)"),
    (lambda: vl_nndropout(X, mask=M.astype(np.float32)), ValueError,
     r"must not mix float32 and float64 \(x is float64, mask is float32\)"),
    (lambda: vl_nndropout(X, X.astype(np.float32), mask=M), ValueError,
     r"must not mix float32 and float64"),
    (lambda: vl_nndropout(X.astype(np.int32)), ValueError, r"x must be float32 or float64"),
    (lambda: vl_nndropout(None), ValueError, r"x must not be empty"),
    (lambda: vl_nndropout(X, rng="seed"), ValueError,
     r"rng must be a numpy.random.Generator or a non-negative integer seed"),
    (lambda: vl_nndropout(X, rng=-1), ValueError, r"rng must be a numpy.random.Generator"),
    (lambda: vl_nndropout(X, rng=1.5), ValueError, r"rng must be a numpy.random.Generator"),
    (lambda: vl_nndropout(X, rng=np.random.RandomState(0)), ValueError,
     r"rng must be a numpy.random.Generator"),
    (lambda: vl_nndropout(X, ratio=0.1), TypeError,
     r"unknown option 'ratio'; valid options: mask, rate, rng"),
    (lambda: vl_nndropout(X, None, "rate"), TypeError, r"option 'rate' needs a value"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
