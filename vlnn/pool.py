"""Max and average pooling with MatConvNet's padding rules."""

import numpy as np

from ._backend import block_tensors, check_derivative, from_nhwc, like_shape, to4d, to_nhwc
from ._im2col import fill_padded, workspace
from ._options import as_pair, as_quad, int_vector, parse_options, split_derivative
from ._shapes import conv_output_size
from ._threads import max_workers, run_chunks, split

# Pooling works through its data in independent slabs (whole images, or
# bands of rows) of at most about this many input bytes, on the shared
# threads, with reused scratch arrays.
_SLAB_BYTES = 4 * 2 ** 20
_UINT = {4: np.uint32, 8: np.uint64}


def _window_counts(xp, dtype, size, out, window, stride, pad_before):
    """Number of in-image elements of each window along one axis."""
    start = xp.arange(out) * stride - pad_before
    return (xp.minimum(start + window, size) - xp.maximum(start, 0)).astype(dtype)


def vl_nnpool(x, pool, *args, dzdy=None, **opts):
    """CNN max and average pooling.

    ``Y = vl_nnpool(X, POOL)`` pools each channel of ``X`` over windows of
    ``POOL = [PH, PW]`` (or a scalar for square windows).

    ``DX = vl_nnpool(X, POOL, DZDY)`` computes the derivative with respect
    to ``X``.

    Parameters
    ----------
    x : array, ``H x W x C x N``
    pool : int or [PH, PW]
    dzdy : array ``HO x WO x C x N``, optional
        Passing it selects backward mode.

    Other Parameters
    ----------------
    Stride : int or [SY, SX], default 1
    Pad : int or [TOP, BOTTOM, LEFT, RIGHT], default 0
        Each pad must be smaller than the window in its direction.  Padding
        never takes part: max pooling ignores it (as if it were ``-inf``),
        average pooling divides by the number of in-image pixels of each
        window.
    Method : 'max' or 'avg', default 'max'
    Cudnn, NoCudnn, Verbose, CudnnWorkspaceLimit :
        Accepted for compatibility; no numerical effect.

    Returns
    -------
    y : array ``HO x WO x C x N`` (forward), where::

            HO = floor((H + TOP + BOTTOM - PH) / SY) + 1
            WO = floor((W + LEFT + RIGHT - PW) / SX) + 1

    dx : array shaped like ``x`` (backward)
        Overlapping windows accumulate.  For max pooling each window's
        gradient goes to its first maximum in column-major order (columns
        outer, rows inner), i.e. ties go to the smallest column, then row.
        NaNs never win; an all-NaN window yields ``-inf`` and no gradient.
    """
    fname = "vl_nnpool"
    if isinstance(pool, str) or pool is None:
        raise TypeError(f"{fname}: expected at least 2 arguments (x, pool); got {pool!r} as pool")
    dzdy, args = split_derivative(fname, args, dzdy)
    o = parse_options(fname, args, opts, {"Stride": 1, "Pad": 0, "Method": "max"}, gpu=True)
    ph, pw = (lambda v: (v[0], v[0]) if len(v) == 1 else v)(
        int_vector(pool, fname, "pool", (1, 2), 1))
    stride = as_pair(o.Stride, fname, "Stride", 1)
    pad = as_quad(o.Pad, fname, "Pad", 0)
    method = o.Method.lower() if isinstance(o.Method, str) else o.Method
    if method not in ("max", "avg"):
        raise ValueError(f"{fname}: Method must be 'max' or 'avg', got {o.Method!r}")
    if pad[0] >= ph or pad[1] >= ph or pad[2] >= pw or pad[3] >= pw:
        raise ValueError(
            f"{fname}: every Pad must be smaller than the pool size in its direction; "
            f"got Pad {list(pad)} for pool {ph} x {pw}")
    xp, dtype, (x, dzdy) = block_tensors(fname, x=x, dzdy=dzdy)
    x4 = to4d(x)
    h, w, c, n = x4.shape
    ho, wo, _, _ = conv_output_size(fname, h, w, ph, pw, stride, pad, filter_name="pool")
    # Work on an (outer, H, W, inner) arrangement of the data whose inner
    # axis is contiguous: a C-ordered H x W x C x N array is 1 x H x W x C*N
    # as it is, an N x H x W x C buffer (what the blocks return) is itself;
    # anything else is copied to the latter.
    if x4.flags.c_contiguous:
        xn = x4.reshape(1, h, w, c * n)

        def arranged(a4):
            return xp.ascontiguousarray(a4).reshape(1, a4.shape[0], a4.shape[1], c * n)

        def restored(a):
            return a.reshape(a.shape[1], a.shape[2], c, n)
    else:
        xn = to_nhwc(x4, xp)

        def arranged(a4):
            return to_nhwc(a4, xp)

        def restored(a):
            return from_nhwc(a)
    if dzdy is not None:
        check_derivative(fname, dzdy, (ho, wo, c, n))
        dyn = arranged(to4d(dzdy))
        out = xp.empty(xn.shape, dtype)
    else:
        dyn = None
        out = xp.empty((xn.shape[0], ho, wo, xn.shape[3]), dtype)
    # Independent slabs of about _SLAB_BYTES on the shared threads: whole
    # images when there are several; for a single outer position, bands of
    # output rows (forward, or windows that do not overlap, whose bands own
    # their input rows); every output element is computed by one slab
    # exactly as a single pass over the whole array would.
    sy, sx = stride
    geometry = (ph, pw, sy, sx, pad, method, ho, wo)
    workers = max_workers(xp, xn.nbytes)
    slabs = _slabs(xn.shape, xn.itemsize, ho, ph, sy, pad[0],
                   bands=dyn is None or sy >= ph, pieces=workers)
    workers = min(workers, len(slabs))

    def work(_k, slab):
        so, rows_in, rows_out, band = slab
        if band is None:
            part_geometry = geometry
        else:
            part_geometry = (ph, pw, sy, sx, (band[0], band[1], pad[2], pad[3]), method,
                             rows_out.stop - rows_out.start, wo)
        _pool_slab(xp, dtype, xn[so, rows_in],
                   None if dyn is None else dyn[so, rows_out],
                   out[so, rows_in if dyn is not None else rows_out], part_geometry)

    run_chunks(work, slabs, workers, blas=0)
    return restored(out) if dzdy is None else like_shape(restored(out), x.shape)


