"""Tests for vl_nnconv and vl_nnconvt (MATCONVNET_SEMANTICS.md sections 1, 2).

The oracles are plain loop references written here from the semantics
(section 1.3/1.4 for conv, the scatter form of section 2 for convt); the
derivatives are checked against central differences (``_checks``), adjoint
identities, and the conv/convt relations of section 2.  The parameter grids
follow MatConvNet's own suite (``nnconv.m``, ``nnconvt.m``, section 34.2).
"""

import contextlib

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import vlnn
import vlnn.conv as conv_module
from vlnn import vl_nnconv, vl_nnconvt

from _checks import check_derivative, check_gradient_elementwise, randn


# ---------------------------------------------------------------------------
# Loop references (independent of vlnn's helpers)
# ---------------------------------------------------------------------------

class Invalid(Exception):
    """The reference's verdict that MatConvNet rejects a configuration."""


def as4(a):
    """MATLAB's 4-D view: missing trailing dims are 1, dims past the 4th
    fold into the 4th (column-major)."""
    shape = tuple(a.shape)
    if len(shape) < 4:
        shape = shape + (1,) * (4 - len(shape))
    else:
        shape = shape[:3] + (int(np.prod(shape[3:])),)
    return np.reshape(a, shape, order="F")


def pair(v):
    v = np.ravel(np.asarray(v), order="F").astype(int)
    return (int(v[0]), int(v[0])) if v.size == 1 else (int(v[0]), int(v[1]))


def quad(v):
    v = np.ravel(np.asarray(v), order="F").astype(int)
    return tuple(int(a) for a in v) * (4 if v.size == 1 else 1)


def ref_conv(x, w, b=None, stride=1, pad=0, dilate=1):
    """Section 1.3 (and 1.4 when ``w`` is None), one output pixel at a time.
    Returns float64 ``HO x WO x K x N``; raises :class:`Invalid` where
    MatConvNet errors (section 1.7, shape rules only)."""
    x = as4(np.asarray(x, np.float64))
    sy, sx = pair(stride)
    pt, pb, pl, pr = quad(pad)
    dy, dx = pair(dilate)
    h, wd, c, n = x.shape
    bias = None if b is None else np.ravel(np.asarray(b, np.float64), order="F")

    if w is None:
        if (dy, dx) != (1, 1):
            raise Invalid("dilate without filters")
        if bias is not None and bias.size != c:
            raise Invalid("bias count")
        ho = (h + pt + pb - 1) // sy + 1
        wo = (wd + pl + pr - 1) // sx + 1
        y = np.zeros((ho, wo, c, n))
        for i in range(ho):
            for j in range(wo):
                r, s = i * sy - pt, j * sx - pl
                if 0 <= r < h and 0 <= s < wd:
                    y[i, j] = x[r, s]
                if bias is not None:
                    y[i, j] += bias[:, None]
        return y

    w = as4(np.asarray(w, np.float64))
    fh, fw, fc, k = w.shape
    if c % fc:
        raise Invalid("filter depth does not divide data depth")
    groups = c // fc
    if k % groups:
        raise Invalid("K not a multiple of groups")
    if bias is not None and bias.size != k:
        raise Invalid("bias count")
    eh, ew = (fh - 1) * dy + 1, (fw - 1) * dx + 1
    if h + pt + pb < eh or wd + pl + pr < ew:
        raise Invalid("filter extent larger than the padded input")
    ho = (h + pt + pb - eh) // sy + 1
    wo = (wd + pl + pr - ew) // sx + 1
    kg = k // groups
    y = np.zeros((ho, wo, k, n))
    for kk in range(k):
        g = kk // kg
        for i in range(ho):
            for j in range(wo):
                acc = np.zeros(n) if bias is None else np.full(n, bias[kk])
                for u in range(fh):
                    for v in range(fw):
                        r, s = i * sy + u * dy - pt, j * sx + v * dx - pl
                        if 0 <= r < h and 0 <= s < wd:
                            acc += w[u, v, :, kk] @ x[r, s, g * fc:(g + 1) * fc, :]
                y[i, j, kk] = acc
    return y


