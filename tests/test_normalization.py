"""Tests of vl_nnnormalize, vl_nnnormalizelp, vl_nnspnorm, vl_nnnoffset and
vl_nnbnorm (MATCONVNET_SEMANTICS.md sections 9, 10, 14, 13, 11).

Every forward is checked against a plain reference written below with
explicit loops over pixels, channels and windows (float64), every backward
against central differences (float64, small shapes), plus MatConvNet's own
checks (``nnnormalize.m``: compare_to_naive, l2; ``nnbnorm.m``: regression,
givenMoments; ``nnnormalizelp.m``: dimensions) and optional PyTorch oracles.
"""

import itertools

import numpy as np
import pytest

from _checks import check_derivative, check_gradient_elementwise, rng
import vlnn.normalization as normalization
from vlnn import (vl_nnbnorm, vl_nnnoffset, vl_nnnormalize,
                                vl_nnnormalizelp, vl_nnspnorm)


def as4(x):
    s = x.shape + (1,) * (4 - x.ndim)
    if len(s) > 4:
        s = s[:3] + (int(np.prod(s[3:])),)
    return x.reshape(s, order="F")


def tol(dtype):
    return dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)


# ---------------------------------------------------------------------------
# loop references (float64)

def ref_lrn(x, param):
    """Section 9, one output element at a time."""
    size, kappa, alpha, beta = param
    x4 = as4(np.asarray(x, np.float64))
    h, w, d, n = x4.shape
    m1 = (size - 1) // 2
    m2 = size - 1 - m1
    y = np.empty_like(x4)
    for i, j, k, b in itertools.product(range(h), range(w), range(d), range(n)):
        energy = 0.0
        for t in range(max(0, k - m1), min(d - 1, k + m2) + 1):
            energy += x4[i, j, t, b] ** 2
        y[i, j, k, b] = x4[i, j, k, b] * (kappa + alpha * energy) ** (-beta)
    return y


def ref_lrn_backward(x, param, dy):
    """Section 9's backward formula, one element at a time."""
    size, kappa, alpha, beta = param
    x4 = as4(np.asarray(x, np.float64))
    dy4 = as4(np.asarray(dy, np.float64))
    h, w, d, n = x4.shape
    m1 = (size - 1) // 2
    m2 = size - 1 - m1

    def window(k):
        return range(max(0, k - m1), min(d - 1, k + m2) + 1)

    dx = np.empty_like(x4)
    for i, j, b in itertools.product(range(h), range(w), range(n)):
        lval = [kappa + alpha * sum(x4[i, j, t, b] ** 2 for t in window(k)) for k in range(d)]
        for t in range(d):
            acc = sum(dy4[i, j, k, b] * x4[i, j, k, b] * lval[k] ** (-beta - 1)
                      for k in range(d) if t in window(k))
            dx[i, j, t, b] = dy4[i, j, t, b] * lval[t] ** (-beta) \
                - 2 * alpha * beta * x4[i, j, t, b] * acc
    return dx


