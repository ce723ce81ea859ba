"""Array rules shared by every block (vlnn._backend) and the im2col
workspace and padding helpers (vlnn._im2col): API.md "Arrays",
MATCONVNET_SEMANTICS.md sections 0.2 and 0.3.
"""

import threading
import tracemalloc

import numpy as np
import pytest

import vlnn
from vlnn import _im2col
from vlnn._backend import (as_tensor, check_derivative, common_dtype, from_nhwc,
                           get_array_module, is_empty, like_shape, shape4, to4d, to_nhwc)
from vlnn._im2col import add_unpadded, col2im, fill_padded, im2col, workspace
from vlnn.conv import _Geometry

F = "vl_nntest"


def randn(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.fixture
def restore_workspace_limit():
    old = vlnn.get_workspace_limit()
    yield old
    vlnn.set_workspace_limit(old)


# ---------------------------------------------------------------------------
# get_array_module


class _FakeCupyArray:
    """Looks like a CuPy array to the module check (no CuPy needed)."""
    __module__ = "cupy._core.core"
    shape = (2,)
    dtype = np.dtype(np.float32)


class TestGetArrayModule:
    def test_numpy_inputs(self):
        assert get_array_module(np.ones(2)) is np
        assert get_array_module(np.ones(2, np.float32), np.ones((2, 3))) is np

    def test_none_and_non_arrays_are_ignored(self):
        assert get_array_module(None, np.ones(2), None) is np
        assert get_array_module(None) is np
        assert get_array_module() is np
        assert get_array_module([1.0, 2.0], 3.0, "pad") is np

    def test_mixing_numpy_and_cupy_is_an_error(self):
        with pytest.raises(ValueError, match="cannot mix NumPy and CuPy arrays"):
            get_array_module(np.ones(2), _FakeCupyArray())
        with pytest.raises(ValueError, match="cannot mix NumPy and CuPy arrays"):
            get_array_module(_FakeCupyArray(), None, np.array(1.0, np.float32))

    def test_numpy_scalars_go_with_either(self):
        # a loss's dzdy may be np.float64(2.5) (API.md): a scalar, as CuPy treats it
        assert get_array_module(np.ones(2), np.float32(1.0)) is np
        assert get_array_module(np.float64(1.0)) is np

    def test_block_rejects_mixed_devices(self):
        x = np.ones((3, 3), np.float32)
        with pytest.raises(ValueError, match="cannot mix NumPy and CuPy"):
            vlnn.vl_nnrelu(x, _FakeCupyArray())


# ---------------------------------------------------------------------------
# as_tensor, is_empty, common_dtype


class TestAsTensor:
    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    @pytest.mark.parametrize("order", ["C", "F"])
    def test_float_arrays_pass_through_without_copy(self, dtype, order):
        a = np.asarray(randn((2, 3, 4), dtype), order=order)
        out = as_tensor(a, F, "x")
        assert out is a

    def test_non_contiguous_view_passes_through(self):
        a = randn((4, 6))[::2, ::3]
        assert as_tensor(a, F, "x") is a

    @pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.float16,
                                       np.complex64, np.complex128, bool])
    def test_other_dtypes_rejected(self, dtype):
        a = np.ones((2, 3), dtype)
        with pytest.raises(ValueError, match=rf"{F}: w must be float32 or float64, got "
                                             rf"{np.dtype(dtype)} \(shape \(2, 3\)\)"):
            as_tensor(a, F, "w")

    @pytest.mark.parametrize("a", [
        np.zeros((0,)), np.zeros((0, 3), np.float32), np.zeros((2, 0, 3), np.int32),
        np.zeros((0,), complex), np.zeros((0, 0), bool), np.zeros((3, 3, 0, 2), np.uint8),
    ])
    def test_empty_is_none_whatever_its_dtype(self, a):
        assert as_tensor(a, F, "b") is None
        assert is_empty(a)

    def test_empty_list_is_none(self):
        assert as_tensor([], F, "b") is None

    def test_none_is_none(self):
        assert as_tensor(None, F, "b") is None
        assert is_empty(None)
        assert not is_empty(np.zeros(1))

    def test_lists_are_converted(self):
        out = as_tensor([[1.0, 2.0], [3.0, 4.0]], F, "b")
        assert isinstance(out, np.ndarray) and out.dtype == np.float64
        np.testing.assert_array_equal(out, [[1.0, 2.0], [3.0, 4.0]])
        assert as_tensor(2.5, F, "b").dtype == np.float64

    @pytest.mark.parametrize("a", ["abc", [1j, 2j], [True, False], object()])
    def test_non_float_non_arrays_rejected(self, a):
        with pytest.raises(ValueError, match=rf"{F}: b must be"):
            as_tensor(a, F, "b")

    def test_ragged_list_rejected(self):
        with pytest.raises(ValueError, match=rf"{F}: b must be an array, got list"):
            as_tensor([[1.0], [2.0, 3.0]], F, "b")