def ref_conv_backward(x, w, dy, stride=1, pad=0, dilate=1):
    """Section 1.5 (1.4 when ``w`` is None) by loops: every output pixel's
    derivative is scattered back to the input pixels and filter taps its
    window reads.  Returns float64 4-D ``(dx, dw)`` (``dw`` None without
    filters); the bias derivative is a plain sum, checked elsewhere."""
    x = as4(np.asarray(x, np.float64))
    dy = as4(np.asarray(dy, np.float64))
    sy, sx = pair(stride)
    pt, pb, pl, pr = quad(pad)
    ddy, ddx = pair(dilate)
    h, wd, c, n = x.shape
    ho, wo, k, _ = dy.shape
    dx = np.zeros(x.shape)
    if w is None:
        for i in range(ho):
            for j in range(wo):
                r, s = i * sy - pt, j * sx - pl
                if 0 <= r < h and 0 <= s < wd:
                    dx[r, s] += dy[i, j]
        return dx, None
    w = as4(np.asarray(w, np.float64))
    fh, fw, fc, _ = w.shape
    kg = k // (c // fc)
    dw = np.zeros(w.shape)
    for kk in range(k):
        ch = slice((kk // kg) * fc, (kk // kg + 1) * fc)
        for i in range(ho):
            for j in range(wo):
                for u in range(fh):
                    for v in range(fw):
                        r, s = i * sy + u * ddy - pt, j * sx + v * ddx - pl
                        if 0 <= r < h and 0 <= s < wd:
                            dx[r, s, ch] += np.outer(w[u, v, :, kk], dy[i, j, kk])
                            dw[u, v, :, kk] += x[r, s, ch] @ dy[i, j, kk]
    return dx, dw


def ref_convt(x, w, b=None, upsample=1, crop=0, groups=1):
    """Section 2, scatter form: every input pixel adds its filter-weighted
    patch to the output; contributions outside the crop window are dropped."""
    x = as4(np.asarray(x, np.float64))
    w = as4(np.asarray(w, np.float64))
    uy, ux = pair(upsample)
    ct, cb, cl, cr = quad(crop)
    h, wd, d, n = x.shape
    fh, fw, k, fd = w.shape
    if fd != d or d % groups:
        raise Invalid("filter/data depth")
    yh = (h - 1) * uy + fh - ct - cb
    yw = (wd - 1) * ux + fw - cl - cr
    if yh < 1 or yw < 1:
        raise Invalid("empty output")
    dg = d // groups
    y = np.zeros((yh, yw, k * groups, n))
    for dd in range(d):
        g = dd // dg
        for i in range(h):
            for j in range(wd):
                for u in range(fh):
                    for v in range(fw):
                        p, q = i * uy + u - ct, j * ux + v - cl
                        if 0 <= p < yh and 0 <= q < yw:
                            y[p, q, g * k:(g + 1) * k] += np.outer(w[u, v, :, dd], x[i, j, dd])
    if b is not None:
        y += np.ravel(np.asarray(b, np.float64), order="F")[None, None, :, None]
    return y


def scale_tol(ref, rtol):
    finite = np.abs(ref[np.isfinite(ref)])
    return rtol * max(1.0, float(finite.max()) if finite.size else 1.0)


def assert_close(actual, expected, rtol=1e-10):
    actual = np.asarray(actual)
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=rtol,
                               atol=scale_tol(expected, rtol))


def inner(a, b):
    return float(np.vdot(np.asarray(a, np.float64).ravel(order="F"),
                         np.asarray(b, np.float64).ravel(order="F")))


# ---------------------------------------------------------------------------
# Sample inputs
# ---------------------------------------------------------------------------

def conv_case(xs, ws, bias="K", **opts):
    """``bias``: None, or a shape spec with 'K' for the filter count."""
    return dict(xs=xs, ws=ws, bias=bias, opts=opts)


CONV_CASES = {
    "basic": conv_case((5, 6, 3, 2), (3, 3, 3, 4)),
    "nobias": conv_case((5, 6, 3, 2), (3, 3, 3, 4), bias=None),
    "bias_1xK": conv_case((5, 6, 3, 2), (2, 3, 3, 4), bias=(1, "K")),
    "bias_11K": conv_case((5, 6, 3, 2), (2, 3, 3, 4), bias=(1, 1, "K")),
    "bias_Kx1": conv_case((5, 6, 3, 2), (2, 3, 3, 4), bias=("K", 1)),
    "stride2": conv_case((7, 8, 2, 2), (3, 3, 2, 3), stride=2),
    "stride3": conv_case((8, 9, 2, 1), (2, 2, 2, 3), stride=3),
    "stride_1_2": conv_case((7, 8, 2, 2), (3, 2, 2, 3), stride=[1, 2]),
    "stride_3_1": conv_case((8, 7, 2, 2), (2, 3, 2, 3), stride=[3, 1]),
    "stride_2_3": conv_case((8, 9, 3, 1), (3, 3, 3, 2), stride=(2, 3)),
    "pad1": conv_case((5, 6, 3, 2), (3, 3, 3, 4), pad=1),
    "pad2": conv_case((4, 5, 2, 2), (3, 2, 2, 3), pad=2),
    "pad_asym_0120": conv_case((5, 6, 2, 2), (3, 3, 2, 3), pad=[0, 1, 2, 0]),
    "pad_asym_2001": conv_case((5, 6, 2, 2), (2, 3, 2, 3), pad=[2, 0, 0, 1]),
    "pad_stride": conv_case((7, 6, 2, 2), (3, 3, 2, 3), pad=[1, 2, 0, 2], stride=[2, 3]),
    "pad_gt_filter_1x1": conv_case((3, 4, 2, 2), (1, 1, 2, 3), pad=2),
    "pad_gt_filter_2x2": conv_case((3, 3, 2, 1), (2, 2, 2, 2), pad=3, stride=2),
    "dilate2": conv_case((7, 8, 2, 2), (3, 3, 2, 3), dilate=2),
    "dilate3": conv_case((8, 9, 2, 1), (2, 3, 2, 2), dilate=3),
    "dilate_1_2": conv_case((6, 8, 2, 2), (2, 3, 2, 3), dilate=[1, 2]),
    "dilate_3_1_stride": conv_case((9, 7, 2, 2), (3, 2, 2, 3), dilate=[3, 1], stride=[1, 2]),
    "dilate_pad_stride": conv_case((6, 7, 2, 2), (3, 3, 2, 2), dilate=2, pad=[1, 2, 2, 1],
                                   stride=2),
    "groups3": conv_case((5, 5, 9, 2), (3, 3, 3, 6)),
    "groups3_k3": conv_case((4, 5, 9, 1), (2, 3, 3, 3), pad=1),
    "groups2_stride_pad": conv_case((6, 6, 4, 2), (3, 2, 2, 4), stride=2, pad=[1, 0, 1, 1]),
    "groups4_depthwise": conv_case((5, 4, 4, 2), (3, 3, 1, 8), dilate=[2, 1], pad=1),
    "filter_1x3": conv_case((4, 6, 3, 2), (1, 3, 3, 2)),
    "filter_3x1": conv_case((4, 6, 3, 2), (3, 1, 3, 2), stride=[2, 1]),
    "filter_1x1": conv_case((4, 5, 3, 2), (1, 1, 3, 4)),
    "filter_1x1_groups": conv_case((4, 5, 6, 2), (1, 1, 2, 6)),
    "filter_1x1_stride": conv_case((5, 5, 3, 2), (1, 1, 3, 2), stride=2),
    "filter_1x1_pad": conv_case((3, 4, 3, 2), (1, 1, 3, 2), pad=[1, 0, 0, 1]),
    "fully_connected": conv_case((4, 5, 3, 3), (4, 5, 3, 6)),
    "fully_connected_n1": conv_case((3, 2, 2, 1), (3, 2, 2, 4), bias=(1, "K")),
    "whole_input_padded": conv_case((3, 4, 2, 2), (3, 4, 2, 3), pad=1),
    "whole_input_groups": conv_case((3, 4, 4, 2), (3, 4, 2, 4)),
    # more than 8 channels per group: the interleaved column layout
    "channels10": conv_case((3, 5, 10, 3), (2, 3, 10, 5)),
    "channels10_stride_pad": conv_case((5, 6, 10, 2), (3, 3, 10, 2), stride=[2, 1],
                                       pad=[1, 0, 2, 1], dilate=[1, 2]),
    "channels18_groups2": conv_case((4, 4, 18, 1), (2, 2, 9, 4), pad=1),
    # 16+ channels per group at stride 1: per-tap GEMMs on shifted views
    "channels16_unit_stride": conv_case((4, 5, 16, 2), (3, 3, 16, 3), pad=[1, 0, 2, 1],
                                        dilate=[1, 2]),
    "channels32_groups2_unit_stride": conv_case((4, 4, 32, 1), (2, 3, 16, 4), pad=1),
    # MatConvNet's filter_shapes / dilate grids, reduced
    "mcn_filter_shapes_5x3": conv_case((3, 5, 10, 3), (3, 5, 10, 5)),
    "mcn_dilate": conv_case((9, 10, 4, 2), (3, 2, 4, 3), stride=[3, 2], dilate=[3, 2]),
    # empty filters: bias plus subsampling (section 1.4)
    "empty_w": conv_case((4, 5, 3, 2), None, bias=("K",)),
    "empty_w_nobias": conv_case((4, 5, 3, 2), None, bias=None, stride=2),
    "empty_w_stride_pad": conv_case((5, 6, 3, 2), None, bias=(1, "K"), stride=[2, 3],
                                    pad=[1, 0, 2, 1]),
    "empty_w_bigpad": conv_case((2, 3, 2, 1), None, bias=(1, 1, "K"), stride=2, pad=3),
    "empty_w_identity_1x1": conv_case((1, 1, 10, 4), None, bias=(1, "K")),
}


def make_conv(case, dtype=np.float64, seed=0, order="C"):
    xs, ws, bias = case["xs"], case["ws"], case["bias"]
    x = randn(xs, dtype, seed, order)
    w = randn(ws, dtype, seed + 1, order) if ws is not None else None
    k = as4(w).shape[3] if w is not None else as4(x).shape[2]
    if bias is None:
        b = None
    else:
        bs = tuple(k if d == "K" else d for d in (bias if isinstance(bias, tuple) else ("K",)))
        b = randn(bs, dtype, seed + 2, order)
    return x, w, b, dict(case["opts"])


def convt_case(xs, ws, bias="K", **opts):
    return dict(xs=xs, ws=ws, bias=bias, opts=opts)


CONVT_CASES = {
    "basic": convt_case((4, 5, 3, 2), (3, 4, 2, 3)),
    "nobias": convt_case((4, 5, 3, 2), (3, 4, 2, 3), bias=None),
    "d1_k1": convt_case((4, 5, 1, 3), (3, 4, 1, 1), bias=(1, "K")),
    "upsample2": convt_case((3, 4, 2, 2), (3, 3, 2, 2), upsample=2),
    "upsample_3_1": convt_case((3, 4, 2, 2), (3, 4, 3, 2), upsample=[3, 1]),
    "upsample_2_3": convt_case((3, 3, 3, 1), (2, 3, 2, 3), upsample=(2, 3)),
    "upsample_gt_filter": convt_case((3, 3, 2, 2), (2, 2, 2, 2), upsample=3),
    "crop1": convt_case((4, 5, 2, 2), (3, 4, 3, 2), crop=1),
    "crop_asym": convt_case((4, 5, 2, 2), (3, 4, 3, 2), crop=[1, 0, 2, 1]),
    "crop_asym2": convt_case((3, 4, 3, 2), (3, 4, 3, 3), crop=[0, 2, 1, 3], upsample=2),
    "crop_upsample": convt_case((5, 6, 3, 2), (3, 4, 3, 3), upsample=[2, 3], crop=[1, 2, 3, 1]),
    "groups2": convt_case((4, 5, 4, 2), (3, 3, 3, 4), bias=(1, "K"), numGroups=2),
    "groups3": convt_case((4, 4, 6, 2), (3, 4, 2, 6), bias=(1, 1, "K"), numGroups=3),
    "groups3_depthwise": convt_case((3, 4, 3, 1), (2, 3, 1, 3), numGroups=3, upsample=2,
                                    crop=[0, 1, 1, 0]),
    "groups3_upsample_crop": convt_case((3, 3, 6, 2), (3, 4, 2, 6), numGroups=3, upsample=[2, 3],
                                        crop=[1, 1, 0, 2]),
    "filter_1x1": convt_case((4, 5, 3, 2), (1, 1, 4, 3)),
    "filter_1x1_groups": convt_case((4, 5, 4, 2), (1, 1, 2, 4), numGroups=2),
    "filter_1x1_upsample": convt_case((3, 4, 2, 2), (1, 1, 2, 2), upsample=2),
    "one_one_image": convt_case((1, 1, 3, 2), (6, 4, 2, 3), upsample=2),
    "one_one_image_crop": convt_case((1, 1, 3, 2), (6, 6, 2, 3), upsample=2, crop=[1, 2, 1, 2]),
    "many_outputs_interleaved": convt_case((3, 4, 2, 2), (3, 3, 10, 2), crop=[1, 0, 0, 1],
                                           upsample=2),
    "many_outputs_unit_upsample": convt_case((3, 4, 2, 2), (3, 3, 16, 2), crop=[1, 0, 0, 1]),
    "many_outputs_groups2_unit_upsample": convt_case((3, 3, 4, 1), (2, 3, 16, 4), numGroups=2,
                                                     crop=[0, 1, 1, 0]),
}


def make_convt(case, dtype=np.float64, seed=0, order="C"):
    xs, ws, bias = case["xs"], case["ws"], case["bias"]
    x = randn(xs, dtype, seed, order)
    w = randn(ws, dtype, seed + 1, order)
    opts = dict(case["opts"])
    groups = opts.get("numGroups", 1)
    kk = as4(w).shape[2] * groups
    if bias is None:
        b = None
    else:
        bs = tuple(kk if d == "K" else d for d in (bias if isinstance(bias, tuple) else ("K",)))
        b = randn(bs, dtype, seed + 2, order)
    return x, w, b, opts


def convt_ref_opts(opts):
    return dict(upsample=opts.get("upsample", 1), crop=opts.get("crop", 0),
                groups=opts.get("numGroups", 1))


@pytest.fixture
def small_workspace():
    """The smallest workspace the library allows: forces row-band chunks."""
    old = vlnn.set_workspace_limit(65536)
    try:
        yield
    finally:
        vlnn.set_workspace_limit(old)


# conv.py picks an engine per layer ('direct', 'im2col' or, at unit stride,
# 'shifted'); its _FORCE_STRATEGY hook lets the tests run every case
# through each engine.
STRATEGIES = ["im2col", "shifted", "rows"] if hasattr(conv_module, "_FORCE_STRATEGY") else []


@contextlib.contextmanager
def forced_strategy(name):
    old = conv_module._FORCE_STRATEGY
    conv_module._FORCE_STRATEGY = name
    try:
        yield
    finally:
        conv_module._FORCE_STRATEGY = old


# ---------------------------------------------------------------------------
# Forward against the loop references
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_conv_forward_matches_loop_reference(name):
    x, w, b, opts = make_conv(CONV_CASES[name])
    y = vl_nnconv(x, w, b, **opts)
    expected = ref_conv(x, w, b, **opts)
    assert y.ndim == 4 and y.dtype == np.float64
    assert y.shape == expected.shape
    assert_close(y, expected)


@pytest.mark.parametrize("name", sorted(CONVT_CASES))
def test_convt_forward_matches_scatter_reference(name):
    x, w, b, opts = make_convt(CONVT_CASES[name])
    y = vl_nnconvt(x, w, b, **opts)
    expected = ref_convt(x, w, b, **convt_ref_opts(opts))
    assert y.ndim == 4 and y.dtype == np.float64
    assert y.shape == expected.shape
    assert_close(y, expected)


def test_conv_output_size_formula():
    # HO = floor((H + PT + PB - EH) / SY) + 1 with EH = (FH - 1) * DY + 1
    x = randn((11, 13, 2, 1))
    for fh, fw, sy, sx, pad, dy, dx in [(3, 2, 2, 3, (1, 0, 2, 1), 2, 1),
                                        (1, 4, 3, 1, (0, 2, 0, 0), 1, 3),
                                        (4, 4, 1, 2, (2, 2, 2, 2), 3, 2)]:
        w = randn((fh, fw, 2, 3))
        y = vl_nnconv(x, w, None, stride=[sy, sx], pad=list(pad), dilate=[dy, dx])
        eh, ew = (fh - 1) * dy + 1, (fw - 1) * dx + 1
        assert y.shape == ((11 + pad[0] + pad[1] - eh) // sy + 1,
                           (13 + pad[2] + pad[3] - ew) // sx + 1, 3, 1)


def test_conv_pad_larger_than_filter_gives_bias_in_padding():
    x, w, b = randn((3, 3, 2, 2)), randn((2, 2, 2, 3)), randn((3,))
    y = vl_nnconv(x, w, b, pad=4)
    # the first two rows/cols of windows lie entirely in the top/left padding
    np.testing.assert_array_equal(y[:3, :, :, :], np.broadcast_to(b[None, None, :, None],
                                                                    y[:3].shape))
    np.testing.assert_array_equal(y[:, -3:], np.broadcast_to(b[None, None, :, None],
                                                             y[:, -3:].shape))
    assert not np.allclose(y[4, 4], b[:, None])


def test_conv_is_correlation_not_convolution():
    # a one-hot filter at (0, 0) reads the top-left neighbour: no flip
    x = randn((4, 5, 1, 1))
    w = np.zeros((2, 2, 1, 1))
    w[0, 0] = 1.0
    y = vl_nnconv(x, w, None)
    np.testing.assert_array_equal(y[:, :, 0, 0], x[:3, :4, 0, 0])
    w = np.zeros((2, 3, 1, 1))
    w[1, 2] = 1.0  # FH x FW: the first dimension is the height
    y = vl_nnconv(x, w, None)
    np.testing.assert_array_equal(y[:, :, 0, 0], x[1:, 2:, 0, 0])


def test_conv_fully_connected_is_matrix_product():
    x, w, b = randn((4, 3, 5, 6)), randn((4, 3, 5, 7), seed=1), randn((7,), seed=2)
    y = vl_nnconv(x, w, b)
    xm = x.reshape(-1, 6, order="F")
    wm = w.reshape(-1, 7, order="F")
    assert y.shape == (1, 1, 7, 6)
    assert_close(y[0, 0], wm.T @ xm + b[:, None])


def test_conv_filter_groups_equal_dense_bank_with_zero_blocks():
    # MatConvNet's filter_groups: 3 groups of 3 channels
    for fh, fw in [(1, 1), (2, 3), (3, 2)]:
        x = randn((6, 7, 9, 2))
        w = randn((fh, fw, 3, 6), seed=1)
        dense = np.zeros((fh, fw, 9, 6))
        for k in range(6):
            g = k // 2
            dense[:, :, 3 * g:3 * g + 3, k] = w[:, :, :, k]
        y = vl_nnconv(x, w, None, pad=1)
        assert_close(y, vl_nnconv(x, dense, None, pad=1))
        dy = randn(y.shape, seed=3)
        dx, dw, _ = vl_nnconv(x, w, None, dy, pad=1)
        ddx, ddw, _ = vl_nnconv(x, dense, None, dy, pad=1)
        assert_close(dx, ddx)
        for k in range(6):
            g = k // 2
            assert_close(dw[:, :, :, k], ddw[:, :, 3 * g:3 * g + 3, k])


def test_conv_empty_filter_is_bias_and_subsampling():
    x, b = randn((7, 8, 3, 2)), randn((1, 3), seed=1)
    y = vl_nnconv(x, None, b, stride=[2, 3])
    np.testing.assert_array_equal(y, x[::2, ::3] + b.reshape(1, 1, 3, 1))
    # an empty array (MATLAB's zeros(0,...)) means the same as None
    np.testing.assert_array_equal(vl_nnconv(x, np.zeros((0, 0)), b, stride=[2, 3]), y)
    dy = randn(y.shape, seed=2)
    dx, dw, db = vl_nnconv(x, None, b, dy, stride=[2, 3])
    assert dw is None
    expected = np.zeros_like(x)
    expected[::2, ::3] = dy
    np.testing.assert_array_equal(dx, expected)
    assert db.shape == b.shape
    assert_close(db, dy.sum(axis=(0, 1, 3)).reshape(1, 3))


# ---------------------------------------------------------------------------
# Backward: numerical derivatives, adjoint identities
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_conv_backward_numerical(name):
    x, w, b, opts = make_conv(CONV_CASES[name])
    y = vl_nnconv(x, w, b, **opts)
    proj = randn(y.shape, seed=7)
    dx, dw, db = vl_nnconv(x, w, b, proj, **opts)
    assert dx.shape == x.shape
    check_derivative(lambda x_: vl_nnconv(x_, w, b, **opts), x, dx, proj)
    if w is None:
        assert dw is None
    else:
        assert dw.shape == w.shape
        check_derivative(lambda w_: vl_nnconv(x, w_, b, **opts), w, dw, proj)
    if b is None:
        assert db is None
    else:
        assert db.shape == b.shape
        check_derivative(lambda b_: vl_nnconv(x, w, b_, **opts), b, db, proj)


@pytest.mark.parametrize("name", sorted(CONVT_CASES))
def test_convt_backward_numerical(name):
    x, w, b, opts = make_convt(CONVT_CASES[name])
    y = vl_nnconvt(x, w, b, **opts)
    proj = randn(y.shape, seed=7)
    dx, dw, db = vl_nnconvt(x, w, b, proj, **opts)
    assert dx.shape == x.shape and dw.shape == w.shape
    check_derivative(lambda x_: vl_nnconvt(x_, w, b, **opts), x, dx, proj)
    check_derivative(lambda w_: vl_nnconvt(x, w_, b, **opts), w, dw, proj)
    if b is None:
        assert db is None
    else:
        assert db.shape == b.shape
        check_derivative(lambda b_: vl_nnconvt(x, w, b_, **opts), b, db, proj)


@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_conv_backward_matches_loop_reference(name):
    x, w, b, opts = make_conv(CONV_CASES[name])
    dy = randn(ref_conv(x, w, b, **opts).shape, seed=8)
    dx, dw, db = vl_nnconv(x, w, b, dy, **opts)
    ref_dx, ref_dw = ref_conv_backward(x, w, dy, **opts)
    assert_close(dx, ref_dx.reshape(x.shape, order="F"))
    if w is None:
        assert dw is None
    else:
        assert_close(dw, ref_dw.reshape(w.shape, order="F"))
    if b is not None:
        assert_close(np.ravel(db, order="F"), dy.sum(axis=(0, 1, 3)))


@pytest.mark.parametrize("name", ["pad_stride", "groups2_stride_pad", "empty_w_stride_pad"])
def test_conv_backward_elementwise(name):
    # full finite-difference gradients on tiny inputs
    x, w, b, opts = make_conv(CONV_CASES[name])
    proj = randn(vl_nnconv(x, w, b, **opts).shape, seed=7)
    dx, dw, db = vl_nnconv(x, w, b, proj, **opts)
    check_gradient_elementwise(lambda x_: vl_nnconv(x_, w, b, **opts), x, dx, proj)
    if w is not None:
        check_gradient_elementwise(lambda w_: vl_nnconv(x, w_, b, **opts), w, dw, proj)
    check_gradient_elementwise(lambda b_: vl_nnconv(x, w, b_, **opts), b, db, proj)


@pytest.mark.parametrize("name", sorted(n for n, c in CONV_CASES.items() if c["ws"] is not None))
def test_conv_adjoint_identities(name):
    x, w, _, opts = make_conv(CONV_CASES[name])
    y = vl_nnconv(x, w, None, **opts)
    dy = randn(y.shape, seed=9)
    dx, dw, db = vl_nnconv(x, w, None, dy, **opts)
    assert db is None
    lhs = inner(y, dy)
    tol = 1e-10 * max(1.0, abs(lhs), np.abs(y).sum())
    assert abs(lhs - inner(x, dx)) <= tol
    assert abs(lhs - inner(w, dw)) <= tol


@pytest.mark.parametrize("name", sorted(CONVT_CASES))
def test_convt_adjoint_identities(name):
    x, w, _, opts = make_convt(CONVT_CASES[name])
    y = vl_nnconvt(x, w, None, **opts)
    dy = randn(y.shape, seed=9)
    dx, dw, db = vl_nnconvt(x, w, None, dy, **opts)
    assert db is None
    lhs = inner(y, dy)
    tol = 1e-10 * max(1.0, abs(lhs), np.abs(y).sum())
    assert abs(lhs - inner(x, dx)) <= tol
    assert abs(lhs - inner(w, dw)) <= tol


@pytest.mark.parametrize("name", sorted(CONVT_CASES))
def test_convt_relations_to_conv(name):
    """Section 2: convt forward is conv's data derivative; convt's dx is the
    conv forward of dY; convt's dw is conv's filter derivative with the
    roles of data and output derivative swapped."""
    x, w, b, opts = make_convt(CONVT_CASES[name])
    r = convt_ref_opts(opts)
    stride, pad = r["upsample"], r["crop"]
    y = vl_nnconvt(x, w, None, **opts)
    v = randn(y.shape, seed=11)  # any data of the output's size
    dv, _, _ = vl_nnconv(v, w, None, x, stride=stride, pad=pad)
    assert dv.shape == y.shape
    assert_close(y, dv)
    if b is not None:
        assert_close(vl_nnconvt(x, w, b, **opts),
                     dv + np.ravel(b, order="F")[None, None, :, None])

    dy = randn(y.shape, seed=12)
    dx, dw, _ = vl_nnconvt(x, w, b, dy, **opts)
    assert_close(dx, vl_nnconv(dy, w, None, stride=stride, pad=pad))
    _, cdw, _ = vl_nnconv(dy, w, None, x, stride=stride, pad=pad)
    assert_close(dw, cdw)


def test_convt_bias_derivative_sums_over_pixels_and_images():
    x, w, b, opts = make_convt(CONVT_CASES["groups3"])
    dy = randn(vl_nnconvt(x, w, b, **opts).shape, seed=4)
    _, _, db = vl_nnconvt(x, w, b, dy, **opts)
    assert db.shape == b.shape == (1, 1, 6)
    assert_close(db, dy.sum(axis=(0, 1, 3)).reshape(1, 1, 6))


UNIT_STRIDE_CONV = sorted(n for n, c in CONV_CASES.items()
                          if c["ws"] is not None and pair(c["opts"].get("stride", 1)) == (1, 1))
UNIT_STRIDE_CONVT = sorted(n for n, c in CONVT_CASES.items()
                           if pair(c["opts"].get("upsample", 1)) == (1, 1))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", UNIT_STRIDE_CONV)
def test_conv_each_engine_matches_reference(name, strategy):
    x, w, b, opts = make_conv(CONV_CASES[name])
    expected = ref_conv(x, w, b, **opts)
    y0 = ref_conv(x, w, None, **opts)
    dy = randn(expected.shape, seed=7)
    with forced_strategy(strategy):
        assert_close(vl_nnconv(x, w, b, **opts), expected)
        dx, dw, db = vl_nnconv(x, w, b, dy, **opts)
        check_derivative(lambda x_: vl_nnconv(x_, w, b, **opts), x, dx, dy)
        check_derivative(lambda w_: vl_nnconv(x, w_, b, **opts), w, dw, dy)
    tol = 1e-10 * max(1.0, np.abs(y0).sum() * np.abs(dy).max())
    assert abs(inner(y0, dy) - inner(x, dx)) <= tol
    assert abs(inner(y0, dy) - inner(w, dw)) <= tol
    if b is not None:
        assert_close(np.ravel(db, order="F"), dy.sum(axis=(0, 1, 3)))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", UNIT_STRIDE_CONVT)
def test_convt_each_engine_matches_reference(name, strategy):
    x, w, b, opts = make_convt(CONVT_CASES[name])
    expected = ref_convt(x, w, b, **convt_ref_opts(opts))
    dy = randn(expected.shape, seed=7)
    with forced_strategy(strategy):
        assert_close(vl_nnconvt(x, w, b, **opts), expected)
        dx, dw, db = vl_nnconvt(x, w, b, dy, **opts)
        check_derivative(lambda x_: vl_nnconvt(x_, w, b, **opts), x, dx, dy)
        check_derivative(lambda w_: vl_nnconvt(x, w_, b, **opts), w, dw, dy)


def _nan_params():
    # the default engine for 16 channels is 'shifted', which must fall back to
    # im2col when a non-finite value would meet the zeros of invalid positions
    return [pytest.param(fc, strategy, id=f"{name}-{strategy or 'default'}")
            for name, fc in [("fc16", 16), ("fc3", 3)] for strategy in [None] + STRATEGIES]


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("fc,strategy", _nan_params())
def test_conv_nan_and_inf_propagate_as_in_matconvnet(fc, strategy):
    """API.md: NaN and Inf in the data propagate as in MatConvNet, i.e. only
    to the outputs whose window reads them and to the filter taps that read
    them (sections 1.3 and 1.5), nowhere else."""
    x, w = randn((5, 5, fc, 2)), randn((3, 2, fc, 2), seed=1)
    x[0, 0, 0, 1] = np.nan      # top-left pixel of the second image
    x[1, 0, fc - 1, 0] = np.inf  # first column of the first image
    x[4, 4, 0, 0] = -np.inf     # bottom-right corner
    y_ref = ref_conv(x, w, None)
    dy = randn(y_ref.shape, seed=2)
    dx_ref, dw_ref = ref_conv_backward(x, w, dy)
    # the reference keeps the damage local: most taps stay finite
    assert np.isfinite(dw_ref).sum() > dw_ref.size // 2
    with forced_strategy(strategy) if strategy else contextlib.nullcontext():
        y = vl_nnconv(x, w, None)
        dx, dw, _ = vl_nnconv(x, w, None, dy)
    assert_close(y, y_ref)
    assert_close(dx, dx_ref)
    assert_close(dw, dw_ref)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("fc,strategy", _nan_params())
def test_conv_nan_in_filters_reaches_only_the_pixels_they_read(fc, strategy):
    """With dilation 2 the middle input row is read by no tap: its dx stays 0
    even when a filter holds NaN (sections 1.5)."""
    x, w = randn((5, 4, fc, 2)), randn((3, 2, fc, 2), seed=1)
    w[0, 0, 0, 1] = np.nan
    opts = dict(dilate=[2, 1])
    y_ref = ref_conv(x, w, None, **opts)
    dy = randn(y_ref.shape, seed=2)
    dx_ref, _ = ref_conv_backward(x, w, dy, **opts)
    assert np.isfinite(dx_ref).any()
    with forced_strategy(strategy) if strategy else contextlib.nullcontext():
        dx, _, _ = vl_nnconv(x, w, None, dy, **opts)
    assert_close(dx, dx_ref)


@pytest.mark.parametrize("emptyw", [False, True])
@pytest.mark.parametrize("stride", [(2, 1), (1, 3), (3, 2), (4, 4)])
def test_conv_stride_correctness(emptyw, stride):
    """MatConvNet's stride_correctness: the strided output is the subsampled
    stride-1 output, and the strided derivatives equal the stride-1 ones with
    dY zeroed off the grid."""
    x = randn((9, 10, 3, 2))
    w = None if emptyw else randn((3, 2, 3, 4), seed=1)
    b = randn((3 if emptyw else 4,), seed=2)
    sy, sx = stride
    y1 = vl_nnconv(x, w, b)
    ys = vl_nnconv(x, w, b, stride=[sy, sx])
    np.testing.assert_allclose(ys, y1[::sy, ::sx], rtol=1e-12, atol=1e-12)
    dys = randn(ys.shape, seed=3)
    dy1 = np.zeros(y1.shape)
    dy1[::sy, ::sx] = dys
    for a, e in zip(vl_nnconv(x, w, b, dys, stride=[sy, sx]), vl_nnconv(x, w, b, dy1)):
        if e is None:
            assert a is None
        else:
            np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pad", [(1, 0, 0, 0), (0, 2, 1, 0), (2, 1, 0, 2), (2, 2, 2, 2)])
def test_conv_pad_correctness(pad):
    """MatConvNet's pad_correctness: the padded output's interior is the
    unpadded output; derivatives with zero-padded dY agree."""
    x, w, b = randn((6, 7, 2, 2)), randn((3, 2, 2, 3), seed=1), randn((3,), seed=2)
    pt, pb, pl, pr = pad
    y0 = vl_nnconv(x, w, b)
    yp = vl_nnconv(x, w, b, pad=list(pad))
    np.testing.assert_allclose(yp[pt:pt + y0.shape[0], pl:pl + y0.shape[1]], y0,
                               rtol=1e-12, atol=1e-12)
    dy0 = randn(y0.shape, seed=3)
    dyp = np.zeros(yp.shape)
    dyp[pt:pt + y0.shape[0], pl:pl + y0.shape[1]] = dy0
    for a, e in zip(vl_nnconv(x, w, b, dyp, pad=list(pad)), vl_nnconv(x, w, b, dy0)):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("flag", ["NoDerData", "NoDerFilters", "NoDerBiases"])
@pytest.mark.parametrize("fn", ["conv", "convt", "conv_empty_w"])
def test_noder_flags(fn, flag):
    if fn == "conv":
        f, (x, w, b, opts) = vl_nnconv, make_conv(CONV_CASES["pad_stride"])
    elif fn == "convt":
        f, (x, w, b, opts) = vl_nnconvt, make_convt(CONVT_CASES["groups2"])
    else:
        f, (x, w, b, opts) = vl_nnconv, make_conv(CONV_CASES["empty_w_stride_pad"])
    dy = randn(f(x, w, b, **opts).shape, seed=5)
    full = f(x, w, b, dy, **opts)
    slot = ["NoDerData", "NoDerFilters", "NoDerBiases"].index(flag)
    for got in (f(x, w, b, dy, **opts, **{flag: True}),        # keyword flag
                f(x, w, b, dy, flag, **opts)):                 # MATLAB-style bare flag
        assert got[slot] is None
        for i in range(3):
            if i != slot:
                if full[i] is None:
                    assert got[i] is None
                else:
                    np.testing.assert_array_equal(got[i], full[i])


def test_all_noder_flags_together():
    x, w, b, opts = make_conv(CONV_CASES["basic"])
    dy = randn(vl_nnconv(x, w, b).shape)
    assert vl_nnconv(x, w, b, dy, "NoDerData", "NoDerFilters", "NoDerBiases") == \
        (None, None, None)


# ---------------------------------------------------------------------------
# Calling conventions
# ---------------------------------------------------------------------------

def test_matlab_style_pairs_equal_keywords():
    x, w, b = randn((7, 8, 3, 2)), randn((3, 3, 3, 4), seed=1), randn((4,), seed=2)
    expected = vl_nnconv(x, w, b, pad=1, stride=2)
    np.testing.assert_array_equal(vl_nnconv(x, w, b, "pad", 1, "stride", 2), expected)
    np.testing.assert_array_equal(vl_nnconv(x, w, b, "Pad", 1, "STRIDE", 2), expected)
    np.testing.assert_array_equal(vl_nnconv(x, w, b, "pad", 1, stride=2), expected)
    dy = randn(expected.shape, seed=3)
    ref = vl_nnconv(x, w, b, dy, pad=1, stride=2)
    for got in (vl_nnconv(x, w, b, dy, "pad", 1, "stride", 2),
                vl_nnconv(x, w, b, dzdy=dy, pad=1, stride=2)):
        for a, e in zip(got, ref):
            np.testing.assert_array_equal(a, e)
    xt, wt, bt, opts = make_convt(CONVT_CASES["crop_upsample"])
    dyt = randn(vl_nnconvt(xt, wt, bt, **opts).shape, seed=4)
    ref = vl_nnconvt(xt, wt, bt, dyt, **opts)
    for got in (vl_nnconvt(xt, wt, bt, dzdy=dyt, **opts),
                vl_nnconvt(xt, wt, bt, dyt, "upsample", opts["upsample"], "crop", opts["crop"])):
        for a, e in zip(got, ref):
            np.testing.assert_array_equal(a, e)


def test_gpu_flags_and_options_are_accepted_and_ignored():
    x, w, b = randn((5, 6, 2, 2)), randn((3, 3, 2, 3), seed=1), randn((3,), seed=2)
    expected = vl_nnconv(x, w, b, pad=1)
    for got in (vl_nnconv(x, w, b, "NoCudnn", "pad", 1),
                vl_nnconv(x, w, b, "pad", 1, "Cudnn", "Verbose"),
                vl_nnconv(x, w, b, "CudnnWorkspaceLimit", 1024, "pad", 1),
                vl_nnconv(x, w, b, pad=1, cudnn=True, verbose=True,
                          cudnn_workspace_limit=2 ** 20),
                vl_nnconv(x, w, b, pad=1, NoCudnn=True)):
        np.testing.assert_array_equal(got, expected)
    xt, wt, bt, opts = make_convt(CONVT_CASES["crop_upsample"])
    expected = vl_nnconvt(xt, wt, bt, **opts)
    np.testing.assert_array_equal(
        vl_nnconvt(xt, wt, bt, "NoCudnn", "Verbose", "CudnnWorkspaceLimit", 512, **opts),
        expected)


def test_option_names_case_insensitive_underscores_ignored():
    x, w, b, opts = make_convt(CONVT_CASES["groups3_upsample_crop"])
    up, crop = opts["upsample"], opts["crop"]
    expected = vl_nnconvt(x, w, b, numGroups=3, upsample=up, crop=crop)
    for got in (vl_nnconvt(x, w, b, num_groups=3, Up_Sample=up, CROP=crop),
                vl_nnconvt(x, w, b, NUMGROUPS=3, UPSAMPLE=up, crop=crop),
                vl_nnconvt(x, w, b, numgroups=3, upsample=up, Crop=crop),
                vl_nnconvt(x, w, b, "NumGroups", 3, "upSample", up, "crop", crop),
                vl_nnconvt(x, w, b, "num_groups", 3, "UPSAMPLE", up, "CROP", crop)):
        np.testing.assert_array_equal(got, expected)
    xc, wc, bc = randn((6, 7, 2, 1)), randn((2, 2, 2, 2), seed=1), None
    expected = vl_nnconv(xc, wc, bc, Stride=2, Pad=1, Dilate=2)
    np.testing.assert_array_equal(vl_nnconv(xc, wc, bc, STRIDE=2, pad=1, di_late=2), expected)


@pytest.mark.parametrize("stride", [2, 2.0, np.float64(2), np.array([[2]]), [2], (2, 2),
                                    np.array([[2, 2]]), np.array([2.0, 2.0])])
def test_integral_option_values_in_any_form(stride):
    x, w = randn((7, 8, 2, 1)), randn((3, 3, 2, 2), seed=1)
    expected = vl_nnconv(x, w, None, stride=2, pad=[1, 1, 1, 1])
    got = vl_nnconv(x, w, None, stride=stride, pad=np.array([[1, 1, 1, 1]]))
    np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------------------
# dtypes, memory orders, shapes, purity, workspace
# ---------------------------------------------------------------------------

DTYPE_CONV = ["basic", "pad_stride", "groups3", "fully_connected", "channels10_stride_pad",
              "filter_1x1_groups", "empty_w_stride_pad", "dilate_pad_stride",
              "channels16_unit_stride", "channels32_groups2_unit_stride"]
DTYPE_CONVT = ["basic", "crop_upsample", "groups3_upsample_crop", "one_one_image",
               "filter_1x1_groups", "many_outputs_interleaved", "many_outputs_unit_upsample",
               "many_outputs_groups2_unit_upsample"]


def _conv_or_convt(kind, name, dtype=np.float64, order="C"):
    if kind == "conv":
        return (vl_nnconv,) + make_conv(CONV_CASES[name], dtype, order=order)
    return (vl_nnconvt,) + make_convt(CONVT_CASES[name], dtype, order=order)


KINDS = [("conv", n) for n in DTYPE_CONV] + [("convt", n) for n in DTYPE_CONVT]


@pytest.mark.parametrize("kind,name", KINDS)
def test_float32_stays_float32_and_matches_float64(kind, name):
    f, x, w, b, opts = _conv_or_convt(kind, name, np.float64)
    cast = (lambda a: None if a is None else a.astype(np.float32))
    y64 = f(x, w, b, **opts)
    y32 = f(cast(x), cast(w), cast(b), **opts)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-4)
    dy = randn(y64.shape, seed=5)
    d64 = f(x, w, b, dy, **opts)
    d32 = f(cast(x), cast(w), cast(b), cast(dy), **opts)
    for a, e in zip(d32, d64):
        if e is None:
            assert a is None
        else:
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4)