def naive_lrn(x, param):
    """MatConvNet's compare_to_naive: ``x .* (kappa + alpha * conv(x.^2,
    ones(N,1), 'same')).^(-beta)`` along the channels of each pixel (MATLAB's
    'same' keeps the full convolution from index floor(N/2))."""
    size, kappa, alpha, beta = param
    x4 = as4(np.asarray(x, np.float64))
    h, w, d, n = x4.shape
    y = np.empty_like(x4)
    for i, j, b in itertools.product(range(h), range(w), range(n)):
        full = np.convolve(x4[i, j, :, b] ** 2, np.ones(size))
        same = full[size // 2: size // 2 + d]
        y[i, j, :, b] = x4[i, j, :, b] * (kappa + alpha * same) ** (-beta)
    return y


def ref_normalizelp(x, dims=(3,), p=2.0, epsilon=0.01):
    """Section 10 by loops over the kept positions; returns (y, norms)."""
    x4 = as4(np.asarray(x, np.float64))
    axes = sorted({d - 1 for d in dims if d <= 4})
    norms_shape = tuple(1 if a in axes else s for a, s in enumerate(x4.shape))
    norms = np.empty(norms_shape)
    for idx in np.ndindex(*norms_shape):
        sel = tuple(slice(None) if a in axes else idx[a] for a in range(4))
        total = 0.0
        for v in np.ravel(x4[sel]):
            total += v ** p
        norms[idx] = (total + epsilon) ** (1.0 / p)
    return x4 / norms, norms


def ref_normalizelp_backward(x, dy, dims=(3,), p=2.0, epsilon=0.01):
    x4 = as4(np.asarray(x, np.float64))
    dy4 = as4(np.asarray(dy, np.float64))
    axes = tuple(sorted({d - 1 for d in dims if d <= 4}))
    _, norms = ref_normalizelp(x, dims, p, epsilon)
    s = (dy4 * x4).sum(axis=axes, keepdims=True) if axes else dy4 * x4
    return dy4 / norms - s * x4 ** (p - 1) / norms ** (p + 1)


def ref_spnorm(x, param):
    """Section 14: the in-image mean of x^2 over each (clipped) window."""
    ph, pw, alpha, beta = param
    x4 = as4(np.asarray(x, np.float64))
    h, w, c, n = x4.shape
    pt, pl = (ph - 1) // 2, (pw - 1) // 2
    y = np.empty_like(x4)
    for i, j in itertools.product(range(h), range(w)):
        rows = range(max(i - pt, 0), min(i - pt + ph, h))
        cols = range(max(j - pl, 0), min(j - pl + pw, w))
        for k, b in itertools.product(range(c), range(n)):
            total = 0.0
            for r in rows:
                for s in cols:
                    total += x4[r, s, k, b] ** 2
            mean = total / (len(rows) * len(cols))
            y[i, j, k, b] = x4[i, j, k, b] * (1 + alpha * mean) ** (-beta)
    return y


def ref_noffset(x, param):
    a, e = param
    x4 = as4(np.asarray(x, np.float64))
    h, w, c, n = x4.shape
    y = np.empty_like(x4)
    for i, j, b in itertools.product(range(h), range(w), range(n)):
        energy = max(sum(x4[i, j, k, b] ** 2 for k in range(c)), 1e-8)
        for k in range(c):
            y[i, j, k, b] = x4[i, j, k, b] - a * energy ** e
    return y


def ref_bnorm(x, g, b, epsilon=1e-4, moments=None):
    """Section 11, channel by channel; returns (y, moments)."""
    x4 = as4(np.asarray(x, np.float64))
    c = x4.shape[2]
    g, b = np.ravel(g, order="F"), np.ravel(b, order="F")
    y = np.empty_like(x4)
    mom = np.empty((c, 2))
    for k in range(c):
        v = x4[:, :, k, :]
        if moments is None:
            mu = v.mean()
            sigma = np.sqrt(((v - mu) ** 2).mean() + epsilon)
        else:
            mu, sigma = moments[k, 0], moments[k, 1]
        mom[k] = mu, sigma
        y[:, :, k, :] = g[k] * (v - mu) / sigma + b[k]
    return y, mom


def bnorm_backward_formula(x, g, dy, mu, sigma):
    """Section 11's backward, channel by channel: (dx, dg, db)."""
    x4 = as4(np.asarray(x, np.float64))
    dy4 = as4(np.asarray(dy, np.float64))
    h, w, c, n = x4.shape
    m = h * w * n
    g = np.ravel(g, order="F")
    dx = np.empty_like(x4)
    dg, db = np.empty(c), np.empty(c)
    for k in range(c):
        xc = x4[:, :, k, :] - mu[k]
        db[k] = dy4[:, :, k, :].sum()
        dg[k] = (dy4[:, :, k, :] * xc).sum() / sigma[k]
        dx[:, :, k, :] = g[k] / sigma[k] * (dy4[:, :, k, :] - db[k] / m) \
            - g[k] / sigma[k] * dg[k] / (m * sigma[k]) * xc
    return dx, dg, db


# ---------------------------------------------------------------------------
# sample table: every block as x -> y and (x, dy) -> dx

G5 = np.array([0.5, -1.2, 2.0, 0.7, 1.1])
B5 = np.array([0.1, 0.3, -0.4, 0.0, 2.0])


def bnorm_x(x, dy=None, **kw):
    c = as4(x).shape[2]
    g, b = np.resize(G5, c).astype(x.dtype), np.resize(B5, c).astype(x.dtype)
    out = vl_nnbnorm(x, g, b, dy, **kw)
    return out[0] if isinstance(out, tuple) else out


def bnorm_ref(x):
    c = as4(x).shape[2]
    return ref_bnorm(x, np.resize(G5, c), np.resize(B5, c))[0]


# name -> (block(x, dy=None), loop reference of the forward)
SAMPLES = {
    "lrn5": (lambda x, dy=None: vl_nnnormalize(x, [5, 1, 0.1, 0.75], dy),
             lambda x: ref_lrn(x, (5, 1, 0.1, 0.75))),
    "lrn4": (lambda x, dy=None: vl_nnnormalize(x, [4, 2, 0.3, 0.5], dy),
             lambda x: ref_lrn(x, (4, 2, 0.3, 0.5))),
    "lp2": (lambda x, dy=None: vl_nnnormalizelp(x, dy),
            lambda x: ref_normalizelp(x)[0]),
    "lp4spatial": (lambda x, dy=None: vl_nnnormalizelp(x, dy, p=4, spatial=True),
                   lambda x: ref_normalizelp(x, (1, 2), 4.0)[0]),
    "spnorm": (lambda x, dy=None: vl_nnspnorm(x, [3, 3, 0.1, 0.75], dy),
               lambda x: ref_spnorm(x, (3, 3, 0.1, 0.75))),
    "spnorm_even": (lambda x, dy=None: vl_nnspnorm(x, [2, 4, 0.5, 0.6], dy),
                    lambda x: ref_spnorm(x, (2, 4, 0.5, 0.6))),
    "noffset": (lambda x, dy=None: vl_nnnoffset(x, [0.34, 0.5], dy),
                lambda x: ref_noffset(x, (0.34, 0.5))),
    "bnorm": (bnorm_x, bnorm_ref),
}
NAMES = list(SAMPLES)


def data(shape, dtype=np.float64, seed=0, order="C"):
    a = rng(seed).standard_normal(shape).astype(dtype)
    return np.asfortranarray(a) if order == "F" else a


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_loop_reference(name, dtype):
    block, ref = SAMPLES[name]
    x = data((4, 5, 5, 3), dtype, seed=1)
    y = block(x)
    assert y.dtype == dtype and y.shape == (4, 5, 5, 3)
    np.testing.assert_allclose(y, ref(x.astype(np.float64)), **tol(dtype))


@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_numerical_derivative(name):
    block, _ = SAMPLES[name]
    x = data((3, 4, 5, 2), seed=2)
    proj = data(x.shape, seed=3)
    dx = block(x, proj)
    assert dx.shape == x.shape and dx.dtype == np.float64
    check_derivative(lambda z: block(z), x, dx, proj, eps=1e-5, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_matches_float64(name, dtype):
    block, _ = SAMPLES[name]
    x = data((5, 4, 5, 3), seed=4)
    dy = data(x.shape, seed=5)
    y64, dx64 = block(x), block(x, dy)
    y, dx = block(x.astype(dtype)), block(x.astype(dtype), dy.astype(dtype))
    assert y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(y, y64, **tol(dtype))
    np.testing.assert_allclose(dx, dx64, rtol=tol(dtype)["rtol"],
                               atol=tol(dtype)["atol"] * 10 * np.abs(dx64).max())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_memory_order_and_inputs_untouched(name, dtype):
    block, _ = SAMPLES[name]
    x = data((4, 3, 5, 2), dtype, seed=6)
    dy = data(x.shape, dtype, seed=7)
    x_copy, dy_copy = x.copy(), dy.copy()
    y, dx = block(x), block(x, dy)
    # an N x H x W x C buffer seen as H x W x C x N (what the blocks hand out)
    x_nhwc = np.ascontiguousarray(x.transpose(3, 0, 1, 2)).transpose(1, 2, 3, 0)
    scale = np.abs(dx).max()
    for xo in (np.asfortranarray(x), x_nhwc, x):
        for dyo in (np.asfortranarray(dy), dy):
            np.testing.assert_allclose(block(xo), y, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(block(xo, dyo), dx, rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dy, dy_copy)
    assert not np.shares_memory(y, x) and not np.shares_memory(dx, dy)
    assert not np.shares_memory(dx, x)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_fold_and_derivative_like_primal(name):
    block, ref = SAMPLES[name]
    # 3-D data is one image; dims past the 4th fold into the 4th
    x3 = data((4, 3, 5), seed=8)
    x5 = data((3, 2, 5, 2, 2), seed=9)
    for x in (x3, x5):
        y = block(x)
        assert y.shape in (x.shape, as4(x).shape)
        np.testing.assert_allclose(as4(y), ref(x), rtol=1e-11, atol=1e-13)
        dy = data(y.shape, seed=10)
        dx = block(x, dy)
        assert dx.shape == x.shape
        np.testing.assert_allclose(as4(dx), as4(block(as4(x), as4(dy))), rtol=1e-12, atol=1e-14)
    # dzdy with MATLAB's hidden trailing singleton dims is accepted
    dx = block(x3, data((4, 3, 5, 1), seed=11))
    assert dx.shape == x3.shape


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("empty", [None, np.zeros((0,)), []])
def test_empty_dzdy_means_forward(name, empty):
    block, _ = SAMPLES[name]
    x = data((3, 3, 5, 2), seed=12)
    np.testing.assert_array_equal(block(x, empty), block(x))


@pytest.mark.parametrize("name", NAMES)
def test_nan_propagates(name):
    block, _ = SAMPLES[name]
    x = data((3, 3, 5, 2), seed=13)
    x[1, 1, 2, 0] = np.nan
    y = block(x)
    assert np.isnan(y[1, 1, 2, 0])
    assert np.isnan(block(x, np.ones_like(x))[1, 1, 2, 0])


def layouts(x):
    """``x`` in the memory orders a block meets: C and Fortran order, an
    N x H x W x C buffer (what the blocks hand out), a planar C x N x H x W
    buffer and a strided view."""
    nhwc = np.ascontiguousarray(x.transpose(3, 0, 1, 2)).transpose(1, 2, 3, 0)
    planar = np.ascontiguousarray(x.transpose(2, 3, 0, 1)).transpose(2, 3, 0, 1)
    strided = np.repeat(x, 2, axis=1)[:, ::2]
    return {"C": x, "F": np.asfortranarray(x), "nhwc": nhwc, "planar": planar,
            "strided": strided}


CHUNKED = {
    "lrn5": lambda x, dy=None: vl_nnnormalize(x, [5, 1, 0.1, 0.75], dy),
    "lrn_wide": lambda x, dy=None: vl_nnnormalize(x, [30, 1, 0.1, 0.75], dy),
    "lrn_l2": lambda x, dy=None: vl_nnnormalize(x, [40, 0, 1, 0.5], dy),
    "bnorm": bnorm_x,
    "bnorm_moments": lambda x, dy=None: bnorm_x(
        x, dy, moments=np.stack([np.resize([0.1, 0.2, -0.3, 0.0, 0.5], as4(x).shape[2]),
                                 np.resize([1.0, 2.0, 0.5, 1.5, 1.2], as4(x).shape[2])],
                                axis=1).astype(x.dtype)),
}


@pytest.mark.parametrize("name", list(CHUNKED))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunks_and_layouts(name, dtype, monkeypatch):
    # LRN and bnorm work through P x C x Q views in chunks: results must not
    # depend on the chunk size or on the memory order of x and dzdy
    block = CHUNKED[name]
    x = data((6, 5, 20, 7), dtype, seed=90) * 2 + 0.5
    dy = data(x.shape, dtype, seed=91)
    y, dx = block(x.astype(np.float64)), block(x.astype(np.float64), dy.astype(np.float64))
    scale = np.abs(dx).max()
    for chunk_bytes in (1, 700, 5000, 1 << 30):
        monkeypatch.setattr(normalization, "_CHUNK_BYTES", chunk_bytes)
        for (xname, xo), dyo in zip(layouts(x).items(),
                                    [dy, layouts(dy)["nhwc"], dy, layouts(dy)["F"], dy]):
            yo, dxo = block(xo), block(xo, dyo)
            assert yo.dtype == dtype and dxo.dtype == dtype and dxo.shape == x.shape
            np.testing.assert_allclose(yo, y, **tol(dtype), err_msg=xname)
            np.testing.assert_allclose(dxo, dx, rtol=tol(dtype)["rtol"],
                                       atol=tol(dtype)["atol"] * scale, err_msg=xname)
    # outputs of LRN and bnorm keep the input's memory order
    monkeypatch.setattr(normalization, "_CHUNK_BYTES", 5000)
    for xname in ("C", "F", "nhwc"):
        xo = layouts(x)[xname]
        yo = block(xo)
        assert sorted(range(4), key=lambda a: -yo.strides[a]) == \
            sorted(range(4), key=lambda a: -xo.strides[a]), xname


# ---------------------------------------------------------------------------
# vl_nnnormalize (LRN)

@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 7, 9, 12, 17])
def test_lrn_window_sizes(size):
    # MatConvNet's nnnormalize.m basic: N in 2..17, param [N .1 .5 .75], x 3x2x10x4
    param = [size, 0.1, 0.5, 0.75]
    x = data((3, 2, 10, 4), seed=size)
    np.testing.assert_allclose(vl_nnnormalize(x, param), ref_lrn(x, param), rtol=1e-12)
    dy = rng(size + 1).random(x.shape) - 0.5
    np.testing.assert_allclose(vl_nnnormalize(x, param, dy), ref_lrn_backward(x, param, dy),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("size", range(2, 8))
def test_lrn_compare_to_naive(size):
    param = [size, 0.1, 0.5, 0.75]
    x = data((2, 3, 10, 2), seed=20 + size)
    np.testing.assert_allclose(vl_nnnormalize(x, param), naive_lrn(x, param), rtol=1e-12)


def test_lrn_even_window_reaches_after():
    # N = 2: m1 = 0 channels before, m2 = 1 after
    x = np.zeros((1, 1, 3, 1))
    x[0, 0, :, 0] = [1.0, 2.0, 3.0]
    y = vl_nnnormalize(x, [2, 0, 1, 1])
    np.testing.assert_allclose(y.ravel(), [1 / 5, 2 / 13, 3 / 9])


@pytest.mark.parametrize("depth", [1, 3, 10, 40])
@pytest.mark.parametrize("extra", [0, 1, 7])
def test_lrn_l2_normalisation(depth, extra):
    # nnnormalize.m l2: [20 0 1 .5] on 10 channels gives sum(y.^2) = 1
    x = data((3, 4, depth, 2), seed=depth)
    for dtype in (np.float32, np.float64):
        y = vl_nnnormalize(x.astype(dtype), [2 * depth + extra, 0, 1, 0.5])
        np.testing.assert_allclose((y.astype(np.float64) ** 2).sum(axis=2), 1.0,
                                   rtol=1e-5 if dtype == np.float32 else 1e-13)
        np.testing.assert_allclose(y, x / np.sqrt((x ** 2).sum(axis=2, keepdims=True)),
                                   **tol(dtype))


@pytest.mark.parametrize("size", [18, 25, 33, 40])
def test_lrn_wide_windows(size):
    # windows wider than the slice loop use a cumulative sum
    param = [size, 1.0, 0.05, 0.75]
    x = data((2, 2, 30, 2), seed=size)
    for dtype in (np.float32, np.float64):
        np.testing.assert_allclose(vl_nnnormalize(x.astype(dtype), param), ref_lrn(x, param),
                                   **tol(dtype))
    dy = data(x.shape, seed=size + 1)
    dx = vl_nnnormalize(x, param, dy)
    np.testing.assert_allclose(dx, ref_lrn_backward(x, param, dy), rtol=1e-10, atol=1e-12)
    check_derivative(lambda z: vl_nnnormalize(z, param), x, dx, dy, eps=1e-5, rtol=1e-7)


def test_lrn_backward_elementwise_and_l2():
    x = data((2, 2, 4, 1), seed=30)
    proj = data(x.shape, seed=31)
    for param in ([3, 1, 0.2, 0.75], [8, 0, 1, 0.5], [2, 0.5, 2.0, 1.3]):
        check_gradient_elementwise(lambda z: vl_nnnormalize(z, param), x,
                                   vl_nnnormalize(x, param, proj), proj, eps=1e-6,
                                   rtol=1e-6, atol=1e-8)


def test_lrn_param_forms():
    x = data((3, 3, 6, 2), seed=32)
    y = vl_nnnormalize(x, [5, 1, 2e-5, 0.75])
    for param in ((5, 1, 2e-5, 0.75), np.array([[5, 1, 2e-5, 0.75]]),
                  np.array([5.0, 1, 2e-5, 0.75], np.float32),
                  np.array([[5], [1], [2e-5], [0.75]])):
        np.testing.assert_allclose(vl_nnnormalize(x, param), y, rtol=1e-9)
    dy = data(x.shape, seed=33)
    dx = vl_nnnormalize(x, [5, 1, 2e-5, 0.75], dy)
    np.testing.assert_array_equal(vl_nnnormalize(x, [5, 1, 2e-5, 0.75], dzdy=dy), dx)
    np.testing.assert_array_equal(vl_nnnormalize(x, [5, 1, 2e-5, 0.75], dy, "verbose"), dx)
    np.testing.assert_array_equal(vl_nnnormalize(x, [5, 1, 2e-5, 0.75], "Verbose"), y)
    np.testing.assert_array_equal(vl_nnnormalize(x, [5, 1, 2e-5, 0.75], None, "NoCudnn"), y)


def test_lrn_matches_torch():
    torch = pytest.importorskip("torch")
    fn = torch.nn.functional
    x = data((5, 6, 9, 3), seed=34)
    for size in (1, 3, 5, 7):
        kappa, alpha, beta = 1.5, 0.02, 0.75
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1))).requires_grad_()
        out = fn.local_response_norm(t, size, alpha=size * alpha, beta=beta, k=kappa)
        np.testing.assert_allclose(vl_nnnormalize(x, [size, kappa, alpha, beta]),
                                   out.detach().numpy().transpose(2, 3, 1, 0), rtol=1e-12)
        dy = data(x.shape, seed=size)
        out.backward(torch.from_numpy(np.ascontiguousarray(dy.transpose(3, 2, 0, 1))))
        np.testing.assert_allclose(vl_nnnormalize(x, [size, kappa, alpha, beta], dy),
                                   t.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-10, atol=1e-13)