class TestCommonDtype:
    def test_single_dtype(self):
        a32, b32 = np.ones(2, np.float32), np.ones(3, np.float32)
        assert common_dtype(F, x=a32, w=b32, b=None) == np.float32
        assert common_dtype(F, x=np.ones(2), dzdy=np.ones(2)) == np.float64

    def test_all_none_is_float32(self):
        assert common_dtype(F, x=None, w=None) == np.float32

    def test_mixing_names_the_arguments(self):
        with pytest.raises(ValueError) as info:
            common_dtype(F, x=np.ones(2, np.float32), w=None, b=np.ones(2),
                         dzdy=np.ones(1, np.float32))
        msg = str(info.value)
        assert "must not mix float32 and float64" in msg
        assert "x is float32" in msg and "b is float64" in msg and "dzdy is float32" in msg
        assert "w is" not in msg  # empty arguments are compatible with anything


# ---------------------------------------------------------------------------
# shapes


class TestShape4:
    @pytest.mark.parametrize("shape, expected", [
        ((), (1, 1, 1, 1)),
        ((5,), (5, 1, 1, 1)),
        ((5, 6), (5, 6, 1, 1)),
        ((5, 6, 3), (5, 6, 3, 1)),
        ((5, 6, 3, 2), (5, 6, 3, 2)),
        ((5, 6, 3, 2, 4), (5, 6, 3, 8)),
        ((2, 3, 4, 5, 6, 7), (2, 3, 4, 210)),
        ((1, 1, 1, 1, 1), (1, 1, 1, 1)),
        ((3, 0, 2), (3, 0, 2, 1)),
        ((np.int64(2), np.int32(3)), (2, 3, 1, 1)),
    ])
    def test_shape4(self, shape, expected):
        out = shape4(shape)
        assert out == expected
        assert all(type(s) is int for s in out)


class TestTo4d:
    def test_four_d_is_returned_as_is(self):
        a = randn((2, 3, 4, 5))
        assert to4d(a) is a

    @pytest.mark.parametrize("shape", [(5,), (5, 6), (5, 6, 3)])
    def test_missing_trailing_dims_are_views(self, shape):
        a = randn(shape)
        v = to4d(a)
        assert v.shape == shape4(shape)
        assert np.shares_memory(v, a)
        np.testing.assert_array_equal(v.reshape(shape), a)

    @pytest.mark.parametrize("order", ["C", "F"])
    def test_dims_past_the_fourth_fold_column_major(self, order):
        h, w, c, a_, b_ = 2, 3, 2, 3, 4
        x = np.asarray(randn((h, w, c, a_, b_)), order=order)
        v = to4d(x)
        assert v.shape == (h, w, c, a_ * b_)
        # MATLAB: reshape(X, H, W, C, []) keeps the column-major element order,
        # so image (a, b) of the 5-D array is image a + A*b of the 4-D one
        for ia in range(a_):
            for ib in range(b_):
                np.testing.assert_array_equal(v[:, :, :, ia + a_ * ib], x[:, :, :, ia, ib])
        # the whole array in MATLAB's linear order is unchanged
        np.testing.assert_array_equal(v.ravel(order="F"), x.ravel(order="F"))

    def test_six_d(self):
        x = randn((2, 1, 2, 2, 3, 2))
        v = to4d(x)
        assert v.shape == (2, 1, 2, 12)
        np.testing.assert_array_equal(v[..., 1 + 2 * 2 + 2 * 3 * 1], x[..., 1, 2, 1])

    def test_like_shape_inverts_to4d(self):
        x = randn((2, 3, 2, 3, 4))
        np.testing.assert_array_equal(like_shape(to4d(x), x.shape), x)


