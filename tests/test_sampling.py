"""Tests of vl_nnbilinearsampler and vl_nnroipool (MATCONVNET_SEMANTICS.md
sections 18 and 19, MatConvNet's nnbilinearsampler.m and nnroipool.m).

The oracles are plain references written below with explicit loops: the
sampler visits every output point and its four corners, the ROI pooling
visits every tile of every ROI pixel by pixel in column-major order (columns
outer, rows inner), following MatConvNet's C++ step by step.  Only the
channel axis is vectorised.  PyTorch's ``grid_sample`` is an optional second
oracle for the sampler.
"""

import math

import numpy as np
import pytest

import vlnn.sampling as sampling
from _checks import check_derivative, rng
from vlnn import vl_nnbilinearsampler, vl_nnroipool


def _as4(x):
    s = x.shape + (1,) * (4 - x.ndim)
    if len(s) > 4:
        s = s[:3] + (int(np.prod(s[3:])),)
    return x.reshape(s, order="F")


# ---------------------------------------------------------------------------
# bilinear sampler: loop references

def _sample_geometry(h, w, gy, gx):
    """Floor corner and weights of one point, or None when it reads 0."""
    py = (gy + 1) / 2 * (h - 1)
    px = (gx + 1) / 2 * (w - 1)
    fy, fx = np.floor(py), np.floor(px)
    if not (0 <= fy < h and 0 <= fx < w):     # NaN fails too
        return None
    return int(fy), int(fx), py - fy, px - fx


def ref_sampler(x, grid):
    x4 = _as4(np.asarray(x, np.float64))
    g4 = _as4(np.asarray(grid, np.float64))
    h, w, c, n = x4.shape
    _, ho, wo, no = g4.shape
    y = np.zeros((ho, wo, c, no))
    for o in range(no):
        img = o // (no // n)
        for i in range(ho):
            for j in range(wo):
                geo = _sample_geometry(h, w, g4[0, i, j, o], g4[1, i, j, o])
                if geo is None:
                    continue
                sy, sx, wy, wx = geo
                for b in (0, 1):
                    for a in (0, 1):
                        if sy + a < h and sx + b < w:
                            weight = (wy if a else 1 - wy) * (wx if b else 1 - wx)
                            y[i, j, :, o] += weight * x4[sy + a, sx + b, :, img]
    return y


def ref_sampler_backward(x, grid, dy):
    x4 = _as4(np.asarray(x, np.float64))
    g4 = _as4(np.asarray(grid, np.float64))
    dy4 = _as4(np.asarray(dy, np.float64))
    h, w, c, n = x4.shape
    _, ho, wo, no = g4.shape
    dx = np.zeros(x4.shape)
    dgrid = np.zeros(g4.shape)
    for o in range(no):
        img = o // (no // n)
        for i in range(ho):
            for j in range(wo):
                geo = _sample_geometry(h, w, g4[0, i, j, o], g4[1, i, j, o])
                if geo is None:
                    continue
                sy, sx, wy, wx = geo
                for b in (0, 1):
                    for a in (0, 1):
                        if sy + a >= h or sx + b >= w:
                            continue
                        wya, wxb = (wy if a else 1 - wy), (wx if b else 1 - wx)
                        dx[sy + a, sx + b, :, img] += wya * wxb * dy4[i, j, :, o]
                        dot = np.dot(dy4[i, j, :, o], x4[sy + a, sx + b, :, img])
                        dgrid[0, i, j, o] += (h - 1) / 2 * (2 * a - 1) * wxb * dot
                        dgrid[1, i, j, o] += (w - 1) / 2 * (2 * b - 1) * wya * dot
    return dx.reshape(np.shape(x), order="F"), dgrid.reshape(np.shape(grid), order="F")


# ---------------------------------------------------------------------------
# grids

def identity_grid(ho, wo, no=1):
    gy, gx = np.meshgrid(np.linspace(-1, 1, ho), np.linspace(-1, 1, wo), indexing="ij")
    return np.repeat(np.stack([gy, gx])[..., None], no, axis=3)


def affine_grid(ho, wo, a, t):
    """MatConvNet's test generator: ``[gy; gx] = A [y; x] + t`` over the
    output's identity grid."""
    base = identity_grid(ho, wo)[..., 0].reshape(2, -1)
    return (np.asarray(a) @ base + np.asarray(t)[:, None]).reshape(2, ho, wo)


_ROT = -np.pi / 4
AFFINE = {  # nnbilinearsampler.m's four transformations
    "shift_x": (np.eye(2), [0.0, 1.0]),
    "shift_y": (np.eye(2), [1.0, 0.0]),
    "scale_half": (np.eye(2) / 2, [0.0, 0.0]),
    "rotation": ([[np.cos(_ROT), -np.sin(_ROT)], [np.sin(_ROT), np.cos(_ROT)]], [0.0, 0.0]),
}


def affine_grids(ho, wo, n_images, per_image):
    """``per_image`` grids for each image, cycling through AFFINE."""
    names = list(AFFINE)
    grids = [affine_grid(ho, wo, *AFFINE[names[i % len(names)]])
             for i in range(n_images * per_image)]
    return np.stack(grids, axis=3)


def smooth_grid(h, w, ho, wo, no, seed=0):
    """Random points whose pixel coordinates stay at least 0.1 away from
    integers, so the sampler is differentiable there; they cover the inside,
    the last row/column (dropped corners), row/column -1 and the outside."""
    r = rng(seed)
    py = r.integers(-2, h + 1, (ho, wo, no)) + r.uniform(0.1, 0.9, (ho, wo, no))
    px = r.integers(-2, w + 1, (ho, wo, no)) + r.uniform(0.1, 0.9, (ho, wo, no))
    return np.stack([2 * py / (h - 1) - 1, 2 * px / (w - 1) - 1])


def images(shape, seed=0):
    return rng(seed).standard_normal(shape)


# ---------------------------------------------------------------------------
# bilinear sampler: forward and backward against the references

