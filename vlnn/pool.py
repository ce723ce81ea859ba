"""Max and average pooling with MatConvNet's padding rules."""

from ._backend import block_tensors, check_derivative, from_nhwc, like_shape, to4d, to_nhwc
from ._im2col import fill_padded, workspace
from ._options import as_pair, as_quad, int_vector, parse_options, split_derivative
from ._shapes import conv_output_size


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
    outer, inner = xn.shape[0], xn.shape[3]
    sy, sx = stride
    hin, win = (ho - 1) * sy + ph, (wo - 1) * sx + pw

    # Polyphase: with a stride, window taps are strided views whose rows are
    # only C elements long, and numpy's ufuncs run several times slower on
    # those.  Split the padded input once into SY*SX contiguous phase images;
    # tap (u, v) is then a plain slice of phase (u % SY, v % SX) with
    # WO*C-long rows, and the gradient is gathered per phase, interleaved back
    # once at the end.
    used = [(i, j) for i in range(min(sy, ph)) for j in range(min(sx, pw))]

    def split(a):
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

    # Windows that do not overlap (stride >= pool size) each own their input
    # pixels: their gradient is written straight into dx, with no per-phase
    # accumulators to sum and interleave.
    disjoint = sy >= ph and sx >= pw

    def gradient_sink():
        if disjoint:
            return xp.zeros(xpad.shape, dtype)
        return {key: xp.zeros(part.shape, dtype) for key, part in xph.items()}

    def put(sink, u, v, value):
        if disjoint:
            sink[:, u:u + (ho - 1) * sy + 1:sy, v:v + (wo - 1) * sx + 1:sx] = value
        else:
            tap(sink, u, v)[...] += value

    def merge(phases, shape):
        if sy == 1 and sx == 1:
            return phases[(0, 0)]
        out = xp.zeros(shape, dtype)
        for (i, j), part in phases.items():
            out[:, i::sy, j::sx] = part
        return out

    padded = pad != (0, 0, 0, 0)
    if padded:
        xpad = xp.empty((outer, hin, win, inner), dtype)
        if method == "max":
            xpad.fill(-xp.inf)
            # fill_padded zero-fills the border, so copy the interior by hand
            r_hi, c_hi = min(h, hin - pad[0]), min(w, win - pad[2])
            xpad[:, pad[0]:pad[0] + r_hi, pad[2]:pad[2] + c_hi] = xn[:, :r_hi, :c_hi]
        else:
            fill_padded(xpad, xn, -pad[0], -pad[2], planar=False)
    else:
        xpad = xn

    if dzdy is not None:
        check_derivative(fname, dzdy, (ho, wo, c, n))
        dyn = arranged(to4d(dzdy))
    xph = split(xpad)

    if method == "avg":
        counts = (_window_counts(xp, dtype, h, ho, ph, sy, pad[0])[:, None, None]
                  * _window_counts(xp, dtype, w, wo, pw, sx, pad[2])[None, :, None])
        if dzdy is None:
            y = xp.zeros((outer, ho, wo, inner), dtype)
            for v in range(pw):
                for u in range(ph):
                    y += tap(xph, u, v)
            y /= counts
            return restored(y)
        share = dyn / counts
        sink = gradient_sink()
        for v in range(pw):
            for u in range(ph):
                put(sink, u, v, share)
    else:
        # fmax skips NaN (MatConvNet's comparison-based loop does too); the
        # accumulator starts at -inf, so padding never wins
        best = xp.full((outer, ho, wo, inner), -xp.inf, dtype)
        for v in range(pw):
            for u in range(ph):
                xp.fmax(best, tap(xph, u, v), out=best)
        if dzdy is None:
            return restored(best)
        # each window's gradient goes to its first element (column-major
        # scan) equal to the maximum, i.e. the first strictly greater one;
        # windows whose maximum is -inf (all -inf or NaN) get none.  Masks
        # only (no where= copies, which branch per element and are slow).
        found = workspace("pool_found", (outer, ho, wo, inner), bool, xp)
        xp.equal(best, -xp.inf, out=found)   # (CuPy's isneginf ignores out=)
        hit = workspace("pool_hit", (outer, ho, wo, inner), bool, xp)
        first = workspace("pool_first", (outer, ho, wo, inner), bool, xp)
        zero = dtype.type(0)
        sink = gradient_sink()
        for v in range(pw):
            for u in range(ph):
                xp.equal(tap(xph, u, v), best, out=hit)
                xp.greater(hit, found, out=first)
                xp.logical_or(found, hit, out=found)
                put(sink, u, v, xp.where(first, dyn, zero))

    dxpad = sink if disjoint else merge(sink, xpad.shape)
    if padded:
        dxn = xp.zeros((outer, h, w, inner), dtype)
        r_hi, c_hi = min(h, hin - pad[0]), min(w, win - pad[2])
        dxn[:, :r_hi, :c_hi] = dxpad[:, pad[0]:pad[0] + r_hi, pad[2]:pad[2] + c_hi]
    else:
        dxn = dxpad
    return like_shape(restored(dxn), x.shape)