def assert_same(actual, expected):
    """Equal up to summation order (a few ulps): the memory order of an
    input may change the order of a reduction, never anything else."""
    if expected is None:
        assert actual is None
        return
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_allclose(actual, expected, rtol=1e-13,
                               atol=1e-13 * max(1.0, float(np.abs(expected).max())))


@pytest.mark.parametrize("kind,name", KINDS)
def test_memory_order_does_not_matter(kind, name):
    f, x, w, b, opts = _conv_or_convt(kind, name, order="C")
    _, xf, wf, bf, _ = _conv_or_convt(kind, name, order="F")
    assert xf.flags.f_contiguous and not xf.flags.c_contiguous
    np.testing.assert_array_equal(xf, x)
    y = f(x, w, b, **opts)
    assert_same(f(xf, wf, bf, **opts), y)
    dy = randn(y.shape, seed=5)
    expected = f(x, w, b, dy, **opts)
    for got in (f(xf, wf, bf, np.asfortranarray(dy), **opts),
                f(xf, wf, bf, dy, **opts),
                f(x, w, b, np.asfortranarray(dy), **opts)):
        for a, e in zip(got, expected):
            assert_same(a, e)
    # non-contiguous views (every other image of a bigger batch) work too
    def strided(a):
        if a is None:
            return None
        big = np.stack([a, np.full_like(a, np.nan)], axis=-1)
        v = big[..., 0]
        assert not v.flags.c_contiguous and not v.flags.f_contiguous
        return v
    assert_same(f(strided(x), strided(w), strided(b), **opts), y)
    for a, e in zip(f(strided(x), strided(w), strided(b), strided(dy), **opts), expected):
        assert_same(a, e)