class TestNhwc:
    @pytest.mark.parametrize("order", ["C", "F"])
    def test_round_trip(self, order):
        x4 = np.asarray(randn((3, 4, 5, 2)), order=order)
        n = to_nhwc(x4, np)
        assert n.shape == (2, 3, 4, 5) and n.flags.c_contiguous
        for i in range(2):
            np.testing.assert_array_equal(n[i], x4[:, :, :, i])
        back = from_nhwc(n)
        assert back.shape == x4.shape
        np.testing.assert_array_equal(back, x4)
        assert np.shares_memory(back, n)

    def test_to_nhwc_is_free_for_block_outputs(self):
        y = randn((2, 3, 4, 5))  # N x H x W x C, C-contiguous
        x4 = from_nhwc(y)
        assert x4.shape == (3, 4, 5, 2)
        n = to_nhwc(x4, np)
        assert np.shares_memory(n, y)
        np.testing.assert_array_equal(n, y)


class TestLikeShape:
    def test_same_shape_is_returned_as_is(self):
        d = randn((2, 3))
        assert like_shape(d, (2, 3)) is d
        assert like_shape(d, [2, 3]) is d

    @pytest.mark.parametrize("shape", [(3, 4), (3,), (1, 3), (1, 1, 3), (3, 1), (3, 4, 1)])
    def test_reshapes_column_major(self, shape):
        size = int(np.prod(shape))
        d = np.arange(size, dtype=np.float64).reshape(shape4(shape), order="F")
        out = like_shape(d, shape)
        assert out.shape == tuple(shape)
        np.testing.assert_array_equal(out.ravel(order="F"), np.arange(size))


class TestCheckDerivative:
    def test_matching_and_four_d_equivalent_shapes_pass(self):
        check_derivative(F, np.ones((3, 4, 1, 1)), (3, 4, 1, 1))
        check_derivative(F, np.ones((3, 4)), (3, 4, 1, 1))
        check_derivative(F, np.ones((3, 4, 2, 2, 3)), (3, 4, 2, 6))

    def test_mismatch_names_both_shapes(self):
        with pytest.raises(ValueError, match=rf"{F}: dzdy has shape \(3, 4\) but the forward "
                                             r"output has shape \(3, 5, 1, 1\)"):
            check_derivative(F, np.ones((3, 4)), (3, 5, 1, 1))


# ---------------------------------------------------------------------------
# workspace


