"""Equality tests of the fast paths against the straightforward ones.

The speed work (issue 11) splits large element-wise and reduction work into
slabs and chunks over the shared threads (``vlnn._threads``) and replaces
some kernels by faster ones.  Each fast path must give exactly what the
unsplit path gives (the same operations per element, in the same order)
and be deterministic from run to run, on awkward shapes (1-pixel images,
one channel, batch 1, sizes that do not divide the chunk), in float32 and
float64 and for inputs in both memory orders.
"""

import numpy as np
import pytest

import vlnn._threads as threads
import vlnn.pool as pool_module
from _checks import rng
from vlnn import vl_nnpool

DTYPES = (np.float32, np.float64)


def _layout(a, order):
    """``a`` (H x W x C x N) as a C-ordered array, an N,H,W,C buffer seen as
    H x W x C x N (what the blocks return), or a Fortran-ordered one."""
    if order == "c":
        return np.ascontiguousarray(a)
    if order == "nhwc":
        return np.ascontiguousarray(a.transpose(3, 0, 1, 2)).transpose(1, 2, 3, 0)
    return np.asfortranarray(a)


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


@pytest.fixture
def split_everything(monkeypatch):
    """Force the threaded paths on tiny arrays: no size threshold, three
    workers (so that pieces do not pair up evenly with threads)."""
    monkeypatch.setattr(threads, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(threads, "THREADS", 3)
    return monkeypatch


# ---------------------------------------------------------------------------
# the shared helpers

def test_run_chunks_gives_each_worker_a_fixed_share(split_everything):
    seen = {}

    def work(k, chunk):
        seen.setdefault(k, []).append(chunk)

    threads.run_chunks(work, list(range(8)), 3)
    assert seen == {0: [0, 3, 6], 1: [1, 4, 7], 2: [2, 5]}


def test_run_chunks_propagates_errors(split_everything):
    def work(k, chunk):
        if chunk == 4:
            raise ValueError("chunk 4 failed")

    with pytest.raises(ValueError, match="chunk 4 failed"):
        threads.run_chunks(work, list(range(6)), 2)


def test_no_nested_parallelism(split_everything):
    inner = []

    def work(k, chunk):
        inner.append(threads.workers_for(np, 10, 1 << 30))

    threads.run_chunks(work, [0, 1, 2], 3)
    assert inner == [1, 1, 1]
    assert threads.workers_for(np, 10, 1 << 30) == 3


def test_blas_threads_restored_after_use():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [(i["filepath"], i["num_threads"])
              for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    if not before:
        pytest.skip("no BLAS library visible to threadpoolctl")
    with threads.blas_threads(1):
        with threads.blas_threads(1):   # nested: still one saved state
            inside = [i["num_threads"] for i in threadpoolctl.threadpool_info()
                      if i["user_api"] == "blas"]
        assert set(inside) == {1}
    after = [(i["filepath"], i["num_threads"])
             for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert after == before


def test_conv_leaves_blas_threads_as_found(split_everything):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from vlnn import vl_nnconv
    before = [(i["filepath"], i["num_threads"]) for i in threadpoolctl.threadpool_info()]
    r = rng(0)
    x = r.standard_normal((9, 9, 4, 7)).astype(np.float32)
    w = r.standard_normal((3, 3, 4, 5)).astype(np.float32)
    y = vl_nnconv(x, w, None, pad=1)
    vl_nnconv(x, w, None, np.ones_like(y), pad=1)
    assert [(i["filepath"], i["num_threads"]) for i in threadpoolctl.threadpool_info()] == before


# ---------------------------------------------------------------------------
# pooling in slabs (whole images, or bands of rows of a single outer position)

POOL_SHAPES = [(1, 1, 1, 1), (7, 5, 3, 2), (9, 11, 1, 1), (13, 8, 4, 1), (6, 6, 2, 5),
               (10, 3, 1, 3)]
POOL_CASES = [(2, 2, 0), (3, 2, 1), ([2, 3], [2, 1], [1, 0, 0, 2]), (3, 1, 1), (2, 3, 0),
              (3, 3, [0, 2, 1, 0]), (1, 1, 0)]


def _pool_both(x, size, stride, pad, method):
    """Forward and backward (with NaN and Inf in x and dzdy)."""
    y = vl_nnpool(x, size, stride=stride, pad=pad, method=method)
    dy = rng(3).standard_normal(y.shape).astype(x.dtype)
    dy.flat[::7] = np.inf
    dy.flat[3::11] = np.nan
    return y, vl_nnpool(x, size, dy, stride=stride, pad=pad, method=method)


@pytest.mark.parametrize("shape", POOL_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["c", "nhwc", "f"])
def test_pool_slabs_equal_single_pass(shape, dtype, order, split_everything):
    r = rng(1)
    x0 = r.standard_normal(shape).astype(dtype)
    x0[x0 > 1.6] = np.nan
    x0[x0 < -1.8] = -np.inf
    x = _layout(x0, order)
    for size, stride, pad in POOL_CASES:
        p = [size, size] if np.isscalar(size) else size
        pd = [pad] * 4 if np.isscalar(pad) else pad
        if shape[0] + pd[0] + pd[1] < p[0] or shape[1] + pd[2] + pd[3] < p[1]:
            continue
        for method in ("max", "avg"):
            split_everything.setattr(pool_module, "_SLAB_BYTES", 1 << 40)
            y1, dx1 = _pool_both(x, size, stride, pad, method)
            split_everything.setattr(pool_module, "_SLAB_BYTES", 8)
            y2, dx2 = _pool_both(x, size, stride, pad, method)
            y3, dx3 = _pool_both(x, size, stride, pad, method)
            for a, b in ((y1, y2), (dx1, dx2), (y2, y3), (dx2, dx3)):
                _same(a, b)


def test_pool_backward_never_leaks_dzdy_off_the_maximum():
    # dzdy is NaN or Inf everywhere but at the windows whose gradient is
    # checked: the selection must not turn 0 * NaN into NaN
    x = np.array([[1, 5, 2, 2], [3, 4, 8, 0]], np.float32).reshape(2, 4, 1, 1)
    dy = np.array([[np.nan, np.inf]], np.float32).reshape(1, 2, 1, 1)
    dx = vl_nnpool(x, 2, dy, stride=2)
    expected = np.zeros((2, 4), np.float32)
    expected[0, 1] = np.nan      # the max of the first window (5)
    expected[1, 2] = np.inf      # the max of the second window (8)
    np.testing.assert_array_equal(dx.reshape(2, 4), expected)


# ---------------------------------------------------------------------------
# convolution: tap-major column gradient and col2im_taps

import vlnn.conv as conv_module                      # noqa: E402
from vlnn._im2col import col2im, col2im_taps         # noqa: E402
from vlnn import vl_nnconv, vl_nnconvt               # noqa: E402


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom_args", [
    # n, h, w, c, fh, fw, fc, k, groups, sy, sx, pad, dy, dx
    (2, 7, 6, 6, 3, 2, 3, 4, 2, 1, 1, (1, 0, 2, 1), 1, 1),
    (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, (0, 0, 0, 0), 1, 1),
    (3, 9, 5, 4, 3, 3, 4, 2, 1, 2, 1, (1, 1, 1, 1), 2, 1),
    (1, 6, 8, 10, 2, 3, 5, 6, 2, 3, 2, (0, 1, 0, 2), 1, 2),
])
def test_col2im_taps_equals_col2im(dtype, geom_args):
    n, h, w, c, fh, fw, fc, k, g, sy, sx, pad, dil_y, dil_x = geom_args
    eh, ew = (fh - 1) * dil_y + 1, (fw - 1) * dil_x + 1
    ho = (h + pad[0] + pad[1] - eh) // sy + 1
    wo = (w + pad[2] + pad[3] - ew) // sx + 1
    geom = conv_module._Geometry(n, h, w, c, fh, fw, fc, k, g, sy, sx, pad, dil_y, dil_x,
                                 ho, wo, eh, ew)
    hin, win = (ho - 1) * sy + eh, (wo - 1) * sx + ew
    taps = fh * fw
    interleaved = rng(4).standard_normal((n, ho, wo, g, taps, fc)).astype(dtype)
    tap_major = np.ascontiguousarray(interleaved.transpose(3, 4, 0, 1, 2, 5))
    a = np.zeros((n, hin, win, c), dtype)
    b = np.zeros((n, hin, win, c), dtype)
    col2im(interleaved, a, geom, planar=False)
    col2im_taps(tap_major, b, geom)
    _same(a, b)


CONV_CASES = [
    # x shape, w shape, options
    ((1, 1, 9, 1), (1, 1, 9, 2), {}),
    ((5, 4, 9, 1), (3, 2, 9, 4), {"pad": [1, 0, 2, 1]}),
    ((7, 6, 10, 3), (3, 3, 5, 6), {"pad": 1, "stride": [2, 1]}),
    ((6, 9, 12, 2), (2, 3, 12, 3), {"dilate": [2, 1], "pad": 2}),
    ((8, 8, 16, 2), (5, 5, 16, 4), {"pad": 2}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["c", "nhwc"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_tap_major_dx_matches_interleaved(dtype, order, case, monkeypatch):
    xs, ws, opts = case
    r = rng(5)
    x = _layout(r.standard_normal(xs).astype(dtype), order)
    w = r.standard_normal(ws).astype(dtype)
    b = r.standard_normal(ws[3]).astype(dtype)
    monkeypatch.setattr(conv_module, "_FORCE_STRATEGY", "im2col")
    monkeypatch.setattr(conv_module, "_PLANAR_MAX_FC", 0)
    y = vl_nnconv(x, w, b, **opts)
    dy = _layout(r.standard_normal(y.shape).astype(dtype), order)
    monkeypatch.setattr(conv_module, "_TAP_MAJOR_MAX_FC", 0)          # interleaved
    ref = vl_nnconv(x, w, b, dy, **opts)
    monkeypatch.setattr(conv_module, "_TAP_MAJOR_MAX_FC", 1 << 20)    # tap-major
    got = vl_nnconv(x, w, b, dy, **opts)
    again = vl_nnconv(x, w, b, dy, **opts)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, e in zip(got, ref):
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.abs(e).max())
    for a, e in zip(got, again):
        _same(a, e)
    # convt's forward is the same data derivative
    xt = _layout(r.standard_normal((4, 3, ws[3], 2)).astype(dtype), order)
    monkeypatch.setattr(conv_module, "_TAP_MAJOR_MAX_FC", 0)
    ref_t = vl_nnconvt(xt, w, None, upsample=2, crop=[1, 0, 0, 1])
    monkeypatch.setattr(conv_module, "_TAP_MAJOR_MAX_FC", 1 << 20)
    got_t = vl_nnconvt(xt, w, None, upsample=2, crop=[1, 0, 0, 1])
    np.testing.assert_allclose(got_t, ref_t, rtol=tol, atol=tol * np.abs(ref_t).max())


ROWS_CASES = [
    # x shape, w shape, options (stride 1: the filter-row engine's domain)
    ((1, 1, 1, 1), (1, 1, 1, 1), {"pad": 0}),                     # 1 pixel, 1 channel
    ((1, 1, 3, 2), (3, 3, 3, 2), {"pad": 1}),                     # 1-pixel image, padded
    ((5, 4, 1, 3), (3, 2, 1, 2), {"pad": [1, 0, 2, 1]}),          # one channel
    ((6, 9, 12, 1), (2, 3, 12, 3), {"dilate": [2, 1], "pad": 2}),  # batch 1, dilation
    ((7, 6, 8, 5), (3, 3, 4, 6), {"pad": [0, 2, 1, 1], "dilate": [1, 2]}),  # 2 groups
    ((8, 8, 16, 7), (5, 5, 16, 4), {"pad": 2}),
    ((4, 5, 6, 3), (3, 3, 6, 5), {"pad": [3, 0, 0, 4]}),           # pad beyond the filter
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["c", "nhwc"])
@pytest.mark.parametrize("case", ROWS_CASES)
@pytest.mark.parametrize("one_image_chunks", [False, True])
def test_conv_rows_matches_im2col(dtype, order, case, one_image_chunks, split_everything):
    xs, ws, opts = case
    r = rng(8)
    x = _layout(r.standard_normal(xs).astype(dtype), order)
    w = r.standard_normal(ws).astype(dtype)
    b = r.standard_normal(ws[3]).astype(dtype)
    if one_image_chunks:          # several chunks, on three threads
        split_everything.setattr(conv_module, "_CHUNK_BYTES", 1)
    results = {}
    for strategy in ("im2col", "rows", "rows"):
        split_everything.setattr(conv_module, "_FORCE_STRATEGY", strategy)
        y = vl_nnconv(x, w, b, **opts)
        dy = _layout(rng(9).standard_normal(y.shape).astype(dtype), order)
        xt = _layout(rng(10).standard_normal((4, 3, ws[3], 2)).astype(dtype), order)
        got = (y,) + vl_nnconv(x, w, b, dy, **opts) + (vl_nnconvt(xt, w, None),)
        if strategy in results:          # deterministic from run to run
            for a, e in zip(got, results[strategy]):
                _same(a, e)
        results[strategy] = got
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, e in zip(results["rows"], results["im2col"]):
        assert a.shape == e.shape and a.dtype == e.dtype
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * max(1.0, np.abs(e).max()))


S2D_CASES = [
    # x shape, w shape, options: strided layers whose filters are whole strides
    ((8, 8, 3, 2), (4, 4, 3, 5), {"stride": 2, "pad": 1}),
    ((9, 7, 1, 1), (2, 2, 1, 3), {"stride": 2}),                          # one channel, batch 1
    ((11, 10, 4, 3), (4, 6, 4, 2), {"stride": [2, 3], "pad": [3, 0, 1, 2]}),  # pad > stride
    ((13, 12, 2, 2), (6, 3, 2, 4), {"stride": 3, "pad": [0, 1, 2, 0]}),    # rows past the last window
    ((2, 2, 3, 2), (2, 2, 3, 2), {"stride": 2, "pad": [1, 1, 1, 1]}),      # 2x2 image
    ((2, 3, 3, 2), (4, 4, 3, 2), {"stride": 4, "pad": [5, 0, 6, 1]}),      # no pixel read
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["c", "nhwc"])
@pytest.mark.parametrize("case", S2D_CASES)
@pytest.mark.parametrize("engine", ["rows", "shifted"])
def test_conv_space_to_depth_matches_im2col(dtype, order, case, engine, split_everything):
    xs, ws, opts = case
    r = rng(11)
    x = _layout(r.standard_normal(xs).astype(dtype), order)
    w = r.standard_normal(ws).astype(dtype)
    b = r.standard_normal(ws[3]).astype(dtype)
    # convt with upsample = stride and the same filters runs the same folding
    stride = opts["stride"]
    convt_opts = {"upsample": stride, "crop": opts.get("pad", 0)}
    xt = _layout(rng(12).standard_normal((3, 4, ws[3], 2)).astype(dtype), order)
    calls = []
    real = conv_module._conv_space_to_depth
    split_everything.setattr(conv_module, "_conv_space_to_depth",
                             lambda *a: calls.append(1) or real(*a))
    results = {}
    for strategy in ("im2col", engine, engine):
        split_everything.setattr(conv_module, "_FORCE_STRATEGY", strategy)
        calls.clear()
        y = vl_nnconv(x, w, b, **opts)
        dy = _layout(rng(13).standard_normal(y.shape).astype(dtype), order)
        bt = rng(18).standard_normal(ws[2]).astype(dtype)
        yt = vl_nnconvt(xt, w, bt, **convt_opts)
        dyt = _layout(rng(14).standard_normal(yt.shape).astype(dtype), order)
        got = (y,) + vl_nnconv(x, w, b, dy, **opts) + (yt,) + vl_nnconvt(xt, w, bt, dyt,
                                                                          **convt_opts)
        assert len(calls) == (0 if strategy == "im2col" else 4)
        if strategy in results:          # deterministic from run to run
            for a, e in zip(got, results[strategy]):
                _same(a, e)
        results[strategy] = got
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, e in zip(results[engine], results["im2col"]):
        assert a.shape == e.shape and a.dtype == e.dtype
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * max(1.0, np.abs(e).max()))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("engine", ["rows", "shifted"])
def test_conv_space_to_depth_keeps_nan_local(engine, monkeypatch):
    """NaN in the data or the filters reaches only what reads it, as with
    im2col (API.md): the folded layer's engines fall back where needed."""
    x = rng(15).standard_normal((9, 9, 3, 2))
    w = rng(16).standard_normal((4, 4, 3, 2))
    x[0, 0, 1, 1] = np.nan
    w[3, 3, 0, 1] = np.nan
    dy = rng(17).standard_normal((4, 4, 2, 2))
    got = {}
    for strategy in ("im2col", engine):
        monkeypatch.setattr(conv_module, "_FORCE_STRATEGY", strategy)
        got[strategy] = (vl_nnconv(x, w, None, stride=2, pad=[1, 0, 1, 0]),) + \
            vl_nnconv(x, w, None, dy, stride=2, pad=[1, 0, 1, 0])[:2]
    for a, e in zip(got[engine], got["im2col"]):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(e))
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