# ---------------------------------------------------------------------------
# vl_nnnormalizelp

ALL_DIM_SUBSETS = [s for r in range(0, 5) for s in itertools.combinations((1, 2, 3, 4), r)]


@pytest.mark.parametrize("dims", ALL_DIM_SUBSETS, ids=str)
def test_normalizelp_every_dimension_subset(dims):
    # nnnormalizelp.m dimensions: p = 2, epsilon = 1e-4, every subset of dims
    x = data((2, 3, 4, 3), seed=40)
    y, norms = vl_nnnormalizelp(x, dimensions=list(dims), epsilon=1e-4, return_norms=True)
    ref_y, ref_norms = ref_normalizelp(x, dims, 2.0, 1e-4)
    assert norms.shape == ref_norms.shape
    np.testing.assert_allclose(y, ref_y, rtol=1e-12)
    np.testing.assert_allclose(norms, ref_norms, rtol=1e-12)
    proj = data(x.shape, seed=41)
    dx = vl_nnnormalizelp(x, proj, dimensions=list(dims), epsilon=1e-4)
    np.testing.assert_allclose(dx, ref_normalizelp_backward(x, proj, dims, 2.0, 1e-4),
                               rtol=1e-10, atol=1e-12)
    check_derivative(lambda z: vl_nnnormalizelp(z, dimensions=list(dims), epsilon=1e-4),
                     x, dx, proj, eps=1e-6, rtol=1e-6)