class TestWorkspaceLimit:
    def test_set_returns_previous_and_get_reads_it(self, restore_workspace_limit):
        old = restore_workspace_limit
        assert vlnn.get_workspace_limit() == old
        assert vlnn.set_workspace_limit(2 ** 20) == old
        assert vlnn.get_workspace_limit() == 2 ** 20
        assert vlnn.set_workspace_limit(3 * 2 ** 20) == 2 ** 20
        assert vlnn.get_workspace_limit() == 3 * 2 ** 20

    def test_default_is_256_mb(self):
        assert _im2col._DEFAULT_LIMIT == 256 * 2 ** 20

    def test_minimum_is_64_kb(self, restore_workspace_limit):
        assert vlnn.set_workspace_limit(65536) == restore_workspace_limit
        assert vlnn.get_workspace_limit() == 65536
        for bad in (65535, 0, -1):
            with pytest.raises(ValueError, match=rf"nbytes must be at least 65536, got {bad}"):
                vlnn.set_workspace_limit(bad)
        assert vlnn.get_workspace_limit() == 65536  # unchanged by the failures

    def test_float_is_accepted(self, restore_workspace_limit):
        vlnn.set_workspace_limit(1e6)
        assert vlnn.get_workspace_limit() == 1000000

    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_tiny_limit_gives_the_same_results(self, restore_workspace_limit, dtype):
        # a 64 KB limit splits every image into one-row chunks whose padded
        # windows start inside the padding and run past the image
        # a tiny limit may also change the engine (shifted GEMMs need a whole
        # image in the workspace), hence the summation order: float32 sums of
        # ~200 terms then differ by a few 1e-5
        tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
        # planar and interleaved im2col layouts, then a stride-1 layer with
        # many channels (per-tap GEMMs on the padded grid, in row bands)
        for c, k, stride in ((3, 4, [1, 2]), (16, 8, [1, 2]), (16, 8, 1)):
            x = randn((20, 18, c, 3), dtype, seed=1)
            w = randn((3, 4, c, k), dtype, seed=2)
            b = randn((k,), dtype, seed=3)
            opts = dict(pad=[1, 2, 2, 1], stride=stride)
            topts = dict(upsample=stride, crop=[1, 2, 2, 1])
            y_ref = vlnn.vl_nnconv(x, w, b, **opts)
            dy = randn(y_ref.shape, dtype, seed=4)
            d_ref = vlnn.vl_nnconv(x, w, b, dy, **opts)
            t_ref = vlnn.vl_nnconvt(y_ref, w, b[:1].repeat(c), **topts)
            vlnn.set_workspace_limit(65536)
            y = vlnn.vl_nnconv(x, w, b, **opts)
            d = vlnn.vl_nnconv(x, w, b, dy, **opts)
            t = vlnn.vl_nnconvt(y_ref, w, b[:1].repeat(c), **topts)
            vlnn.set_workspace_limit(restore_workspace_limit)
            np.testing.assert_allclose(y, y_ref, **tol)
            np.testing.assert_allclose(t, t_ref, **tol)
            for got, want in zip(d, d_ref):
                assert got.dtype == dtype
                np.testing.assert_allclose(got, want, **tol)


def _nhwc_view(shape, seed):
    """An ``H x W x C x N`` view of an N x H x W x C array, as blocks return."""
    h, w, c, n = shape
    return randn((n, h, w, c), np.float32, seed).transpose(1, 2, 3, 0)


@pytest.mark.parametrize("stride, backward, limit", [
    pytest.param(2, False, 65536, id="im2col-forward"),
    pytest.param(2, True, 65536, id="im2col-backward"),
    # 64 KB cannot hold one padded image: the stride-1 layer runs by im2col
    pytest.param(1, False, 65536, id="stride1-forward-64k"),
    pytest.param(1, True, 65536, id="stride1-backward-64k"),
    # 4 MB holds a few: the stride-1 layer runs by shifted GEMMs
    pytest.param(1, False, 4 * 2 ** 20, id="shifted-forward-4m"),
    pytest.param(1, True, 4 * 2 ** 20, id="shifted-backward-4m"),
])
def test_workspace_limit_bounds_the_scratch_memory(restore_workspace_limit, monkeypatch,
                                                   stride, backward, limit):
    # set_workspace_limit: "Cap (in bytes) on the scratch memory a block may
    # hold at once (im2col columns and padded copies); the batch is processed
    # in chunks that fit."  Inputs are NHWC views, so no layout copy is needed.
    x = _nhwc_view((32, 32, 32, 4), 1)
    w = randn((3, 3, 32, 32), np.float32, 2)
    dy = _nhwc_view(vlnn.vl_nnconv(x, w, None, pad=1, stride=stride).shape, 3)
    import vlnn.conv as conv_module
    calls = []
    real_shifted = conv_module._conv_shifted
    monkeypatch.setattr(conv_module, "_conv_shifted",
                        lambda *a, **k: calls.append(1) or real_shifted(*a, **k))
    tracemalloc.start()
    try:
        vlnn.set_workspace_limit(limit)  # drops the buffers: the new ones are counted
        out = vlnn.vl_nnconv(x, w, None, dy, pad=1, stride=stride) if backward \
            else (vlnn.vl_nnconv(x, w, None, pad=1, stride=stride),)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    results = sum(o.nbytes for o in out if o is not None)
    # the workspace, a few filter-sized matrices and small temporaries
    allowance = limit + 4 * w.nbytes + 65536
    assert peak - results <= allowance, (peak - results, allowance)
    assert bool(calls) == (stride == 1 and limit > 65536)