def _slabs(shape, itemsize, ho, ph, sy, pad_top, bands, pieces):
    """Independent pieces of the pooling of an ``(outer, H, W, inner)``
    array, as ``(outer slice, input rows, output rows, band pads)``, at
    least ``pieces`` of them where possible (a multiple of it), each at
    most about ``_SLAB_BYTES`` of input (fewer pieces: less per-call
    overhead):

    * several outer positions: runs of whole ones (band pads None: the
      block's own padding);
    * one outer position and ``bands``: bands of output rows; a band's input rows run from its first
      window's top to its last window's bottom or to the next band's first
      row, whichever is lower (the last band: to the image's end), and its
      pads ``(top, bottom)`` stand for the rows its windows reach outside
      the image;
    * otherwise a single piece (splitting the contiguous inner axis would
      leave ufuncs strided rows, several times slower)."""
    outer, h, w, inner = shape
    whole = slice(None)
    count = max(1, pieces)
    count *= -(-(h * w * inner * outer * itemsize) // (_SLAB_BYTES * count))
    if outer > 1:
        step = -(-outer // count)
        return [(slice(a, b), whole, whole, None) for a, b in split(outer, step)]
    if not bands or ho < 2 or count < 2:
        return [(whole, whole, whole, None)]
    step = -(-ho // count)
    pieces = []
    for a, b in split(ho, step):
        lo = a * sy - pad_top
        reach = (b - 1) * sy - pad_top + ph
        # the rows up to the next band's (or the image's end) belong to
        # this band: rows no window reaches get a zero gradient here
        end = min(h, h if b == ho else max(reach, b * sy - pad_top))
        pieces.append((whole, slice(max(lo, 0), end), slice(a, b),
                       (max(-lo, 0), max(reach - end, 0))))
    return pieces


def _select(xp, mask, src, out):
    """``out = src`` where ``mask``, else ``+0.0``; branch-free.

    ``where``-style selection branches per element and is ~10x slower on
    the random masks of max pooling; this ANDs the bit patterns of ``src``
    with all-ones or all-zeros words instead (NaN or Inf in ``src`` outside
    the mask never reach ``out``, unlike ``src * mask``)."""
    bits = _UINT[src.dtype.itemsize]
    words = workspace("pool_words", mask.shape, bits, xp)
    xp.subtract(bits(0), mask, out=words, dtype=bits)
    xp.bitwise_and(src.view(bits), words, out=out.view(bits))


def _pool_slab(xp, dtype, xn, dyn, out, geometry):
    """Pool one slab ``xn`` (``outer x H x W x inner``, any strides): the
    forward into ``out`` (``outer x HO x WO x inner``) when ``dyn`` is None,
    else the derivative into ``out`` (shaped like ``xn``)."""
    ph, pw, sy, sx, pad, method, ho, wo = geometry
    outer, h, w, inner = xn.shape
    hin, win = (ho - 1) * sy + ph, (wo - 1) * sx + pw

    # Polyphase: with a stride, window taps are strided views whose rows are
    # only C elements long, and numpy's ufuncs run several times slower on
    # those.  Split the padded input once into SY*SX contiguous phase images;
    # tap (u, v) is then a plain slice of phase (u % SY, v % SX) with
    # WO*C-long rows, and the gradient is gathered per phase, interleaved back
    # once at the end.
    used = [(i, j) for i in range(min(sy, ph)) for j in range(min(sx, pw))]

    def split_phases(a):
        if sy == 1 and sx == 1:
            return {(0, 0): a}
        phases = {}
        for i, j in used:
            part = a[:, i::sy, j::sx]
            phases[(i, j)] = workspace(f"pool_phase{i}_{j}", part.shape, dtype, xp)
            phases[(i, j)][...] = part
        return phases

    def tap(phases, u, v):
        r, q = u // sy, v // sx
        return phases[(u % sy, v % sx)][:, r:r + ho, q:q + wo]

    padded = pad != (0, 0, 0, 0)
    # in-image rows and columns of the padded window grid
    r_hi, c_hi = min(h, hin - pad[0]), min(w, win - pad[2])
    if padded:
        xpad = workspace("pool_xpad", (outer, hin, win, inner), dtype, xp)
        if method == "max":
            xpad.fill(-xp.inf)
            # fill_padded zero-fills the border, so copy the interior by hand
            xpad[:, pad[0]:pad[0] + r_hi, pad[2]:pad[2] + c_hi] = xn[:, :r_hi, :c_hi]
        else:
            fill_padded(xpad, xn, -pad[0], -pad[2], planar=False)
    else:
        xpad = xn
    xph = split_phases(xpad)

    # Windows that do not overlap (stride >= pool size) each own their input
    # pixels: their gradient is written straight into the padded gradient
    # (dx itself without padding), with no per-phase accumulators to sum and
    # interleave.
    disjoint = sy >= ph and sx >= pw
    if dyn is not None:
        dxpad = out if not padded else workspace("pool_dxpad", xpad.shape, dtype, xp)
        if disjoint:
            dxpad[...] = 0
            sink = dxpad
        else:
            sink = {key: workspace(f"pool_sink{key[0]}_{key[1]}", part.shape, dtype, xp)
                    for key, part in xph.items()}
            for part in sink.values():
                part[...] = 0

    def sink_tap(u, v):
        if disjoint:
            return sink[:, u:u + (ho - 1) * sy + 1:sy, v:v + (wo - 1) * sx + 1:sx]
        return tap(sink, u, v)

    if method == "avg":
        counts = (_window_counts(xp, dtype, h, ho, ph, sy, pad[0])[:, None, None]
                  * _window_counts(xp, dtype, w, wo, pw, sx, pad[2])[None, :, None])
        if dyn is None:
            out[...] = 0
            for v in range(pw):
                for u in range(ph):
                    out += tap(xph, u, v)
            out /= counts
            return
        share = workspace("pool_share", dyn.shape, dtype, xp)
        xp.divide(dyn, counts, out=share)
        for v in range(pw):
            for u in range(ph):
                if disjoint:
                    sink_tap(u, v)[...] = share
                else:
                    sink_tap(u, v)[...] += share
    else:
        # fmax skips NaN (MatConvNet's comparison-based loop does too); the
        # accumulator starts at -inf, so padding never wins
        best = out if dyn is None else workspace("pool_best", dyn.shape, dtype, xp)
        best.fill(-xp.inf)
        for v in range(pw):
            for u in range(ph):
                xp.fmax(best, tap(xph, u, v), out=best)
        if dyn is None:
            return
        # each window's gradient goes to its first element (column-major
        # scan) equal to the maximum, i.e. the first strictly greater one;
        # windows whose maximum is -inf (all -inf or NaN) get none.  Masks
        # only, and a branch-free selection (_select): dzdy reaches the first
        # maximum only (NaN or Inf elsewhere in dzdy never leak).
        found = workspace("pool_found", best.shape, bool, xp)
        xp.equal(best, -xp.inf, out=found)   # (CuPy's isneginf ignores out=)
        hit = workspace("pool_hit", best.shape, bool, xp)
        first = workspace("pool_first", best.shape, bool, xp)
        last = (ph - 1, pw - 1)
        for v in range(pw):
            for u in range(ph):
                xp.equal(tap(xph, u, v), best, out=hit)
                xp.greater(hit, found, out=first)
                if (u, v) != last:
                    xp.logical_or(found, hit, out=found)
                if disjoint:
                    _select(xp, first, dyn, sink_tap(u, v))
                else:
                    part = workspace("pool_part", dyn.shape, dtype, xp)
                    _select(xp, first, dyn, part)
                    sink_tap(u, v)[...] += part

    if not disjoint:
        if sy == 1 and sx == 1:
            dxpad[...] = sink[(0, 0)]
        else:
            dxpad[...] = 0
            for (i, j), part in sink.items():
                dxpad[:, i::sy, j::sx] = part
    if padded:
        out[...] = 0
        out[:, :r_hi, :c_hi] = dxpad[:, pad[0]:pad[0] + r_hi, pad[2]:pad[2] + c_hi]