@pytest.mark.parametrize("p", [2, 4, 3, 1.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalizelp_exponents(p, dtype):
    # nnnormalizelp.m lp: x 2x3x5x3 / range; odd and fractional p on positive data
    x = data((2, 3, 5, 3), seed=42)
    if p not in (2, 4):
        x = np.abs(x) + 0.1
    xd = x.astype(dtype)
    for name in ("Exponent", "p", "P", "exponent"):
        y, norms = vl_nnnormalizelp(xd, return_norms=True, **{name: p})
        ref_y, ref_norms = ref_normalizelp(x, (3,), float(p))
        assert y.dtype == dtype and norms.dtype == dtype
        np.testing.assert_allclose(y, ref_y, **tol(dtype))
        np.testing.assert_allclose(norms, ref_norms, **tol(dtype))
    proj = data(x.shape, seed=43)
    dx = vl_nnnormalizelp(x, proj, p=p)
    np.testing.assert_allclose(dx, ref_normalizelp_backward(x, proj, (3,), float(p)),
                               rtol=1e-10, atol=1e-12)
    check_derivative(lambda z: vl_nnnormalizelp(z, p=p), x, dx, proj, eps=1e-6, rtol=1e-6)


def test_normalizelp_negative_data_fractional_power_is_nan():
    x = -np.ones((1, 1, 3))
    with np.errstate(invalid="ignore"):
        assert np.all(np.isnan(vl_nnnormalizelp(x, p=1.5)))


def test_normalizelp_given_norms():
    x = data((3, 4, 5, 2), seed=44)
    y, norms = vl_nnnormalizelp(x, spatial=True, return_norms=True)
    assert norms.shape == (1, 1, 5, 2)
    # any shape with the right number of elements, read column-major
    for given in (norms, norms.reshape(5, 2, order="F"), norms.ravel(order="F")):
        y2, norms2 = vl_nnnormalizelp(x, spatial=True, norms=given, return_norms=True)
        np.testing.assert_array_equal(y2, y)
        np.testing.assert_array_equal(norms2, norms)
        assert not np.shares_memory(norms2, given)
    dy = data(x.shape, seed=45)
    dx = vl_nnnormalizelp(x, dy, spatial=True)
    np.testing.assert_allclose(vl_nnnormalizelp(x, dy, spatial=True, norms=norms), dx,
                               rtol=1e-14)
    # other norms are used as given, forward and backward
    other = norms * 2 + 1
    np.testing.assert_allclose(vl_nnnormalizelp(x, spatial=True, norms=other), x / other,
                               rtol=1e-15)
    s = (dy * x).sum(axis=(0, 1), keepdims=True)
    np.testing.assert_allclose(vl_nnnormalizelp(x, dy, spatial=True, norms=other),
                               dy / other - s * x / other ** 3, rtol=1e-12)
    # backward mode returns dx alone, return_norms or not
    assert isinstance(vl_nnnormalizelp(x, dy, return_norms=True), np.ndarray)


def test_normalizelp_defaults_and_calling_forms():
    x = data((3, 2, 4, 2), seed=46)
    y = vl_nnnormalizelp(x)
    np.testing.assert_allclose(y, ref_normalizelp(x, (3,), 2.0, 0.01)[0], rtol=1e-13)
    np.testing.assert_array_equal(vl_nnnormalizelp(x, None, dimensions=3), y)
    np.testing.assert_array_equal(vl_nnnormalizelp(x, "Dimensions", [3], "epsilon", 0.01), y)
    np.testing.assert_array_equal(vl_nnnormalizelp(x, "spatial"),
                                  vl_nnnormalizelp(x, dimensions=[1, 2]))
    np.testing.assert_array_equal(vl_nnnormalizelp(x, "P", 4, "Spatial"),
                                  vl_nnnormalizelp(x, exponent=4, dimensions=np.array([[1, 2]])))
    np.testing.assert_array_equal(vl_nnnormalizelp(x, p=4, exponent=4.0),
                                  vl_nnnormalizelp(x, p=4))
    # dimensions past the 4th reduce nothing
    np.testing.assert_array_equal(vl_nnnormalizelp(x, dimensions=[3, 5]), y)
    dy = data(x.shape, seed=47)
    np.testing.assert_array_equal(vl_nnnormalizelp(x, dzdy=dy), vl_nnnormalizelp(x, dy))


# ---------------------------------------------------------------------------
# vl_nnspnorm and vl_nnnoffset

@pytest.mark.parametrize("window", [(1, 1), (1, 3), (2, 2), (3, 2), (4, 5), (9, 9)])
def test_spnorm_windows(window):
    param = [window[0], window[1], 0.3, 0.6]
    x = data((5, 6, 2, 2), seed=50)
    np.testing.assert_allclose(vl_nnspnorm(x, param), ref_spnorm(x, param), rtol=1e-12)
    proj = data(x.shape, seed=51)
    check_derivative(lambda z: vl_nnspnorm(z, param), x, vl_nnspnorm(x, param, proj), proj,
                     eps=1e-5, rtol=1e-7)


def test_spnorm_matconvnet_basic():
    # nnspnorm.m basic: param [3 3 0.1 0.75], x 13x17x4x5, dY = rand
    x = data((13, 17, 4, 5), seed=52)
    dy = rng(53).random(x.shape)
    dx = vl_nnspnorm(x, [3, 3, 0.1, 0.75], dy)
    check_derivative(lambda z: vl_nnspnorm(z, [3, 3, 0.1, 0.75]), x, dx, dy, eps=1e-5,
                     rtol=1e-7)


def test_noffset_matconvnet_basic_and_clamp():
    # nnoffset.m basic: param [.34 .5], x 4x5x10x3
    x = data((4, 5, 10, 3), seed=54)
    dy = data(x.shape, seed=55)
    dx = vl_nnnoffset(x, [0.34, 0.5], dy)
    check_derivative(lambda z: vl_nnnoffset(z, [0.34, 0.5]), x, dx, dy, eps=1e-5, rtol=1e-7)
    # an all-zero pixel is clamped to L = 1e-8; the backward keeps the formula
    z = np.zeros((1, 1, 3, 1))
    np.testing.assert_allclose(vl_nnnoffset(z, [2.0, 0.5]), -2.0 * 1e-4 * np.ones_like(z))
    np.testing.assert_array_equal(vl_nnnoffset(z, [2.0, 0.5], np.ones_like(z)), np.ones_like(z))
    # 2-D data has one channel
    x2 = data((3, 4), seed=56)
    np.testing.assert_allclose(vl_nnnoffset(x2, [0.5, 0.5]), x2 - 0.5 * np.abs(x2), rtol=1e-14)


# ---------------------------------------------------------------------------
# vl_nnbnorm

@pytest.mark.parametrize("shape", [(2, 2, 1, 2), (8, 2, 3, 7), (13, 17, 4, 2), (2, 8, 3, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bnorm_regression(shape, dtype):
    # nnbnorm.m regression: moments = [mu, sqrt(var + eps)] and Y by the formula
    x = (data(shape, seed=60) * 3 + 1).astype(dtype)
    c = shape[2]
    g = data((c,), dtype, seed=61)
    b = data((c,), dtype, seed=62)
    eps = 1e-3
    y, moments = vl_nnbnorm(x, g, b, epsilon=eps, return_moments=True)
    assert moments.shape == (c, 2) and moments.dtype == dtype and y.dtype == dtype
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 1, 3))
    np.testing.assert_allclose(moments[:, 0], mean, **tol(dtype))
    np.testing.assert_allclose(moments[:, 1], np.sqrt(x64.var(axis=(0, 1, 3)) + eps),
                               **tol(dtype))
    ref_y, ref_moments = ref_bnorm(x64, g, b, eps)
    np.testing.assert_allclose(y, ref_y, **tol(dtype))
    np.testing.assert_allclose(moments, ref_moments, **tol(dtype))


def test_bnorm_default_epsilon():
    x = data((3, 4, 2, 5), seed=63)
    _, moments = vl_nnbnorm(x, np.ones(2), np.zeros(2), return_moments=True)
    np.testing.assert_allclose(moments[:, 1], np.sqrt(x.var(axis=(0, 1, 3)) + 1e-4),
                               rtol=1e-14)
    # constant channels: sigma = sqrt(epsilon)
    _, moments = vl_nnbnorm(np.ones((2, 2, 2, 2)), np.ones(2), np.zeros(2), return_moments=True)
    np.testing.assert_allclose(moments, [[1, 1e-2], [1, 1e-2]], rtol=1e-12)


@pytest.mark.parametrize("shape", [(2, 2, 1, 2), (3, 4, 3, 5), (5, 1, 2, 1)])
def test_bnorm_backward_numerical(shape):
    # nnbnorm.m basic: dX, dG and dB
    x = data(shape, seed=64)
    c = shape[2]
    g, b = data((1, c), seed=65), data((c, 1), seed=66)
    proj = data(shape, seed=67)
    dx, dg, db = vl_nnbnorm(x, g, b, proj)
    assert dx.shape == x.shape and dg.shape == g.shape and db.shape == b.shape
    check_derivative(lambda z: vl_nnbnorm(z, g, b), x, dx, proj, eps=1e-5, rtol=1e-7)
    check_derivative(lambda z: vl_nnbnorm(x, z, b), g, dg, proj, eps=1e-5, rtol=1e-7)
    check_derivative(lambda z: vl_nnbnorm(x, g, z), b, db, proj, eps=1e-5, rtol=1e-7)
    if x.size <= 16:
        check_gradient_elementwise(lambda z: vl_nnbnorm(z, g, b), x, dx, proj, eps=1e-6,
                                   rtol=1e-6, atol=1e-8)
    ref_dx, ref_dg, ref_db = bnorm_backward_formula(x, g, proj, *ref_bnorm(x, g, b)[1].T)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dg.ravel(), ref_dg, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(db.ravel(), ref_db, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bnorm_given_moments_is_affine_map(dtype):
    x = data((4, 3, 3, 2), dtype, seed=68)
    g, b = data((3,), dtype, seed=69), data((3,), dtype, seed=70)
    mu = np.array([0.5, -1.0, 2.0], dtype)
    sigma = np.array([1.5, 0.25, 3.0], dtype)
    moments = np.stack([mu, sigma], axis=1)
    y, out_moments = vl_nnbnorm(x, g, b, moments=moments, return_moments=True)
    expected = g[:, None] * (x - mu[:, None]) / sigma[:, None] + b[:, None]
    np.testing.assert_allclose(y, expected, **tol(dtype))
    np.testing.assert_array_equal(out_moments, moments)
    assert not np.shares_memory(out_moments, moments)
    # epsilon is not added to given moments; [mu_1..mu_C, sigma_1..sigma_C] works too
    np.testing.assert_array_equal(
        vl_nnbnorm(x, g, b, moments=moments.ravel(order="F"), epsilon=10.0), y)
    np.testing.assert_array_equal(vl_nnbnorm(x, g, b, "Moments", moments.T.reshape(1, 6)), y)


def test_bnorm_given_moments_backward_is_batch_formula():
    # nnbnorm.m givenMoments, and section 11: the batch formula with the given moments
    x = data((4, 3, 3, 5), seed=71)
    g, b = data((3,), seed=72), data((3,), seed=73)
    dy = data(x.shape, seed=74)
    y, moments = vl_nnbnorm(x, g, b, return_moments=True)
    y2, moments2 = vl_nnbnorm(x, g, b, moments=moments, return_moments=True)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(moments2, moments)
    plain = vl_nnbnorm(x, g, b, dy, return_moments=True)
    given = vl_nnbnorm(x, g, b, dy, moments=moments, return_moments=True)
    for a, c in zip(plain, given):
        np.testing.assert_allclose(a, c, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(plain[3], moments)
    # other moments: the same formula, not the affine map's derivative (dY g/sigma)
    mu, sigma = np.array([0.2, -0.3, 1.0]), np.array([2.0, 0.5, 1.5])
    dx, dg, db = vl_nnbnorm(x, g, b, dy, moments=np.stack([mu, sigma], axis=1))
    ref_dx, ref_dg, ref_db = bnorm_backward_formula(x, g, dy, mu, sigma)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dg, ref_dg, rtol=1e-12)
    np.testing.assert_allclose(db, ref_db, rtol=1e-12)
    assert not np.allclose(dx, dy * (g / sigma)[:, None])


def test_bnorm_float32_large_mean():
    # statistics of a large batch with a large mean keep float32 accuracy
    x64 = data((27, 27, 4, 16), seed=75) * 0.5 + 1000.0
    x = x64.astype(np.float32)
    _, moments = vl_nnbnorm(x, np.ones(4, np.float32), np.zeros(4, np.float32),
                            return_moments=True)
    xr = x.astype(np.float64)
    np.testing.assert_allclose(moments[:, 0], xr.mean(axis=(0, 1, 3)), rtol=1e-7)
    np.testing.assert_allclose(moments[:, 1], np.sqrt(xr.var(axis=(0, 1, 3)) + 1e-4),
                               rtol=1e-4)


@pytest.mark.parametrize("order", ["c", "nhwc"])
def test_bnorm_float32_large_mean_uneven_batch(order):
    # every 8th slab of the data (seen as P x C x Q in memory order) lies 6
    # standard deviations off, on top of a large mean: the moments keep
    # float32 accuracy (measured: sigma 7e-7 relative), and so do the
    # derivatives, computed from X - REF kept in the output
    x64 = data((27, 27, 4, 16), seed=76) * 0.5 + 1000.0
    if order == "c":
        x64.reshape(27 * 27, 4, 16)[::8] += 3.0             # P = H x W
        x = x64.astype(np.float32)
    else:
        nhwc = np.ascontiguousarray(x64.transpose(3, 0, 1, 2))
        nhwc.reshape(16 * 27 * 27, 4)[::8] += 3.0            # P = N x H x W
        x64 = nhwc.transpose(1, 2, 3, 0)
        x = np.ascontiguousarray(nhwc.astype(np.float32)).transpose(1, 2, 3, 0)
    g, b = np.ones(4, np.float32), np.zeros(4, np.float32)
    y, moments = vl_nnbnorm(x, g, b, return_moments=True)
    xr = x.astype(np.float64)
    mu, var = xr.mean(axis=(0, 1, 3)), xr.var(axis=(0, 1, 3))
    np.testing.assert_allclose(moments[:, 0], mu, rtol=1e-7)
    np.testing.assert_allclose(moments[:, 1], np.sqrt(var + 1e-4), rtol=3e-6)
    sigma = np.sqrt(var + 1e-4)
    np.testing.assert_allclose(y, (xr - mu[:, None]) / sigma[:, None], atol=2e-4)
    dy = data(x.shape, np.float32, seed=77)
    dx, dg, db = vl_nnbnorm(x, g, b, dy)
    ref_dx, ref_dg, ref_db = bnorm_backward_formula(xr, g.astype(np.float64),
                                                    dy.astype(np.float64), mu, sigma)
    np.testing.assert_allclose(dg, ref_dg, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(db, ref_db, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(dx, ref_dx, atol=2e-4 * np.abs(ref_dx).max())


def test_bnorm_calling_forms():
    x = data((3, 3, 2, 4), seed=76)
    g, b = np.array([1.0, 2.0]), np.array([0.5, -0.5])
    y = vl_nnbnorm(x, g, b, epsilon=1e-3)
    np.testing.assert_array_equal(vl_nnbnorm(x, g, b, "Epsilon", 1e-3), y)
    np.testing.assert_array_equal(vl_nnbnorm(x, g, b, None, "epsilon", 1e-3, "NoCudnn"), y)
    np.testing.assert_array_equal(vl_nnbnorm(x, g, b, EPSILON=np.array([[1e-3]])), y)
    dy = data(x.shape, seed=77)
    out = vl_nnbnorm(x, g, b, dy)
    assert len(out) == 3
    for a, c in zip(vl_nnbnorm(x, g, b, dzdy=dy), out):
        np.testing.assert_array_equal(a, c)
    assert len(vl_nnbnorm(x, g, b, dy, return_moments=True)) == 4


def test_bnorm_matches_torch():
    torch = pytest.importorskip("torch")
    fn = torch.nn.functional
    x = data((5, 6, 4, 3), seed=78) * 2 + 0.5
    g, b = data((4,), seed=79), data((4,), seed=80)
    eps = 1e-3
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1))).requires_grad_()
    tg = torch.from_numpy(g.copy()).requires_grad_()
    tb = torch.from_numpy(b.copy()).requires_grad_()
    out = fn.batch_norm(t, None, None, tg, tb, training=True, eps=eps)   # eps inside the sqrt
    np.testing.assert_allclose(vl_nnbnorm(x, g, b, epsilon=eps),
                               out.detach().numpy().transpose(2, 3, 1, 0), rtol=1e-12, atol=1e-13)
    dy = data(x.shape, seed=81)
    out.backward(torch.from_numpy(np.ascontiguousarray(dy.transpose(3, 2, 0, 1))))
    dx, dg, db = vl_nnbnorm(x, g, b, dy, epsilon=eps)
    np.testing.assert_allclose(dx, t.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dg, tg.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-12)


# ---------------------------------------------------------------------------
# errors

X = np.zeros((4, 5, 3, 2))
X32 = X.astype(np.float32)
G3, B3 = np.ones(3), np.zeros(3)


@pytest.mark.parametrize("call,exc,match", [
    # vl_nnnormalize
    (lambda: vl_nnnormalize(X, [5, 1, 2]), ValueError,
     r"vl_nnnormalize: param \[N, KAPPA, ALPHA, BETA\] must have 4 elements, got 3"),
    (lambda: vl_nnnormalize(X, [0, 1, 1, 0.5]), ValueError,
     r"N = param\[0\] must be an integer >= 1"),
    (lambda: vl_nnnormalize(X, [2.5, 1, 1, 0.5]), ValueError, r"integer >= 1, got 2.5"),
    (lambda: vl_nnnormalize(X, "verbose"), TypeError, r"expected at least 2 arguments"),
    (lambda: vl_nnnormalize(X, [5, 1, 1, np.nan]), ValueError, r"param .* must be finite"),
    (lambda: vl_nnnormalize(X, [5, 1, 1, 0.5], np.zeros((4, 5, 3))), ValueError,
     r"dzdy has shape \(4, 5, 3\) but x has shape \(4, 5, 3, 2\)"),
    (lambda: vl_nnnormalize(X32, [5, 1, 1, 0.5], X), ValueError,
     r"must not mix float32 and float64"),
    (lambda: vl_nnnormalize(X.astype(int), [5, 1, 1, 0.5]), ValueError,
     r"x must be float32 or float64"),
    (lambda: vl_nnnormalize(np.zeros((0, 3)), [5, 1, 1, 0.5]), ValueError, r"x must not be empty"),
    (lambda: vl_nnnormalize(X, [5, 1, 1, 0.5], size=3), TypeError,
     r"vl_nnnormalize: unknown option 'size'"),
    # vl_nnnormalizelp
    (lambda: vl_nnnormalizelp(X, dimensions=[0, 3]), ValueError, r"Dimensions must be >= 1"),
    (lambda: vl_nnnormalizelp(X, dimensions=[1.5]), ValueError, r"Dimensions must be integral"),
    (lambda: vl_nnnormalizelp(X, norms=np.ones(5)), ValueError,
     r"Norms has 5 elements .* have shape \(4, 5, 1, 2\) \(40 elements\)"),
    (lambda: vl_nnnormalizelp(X, norms=np.ones((4, 5, 1, 2), np.float32)), ValueError,
     r"must not mix float32 and float64"),
    (lambda: vl_nnnormalizelp(X, p=0), ValueError, r"Exponent must be non-zero"),
    (lambda: vl_nnnormalizelp(X, p=2, exponent=4), ValueError,
     r"Exponent and its alias P disagree"),
    (lambda: vl_nnnormalizelp(X, "spatial", "dimensions", 3), ValueError,
     r"either the Spatial flag or Dimensions"),
    (lambda: vl_nnnormalizelp(X, epsilon=[1, 2]), ValueError, r"Epsilon must have 1 elements"),
    (lambda: vl_nnnormalizelp(X, np.zeros((4, 5, 3, 3))), ValueError, r"dzdy has shape"),
    (lambda: vl_nnnormalizelp(X, norm=1), TypeError, r"unknown option 'norm'; valid options: "),
    # vl_nnspnorm
    (lambda: vl_nnspnorm(X, [3, 3, 0.1]), ValueError,
     r"vl_nnspnorm: param \[PH, PW, ALPHA, BETA\] must have 4 elements, got 3"),
    (lambda: vl_nnspnorm(X, [0, 3, 0.1, 0.5]), ValueError, r"\[PH, PW\] must be >= 1"),
    (lambda: vl_nnspnorm(X, [2.5, 3, 0.1, 0.5]), ValueError, r"\[PH, PW\] must be integral"),
    (lambda: vl_nnspnorm(X, [3, 3, 0.1, 0.5], np.zeros((4, 5, 2, 2))), ValueError,
     r"dzdy has shape \(4, 5, 2, 2\)"),
    (lambda: vl_nnspnorm(X, [3, 3, 0.1, 0.5], pad=1), TypeError,
     r"vl_nnspnorm: unknown option 'pad'"),
    (lambda: vl_nnspnorm(X32, [3, 3, 0.1, 0.5], X), ValueError, r"must not mix"),
    # vl_nnnoffset
    (lambda: vl_nnnoffset(X, [1, 2, 3]), ValueError, r"param \[A, B\] must have 2 elements, got 3"),
    (lambda: vl_nnnoffset(X, [1, 0.5], np.zeros((4, 5, 3, 1))), ValueError, r"dzdy has shape"),
    (lambda: vl_nnnoffset(X, [1, 0.5], None, "verbose"), TypeError, r"unknown option 'verbose'"),
    (lambda: vl_nnnoffset(X.astype(np.complex128), [1, 0.5]), ValueError,
     r"x must be float32 or float64"),
    # vl_nnbnorm
    (lambda: vl_nnbnorm(X, np.ones(2), B3), ValueError,
     r"vl_nnbnorm: g has 2 elements \(shape \(2,\)\) but x has C = 3 channels"),
    (lambda: vl_nnbnorm(X, G3, np.zeros((2, 2))), ValueError,
     r"b has 4 elements \(shape \(2, 2\)\) but x has C = 3"),
    (lambda: vl_nnbnorm(X, None, B3), ValueError, r"g is empty but x has C = 3"),
    (lambda: vl_nnbnorm(X, G3, B3, moments=np.ones(5)), ValueError,
     r"Moments has 5 elements .* must have 2 \* C = 6"),
    (lambda: vl_nnbnorm(X, G3, B3, np.zeros((4, 5, 3))), ValueError,
     r"dzdy has shape \(4, 5, 3\) but x has shape \(4, 5, 3, 2\)"),
    (lambda: vl_nnbnorm(X32, G3, B3.astype(np.float32)), ValueError,
     r"must not mix float32 and float64 \(x is float32, g is float64, b is float32\)"),
    (lambda: vl_nnbnorm(X, G3, B3, moments=np.ones((3, 2), np.float32)), ValueError,
     r"must not mix float32 and float64"),
    (lambda: vl_nnbnorm(X, G3, B3, X32), ValueError, r"must not mix float32 and float64"),
    (lambda: vl_nnbnorm(X, G3.astype(np.int64), B3), ValueError, r"g must be float32 or float64"),
    (lambda: vl_nnbnorm(X, G3, "epsilon", 1e-3), TypeError, r"got option 'epsilon' as b"),
    (lambda: vl_nnbnorm(X, G3, B3, epsilon=[1e-3, 1]), ValueError, r"Epsilon must have 1"),
    (lambda: vl_nnbnorm(X, G3, B3, mode="test"), TypeError,
     r"unknown option 'mode'; valid options: .*Epsilon.*Moments"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
