"""Max and average pooling with MatConvNet's padding rules."""

from ._backend import (as_tensor, check_derivative, common_dtype, from_nhwc,
                       get_array_module, like_shape, to4d, to_nhwc)
from ._im2col import fill_padded
from ._options import as_pair, as_quad, int_vector, parse_options, split_derivative
from ._shapes import conv_output_size


def _window_counts(xp, dtype, size, out, window, stride, pad_before):
    """Number of in-image elements of each window along one axis."""
    start = xp.arange(out) * stride - pad_before
    return (xp.minimum(start + window, size) - xp.maximum(start, 0)).astype(dtype)


def vl_nnpool(x, pool, dzdy=None, *args, **opts):
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
    dzdy, args = split_derivative(dzdy, args)
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
    xp = get_array_module(x, dzdy)
    x = as_tensor(x, fname, "x", xp)
    if x is None:
        raise ValueError(f"{fname}: x must not be empty")
    dzdy = as_tensor(dzdy, fname, "dzdy", xp) if dzdy is not None else None
    dtype = common_dtype(fname, x=x, dzdy=dzdy)
    x4 = to4d(x)
    h, w, c, n = x4.shape
    ho, wo, _, _ = conv_output_size(fname, h, w, ph, pw, stride, pad, filter_name="pool")
    xn = to_nhwc(x4, xp)
    sy, sx = stride
    hin, win = (ho - 1) * sy + ph, (wo - 1) * sx + pw

    def tap(a, u, v):
        return a[:, u:u + (ho - 1) * sy + 1:sy, v:v + (wo - 1) * sx + 1:sx]

    padded = pad != (0, 0, 0, 0)
    if padded:
        xpad = xp.empty((n, hin, win, c), dtype)
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
        dyn = to_nhwc(to4d(dzdy), xp)

    if method == "avg":
        counts = (_window_counts(xp, dtype, h, ho, ph, sy, pad[0])[:, None, None]
                  * _window_counts(xp, dtype, w, wo, pw, sx, pad[2])[None, :, None])
        if dzdy is None:
            y = xp.zeros((n, ho, wo, c), dtype)
            for v in range(pw):
                for u in range(ph):
                    y += tap(xpad, u, v)
            y /= counts
            return from_nhwc(y)
        share = dyn / counts
        dxpad = xp.zeros(xpad.shape, dtype)
        for v in range(pw):
            for u in range(ph):
                tap(dxpad, u, v)[...] += share
    else:
        # fmax skips NaN (MatConvNet's comparison-based loop does too); the
        # accumulator starts at -inf, so padding never wins
        best = xp.full((n, ho, wo, c), -xp.inf, dtype)
        for v in range(pw):
            for u in range(ph):
                xp.fmax(best, tap(xpad, u, v), out=best)
        if dzdy is None:
            return from_nhwc(best)
        # each window's gradient goes to its first element (column-major
        # scan) equal to the maximum, i.e. the first strictly greater one;
        # windows whose maximum is -inf (all -inf or NaN) get none
        remaining = xp.where(best > -xp.inf, dyn, dtype.type(0))
        hit = xp.empty((n, ho, wo, c), bool)
        share = xp.empty((n, ho, wo, c), dtype)
        dxpad = xp.zeros(xpad.shape, dtype)
        last = (pw - 1, ph - 1)
        for v in range(pw):
            for u in range(ph):
                xp.equal(tap(xpad, u, v), best, out=hit)
                xp.multiply(remaining, hit, out=share)
                tap(dxpad, u, v)[...] += share
                if (v, u) != last:
                    xp.copyto(remaining, dtype.type(0), where=hit)

    if padded:
        dxn = xp.zeros((n, h, w, c), dtype)
        r_hi, c_hi = min(h, hin - pad[0]), min(w, win - pad[2])
        dxn[:, :r_hi, :c_hi] = dxpad[:, pad[0]:pad[0] + r_hi, pad[2]:pad[2] + c_hi]
    else:
        dxn = dxpad
    return like_shape(from_nhwc(dxn), x.shape)
