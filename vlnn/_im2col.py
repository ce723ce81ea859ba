"""im2col / col2im over the kernel offsets, and the reusable workspace.

The only Python loop is over the ``FH * FW`` kernel taps: each tap copies one
strided slice of the padded input into the column buffer (``im2col``) or adds
one slice of the column gradient back (``col2im``, with ``+=``, no
``add.at``), following Chainer's ``im2col_cpu``.

Two column layouts serve different inputs (both are views a single GEMM can
use without copying):

* interleaved: padded input ``N x H x W x C``, columns
  ``N x HO x WO x G x T x FC`` (``T = FH * FW`` taps);
* planar: padded input ``C x N x H x W``, columns ``G x T x FC x N x HO x WO``.
  Copies then run along image rows, which is much faster when there are
  few channels.
"""

import importlib
import threading

import numpy as np

from ._backend import get_array_module

_DEFAULT_LIMIT = 256 * 2 ** 20
_state = {"limit": _DEFAULT_LIMIT}
_local = threading.local()


def set_workspace_limit(nbytes):
    """Cap (in bytes) on the scratch memory a convolution holds at once:
    im2col columns, padded copies of chunks of the batch and the per-thread
    buffers of the shifted-GEMM and filter-row engines.  The batch is
    processed in chunks (whole images, or bands of output rows of one image)
    that fit.  Outputs, derivatives, a copy of the input in another memory
    order and, for strided layers whose filters are whole strides, the input
    folded into channels come on top.
    Pooling pads a copy of its whole input, bounded by the input's size.
    Default 256 MB.  Returns the previous limit."""
    nbytes = int(nbytes)
    if nbytes < 2 ** 16:
        raise ValueError(f"set_workspace_limit: nbytes must be at least 65536, got {nbytes}")
    old = _state["limit"]
    _state["limit"] = nbytes
    _local.__dict__.clear()
    return old


def get_workspace_limit():
    """The current workspace cap in bytes (see :func:`set_workspace_limit`)."""
    return _state["limit"]


def workspace(slot, shape, dtype, xp):
    """A scratch array for ``slot``, reused across calls in this thread.

    Fresh large allocations cost page faults on every call; reusing one
    buffer per slot avoids that.  The content is undefined."""
    dtype = np.dtype(dtype)
    size = 1
    for s in shape:
        size *= int(s)
    key = (slot, dtype.str, xp.__name__)
    buf = getattr(_local, "buffers", None)
    if buf is None:
        buf = _local.buffers = {}
    flat = buf.get(key)
    if flat is None or flat.size < size:
        flat = xp.empty(max(size, 1), dtype=dtype)
        buf[key] = flat
    return flat[:size].reshape(shape)


_zeros = {}


def zeros_operand(size, dtype, xp):
    """A read-only 1-D array of ``size`` zeros of ``dtype``, shared by all
    calls and threads (grown as needed, never written).

    numpy's ``maximum``/``fmax``/``greater`` run SIMD loops only when both
    operands are arrays: against a scalar zero they are 3-5x slower
    (55x55x96x16 float32, ``fmax(x, 0)``: 0.7 against 0.21 ns per element
    in cache)."""
    dtype = np.dtype(dtype)
    key = (dtype.str, xp.__name__)
    flat = _zeros.get(key)
    if flat is None or flat.size < size:
        flat = xp.zeros(max(int(size), 1), dtype=dtype)
        if xp is np:
            flat.flags.writeable = False
        _zeros[key] = flat
    return flat[:size]


def fill_padded(dst, src, row0, col0, planar):
    """Copy the images ``src`` (``N x H x W x C``) into ``dst`` seen as a window
    of the zero-padded images whose top-left is image row ``row0``, column
    ``col0`` (negative inside the top/left padding).  ``dst`` is
    ``N x HB x WB x C`` or, when ``planar``, ``C x N x HB x WB``."""
    h, w = src.shape[1], src.shape[2]
    if planar:
        hb, wb = dst.shape[2], dst.shape[3]
    else:
        hb, wb = dst.shape[1], dst.shape[2]
    r_lo, r_hi = max(row0, 0), min(row0 + hb, h)
    c_lo, c_hi = max(col0, 0), min(col0 + wb, w)
    dr_lo, dr_hi = r_lo - row0, r_hi - row0
    dc_lo, dc_hi = c_lo - col0, c_hi - col0
    view = (lambda rs, cs: dst[:, :, rs, cs]) if planar else (lambda rs, cs: dst[:, rs, cs])
    # zero only the padding strips; the interior is overwritten below
    view(slice(0, max(dr_lo, 0)), slice(None))[...] = 0
    view(slice(max(dr_hi, 0), hb), slice(None))[...] = 0
    view(slice(None), slice(0, max(dc_lo, 0)))[...] = 0
    view(slice(None), slice(max(dc_hi, 0), wb))[...] = 0
    if r_hi > r_lo and c_hi > c_lo:
        part = src[:, r_lo:r_hi, c_lo:c_hi]
        view(slice(dr_lo, dr_hi), slice(dc_lo, dc_hi))[...] = \
            part.transpose(3, 0, 1, 2) if planar else part