@pytest.mark.parametrize("kind,name", KINDS)
def test_inputs_are_never_modified(kind, name):
    f, x, w, b, opts = _conv_or_convt(kind, name)
    y = f(x, w, b, **opts)
    dy = randn(y.shape, seed=5)
    args = [a for a in (x, w, b, dy) if a is not None]
    saved = [a.copy() for a in args]
    for a in args:
        a.flags.writeable = False  # any in-place write would raise
    f(x, w, b, **opts)
    f(x, w, b, dy, **opts)
    for a, s in zip(args, saved):
        np.testing.assert_array_equal(a, s)


def test_chained_outputs_as_inputs_are_not_modified():
    # a block's output is an NHWC view; feeding it back must not alias the
    # library's scratch buffers or get overwritten
    x, w1, w2 = randn((6, 6, 3, 2)), randn((3, 3, 3, 4), seed=1), randn((2, 2, 4, 3), seed=2)
    b2 = randn((3,), seed=3)
    y1 = vl_nnconv(x, w1, None, pad=1)
    y1_copy = y1.copy()
    y2 = vl_nnconv(y1, w2, b2)
    dy2 = randn(y2.shape, seed=4)
    dy1, dw2, _ = vl_nnconv(y1, w2, b2, dy2)
    vl_nnconvt(y1, randn((2, 2, 2, 4), seed=5), None, randn((7, 7, 2, 2), seed=6))
    np.testing.assert_array_equal(y1, y1_copy)
    assert_close(y2, ref_conv(y1_copy, w2, b2))
    ref_dx, ref_dw, _ = vl_nnconv(y1_copy, w2, b2, dy2)
    assert_close(dy1, ref_dx)
    assert_close(dw2, ref_dw)
    # another call must not change an earlier result
    y_before = y2.copy()
    vl_nnconv(randn((6, 6, 4, 2), seed=7), w2, b2)
    np.testing.assert_array_equal(y2, y_before)