class TestWorkspaceBuffers:
    def test_same_slot_reuses_the_buffer(self, restore_workspace_limit):
        a = workspace("test-slot", (3, 4), np.float32, np)
        assert a.shape == (3, 4) and a.dtype == np.float32
        b = workspace("test-slot", (4, 3), np.float32, np)
        assert np.shares_memory(a, b)
        smaller = workspace("test-slot", (2, 2), np.float32, np)
        assert smaller.shape == (2, 2) and np.shares_memory(a, smaller)

    def test_larger_request_reallocates_and_is_then_reused(self):
        a = workspace("test-grow", (2, 2), np.float64, np)
        big = workspace("test-grow", (10, 10), np.float64, np)
        assert big.shape == (10, 10) and not np.shares_memory(a, big)
        again = workspace("test-grow", (5, 5), np.float64, np)
        assert np.shares_memory(big, again)

    def test_slots_and_dtypes_are_separate(self):
        a = workspace("test-a", (8,), np.float32, np)
        b = workspace("test-b", (8,), np.float32, np)
        c = workspace("test-a", (8,), np.float64, np)
        assert not np.shares_memory(a, b) and not np.shares_memory(a, c)
        assert c.dtype == np.float64

    def test_zero_size_request(self):
        z = workspace("test-zero", (0, 3), np.float32, np)
        assert z.shape == (0, 3)

    def test_set_workspace_limit_drops_the_buffers(self, restore_workspace_limit):
        a = workspace("test-drop", (16,), np.float32, np)
        vlnn.set_workspace_limit(restore_workspace_limit)
        b = workspace("test-drop", (16,), np.float32, np)
        assert not np.shares_memory(a, b)

    def test_buffers_are_per_thread(self):
        mine = workspace("test-thread", (16,), np.float32, np)
        theirs = []
        t = threading.Thread(target=lambda: theirs.append(workspace("test-thread", (16,),
                                                                    np.float32, np)))
        t.start()
        t.join()
        assert theirs[0].shape == (16,)
        assert not np.shares_memory(mine, theirs[0])

    def test_outputs_do_not_live_in_the_workspace(self):
        x1, x2 = randn((9, 9, 3, 2), seed=1), randn((9, 9, 3, 2), seed=2)
        w, b = randn((3, 3, 3, 4), seed=3), randn((4,), seed=4)
        y1 = vlnn.vl_nnconv(x1, w, b, pad=1)
        keep = y1.copy()
        dy = randn(y1.shape, seed=5)
        d1 = vlnn.vl_nnconv(x1, w, b, dy, pad=1)
        d1_keep = [d.copy() for d in d1]
        vlnn.vl_nnconv(x2, w, b, pad=1)
        vlnn.vl_nnconv(x2, w, b, dy, pad=1)
        vlnn.vl_nnconvt(x2, w.transpose(0, 1, 3, 2), None, crop=1)
        np.testing.assert_array_equal(y1, keep)
        for d, k in zip(d1, d1_keep):
            np.testing.assert_array_equal(d, k)


# ---------------------------------------------------------------------------
# padding and im2col adjoints

# (row0, col0, hb, wb) windows over a 5 x 6 image
WINDOWS = [
    (-2, -1, 9, 9),    # starts inside the top/left padding, runs past the bottom/right
    (-1, -3, 3, 4),    # inside the padding, ends inside the image
    (2, 3, 5, 6),      # starts inside the image, runs past it
    (0, 0, 5, 6),      # exactly the image
    (1, 1, 2, 3),      # strictly inside
    (-4, -4, 2, 2),    # entirely in the top-left padding
    (6, 7, 3, 3),      # entirely past the image
    (-1, 5, 7, 1),     # a one-column window on the last image column
]


def _padded_reference(src, row0, col0, hb, wb):
    n, h, w, c = src.shape
    big = np.zeros((n, h + 2 * (hb + abs(row0)), w + 2 * (wb + abs(col0)), c), src.dtype)
    oy, ox = hb + abs(row0), wb + abs(col0)
    big[:, oy:oy + h, ox:ox + w] = src
    return big[:, oy + row0:oy + row0 + hb, ox + col0:ox + col0 + wb]