def test_conv_strategy_choice():
    """The automatic choice at stride 1: shifted GEMMs with little padding,
    filter rows for wider padding or dilation when images have enough
    pixels, im2col for few channels or tiny images and for strides."""
    def strategy(xs, ws, pad=0, stride=1, dilate=1):
        h, w, c, n = xs
        fh, fw, fc, k = ws
        eh, ew = (fh - 1) * dilate + 1, (fw - 1) * dilate + 1
        ho, wo = (h + 2 * pad - eh) // stride + 1, (w + 2 * pad - ew) // stride + 1
        return conv_module._strategy(conv_module._Geometry(
            n, h, w, c, fh, fw, fc, k, c // fc, stride, stride, (pad,) * 4, dilate, dilate,
            ho, wo, eh, ew))
    assert strategy((56, 56, 128, 8), (3, 3, 128, 128), pad=1) == "shifted"    # VGG
    assert strategy((16, 16, 32, 100), (5, 5, 32, 32), pad=2) == "rows"       # CIFAR conv2
    assert strategy((32, 32, 64, 16), (3, 3, 64, 64), pad=2, dilate=2) == "rows"
    assert strategy((12, 12, 20, 100), (5, 5, 20, 50)) == "im2col"            # LeNet: 8x8 out
    assert strategy((32, 32, 3, 100), (5, 5, 3, 32), pad=2) == "im2col"       # 3 channels
    assert strategy((32, 32, 64, 16), (3, 3, 64, 128), pad=1, stride=2) == "im2col"