def test_shapes_missing_and_extra_dims():
    # 3-D x = one image; y is 4-D; dx keeps x's 3-D shape
    x3, w = randn((5, 6, 3)), randn((3, 3, 3, 2), seed=1)
    b = randn((1, 2), seed=2)
    y = vl_nnconv(x3, w, b, pad=1)
    assert y.shape == (5, 6, 2, 1)
    assert_close(y, ref_conv(x3, w, b, pad=1))
    dx, dw, db = vl_nnconv(x3, w, b, y[:, :, :, 0], pad=1)     # 3-D dzdy accepted
    assert (dx.shape, dw.shape, db.shape) == (x3.shape, w.shape, b.shape)
    check_derivative(lambda x_: vl_nnconv(x_, w, b, pad=1), x3, dx, y)

    # 2-D w = one single-channel filter; 2-D x = one single-channel image
    x2, w2 = randn((6, 5)), randn((3, 2), seed=3)
    y = vl_nnconv(x2, w2, None, stride=2)
    assert y.shape == (2, 2, 1, 1)
    assert_close(y, ref_conv(x2, w2, None, stride=2))
    dy = randn(y.shape, seed=4)
    dx, dw, db = vl_nnconv(x2, w2, None, dy, stride=2)
    assert dx.shape == x2.shape and dw.shape == w2.shape and db is None
    check_derivative(lambda w_: vl_nnconv(x2, w_, None, stride=2), w2, dw, dy)

    # 3-D w = K = 1 filter of depth C
    w3 = randn((2, 2, 3), seed=5)
    y = vl_nnconv(x3, w3, np.array([0.5]))
    assert y.shape == (4, 5, 1, 1)
    _, dw, db = vl_nnconv(x3, w3, np.array([0.5]), y)
    assert dw.shape == (2, 2, 3) and db.shape == (1,)

    # 5-D x: the trailing dims fold into N (column-major)
    x5 = randn((4, 5, 2, 2, 3), seed=6)
    w = randn((2, 3, 2, 3), seed=7)
    y = vl_nnconv(x5, w, None, pad=[1, 0, 0, 1])
    assert y.shape == (4, 4, 3, 6)
    assert_close(y, ref_conv(x5.reshape(4, 5, 2, 6, order="F"), w, None, pad=[1, 0, 0, 1]))
    dy = randn(y.shape, seed=8)
    dx, dw, _ = vl_nnconv(x5, w, None, dy, pad=[1, 0, 0, 1])
    assert dx.shape == x5.shape and dw.shape == w.shape
    ex, _, _ = vl_nnconv(x5.reshape(4, 5, 2, 6, order="F"), w, None, dy, pad=[1, 0, 0, 1])
    assert_close(dx, ex.reshape(x5.shape, order="F"))
    # empty filters with 5-D data
    y = vl_nnconv(x5, None, None, stride=2)
    assert y.shape == (2, 3, 2, 6)
    dx, dw, db = vl_nnconv(x5, None, None, y, stride=2)
    assert dx.shape == x5.shape and dw is None and db is None