@pytest.mark.parametrize("planar", [False, True], ids=["interleaved", "planar"])
@pytest.mark.parametrize("window", WINDOWS, ids=[str(w) for w in WINDOWS])
class TestPadding:
    def _dst_shape(self, n, c, hb, wb, planar):
        return (c, n, hb, wb) if planar else (n, hb, wb, c)

    def test_fill_matches_zero_padding_and_overwrites_everything(self, window, planar):
        row0, col0, hb, wb = window
        src = randn((2, 5, 6, 3), seed=1)
        dst = np.full(self._dst_shape(2, 3, hb, wb, planar), np.nan)  # workspace garbage
        fill_padded(dst, src, row0, col0, planar)
        ref = _padded_reference(src, row0, col0, hb, wb)
        got = dst.transpose(1, 2, 3, 0) if planar else dst
        np.testing.assert_array_equal(got, ref)

    def test_fill_and_add_are_adjoint(self, window, planar):
        row0, col0, hb, wb = window
        x = randn((2, 5, 6, 3), seed=2)
        y = randn(self._dst_shape(2, 3, hb, wb, planar), seed=3)
        fx = np.empty_like(y)
        fill_padded(fx, x, row0, col0, planar)
        ay = np.zeros_like(x)
        add_unpadded(ay, y, row0, col0, planar)
        lhs, rhs = np.vdot(fx, y), np.vdot(x, ay)
        assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)

    def test_add_accumulates(self, window, planar):
        row0, col0, hb, wb = window
        base = randn((2, 5, 6, 3), seed=4)
        y = randn(self._dst_shape(2, 3, hb, wb, planar), seed=5)
        into_zero = np.zeros_like(base)
        add_unpadded(into_zero, y, row0, col0, planar)
        into_base = base.copy()
        add_unpadded(into_base, y, row0, col0, planar)
        np.testing.assert_allclose(into_base, base + into_zero, rtol=0, atol=1e-15)


def _geometry(n, h, w, c, fh, fw, fc, k, stride, dil, ho, wo):
    eh, ew = (fh - 1) * dil[0] + 1, (fw - 1) * dil[1] + 1
    return _Geometry(n, h, w, c, fh, fw, fc, k, c // fc, stride[0], stride[1], (0, 0, 0, 0),
                     dil[0], dil[1], ho, wo, eh, ew)


@pytest.mark.parametrize("planar", [False, True], ids=["interleaved", "planar"])
def test_im2col_and_col2im_are_adjoint(planar):
    n, c, fc, fh, fw, stride, dil = 2, 4, 2, 2, 3, (2, 1), (1, 2)
    hin, win = 7, 9
    ho = (hin - ((fh - 1) * dil[0] + 1)) // stride[0] + 1
    wo = (win - ((fw - 1) * dil[1] + 1)) // stride[1] + 1
    geom = _geometry(n, hin, win, c, fh, fw, fc, 2, stride, dil, ho, wo)
    g, taps = c // fc, fh * fw
    pad_shape = (c, n, hin, win) if planar else (n, hin, win, c)
    col_shape = (g, taps, fc, n, ho, wo) if planar else (n, ho, wo, g, taps, fc)
    xpad = randn(pad_shape, seed=6)
    dcols = randn(col_shape, seed=7)
    cols = np.full(col_shape, np.nan)
    im2col(xpad, cols, geom, planar)
    assert not np.isnan(cols).any()
    back = np.zeros(pad_shape)
    col2im(dcols, back, geom, planar)
    assert np.vdot(cols, dcols) == pytest.approx(np.vdot(xpad, back), rel=1e-12)
    # spot-check one entry against the definition: tap (u, v), channel f of group gi
    u, v, f, gi, i, j, m = 1, 2, 1, 1, 2, 1, 1
    r, s = i * stride[0] + u * dil[0], j * stride[1] + v * dil[1]
    if planar:
        assert cols[gi, u * fw + v, f, m, i, j] == xpad[gi * fc + f, m, r, s]
    else:
        assert cols[m, i, j, gi, u * fw + v, f] == xpad[m, r, s, gi * fc + f]