# ---------------------------------------------------------------------------
# vl_nnrelu: one fused pass over flat pieces on the shared threads

from vlnn import vl_nnbnorm, vl_nnrelu              # noqa: E402
import vlnn.normalization as normalization_module   # noqa: E402


def _relu_plain(x, dzdy, leak):
    """The whole-array expressions of MatConvNet's vl_nnrelu."""
    if dzdy is None:
        return np.fmax(x, 0) if leak == 0 else x * np.where(x > 0, 1, leak).astype(x.dtype)
    if leak == 0:
        return dzdy * (x > 0)
    return dzdy * np.where(x > 0, 1, leak).astype(x.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["c", "nhwc", "f", "strided"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 5, 1, 7), (13,), (4, 3, 2, 1, 3)])
@pytest.mark.parametrize("leak", [0, 0.1])
@pytest.mark.filterwarnings("ignore:invalid value encountered")   # Inf * 0 in dzdy
def test_relu_pieces_equal_whole_array(dtype, order, shape, leak, split_everything):
    split_everything.setattr(threads, "CHUNK_BYTES", 20)       # 5 or 2.5 elements
    r = rng(6)
    x0 = r.standard_normal(shape).astype(dtype)
    x0.flat[::5] = np.nan
    x0.flat[1::6] = 0
    g0 = r.standard_normal(shape).astype(dtype)
    g0.flat[2::7] = np.inf
    if order == "strided":        # not contiguous: the whole-array fallback
        x = np.repeat(x0, 2, axis=0)[::2]
        g = np.repeat(g0, 2, axis=0)[::2]
    elif len(shape) == 4:
        x, g = _layout(x0, order), _layout(g0, order)
    else:
        x = np.asfortranarray(x0) if order == "f" else x0
        g = np.asfortranarray(g0) if order == "f" else g0
    y = vl_nnrelu(x, leak=leak)
    _same(y, _relu_plain(x0, None, leak))
    dx = vl_nnrelu(x, g, leak=leak)
    _same(dx, _relu_plain(x0, g0, leak))
    # dzdy laid out unlike x (another path) gives the same
    dx2 = vl_nnrelu(x, np.ascontiguousarray(g0) if order != "c" else np.asfortranarray(g0),
                    leak=leak)
    _same(dx2, dx)
    # a block's output keeps x's memory layout
    if order in ("c", "f", "nhwc"):
        assert y.strides == x.strides


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["c", "nhwc", "f"])
@pytest.mark.parametrize("shape", [(1, 1, 7, 5), (5, 3, 4, 1), (2, 9, 1, 3), (1, 1, 1, 1)])
def test_softmax_slabs_equal_whole_array(dtype, order, shape, split_everything):
    """vl_nnsoftmax, vl_nnsoftmaxloss and vl_nnloss's softmaxlog run their
    exponentials on slabs along H, W or N on the shared threads."""
    import vlnn.activations as activations_module
    from vlnn import vl_nnloss, vl_nnsoftmax, vl_nnsoftmaxloss
    from vlnn.activations import softmax_parts
    r = rng(12)
    x = _layout((3 * r.standard_normal(shape)).astype(dtype), order)
    x[(0,) * 4] = 80.0        # exp would overflow without the maximum
    labels = r.integers(1, shape[2] + 1, size=shape[:2] + (1, shape[3])).astype(dtype)
    dy = _layout(r.standard_normal(shape).astype(dtype), order)
    calls = (lambda: vl_nnsoftmax(x), lambda: vl_nnsoftmax(x, dy),
             lambda: vl_nnsoftmaxloss(x, labels), lambda: vl_nnsoftmaxloss(x, labels, 0.5),
             lambda: vl_nnloss(x, labels, loss="softmaxlog"),
             lambda: vl_nnloss(x, labels, 0.5, loss="softmaxlog"))
    split_everything.setattr(activations_module, "_SOFTMAX_PARALLEL_MIN_BYTES", 0)
    split_everything.setattr(threads, "THREADS", 1)        # whole arrays
    whole = [f() for f in calls]
    parts = softmax_parts(np.asarray(x), np)
    split_everything.setattr(threads, "THREADS", 3)        # slabs on 3 threads
    for f, expected in zip(calls, whole):
        _same(f(), expected)
    for got, expected in zip(softmax_parts(np.asarray(x), np), parts):
        _same(got, expected)