def test_convt_shapes_missing_and_extra_dims():
    # 2-D x with 2-D w (one channel in, one out)
    x2, w2 = randn((3, 4)), randn((2, 3), seed=1)
    y = vl_nnconvt(x2, w2, None, upsample=2)
    assert y.shape == (6, 9, 1, 1)
    assert_close(y, ref_convt(x2, w2, None, upsample=2))
    dx, dw, db = vl_nnconvt(x2, w2, None, y, upsample=2)
    assert dx.shape == x2.shape and dw.shape == w2.shape and db is None
    # 3-D x (one image) with 4-D w; 5-D x folds into N
    x3, w = randn((3, 3, 2), seed=2), randn((2, 2, 3, 2), seed=3)
    b = randn((1, 1, 3), seed=4)
    y = vl_nnconvt(x3, w, b, crop=[1, 0, 0, 1])
    assert y.shape == (3, 3, 3, 1)
    dx, dw, db = vl_nnconvt(x3, w, b, y, crop=[1, 0, 0, 1])
    assert (dx.shape, dw.shape, db.shape) == (x3.shape, w.shape, b.shape)
    x5 = randn((3, 3, 2, 2, 2), seed=5)
    y = vl_nnconvt(x5, w, None)
    assert y.shape == (4, 4, 3, 4)
    assert_close(y, ref_convt(x5.reshape(3, 3, 2, 4, order="F"), w))
    dx, _, _ = vl_nnconvt(x5, w, None, y)
    assert dx.shape == x5.shape


@pytest.mark.parametrize("bshape", [(4,), (1, 4), (1, 1, 4), (4, 1), (1, 1, 1, 4), (2, 2)])
def test_bias_shapes(bshape):
    x, w = randn((5, 5, 3, 2)), randn((3, 3, 3, 4), seed=1)
    b = randn(bshape, seed=2)
    y = vl_nnconv(x, w, b)
    assert_close(y, ref_conv(x, w, b))
    np.testing.assert_array_equal(y, vl_nnconv(x, w, b.reshape(-1, order="F")))
    dy = randn(y.shape, seed=3)
    _, _, db = vl_nnconv(x, w, b, dy)
    assert db.shape == b.shape
    assert_close(np.ravel(db, order="F"), dy.sum(axis=(0, 1, 3)))
    # convt: K*G elements in any shape
    xt, wt = randn((3, 3, 4, 2)), randn((2, 2, 2, 4), seed=4)
    yt = vl_nnconvt(xt, wt, b, numGroups=2)
    assert_close(yt, ref_convt(xt, wt, b, groups=2))
    _, _, dbt = vl_nnconvt(xt, wt, b, yt, numGroups=2)
    assert dbt.shape == b.shape


WORKSPACE_CASES = [
    # (x shape, w shape, opts): outputs large enough that one image's columns
    # exceed the 32 KB chunk target -> row bands
    ((20, 18, 4, 2), (3, 3, 4, 5), dict(pad=1)),
    ((21, 19, 3, 2), (3, 2, 3, 4), dict(stride=[2, 1], pad=[1, 2, 0, 1], dilate=[1, 2])),
    ((16, 16, 12, 1), (3, 3, 6, 4), dict(pad=[2, 1, 1, 2])),        # interleaved, groups
    ((12, 14, 10, 2), (2, 3, 10, 3), dict(stride=[1, 2], dilate=2)),  # interleaved
    ((20, 18, 16, 2), (3, 3, 16, 8), dict(pad=1)),                  # 16 channels per group
    ((17, 15, 32, 1), (3, 2, 16, 6), dict(pad=[0, 2, 1, 1], dilate=[2, 1])),
    # many small images -> several images per chunk
    ((5, 5, 3, 20), (3, 3, 3, 2), dict(pad=1)),
    ((5, 4, 16, 20), (3, 3, 16, 2), dict(pad=[1, 0, 0, 1])),
]