@pytest.mark.parametrize("h,w,c,n,ho,wo,per", [
    (5, 6, 3, 2, 4, 7, 1),
    (6, 4, 2, 1, 5, 5, 3),
    (4, 7, 1, 3, 3, 2, 2),
    (1, 5, 2, 1, 2, 3, 1),       # one row: (H - 1) = 0
])
def test_sampler_matches_loop_reference(h, w, c, n, ho, wo, per):
    x = images((h, w, c, n), seed=h)
    grid = rng(w).uniform(-1.3, 1.3, (2, ho, wo, n * per))
    grid[:, 0, 0, 0] = [-1, -1]              # first pixel centre
    grid[:, -1, -1, -1] = [1, 1]             # last pixel centre: corners beyond dropped
    y = vl_nnbilinearsampler(x, grid)
    assert y.shape == (ho, wo, c, n * per)
    np.testing.assert_allclose(y, ref_sampler(x, grid), rtol=1e-13, atol=1e-13)
    dy = images(y.shape, seed=3)
    dx, dgrid = vl_nnbilinearsampler(x, grid, dy)
    ref_dx, ref_dgrid = ref_sampler_backward(x, grid, dy)
    assert dx.shape == x.shape and dgrid.shape == grid.shape
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dgrid, ref_dgrid, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per", [1, 2])
@pytest.mark.parametrize("name", list(AFFINE))
def test_affine_grids_match_loop_reference(name, per):
    x = images((8, 7, 3, 2), seed=1)
    grid = np.stack([affine_grid(6, 5, *AFFINE[name])] * (2 * per), axis=3)
    y = vl_nnbilinearsampler(x, grid)
    np.testing.assert_allclose(y, ref_sampler(x, grid), rtol=1e-13, atol=1e-13)
    dy = images(y.shape, seed=2)
    for got, want in zip(vl_nnbilinearsampler(x, grid, dy), ref_sampler_backward(x, grid, dy)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("per", [1, 3])
def test_identity_grid_reproduces_x(dtype, per):
    x = images((5, 7, 3, 2), seed=4).astype(dtype)
    grid = identity_grid(5, 7, 2 * per).astype(dtype)
    y = vl_nnbilinearsampler(x, grid)
    assert y.dtype == dtype
    for o in range(2 * per):
        np.testing.assert_allclose(y[..., o], x[..., o // per], rtol=1e-6, atol=1e-6)


def test_multiple_grids_per_image_sample_their_own_image():
    x = np.stack([np.full((4, 5, 2), 1.0), np.full((4, 5, 2), 2.0)], axis=3)
    grid = affine_grids(3, 3, 2, 3) * 0.5                # all points inside
    y = vl_nnbilinearsampler(x, grid)
    np.testing.assert_allclose(y[..., :3], 1.0)
    np.testing.assert_allclose(y[..., 3:], 2.0)
    # dx accumulates over the three grids of each image
    dx, _ = vl_nnbilinearsampler(x, grid, np.ones(y.shape))
    np.testing.assert_allclose(dx.sum(axis=(0, 1, 2)), [3 * 9 * 2, 3 * 9 * 2])


def test_points_whose_floor_corner_is_outside_read_zero():
    x = np.arange(1.0, 13.0).reshape(3, 4)           # H = 3, W = 4
    def at(py, px):
        return np.array([2 * py / 2 - 1, 2 * px / 3 - 1]).reshape(2, 1, 1, 1)
    # row -0.5: floor is -1, outside (MatConvNet's CPU rule), not half of row 0
    assert vl_nnbilinearsampler(x, at(-0.5, 1.0))[0, 0, 0, 0] == 0
    assert vl_nnbilinearsampler(x, at(1.0, -0.25))[0, 0, 0, 0] == 0
    assert vl_nnbilinearsampler(x, at(3.0, 1.0))[0, 0, 0, 0] == 0
    # row 2.5: floor row 2 is inside; the row below is dropped
    assert vl_nnbilinearsampler(x, at(2.5, 1.0))[0, 0, 0, 0] == 0.5 * x[2, 1]
    assert vl_nnbilinearsampler(x, at(0.0, 3.5))[0, 0, 0, 0] == 0.5 * x[0, 3]
    # the derivatives of such points are zero
    dx, dgrid = vl_nnbilinearsampler(x, at(-0.5, 1.0), np.ones((1, 1)))
    assert not dx.any() and not dgrid.any()


def test_nan_and_inf_grid_points_read_zero():
    x = images((4, 4, 2, 1))
    grid = np.array([np.nan, 0.0, 0.0, np.inf, -np.inf, 0.0, 0.0, 0.0])
    grid = grid.reshape(2, 1, 4, 1, order="F")
    y = vl_nnbilinearsampler(x, grid)
    assert np.all(y[:, :3] == 0)
    np.testing.assert_allclose(y[0, 3, :, 0], ref_sampler(x, grid[..., 3:, :])[0, 0, :, 0])
    dx, dgrid = vl_nnbilinearsampler(x, grid, np.ones(y.shape))
    assert np.all(dgrid[:, :, :3] == 0) and np.all(np.isfinite(dx))


def test_dropped_corners_are_dropped_not_multiplied_by_zero():
    # the last pixel: only the floor corner is inside; an infinite dY must give
    # MatConvNet's -inf * weight, not inf * 0 = NaN from the dropped corners
    x = np.ones((3, 4))
    grid = np.array([1.0, 1.0]).reshape(2, 1, 1, 1)
    assert vl_nnbilinearsampler(x, grid)[0, 0, 0, 0] == 1.0
    dx, dgrid = vl_nnbilinearsampler(x, grid, np.array([[np.inf]]))
    np.testing.assert_array_equal(dgrid.ravel(), [-np.inf, -np.inf])
    assert dx[2, 3] == np.inf and np.count_nonzero(dx) == 1


# ---------------------------------------------------------------------------
# bilinear sampler: numerical derivatives

@pytest.mark.parametrize("ih,iw,ow,per", [
    (8, 4, 4, 1), (8, 8, 8, 2), (16, 4, 8, 1), (16, 16, 4, 2),   # nnbilinearsampler.m check_der_x
])
def test_sampler_dx_matches_numerical_derivative(ih, iw, ow, per):
    x = rng(ih + iw).random((ih, iw, 3, 2))
    grid = affine_grids(8, ow, 2, per)

    def f(z):
        return vl_nnbilinearsampler(z, grid)

    proj = rng(1).standard_normal(f(x).shape)
    dx, _ = vl_nnbilinearsampler(x, grid, proj)
    check_derivative(f, x, dx, proj, eps=1e-3, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("h,w,no,n", [(5, 6, 2, 2), (7, 4, 3, 1), (4, 9, 4, 2)])
def test_sampler_dgrid_matches_numerical_derivative(h, w, no, n):
    x = images((h, w, 3, n), seed=h * w)
    grid = smooth_grid(h, w, 4, 5, no, seed=no)

    def f(g):
        return vl_nnbilinearsampler(x, g)

    proj = rng(2).standard_normal(f(grid).shape)
    _, dgrid = vl_nnbilinearsampler(x, grid, proj)
    check_derivative(f, grid, dgrid, proj, eps=1e-7, rtol=1e-6, atol=1e-9, directions=4)


def test_sampler_dgrid_elementwise_on_a_tiny_case():
    from _checks import check_gradient_elementwise
    x = images((4, 5, 2, 1), seed=8)
    grid = smooth_grid(4, 5, 2, 3, 2, seed=5)
    proj = rng(3).standard_normal((2, 3, 2, 2))
    _, dgrid = vl_nnbilinearsampler(x, grid, proj)
    check_gradient_elementwise(lambda g: vl_nnbilinearsampler(x, g), grid, dgrid, proj,
                               eps=1e-7, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------
# bilinear sampler: PyTorch oracle (section 33)

def test_sampler_matches_torch_grid_sample():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    n, per = 2, 2
    x = images((9, 11, 4, n), seed=6)
    grid = rng(7).uniform(-0.9, 0.9, (2, 5, 6, n * per))    # well inside the image
    xt = torch.tensor(x.transpose(3, 2, 0, 1), requires_grad=True)
    gt = torch.tensor(grid[[1, 0]].transpose(3, 1, 2, 0).copy(), requires_grad=True)
    yt = F.grid_sample(xt[np.repeat(np.arange(n), per)], gt, mode="bilinear",
                       padding_mode="zeros", align_corners=True)
    y = vl_nnbilinearsampler(x, grid)
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(2, 3, 1, 0), rtol=1e-12, atol=1e-12)
    dy = images(y.shape, seed=8)
    yt.backward(torch.tensor(dy.transpose(3, 2, 0, 1)))
    dx, dgrid = vl_nnbilinearsampler(x, grid, dy)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dgrid, gt.grad.numpy().transpose(3, 1, 2, 0)[[1, 0]],
                               rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------
# bilinear sampler: dtypes, layouts, shapes, calling forms

@pytest.mark.parametrize("order", ["C", "F"])
def test_sampler_float32_and_memory_order(order):
    x64 = images((6, 5, 3, 2), seed=9)
    g64 = smooth_grid(6, 5, 4, 3, 4, seed=1)
    dy64 = images((4, 3, 3, 4), seed=10)
    y64 = vl_nnbilinearsampler(x64, g64)
    dx64, dg64 = vl_nnbilinearsampler(x64, g64, dy64)
    conv = np.asfortranarray if order == "F" else np.ascontiguousarray
    x, g, dy = (conv(a.astype(np.float32)) for a in (x64, g64, dy64))
    copies = [a.copy() for a in (x, g, dy)]
    y = vl_nnbilinearsampler(x, g)
    dx, dg = vl_nnbilinearsampler(x, g, dy)
    for a, b in zip((x, g, dy), copies):
        np.testing.assert_array_equal(a, b)               # inputs untouched
    assert y.dtype == dx.dtype == dg.dtype == np.float32
    np.testing.assert_allclose(y, y64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, dx64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dg, dg64, rtol=1e-3, atol=1e-4)


def test_sampler_short_and_folded_shapes():
    x = images((5, 6, 2), seed=1)                  # one image
    grid = smooth_grid(5, 6, 3, 4, 1)[..., 0]      # 2 x Ho x Wo: one grid
    y = vl_nnbilinearsampler(x, grid)
    assert y.shape == (3, 4, 2, 1)
    dx, dgrid = vl_nnbilinearsampler(x, grid, y[..., 0])
    assert dx.shape == x.shape and dgrid.shape == grid.shape
    # 5-D grids fold into the 4th dimension
    x2 = images((5, 6, 2, 2), seed=2)
    g5 = smooth_grid(5, 6, 3, 4, 6).reshape(2, 3, 4, 2, 3, order="F")
    y5 = vl_nnbilinearsampler(x2, g5)
    np.testing.assert_allclose(y5, vl_nnbilinearsampler(x2, g5.reshape(2, 3, 4, 6, order="F")))
    dx5, dg5 = vl_nnbilinearsampler(x2, g5, y5)
    assert dg5.shape == g5.shape


def test_sampler_calling_forms():
    x = images((5, 5, 2, 1))
    grid = smooth_grid(5, 5, 3, 3, 1)
    ref = vl_nnbilinearsampler(x, grid)
    for args, kw in [(("NoCudnn",), {}), (("Cudnn", "Verbose"), {}), ((), {"cudnn": True}),
                     (("CudnnWorkspaceLimit", 1024), {}), ((None,), {})]:
        np.testing.assert_array_equal(vl_nnbilinearsampler(x, grid, *args, **kw), ref)
    dy = images(ref.shape, seed=1)
    want = vl_nnbilinearsampler(x, grid, dy)
    for got in (vl_nnbilinearsampler(x, grid, dzdy=dy),
                vl_nnbilinearsampler(x, grid, dy, "NoCudnn")):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(vl_nnbilinearsampler(x, grid, np.zeros((0,))), ref)


X5 = np.zeros((4, 5, 3, 2))
G5 = np.zeros((2, 3, 3, 4))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: vl_nnbilinearsampler(X5, np.zeros((3, 3, 3, 4))), ValueError,
     r"grid must be 2 x Ho x Wo x No.*\(3, 3, 3, 4\)"),
    (lambda: vl_nnbilinearsampler(X5, np.zeros((1, 3, 3, 2))), ValueError, r"grid must be 2 x"),
    (lambda: vl_nnbilinearsampler(X5, np.zeros((2, 3, 3, 3))), ValueError,
     r"No = 3 must be a multiple of .*N = 2.*\(4, 5, 3, 2\).*\(2, 3, 3, 3\)"),
    (lambda: vl_nnbilinearsampler(X5, G5.astype(np.float32)), ValueError,
     r"must not mix float32 and float64.*grid is float32"),
    (lambda: vl_nnbilinearsampler(X5.astype(np.float32), G5.astype(np.float32),
                                  np.zeros((3, 3, 3, 4))),
     ValueError, r"must not mix float32 and float64"),
    (lambda: vl_nnbilinearsampler(X5, G5, np.zeros((3, 3, 3, 2))), ValueError,
     r"dzdy has shape \(3, 3, 3, 2\).*\(3, 3, 3, 4\)"),
    (lambda: vl_nnbilinearsampler(X5.astype(np.int32), G5), ValueError,
     r"x must be float32 or float64"),
    (lambda: vl_nnbilinearsampler(X5, G5.astype(np.complex128)), ValueError,
     r"grid must be float32 or float64"),
    (lambda: vl_nnbilinearsampler(np.zeros((0, 3)), G5), ValueError, r"x must not be empty"),
    (lambda: vl_nnbilinearsampler(X5, np.zeros((2, 0, 3, 2))), ValueError,
     r"grid must not be empty"),
    (lambda: vl_nnbilinearsampler(X5, G5, method="max"), TypeError, r"unknown option 'method'"),
    (lambda: vl_nnbilinearsampler(X5, G5, None, "stride", 2), TypeError,
     r"unknown option 'stride'"),
])
def test_sampler_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------
# ROI pooling: loop reference (MatConvNet's C++ loops, channels vectorised)

def _c_round(v):
    """C's round on a double: halves away from zero."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def _transform6(transform):
    t = np.asarray(transform, np.float64).ravel(order="F")
    if t.size == 6:
        return t
    su, sv = (t[0], t[0]) if t.size == 1 else (t[0], t[1])
    return np.array([su, 0, 0, sv, 1 - su, 1 - sv])


def _ref_tiles(shape4, dtype, rois, sub, transform):
    """Yield (roi, ph, pw, image, rows, cols) for every tile."""
    h, w, _, n = shape4
    dt = np.dtype(dtype).type
    tr = _transform6(transform)
    table = np.asarray(rois).ravel(order="F").reshape(-1, 5)
    for k, (t, u1_, v1_, u2_, v2_) in enumerate(table.astype(np.float64)):
        u1 = float(dt(tr[0] * u1_ + tr[2] * v1_ + tr[4]))
        v1 = float(dt(tr[1] * u1_ + tr[3] * v1_ + tr[5]))
        u2 = float(dt(tr[0] * u2_ + tr[2] * v2_ + tr[4]))
        v2 = float(dt(tr[1] * u2_ + tr[3] * v2_ + tr[5]))
        image = min(max(int(t) - 1, 0), n - 1)
        rs, cs = _c_round(v1) - 1, _c_round(u1) - 1
        re, ce = _c_round(v2) - 1, _c_round(u2) - 1
        bin_h = dt(max(re - rs + 1, 1)) / dt(sub[0])
        bin_w = dt(max(ce - cs + 1, 1)) / dt(sub[1])
        for pw in range(sub[1]):
            ws = min(max(int(np.floor(dt(pw) * bin_w)) + cs, 0), w)
            we = min(max(int(np.ceil(dt(pw + 1) * bin_w)) + cs, 0), w)
            for ph in range(sub[0]):
                hs = min(max(int(np.floor(dt(ph) * bin_h)) + rs, 0), h)
                he = min(max(int(np.ceil(dt(ph + 1) * bin_h)) + rs, 0), h)
                yield k, ph, pw, image, range(hs, he), range(ws, we)


def ref_roipool(x, rois, sub=(1, 1), method="max", transform=1, dzdy=None):
    """Forward (dzdy None) or backward, one tile at a time, float64 results."""
    x = np.asarray(x)
    x4 = _as4(x).astype(np.float64)
    h, w, c, n = x4.shape
    k = np.asarray(rois).size // 5
    y = np.zeros((sub[0], sub[1], c, k))
    dx = np.zeros(x4.shape)
    dy4 = None if dzdy is None else _as4(np.asarray(dzdy, np.float64))
    for r, ph, pw, img, rows, cols in _ref_tiles(x4.shape, x.dtype, rois, sub, transform):
        if not rows or not cols:
            continue                                   # empty tile: 0, no gradient
        if method == "avg":
            total = np.zeros(c)
            for s in cols:
                for i in rows:
                    total = total + x4[i, s, :, img]
            count = len(rows) * len(cols)
            y[ph, pw, :, r] = total / count
            if dy4 is not None:
                for s in cols:
                    for i in rows:
                        dx[i, s, :, img] += dy4[ph, pw, :, r] / count
        else:
            best = np.full(c, -np.inf)
            win_r = np.full(c, -1)
            win_c = np.full(c, -1)
            for s in cols:                             # columns outer
                for i in rows:                         # rows inner
                    better = x4[i, s, :, img] > best   # NaN never wins
                    best = np.where(better, x4[i, s, :, img], best)
                    win_r = np.where(better, i, win_r)
                    win_c = np.where(better, s, win_c)
            y[ph, pw, :, r] = best
            if dy4 is not None:
                for ch in range(c):
                    if win_r[ch] >= 0:
                        dx[win_r[ch], win_c[ch], ch, img] += dy4[ph, pw, ch, r]
    return y if dzdy is None else dx.reshape(x.shape, order="F")


def distinct_data(shape, seed=0, dtype=np.float64):
    """MatConvNet's nnpool/nnroipool data: a random permutation (distinct values)."""
    size = int(np.prod(shape))
    return (rng(seed).permutation(size).reshape(shape) / 10.0).astype(dtype)


# nnroipool.m 'basic': columns [t u1 v1 u2 v2] on 15 x 14 x 3 x 2 data
BASIC_ROIS = np.array([[1, 0, 0, 15, 14], [1, 1, 4, 5, 7], [1, 2, 3, 6, 9],
                       [2, 0, 0, 15, 14], [2, 1, 1, 4, 4], [2, 2, 2, 2, 8],
                       [1, 1, 1, 9, 1], [1, 1, 1, 0, 0]], dtype=np.float64).T
SUBDIVISIONS = [(1, 1), (2, 1), (1, 2), (3, 7), (16, 16)]


# ---------------------------------------------------------------------------
# ROI pooling: MatConvNet's tests

@pytest.mark.parametrize("sub", SUBDIVISIONS)
@pytest.mark.parametrize("method", ["max", "avg"])
def test_roipool_basic_forward_and_backward(method, sub):
    x = distinct_data((15, 14, 3, 2), seed=1)
    y = vl_nnroipool(x, BASIC_ROIS, method=method, subdivisions=list(sub))
    assert y.shape == (sub[0], sub[1], 3, 8)
    np.testing.assert_allclose(y, ref_roipool(x, BASIC_ROIS, sub, method), rtol=1e-13, atol=1e-13)

    proj = rng(2).standard_normal(y.shape)
    dx = vl_nnroipool(x, BASIC_ROIS, proj, method=method, subdivisions=list(sub))
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, ref_roipool(x, BASIC_ROIS, sub, method, dzdy=proj),
                               rtol=1e-12, atol=1e-12)

    def f(z):
        return vl_nnroipool(z, BASIC_ROIS, method=method, subdivisions=list(sub))

    check_derivative(f, x, dx, proj, eps=1e-4, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("method", ["max", "avg"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_roipool_identity(method, dtype):
    # nnroipool.m 'identity': the transform swaps u and v
    x = (np.arange(2, 11)[:, None] * np.arange(1, 11)[None, :]).astype(dtype)
    rois = np.array([1, 1, 1, 9, 10], dtype)
    y = vl_nnroipool(x, rois, method=method, subdivisions=[9, 10],
                     transform=np.array([[0, 1, 0], [1, 0, 0]]))
    assert y.dtype == dtype
    np.testing.assert_array_equal(y[:, :, 0, 0], x)


# ---------------------------------------------------------------------------
# ROI pooling: geometry rules

def _rois(*columns, dtype=np.float64):
    return np.array(columns, dtype).T


@pytest.mark.parametrize("method", ["max", "avg"])
def test_roipool_random_rois_match_reference(method):
    x = distinct_data((11, 13, 2, 3), seed=3)
    r = rng(4)
    k = 12
    corners = r.uniform(-3, 16, (4, k))
    rois = np.vstack([r.integers(0, 5, k), np.minimum(corners[0], corners[2]),
                      np.minimum(corners[1], corners[3]), np.maximum(corners[0], corners[2]),
                      np.maximum(corners[1], corners[3])])
    rois[:, :3] = np.round(rois[:, :3] * 2) / 2        # a few exact halves
    for sub in [(1, 1), (2, 3), (4, 4), (7, 2)]:
        y = vl_nnroipool(x, rois, method=method, subdivisions=sub)
        np.testing.assert_allclose(y, ref_roipool(x, rois, sub, method), rtol=1e-13, atol=1e-13)
        dy = r.standard_normal(y.shape)
        np.testing.assert_allclose(vl_nnroipool(x, rois, dy, method=method, subdivisions=sub),
                                   ref_roipool(x, rois, sub, method, dzdy=dy),
                                   rtol=1e-12, atol=1e-12)


def test_rounding_is_half_away_from_zero():
    x = np.arange(1.0, 7.0)[None, :].repeat(3, axis=0)          # 3 x 6, value = column + 1
    # u1 = 2.5 rounds to 3 (numpy would give 2), u2 = 4.5 rounds to 5 (numpy: 4)
    y = vl_nnroipool(x, np.array([1, 2.5, 1, 4.5, 1]), method="avg")
    assert y[0, 0, 0, 0] == np.mean([3, 4, 5])
    # through the scalar transform: u' = 0.5 (u - 1) + 1 = 2.5 for u = 4
    y = vl_nnroipool(x, np.array([1, 4.0, 1, 4.0, 1]), transform=0.5)
    assert y[0, 0, 0, 0] == 3
    # negative halves too: v1 = -2.5 rounds to -3 (numpy: -2), which moves the
    # boundaries of the three tiles of rows; the last one starts at row 0, not 1
    x = np.arange(24.0).reshape(4, 6)
    rois = np.array([1, 1, -2.5, 1, 3])
    y = vl_nnroipool(x, rois, method="avg", subdivisions=[3, 1])[:, 0, 0, 0]
    np.testing.assert_array_equal(y, [0, x[0, 0], np.mean(x[0:3, 0])])
    np.testing.assert_array_equal(y, ref_roipool(x, rois, (3, 1), "avg")[:, 0, 0, 0])


def test_float32_geometry_uses_single_precision():
    # MatConvNet stores the transformed corners in the data's precision before
    # rounding: 2.5 - 1e-9 is 2.5 in single precision (rounds to 3, column 2)
    # but stays below 2.5 in double precision (rounds to 2, column 1)
    x = np.arange(1.0, 7.0)[None, :].repeat(3, axis=0)
    shift = np.array([[1, 0, -1e-9], [0, 1, 0]])
    rois = np.array([1, 2.5, 1, 2.5, 3])
    y64 = vl_nnroipool(x, rois, transform=shift)
    y32 = vl_nnroipool(x.astype(np.float32), rois.astype(np.float32), transform=shift)
    assert y64[0, 0, 0, 0] == 2 and y32[0, 0, 0, 0] == 3 and y32.dtype == np.float32
    # the bins too: 13 * float32(7 / 13) rounds up to 7.0000005, so the last of
    # 13 tiles of a 7-row ROI ends at ceil(...) = 8 in single precision (7 in double)
    x = np.arange(20.0).reshape(10, 2)
    rois = np.array([1.0, 1, 1, 1, 7])
    last64 = vl_nnroipool(x, rois, method="avg", subdivisions=[13, 1])[-1, 0, 0, 0]
    last32 = vl_nnroipool(x.astype(np.float32), rois.astype(np.float32), method="avg",
                          subdivisions=[13, 1])[-1, 0, 0, 0]
    assert last64 == x[6, 0] and last32 == np.mean(x[6:8, 0])
    # more transforms and bins against the reference, which replays the
    # single-precision steps (corners, bin sizes, bin boundaries)
    x = distinct_data((9, 9, 1, 1), dtype=np.float32)
    rois = np.array([[1, 2, 3, 24.5, 17], [1, 5, 5, 35, 35]], np.float32).T
    for tr in (0.1, [0.3, 0.7], np.array([[0.2, 0.05, 0.5], [0.1, 0.3, -0.5]])):
        for sub in [(3, 3), (7, 5)]:
            y = vl_nnroipool(x, rois, subdivisions=sub, transform=tr, method="avg")
            assert y.dtype == np.float32
            np.testing.assert_allclose(y, ref_roipool(x, rois, sub, "avg", tr), rtol=1e-6)


@pytest.mark.parametrize("method", ["max", "avg"])
def test_transform_forms_agree(method):
    x = distinct_data((12, 10, 2, 1), seed=5)
    rois = _rois([1, 3, 5, 17, 21], [1, 1, 1, 20, 24], [1, 8, 2, 9, 22])
    opts = dict(method=method, subdivisions=[2, 3])
    half = vl_nnroipool(x, rois, transform=0.5, **opts)
    np.testing.assert_array_equal(vl_nnroipool(x, rois, transform=[0.5, 0.5], **opts), half)
    matrix = np.array([[0.5, 0, 0.5], [0, 0.5, 0.5]])
    np.testing.assert_array_equal(vl_nnroipool(x, rois, transform=matrix, **opts), half)
    flat = [0.5, 0, 0, 0.5, 0.5, 0.5]           # the same matrix, column-major
    np.testing.assert_array_equal(vl_nnroipool(x, rois, transform=flat, **opts), half)
    np.testing.assert_allclose(half, ref_roipool(x, rois, (2, 3), method, 0.5), rtol=1e-13)
    # [SU SV] scales u by SU and v by SV
    aniso = vl_nnroipool(x, rois, transform=[0.5, 0.25], **opts)
    np.testing.assert_allclose(aniso, ref_roipool(x, rois, (2, 3), method, [0.5, 0.25]),
                               rtol=1e-13)
    np.testing.assert_array_equal(
        aniso, vl_nnroipool(x, rois, transform=np.array([[0.5, 0, 0.5], [0, 0.25, 0.75]]), **opts))
    # the default is the identity
    np.testing.assert_array_equal(vl_nnroipool(x, rois, transform=1, **opts),
                                  vl_nnroipool(x, rois, **opts))


def test_scalar_subdivisions_mean_square():
    x = distinct_data((10, 10, 2, 1))
    rois = _rois([1, 1, 1, 10, 10], [1, 2, 3, 7, 9])
    np.testing.assert_array_equal(vl_nnroipool(x, rois, subdivisions=3),
                                  vl_nnroipool(x, rois, subdivisions=[3, 3]))
    np.testing.assert_array_equal(vl_nnroipool(x, rois, subdivisions=np.array([[2.0]])),
                                  vl_nnroipool(x, rois, subdivisions=(2, 2)))


def test_image_index_is_truncated_and_clamped():
    x = np.stack([np.full((4, 4, 1), float(v)) for v in (1, 2, 3)], axis=3)
    rois = _rois([0, 1, 1, 4, 4], [-7, 1, 1, 4, 4], [1.9, 1, 1, 4, 4], [2, 1, 1, 4, 4],
                 [2.99, 1, 1, 4, 4], [3, 1, 1, 4, 4], [40, 1, 1, 4, 4])
    np.testing.assert_array_equal(vl_nnroipool(x, rois).ravel(), [1, 1, 1, 2, 2, 3, 3])


@pytest.mark.parametrize("method", ["max", "avg"])
def test_empty_tiles_give_zero_and_no_gradient(method):
    x = distinct_data((5, 6, 2, 1)) + 1.0
    # entirely right of / below the image, and a ROI whose tiles partly leave it
    rois = _rois([1, 20, 1, 25, 3], [1, 1, 9, 3, 12], [1, 4, 3, 9, 4])
    y = vl_nnroipool(x, rois, method=method, subdivisions=[1, 3])
    np.testing.assert_array_equal(y[..., :2], 0)
    np.testing.assert_allclose(y, ref_roipool(x, rois, (1, 3), method), rtol=1e-13)
    assert np.all(y[0, 0, :, 2] != 0) and np.all(y[0, 2, :, 2] == 0)
    dx = vl_nnroipool(x, rois[:, :2], np.ones((1, 3, 2, 2)), method=method, subdivisions=[1, 3])
    assert not dx.any()


def test_degenerate_roi_is_one_pixel():
    # u2 < u1 and v2 < v1: the ROI is max(., 1) = 1 pixel at the start corner
    x = distinct_data((6, 6, 1, 1))
    y = vl_nnroipool(x, np.array([1, 4, 3, 1, 1.0]), subdivisions=[2, 2])
    np.testing.assert_array_equal(y[:, :, 0, 0], np.full((2, 2), x[2, 3, 0, 0]))
    dx = vl_nnroipool(x, np.array([1, 4, 3, 1, 1.0]), np.ones((2, 2)), subdivisions=[2, 2])
    assert dx[2, 3, 0, 0] == 4 and dx.sum() == 4


def test_max_ties_go_to_first_in_column_major_order():
    x = np.array([[0.0, 5.0, 5.0], [5.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    dx = vl_nnroipool(x, np.array([1, 1, 1, 3, 3.0]), np.array([[1.0]]))
    expected = np.zeros((3, 3))
    expected[1, 0] = 1                  # column 0 is scanned first
    np.testing.assert_array_equal(dx, expected)
    x = np.full((3, 3), 2.0)
    dx = vl_nnroipool(x, np.array([1, 2, 2, 3, 3.0]), np.array([[1.0]]))
    expected = np.zeros((3, 3))
    expected[1, 1] = 1
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("sub", [(1, 1), (2, 2), (3, 5), (9, 9)])
def test_max_tie_routing_matches_reference(sub):
    x = rng(6).integers(0, 3, (9, 8, 3, 2)).astype(np.float64)
    rois = np.vstack([rng(7).integers(1, 3, 10), rng(8).integers(0, 6, (2, 10)),
                      rng(9).integers(4, 12, (2, 10))]).astype(np.float64)
    y = vl_nnroipool(x, rois, subdivisions=sub)
    dy = rng(10).standard_normal(y.shape)
    # tied maxima: the routing must be exact; only the summation order may differ
    np.testing.assert_allclose(vl_nnroipool(x, rois, dy, subdivisions=sub),
                               ref_roipool(x, rois, sub, "max", dzdy=dy), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("method", ["max", "avg"])
def test_overlapping_tiles_and_rois_accumulate(method):
    x = distinct_data((7, 7, 2, 1), seed=2)
    rois = _rois([1, 1, 1, 5, 5], [1, 1, 1, 5, 5], [1, 2, 2, 6, 7], [1, 1, 1, 3, 3])
    y = vl_nnroipool(x, rois, method=method, subdivisions=[3, 2])
    p = rng(3).standard_normal(y.shape)
    dx = vl_nnroipool(x, rois, p, method=method, subdivisions=[3, 2])
    # the adjoint identity: avg is linear, max picks one input per output
    np.testing.assert_allclose(np.vdot(y, p), np.vdot(x, dx), rtol=1e-12)
    np.testing.assert_allclose(dx, ref_roipool(x, rois, (3, 2), method, dzdy=p),
                               rtol=1e-12, atol=1e-12)


def test_max_skips_nan_and_all_nan_tile_gives_minus_inf():
    x = np.arange(16.0).reshape(4, 4)
    x[3, 3] = np.nan
    x[:2, :2] = np.nan
    rois = _rois([1, 1, 1, 4, 4])
    y = vl_nnroipool(x, rois, subdivisions=2)[:, :, 0, 0]
    np.testing.assert_array_equal(y, [[-np.inf, 7.0], [13.0, 14.0]])
    dx = vl_nnroipool(x, rois, np.ones((2, 2)), subdivisions=2)
    expected = np.zeros((4, 4))
    expected[1, 3] = expected[3, 1] = expected[3, 2] = 1
    np.testing.assert_array_equal(dx, expected)
    # avg propagates NaN
    assert np.isnan(vl_nnroipool(x, rois, method="avg")[0, 0, 0, 0])


@pytest.mark.parametrize("method", ["max", "avg"])
def test_blocks_of_tiles_give_the_same_result(method, monkeypatch):
    # many tiles of mixed sizes: force tiny blocks and compare with one big pass
    x = distinct_data((15, 14, 3, 2), seed=4)
    r = rng(5)
    k = 40
    a, b = r.uniform(0, 16, (2, k)), r.uniform(0, 16, (2, k))
    rois = np.vstack([r.integers(1, 3, k), np.minimum(a[0], b[0]), np.minimum(a[1], b[1]),
                      np.maximum(a[0], b[0]), np.maximum(a[1], b[1])])
    dy = r.standard_normal((3, 2, 3, k))
    y = vl_nnroipool(x, rois, method=method, subdivisions=[3, 2])
    dx = vl_nnroipool(x, rois, dy, method=method, subdivisions=[3, 2])
    monkeypatch.setattr(sampling, "_ROI_BLOCK_ELEMENTS", 1)
    calls = []
    original = sampling._tile_blocks
    monkeypatch.setattr(sampling, "_tile_blocks",
                        lambda *a: calls.append(a[2]) or original(a[0], a[1], 60))
    np.testing.assert_array_equal(vl_nnroipool(x, rois, method=method, subdivisions=[3, 2]), y)
    np.testing.assert_allclose(vl_nnroipool(x, rois, dy, method=method, subdivisions=[3, 2]), dx,
                               rtol=1e-13, atol=1e-13)
    assert calls == [x.size, x.size]
    assert len(list(original(np.arange(40) % 7, 3, 60))) > 4


def test_tile_blocks_bound_padding_and_size():
    area = np.array([0, 1, 2, 3, 4, 5, 8, 9, 16, 17, 100, 0, 3])
    blocks = list(sampling._tile_blocks(area, 2, 40))
    covered = np.sort(np.concatenate(blocks))
    np.testing.assert_array_equal(covered, np.flatnonzero(area))
    for block in blocks:
        largest = area[block].max()
        assert largest < 2 * area[block].min() or largest == 2 or largest == 1
        assert len(block) == 1 or len(block) * largest * 2 <= 40


# ---------------------------------------------------------------------------
# ROI pooling: dtypes, layouts, calling forms, errors

@pytest.mark.parametrize("method", ["max", "avg"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_roipool_float32_and_memory_order(method, order):
    conv = np.asfortranarray if order == "F" else np.ascontiguousarray
    x64 = distinct_data((15, 14, 3, 2), seed=1)
    dy64 = rng(2).standard_normal((3, 7, 3, 8))
    x, rois, dy = (conv(a.astype(np.float32)) for a in (x64, BASIC_ROIS, dy64))
    copies = [a.copy() for a in (x, rois, dy)]
    y = vl_nnroipool(x, rois, method=method, subdivisions=[3, 7])
    dx = vl_nnroipool(x, rois, dy, method=method, subdivisions=[3, 7])
    for a, b in zip((x, rois, dy), copies):
        np.testing.assert_array_equal(a, b)
    assert y.dtype == dx.dtype == np.float32 and dx.shape == x.shape
    np.testing.assert_allclose(y, ref_roipool(x, rois, (3, 7), method), rtol=1e-6)
    np.testing.assert_allclose(dx, ref_roipool(x, rois, (3, 7), method, dzdy=dy),
                               rtol=1e-5, atol=1e-6)


def test_rois_any_shape_with_5k_elements():
    x = distinct_data((15, 14, 3, 2))
    ref = vl_nnroipool(x, BASIC_ROIS, subdivisions=2)
    np.testing.assert_array_equal(vl_nnroipool(x, BASIC_ROIS.ravel(order="F"), subdivisions=2), ref)
    for rois in (BASIC_ROIS.reshape(5, 2, 4, order="F"), np.asfortranarray(BASIC_ROIS)):
        np.testing.assert_array_equal(vl_nnroipool(x, rois, subdivisions=2), ref)
    # short x: one image, one channel
    x2 = x[:, :, 0, 0]
    y = vl_nnroipool(x2, np.array([1, 1, 1, 3, 3.0]))
    assert y.shape == (1, 1, 1, 1)
    assert vl_nnroipool(x2, np.array([1, 1, 1, 3, 3.0]), y[:, :, 0, 0]).shape == x2.shape


def test_roipool_calling_forms():
    x = distinct_data((15, 14, 3, 2))
    ref = vl_nnroipool(x, BASIC_ROIS, method="avg", subdivisions=[2, 3])
    for got in (vl_nnroipool(x, BASIC_ROIS, "method", "avg", "subdivisions", [2, 3]),
                vl_nnroipool(x, BASIC_ROIS, "Method", "AVG", "Subdivisions", [2, 3], "NoCudnn"),
                vl_nnroipool(x, BASIC_ROIS, None, Method="Avg", SubDivisions=(2, 3), verbose=True),
                vl_nnroipool(x, BASIC_ROIS, np.zeros((0, 1)), method="avg", subdivisions=[2, 3])):
        np.testing.assert_array_equal(got, ref)
    dy = rng(1).standard_normal(ref.shape)
    want = vl_nnroipool(x, BASIC_ROIS, dy, method="avg", subdivisions=[2, 3])
    np.testing.assert_array_equal(
        vl_nnroipool(x, BASIC_ROIS, dzdy=dy, method="avg", subdivisions=[2, 3]), want)
    np.testing.assert_array_equal(
        vl_nnroipool(x, BASIC_ROIS, dy, "method", "avg", "subdivisions", [2, 3]), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_roipool_rois_of_any_real_type_are_converted_to_the_data_type(dtype):
    # MATLAB passes ROIs as doubles holding integers; any real array or list works
    x = distinct_data((15, 14, 3, 2)).astype(dtype)
    table = np.array([[1, 1, 1, 10, 12], [2, 3, 2, 14, 9], [1, 5, 6, 5, 6]])
    ref = vl_nnroipool(x, table.T.astype(dtype), subdivisions=[2, 3])
    dy = rng(2).standard_normal(ref.shape).astype(dtype)
    dref = vl_nnroipool(x, table.T.astype(dtype), dy, subdivisions=[2, 3])
    for rois in (table.T, table.T.astype(np.uint8), table.T.astype(np.float64),
                 table.T.astype(np.float32), table.T.tolist(), table.ravel().tolist(),
                 np.asfortranarray(table.T.astype(np.int16))):
        y = vl_nnroipool(x, rois, subdivisions=[2, 3])
        assert y.dtype == dtype
        np.testing.assert_array_equal(y, ref)
        np.testing.assert_array_equal(vl_nnroipool(x, rois, dy, subdivisions=[2, 3]), dref)
    # a ROI corner at a half converts too (rounded in the data's precision later)
    half = [1, 2.5, 1, 2.5, 3]
    np.testing.assert_array_equal(vl_nnroipool(x, half), vl_nnroipool(x, np.array(half, dtype)))


XR = np.zeros((6, 5, 3, 2))
R1 = np.array([1, 1, 1, 3, 3.0])


@pytest.mark.parametrize("call,exc,match", [
    (lambda: vl_nnroipool(XR, np.zeros(7)), ValueError, r"rois must have 5K elements.*\(7,\)"),
    (lambda: vl_nnroipool(XR, np.zeros((4, 3))), ValueError, r"5K elements.*\(4, 3\)"),
    (lambda: vl_nnroipool(XR, np.zeros((5, 0))), ValueError, r"5K elements.*\(5, 0\)"),
    (lambda: vl_nnroipool(XR, None), ValueError, r"rois must have 5K elements"),
    (lambda: vl_nnroipool(XR, np.array([1, 1, np.nan, 3, 3])), ValueError, r"rois must be finite"),
    (lambda: vl_nnroipool(XR, R1, transform=[1, 2, 3]), ValueError,
     r"Transform must have 1 or 2 or 6 elements, got 3"),
    (lambda: vl_nnroipool(XR, R1, transform=np.eye(2)), ValueError,
     r"Transform must have .* got 4"),
    (lambda: vl_nnroipool(XR, R1, transform=[]), ValueError, r"Transform must have .* got 0"),
    (lambda: vl_nnroipool(XR, R1, subdivisions=0), ValueError, r"Subdivisions must be >= 1"),
    (lambda: vl_nnroipool(XR, R1, subdivisions=[2, 0]), ValueError, r"Subdivisions must be >= 1"),
    (lambda: vl_nnroipool(XR, R1, subdivisions=[1, 2, 3]), ValueError,
     r"Subdivisions must have 1 or 2 elements"),
    (lambda: vl_nnroipool(XR, R1, subdivisions=1.5), ValueError, r"Subdivisions must be integral"),
    (lambda: vl_nnroipool(XR, R1, method="sum"), ValueError,
     r"Method must be 'max' or 'avg'.*'sum'"),
    (lambda: vl_nnroipool(XR, R1, method=None), ValueError, r"Method must be 'max' or 'avg'"),
    (lambda: vl_nnroipool(XR, R1.astype(complex)), ValueError,
     r"rois must be real numeric, got dtype complex128"),
    (lambda: vl_nnroipool(XR, ["1", "1", "1", "2", "2"]), ValueError, r"rois must be real numeric"),
    (lambda: vl_nnroipool(XR, R1 > 0), ValueError, r"rois must be real numeric, got dtype bool"),
    (lambda: vl_nnroipool(XR, [[1, 1, 1, 2, 2], [1, 2]]), ValueError,
     r"rois must be a real numeric array"),
    (lambda: vl_nnroipool(XR.astype(np.float32), R1.astype(np.float32), np.zeros((1, 1, 3, 1))),
     ValueError, r"must not mix float32 and float64.*dzdy is float64"),
    (lambda: vl_nnroipool(XR, R1, np.zeros((1, 1, 3, 2))), ValueError,
     r"dzdy has shape \(1, 1, 3, 2\).*\(1, 1, 3, 1\)"),
    (lambda: vl_nnroipool(XR, R1, np.zeros((2, 2, 3, 1)), subdivisions=[2, 1]), ValueError,
     r"dzdy has shape \(2, 2, 3, 1\).*\(2, 1, 3, 1\)"),
    (lambda: vl_nnroipool(np.zeros((0, 4)), R1), ValueError, r"x must not be empty"),
    (lambda: vl_nnroipool(XR, R1, stride=2), TypeError, r"unknown option 'stride'"),
    (lambda: vl_nnroipool(XR, R1, None, "pad", 1), TypeError, r"unknown option 'pad'"),
    (lambda: vl_nnroipool(XR, "method"), TypeError, r"expected at least 2 arguments"),
])
def test_roipool_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