def test_zeros_operand_is_shared_read_only_and_grows():
    from vlnn._im2col import zeros_operand
    a = zeros_operand(5, np.float32, np)
    assert a.shape == (5,) and a.dtype == np.float32 and not a.any()
    with pytest.raises(ValueError, match="read-only"):
        a[0] = 1
    b = zeros_operand(1000, np.float32, np)      # grows; the old view stays valid
    assert b.shape == (1000,) and not b.any() and not a.any()
    assert zeros_operand(3, np.float64, np).dtype == np.float64


# ---------------------------------------------------------------------------
# vl_nnbnorm: chunk passes on the shared threads

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["c", "nhwc"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 1, 5, 3), (7, 5, 3, 2), (4, 9, 1, 6),
                                   (3, 3, 7, 1)])
@pytest.mark.parametrize("min_row", [1, 6])
def test_bnorm_threaded_chunks_match_one_pass(dtype, order, shape, min_row, split_everything):
    # min_row 6: chunks are seen as groups of rows (_ChannelView.part)
    split_everything.setattr(normalization_module, "_MIN_ROW", min_row)
    split_everything.setattr(normalization_module, "_BNORM_THREADS", 3)
    r = rng(7)
    x = _layout((r.standard_normal(shape) * 3 + 100).astype(dtype), order)
    dy = _layout(r.standard_normal(shape).astype(dtype), order)
    g = r.uniform(0.5, 1.5, shape[2]).astype(dtype)
    b = r.standard_normal(shape[2]).astype(dtype)

    def run():
        y, moments = vl_nnbnorm(x, g, b, return_moments=True)
        return (y, moments) + vl_nnbnorm(x, g, b, dy)

    split_everything.setattr(normalization_module, "_CHUNK_BYTES", 1 << 40)
    whole = run()
    split_everything.setattr(normalization_module, "_CHUNK_BYTES", 24)
    chunked = run()
    again = run()
    tol = 2e-6 if dtype == np.float32 else 1e-13
    for a, e in zip(chunked, whole):
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * max(1.0, np.abs(e).max()))
    for a, e in zip(chunked, again):
        _same(a, e)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["c", "nhwc"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (7, 5, 3, 13), (1, 1, 1030, 2), (9, 9, 1, 101),
                                   (24, 24, 20, 10)])
def test_conv_bias_derivative_sums(dtype, order, shape):
    r = rng(9)
    dy0 = r.standard_normal(shape).astype(dtype)
    dy = _layout(dy0, order)
    x = _layout(r.standard_normal(shape[:2] + (2, shape[3])).astype(dtype), order)
    w = r.standard_normal((1, 1, 2, shape[2])).astype(dtype)
    _, _, db = vl_nnconv(x, w, np.zeros(shape[2], dtype), dy)
    exact = dy0.astype(np.float64).sum(axis=(0, 1, 3))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(db, exact, rtol=tol, atol=tol * np.abs(dy0).sum(axis=(0, 1, 3)).max())
    assert db.dtype == dtype
    _same(db, vl_nnconv(x, w, np.zeros(shape[2], dtype), dy)[2])