@pytest.mark.parametrize("strategy", [None] + STRATEGIES)
@pytest.mark.parametrize("xs,ws,opts", WORKSPACE_CASES)
def test_bounded_workspace_gives_same_results(xs, ws, opts, strategy, small_workspace):
    with forced_strategy(strategy) if strategy else contextlib.nullcontext():
        _bounded_workspace_same_results(xs, ws, opts)


def _bounded_workspace_same_results(xs, ws, opts):
    x, w, b = randn(xs), randn(ws, seed=1), randn((ws[3],), seed=2)
    # convt uses the same engine the other way round (upsample 1: unit stride)
    convt_calls = [(randn((ws[0], ws[1], kt, xs[2]), seed=4 + kt), dict(upsample=up, crop=1))
                   for up, kt in ((2, 2), (1, 16))]
    vlnn.set_workspace_limit(256 * 2 ** 20)
    y_big = vl_nnconv(x, w, b, **opts)
    dy = randn(y_big.shape, seed=3)
    d_big = vl_nnconv(x, w, b, dy, **opts)
    t_big = []
    for wt, topts in convt_calls:
        yt = vl_nnconvt(x, wt, None, **topts)
        dyt = randn(yt.shape, seed=5)
        t_big.append((yt, dyt, vl_nnconvt(x, wt, None, dyt, **topts)))
    vlnn.set_workspace_limit(65536)
    assert vlnn.get_workspace_limit() == 65536
    assert_close(vl_nnconv(x, w, b, **opts), y_big, rtol=1e-12)
    for a, e in zip(vl_nnconv(x, w, b, dy, **opts), d_big):
        assert_close(a, e, rtol=1e-12)
    for (wt, topts), (yt, dyt, dt) in zip(convt_calls, t_big):
        assert_close(vl_nnconvt(x, wt, None, **topts), yt, rtol=1e-12)
        got = vl_nnconvt(x, wt, None, dyt, **topts)
        assert got[2] is None
        for a, e in zip(got[:2], dt[:2]):
            assert_close(a, e, rtol=1e-12)


def test_bounded_workspace_matches_reference(small_workspace):
    x, w, b = randn((22, 17, 3, 1)), randn((3, 3, 3, 4), seed=1), randn((4,), seed=2)
    assert_close(vl_nnconv(x, w, b, stride=[2, 1], pad=[1, 0, 2, 1]),
                 ref_conv(x, w, b, stride=[2, 1], pad=[1, 0, 2, 1]))
    xt, wt = randn((9, 8, 3, 1)), randn((3, 4, 4, 3), seed=3)
    assert_close(vl_nnconvt(xt, wt, None, upsample=2, crop=[1, 0, 0, 2]),
                 ref_convt(xt, wt, None, upsample=2, crop=[1, 0, 0, 2]))


# ---------------------------------------------------------------------------
# Errors (semantics 1.7 and section 2 'Errors')
# ---------------------------------------------------------------------------

X = randn((5, 6, 4, 2))
W = randn((3, 3, 4, 3), seed=1)
B = randn((3,), seed=2)
XT = randn((4, 5, 4, 2))
WT = randn((3, 3, 2, 4), seed=3)


CONV_ERRORS = [
    # (args, kwargs, exception, message regex)
    ((X, W, "pad", 1), {}, TypeError, r"expected at least 3 arguments.*got option 'pad' as b"),
    ((X, W, B), dict(stride=0), ValueError, r"Stride must be >= 1"),
    ((X, W, B), dict(stride=[1, -1]), ValueError, r"Stride must be >= 1"),
    ((X, W, B), dict(pad=-1), ValueError, r"Pad must be >= 0"),
    ((X, W, B), dict(pad=[0, 0, -1, 0]), ValueError, r"Pad must be >= 0"),
    ((X, W, B), dict(dilate=0), ValueError, r"Dilate must be >= 1"),
    ((X, W, B), dict(stride=1.5), ValueError, r"Stride must be integral"),
    ((X, W, B), dict(pad=[0.5, 0, 0, 0]), ValueError, r"Pad must be integral"),
    ((X, W, B), dict(pad=[1, 1, 1]), ValueError, r"Pad must have 1 or 4 elements"),
    ((X, W, B), dict(stride=[1, 2, 3]), ValueError, r"Stride must have 1 or 2 elements"),
    ((X, W, B), dict(stride="two"), ValueError, r"Stride must be numeric"),
    ((X, W, B), dict(stride=np.nan), ValueError, r"Stride must be finite"),
    ((X, randn((6, 3, 4, 3)), B), {}, ValueError,
     r"extent 6 x 3 .* larger than the padded x 5 x 6"),
    ((X, W, B), dict(dilate=3), ValueError, r"extent 7 x 7 .*dilate \[3, 3\].* larger"),
    ((X, randn((2, 7, 4, 3)), B), dict(pad=[0, 0, 0, 0]), ValueError, r"larger than the padded"),
    ((X, randn((3, 3, 3, 3)), B), {}, ValueError,
     r"filter depth 3 .*does not divide the data depth 4"),
    ((X, randn((3, 3, 2, 3)), B), {}, ValueError,
     r"number of filters 3 .*not a multiple of the number of groups 2"),
    ((X, W, randn((4,))), {}, ValueError, r"b has 4 elements .*number of filters K is 3"),
    ((X, W, randn((1, 2))), {}, ValueError, r"b has 2 elements \(shape \(1, 2\)\)"),
    ((X, None, randn((3,))), {}, ValueError, r"b has 3 elements .*number of data channels C"),
    ((X, W, B, randn((3, 4, 2, 2))), {}, ValueError,
     r"dzdy has shape \(3, 4, 2, 2\) but the forward output has shape \(3, 4, 3, 2\)"),
    ((X, W, B, randn((3, 4, 3, 1))), {}, ValueError, r"dzdy has shape"),
    ((X, None, None, randn((5, 6, 4, 1))), {}, ValueError, r"dzdy has shape"),
    ((X.astype(np.float32), W, B), {}, ValueError, r"must not mix float32 and float64"),
    ((X, W, B.astype(np.float32)), {}, ValueError, r"must not mix float32 and float64"),
    ((X, W, B, randn((3, 4, 3, 2), np.float32)), {}, ValueError, r"must not mix float32"),
    ((X.astype(np.int32), W, B), {}, ValueError, r"x must be float32 or float64, got int32"),
    ((X.astype(np.complex128), W, B), {}, ValueError,
     r"x must be float32 or float64, got complex128"),
    ((X, W.astype(np.int64), B), {}, ValueError, r"w must be float32 or float64, got int64"),
    ((X, W, [1, 2, 3]), {}, ValueError, r"b must be float32 or float64, got int"),
    ((X, W, B), dict(foo=1), TypeError,
     r"unknown option 'foo'; valid options: .*Dilate.*NoDerData.*Pad.*Stride"),
    ((X, W, B, "padding", 1), {}, TypeError, r"unknown option 'padding'; valid options: "),
    ((X, W, B), dict(upsample=2), TypeError, r"unknown option 'upsample'"),
    ((X, W, B, "pad"), {}, TypeError, r"option 'pad' needs a value"),
    ((X, W, B, "pad", 1, 2), {}, TypeError, r"expected an option name, got int"),
    ((X, None, None), dict(dilate=2), ValueError, r"Dilate \[2, 2\] needs filters; w is empty"),
    ((X, None, None), dict(dilate=[1, 2]), ValueError, r"Dilate \[1, 2\] needs filters"),
    ((np.zeros((0, 3)), W, B), {}, ValueError, r"x must not be empty"),
]


@pytest.mark.parametrize("args,kwargs,exc,match", CONV_ERRORS,
                         ids=[f"conv{i}" for i in range(len(CONV_ERRORS))])
def test_conv_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        vl_nnconv(*args, **kwargs)


def test_conv_too_few_arguments():
    with pytest.raises(TypeError, match=r"required positional argument.*'b'"):
        vl_nnconv(X, W)
    with pytest.raises(TypeError, match=r"required positional argument"):
        vl_nnconvt(XT)


def test_conv_error_messages_name_shapes():
    with pytest.raises(ValueError) as info:
        vl_nnconv(X, randn((3, 3, 3, 3)), None)
    assert "(3, 3, 3, 3)" in str(info.value) and "(5, 6, 4, 2)" in str(info.value)
    with pytest.raises(ValueError) as info:
        vl_nnconv(X, randn((7, 3, 4, 3)), None, pad=[0, 1, 0, 0])
    assert "6 x 6" in str(info.value) and "pad [0, 1, 0, 0]" in str(info.value)