def add_unpadded(dst, src, row0, col0, planar):
    """The adjoint of :func:`fill_padded`: add the in-image part of the
    padded window ``src`` into the images ``dst`` (``N x H x W x C``)."""
    h, w = dst.shape[1], dst.shape[2]
    if planar:
        hb, wb = src.shape[2], src.shape[3]
    else:
        hb, wb = src.shape[1], src.shape[2]
    r_lo, r_hi = max(row0, 0), min(row0 + hb, h)
    c_lo, c_hi = max(col0, 0), min(col0 + wb, w)
    if r_hi <= r_lo or c_hi <= c_lo:
        return
    rs = slice(r_lo - row0, r_hi - row0)
    cs = slice(c_lo - col0, c_hi - col0)
    if planar:
        dst[:, r_lo:r_hi, c_lo:c_hi] += src[:, :, rs, cs].transpose(1, 2, 3, 0)
    else:
        dst[:, r_lo:r_hi, c_lo:c_hi] += src[:, rs, cs]


def _tap_slices(geom, u, v, hb):
    rs = slice(u * geom.dil_y, u * geom.dil_y + (hb - 1) * geom.stride_y + 1, geom.stride_y)
    cs = slice(v * geom.dil_x, v * geom.dil_x + (geom.wo - 1) * geom.stride_x + 1, geom.stride_x)
    return rs, cs


def as_strided(a, shape, strides):
    """``as_strided`` of the array's own module (numpy or CuPy)."""
    tricks = importlib.import_module(get_array_module(a).__name__ + ".lib.stride_tricks")
    return tricks.as_strided(a, shape=shape, strides=strides)


def im2col(xpad, cols, geom, planar):
    """Fill ``cols`` from the padded chunk ``xpad`` (layouts in the module
    docstring); ``hb`` output rows are taken from the chunk."""
    g, fc = geom.groups, geom.fc
    if planar:
        nb, hb = cols.shape[3], cols.shape[4]
        for u in range(geom.fh):
            for v in range(geom.fw):
                rs, cs = _tap_slices(geom, u, v, hb)
                cols[:, u * geom.fw + v] = xpad[:, :, rs, cs].reshape(g, fc, nb, hb, geom.wo)
    elif g == 1 and geom.dil_x == 1:
        # one filter row's taps (v, c) are one contiguous run of the padded
        # input: copy FW*C-long runs per filter row instead of C-long runs
        # per tap (a sliding-window view, read only)
        nb, hb = cols.shape[0], cols.shape[1]
        cols5 = cols.reshape(nb, hb, geom.wo, geom.fh, geom.fw * fc)
        s_n, s_h, s_w, s_c = xpad.strides
        for u in range(geom.fh):
            rows = xpad[:, u * geom.dil_y:]
            window = as_strided(rows, shape=(nb, hb, geom.wo, geom.fw * fc),
                                strides=(s_n, s_h * geom.stride_y, s_w * geom.stride_x, s_c))
            cols5[:, :, :, u] = window
    else:
        nb, hb = cols.shape[0], cols.shape[1]
        for u in range(geom.fh):
            for v in range(geom.fw):
                rs, cs = _tap_slices(geom, u, v, hb)
                cols[:, :, :, :, u * geom.fw + v] = \
                    xpad[:, rs, cs].reshape(nb, hb, geom.wo, g, fc)


def col2im(dcols, dxpad, geom, planar):
    """Add the column gradient ``dcols`` back into the (zeroed) padded
    chunk ``dxpad``: the adjoint of :func:`im2col`."""
    g, fc = geom.groups, geom.fc
    if planar:
        nb, hb = dcols.shape[3], dcols.shape[4]
        dxpad5 = dxpad.reshape((g, fc) + dxpad.shape[1:])
        for u in range(geom.fh):
            for v in range(geom.fw):
                rs, cs = _tap_slices(geom, u, v, hb)
                dxpad5[:, :, :, rs, cs] += dcols[:, u * geom.fw + v]
    else:
        nb, hb = dcols.shape[0], dcols.shape[1]
        dxpad5 = dxpad.reshape(dxpad.shape[:3] + (g, fc))
        for u in range(geom.fh):
            for v in range(geom.fw):
                rs, cs = _tap_slices(geom, u, v, hb)
                dxpad5[:, rs, cs] += dcols[:, :, :, :, u * geom.fw + v]


def col2im_taps(tcols, dxpad, geom):
    """:func:`col2im` for tap-major columns ``G x T x N x HB x WO x FC``
    (``tcols[g, t]`` is the column gradient of tap ``t``) into the zeroed
    interleaved padded chunk ``dxpad`` (``N x H x W x C``).

    Each addition reads one contiguous ``N x HB x WO x FC`` block; with
    stride 1 and one group it also writes contiguous ``WO*C``-long runs.
    The sums are those of :func:`col2im` (taps added in the same order)."""
    g_count, fc = geom.groups, geom.fc
    hb = tcols.shape[3]
    dxpad5 = dxpad.reshape(dxpad.shape[:3] + (g_count, fc))
    for g in range(g_count):
        dst = dxpad if g_count == 1 else dxpad5[:, :, :, g]
        for u in range(geom.fh):
            for v in range(geom.fw):
                rs, cs = _tap_slices(geom, u, v, hb)
                dst[:, rs, cs] += tcols[g, u * geom.fw + v]