CONVT_ERRORS = [
    ((XT, WT, "crop", 1), {}, TypeError, r"expected at least 3 arguments.*'crop'"),
    ((XT, WT, None), dict(upsample=0), ValueError, r"Upsample must be >= 1"),
    ((XT, WT, None), dict(upsample=[1, 1.5]), ValueError, r"Upsample must be integral"),
    ((XT, WT, None), dict(crop=-1), ValueError, r"Crop must be >= 0"),
    ((XT, WT, None), dict(crop=[0, 0, 0, -2]), ValueError, r"Crop must be >= 0"),
    ((XT, WT, None), dict(numGroups=0), ValueError, r"NumGroups must be >= 1"),
    ((XT, WT, None), dict(numGroups=1.5), ValueError, r"NumGroups must be integral"),
    ((XT, WT, None), dict(numGroups=[1, 2]), ValueError, r"NumGroups must have 1 elements"),
    ((XT, randn((3, 3, 2, 3)), None), {}, ValueError,
     r"fourth dimension of w \(3, 3, 2, 3\) must equal the data depth 4"),
    ((XT, WT, None), dict(numGroups=3), ValueError,
     r"NumGroups 3 does not divide the number of filters 4"),
    ((XT, WT, None), dict(crop=[3, 3, 0, 0]), ValueError,
     r"output would be empty \(0 x 7\)"),
    ((XT, WT, None), dict(crop=[0, 0, 4, 4]), ValueError, r"output would be empty"),
    ((XT, None, None), {}, ValueError, r"w must not be empty"),
    ((XT, np.zeros((3, 0, 2, 4)), None), {}, ValueError, r"w must not be empty"),
    ((XT, WT, randn((3,))), {}, ValueError, r"b has 3 elements .*K \* NumGroups is 2"),
    ((XT, WT, randn((2,))), dict(numGroups=2), ValueError,
     r"b has 2 elements .*K \* NumGroups is 4"),
    ((XT, WT, None, randn((6, 7, 2, 1))), {}, ValueError,
     r"dzdy has shape \(6, 7, 2, 1\) but the forward output has shape \(6, 7, 2, 2\)"),
    ((XT.astype(np.float32), WT, None), {}, ValueError, r"must not mix float32 and float64"),
    ((XT, WT, randn((2,), np.float32)), {}, ValueError, r"must not mix float32 and float64"),
    ((XT.astype(np.int16), WT, None), {}, ValueError, r"x must be float32 or float64"),
    ((XT.astype(np.complex64), WT.astype(np.complex64), None), {}, ValueError,
     r"x must be float32 or float64, got complex64"),
    ((XT, WT, None), dict(dilate=2), TypeError,
     r"unknown option 'dilate'; valid options: .*Crop.*NumGroups.*Upsample"),
    ((XT, WT, None, "stride", 2), {}, TypeError, r"unknown option 'stride'"),
]


@pytest.mark.parametrize("args,kwargs,exc,match", CONVT_ERRORS,
                         ids=[f"convt{i}" for i in range(len(CONVT_ERRORS))])
def test_convt_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        vl_nnconvt(*args, **kwargs)


def test_empty_integer_bias_is_accepted_as_empty():
    # section 0.3: another class is accepted when empty (then it means [])
    y = vl_nnconv(X, W, np.zeros((0,), np.int32))
    np.testing.assert_array_equal(y, vl_nnconv(X, W, None))
    dx, dw, db = vl_nnconv(X, W, np.zeros((0, 0)), randn(y.shape))
    assert db is None and dx.shape == X.shape


# ---------------------------------------------------------------------------
# Property test: result equals the reference, or a ValueError where the
# reference says MatConvNet rejects the configuration
# ---------------------------------------------------------------------------

@st.composite
def conv_configs(draw):
    n = draw(st.integers(1, 2))
    h = draw(st.integers(1, 6))
    wd = draw(st.integers(1, 6))
    groups = draw(st.integers(1, 3))
    fc = draw(st.integers(1, 3))
    c = groups * fc + draw(st.sampled_from([0, 0, 0, 0, 1]))   # sometimes not divisible
    empty_w = draw(st.integers(0, 7)) == 0
    fh = draw(st.integers(1, 4))
    fw = draw(st.integers(1, 4))
    k = groups * draw(st.integers(1, 2)) + draw(st.sampled_from([0, 0, 0, 0, 1]))
    stride = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)
                  .filter(lambda s: len(s) in (1, 2)))
    # (up to 5: padding past every window, e.g. stride 4 pad 5 on 2 pixels)
    pad = draw(st.one_of(st.integers(0, 2), st.lists(st.integers(0, 5), min_size=4,
                                                      max_size=4)))
    dilate = draw(st.one_of(st.just(1), st.integers(1, 3),
                            st.lists(st.integers(1, 3), min_size=2, max_size=2)))
    kout = c if empty_w else k
    nb = draw(st.sampled_from([None, kout, kout, kout, kout + 1]))
    seed = draw(st.integers(0, 2 ** 16))
    strategy = draw(st.sampled_from([None] + STRATEGIES))
    return dict(xs=(h, wd, c, n), ws=None if empty_w else (fh, fw, fc, k), nb=nb,
                stride=stride, pad=pad, dilate=dilate, seed=seed, strategy=strategy)


@settings(max_examples=80, deadline=None)
@given(conv_configs())
def test_conv_property_matches_reference_or_valueerror(cfg):
    if cfg["strategy"] is None:
        _property_case(cfg)
    else:
        with forced_strategy(cfg["strategy"]):
            _property_case(cfg)


def _property_case(cfg):
    r = np.random.default_rng(cfg["seed"])
    x = r.standard_normal(cfg["xs"])
    w = None if cfg["ws"] is None else r.standard_normal(cfg["ws"])
    b = None if cfg["nb"] is None else r.standard_normal(cfg["nb"])
    opts = dict(stride=cfg["stride"], pad=cfg["pad"], dilate=cfg["dilate"])
    try:
        expected = ref_conv(x, w, b, **opts)
    except Invalid as why:
        event(f"rejected: {why}")
        with pytest.raises(ValueError, match="vl_nnconv: "):
            vl_nnconv(x, w, b, **opts)
        return
    event("computed" + (" (empty w)" if w is None else ""))
    y = vl_nnconv(x, w, b, **opts)
    assert y.shape == expected.shape
    assert_close(y, expected)
    dy = r.standard_normal(y.shape)
    dx, dw, db = vl_nnconv(x, w, b, dy, **opts)
    assert dx.shape == x.shape
    # adjoint identities against the reference forward (linear parts)
    y0 = expected if b is None else ref_conv(x, w, None, **opts)
    tol = 1e-9 * max(1.0, np.abs(y0).sum() * np.abs(dy).max())
    assert abs(inner(y0, dy) - inner(x, dx)) <= tol
    if w is None:
        assert dw is None
    else:
        assert dw.shape == w.shape
        assert abs(inner(y0, dy) - inner(w, dw)) <= tol
    if b is None:
        assert db is None
    else:
        assert db.shape == b.shape
        assert_close(db, dy.sum(axis=(0, 1, 3)))


# ---------------------------------------------------------------------------
# Optional oracle: PyTorch (semantics section 33)
# ---------------------------------------------------------------------------

TORCH_CONV = ["basic", "pad_stride", "pad_gt_filter_2x2", "dilate_pad_stride", "groups3",
              "groups2_stride_pad", "groups4_depthwise", "fully_connected", "channels10_stride_pad",
              "mcn_dilate", "filter_1x1_pad", "channels16_unit_stride",
              "channels32_groups2_unit_stride"]
TORCH_CONVT = ["basic", "crop_asym2", "crop_upsample", "groups3_upsample_crop",
               "groups3_depthwise", "one_one_image_crop", "many_outputs_interleaved",
               "many_outputs_unit_upsample", "many_outputs_groups2_unit_upsample"]


@pytest.mark.parametrize("name", TORCH_CONV)
def test_conv_matches_torch(name):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x, w, b, opts = make_conv(CONV_CASES[name])
    pt, pb, pl, pr = quad(opts.get("pad", 0))
    groups = x.shape[2] // w.shape[2]
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))
    wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
    yt = tf.conv2d(tf.pad(xt, (pl, pr, pt, pb)), wt, groups=groups,
                   stride=pair(opts.get("stride", 1)), dilation=pair(opts.get("dilate", 1)))
    yt = yt.numpy().transpose(2, 3, 1, 0)
    if b is not None:
        yt = yt + np.ravel(b, order="F")[None, None, :, None]
    assert_close(vl_nnconv(x, w, b, **opts), yt)


@pytest.mark.parametrize("name", TORCH_CONVT)
def test_convt_matches_torch(name):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x, w, b, opts = make_convt(CONVT_CASES[name])
    r = convt_ref_opts(opts)
    ct, cb, cl, cr = quad(r["crop"])
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))
    wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
    full = tf.conv_transpose2d(xt, wt, stride=pair(r["upsample"]), groups=r["groups"])
    full = full.numpy().transpose(2, 3, 1, 0)
    yt = full[ct:full.shape[0] - cb, cl:full.shape[1] - cr]
    if b is not None:
        yt = yt + np.ravel(b, order="F")[None, None, :, None]
    assert_close(vl_nnconvt(x, w, b, **opts), yt)
