"""Normalisation blocks: cross-channel LRN, Lp, spatial, norm offset and
batch normalisation (MATCONVNET_SEMANTICS.md sections 9, 10, 11, 13, 14).

Every block computes on the ``H x W x C x N`` view of its data (:func:`to4d`)
with array operations that follow the data's memory order, so the
``N x H x W x C`` buffers that the other blocks return pass through without
a copy.  LRN and batch normalisation, which need several full-size
temporaries, see the data as ``P x C x Q`` in memory order
(:class:`_ChannelView`), work through it in cache-sized chunks with reused
scratch arrays, and return arrays laid out like their input.
"""

import numpy as np

from ._backend import block_tensors, check_derivative, like_shape, to4d
from ._im2col import workspace
from ._options import (as_float, int_vector, numbers_of, parse_options,
                       split_derivative)
from ._threads import max_workers, run_chunks
from .pool import vl_nnpool

# Window sums over at most this many channel offsets add shifted slices;
# wider windows use a float64 cumulative sum (one slice add costs about 1/20
# of the cumulative sum, and slices never lose precision to cancellation).
_MAX_LOOP_OFFSETS = 16

# LRN and batch normalisation work through the data in chunks of about this
# many bytes with reused scratch arrays: their passes then run in cache, and
# no call pays the page faults of fresh large temporaries (PERFORMANCE.md).
# CuPy arrays are processed whole.
_CHUNK_BYTES = 512 * 1024

# Per-channel operands are expanded over the axes that vary faster than the
# channels in memory when they hold at most this many elements: broadcasting
# a C-vector against a C-ordered H x W x C x N array otherwise gives numpy
# inner loops only N long (several times slower).
_MAX_EXPANDED = 1 << 16
# Batch normalisation's chunks are seen with rows of at least this many
# elements (_ChannelView.part).
_MIN_ROW = 1024
# Threads for batch normalisation's chunk passes (see vl_nnbnorm).
_BNORM_THREADS = 1


class _ChannelView:
    """A 4-D ``H x W x C x N`` array seen as ``P x C x Q`` in its memory
    order: ``P`` counts the positions of the axes that vary slower than the
    channels, ``Q`` those of the faster ones (``Q = 1`` for the
    ``N x H x W x C`` buffers the blocks hand out, ``Q = N`` for a C-ordered
    array).  The view is free for every contiguous layout; other arrays are
    copied.  Channel windows and per-channel statistics then act on axis 1,
    and chunks are whole slabs along ``P``."""

    def __init__(self, a4, xp):
        self.xp = xp
        self._ones = {}
        self.order = sorted(range(4), key=lambda ax: -abs(a4.strides[ax]) if a4.shape[ax] > 1
                            else 0)
        self.memory_shape = tuple(a4.shape[ax] for ax in self.order)
        k = self.order.index(2)
        self.p = _product(self.memory_shape[:k])
        self.c = a4.shape[2]
        self.q = _product(self.memory_shape[k + 1:])
        step = max(1, _CHUNK_BYTES // max(1, self.c * self.q * a4.itemsize))
        # rows of C*Q elements are grouped TILE at a time (see part()); chunks
        # are whole groups but for the last
        self.tile = max(1, _MIN_ROW // (self.c * self.q)) if xp is np else 1
        step = max(self.tile, step // self.tile * self.tile)
        self.chunks = [slice(0, self.p)] if xp is not np else \
            [slice(i, min(i + step, self.p)) for i in range(0, self.p, step)]

    def of(self, a4):
        """``a4`` (shaped like the viewed array) as ``P x C x Q``."""
        return a4.transpose(self.order).reshape(self.p, self.c, self.q)

    def empty(self, dtype):
        """A fresh ``P x C x Q`` array and its 4-D face, laid out like the
        viewed array."""
        out = self.xp.empty((self.p, self.c, self.q), dtype)
        inverse = tuple(self.order.index(ax) for ax in range(4))
        return out, out.reshape(self.memory_shape).transpose(inverse)

    def part(self, a3, rows):
        """The chunk ``a3[rows]`` of a ``P x C x Q`` array, seen as
        ``p/TILE x TILE x C x Q`` when its rows group evenly: with few
        channels (``C*Q`` small, e.g. the ``N x H x W x C`` buffers of a
        20-channel layer) numpy's inner loops would otherwise be only
        ``C*Q`` long, about 2x slower."""
        piece = a3[rows]
        n = piece.shape[0]
        if self.tile > 1 and n % self.tile == 0:
            return piece.reshape(n // self.tile, self.tile, self.c, self.q)
        return piece

    def channel(self, v):
        """The ``C``-vector ``v`` as an operand for chunks from :meth:`part`
        (``operand.on(chunk)``), broadcasting with long inner loops."""
        xp = self.xp
        if 1 < self.q and self.c * self.q <= _MAX_EXPANDED:
            plain = xp.ascontiguousarray(xp.broadcast_to(v[:, None], (self.c, self.q)))
        else:
            plain = v[:, None]
        tiled = None
        if self.tile > 1:
            tiled = xp.ascontiguousarray(xp.broadcast_to(plain, (self.tile, self.c, self.q)))
        return _ChannelOperand(plain, tiled)

    def channel_sum(self, a):
        """Per-channel sums of a chunk (from :meth:`part`) as float64: one
        matrix-vector product with ones (BLAS: much faster than numpy's
        reduction over the rows, and with several partial sums)."""
        xp = self.xp
        rows = a.reshape(-1, self.c * self.q)
        ones = self._ones.get((rows.shape[0], a.dtype.str))
        if ones is None:
            ones = self._ones[(rows.shape[0], a.dtype.str)] = xp.ones(rows.shape[0], a.dtype)
        return (ones @ rows).reshape(self.c, self.q).sum(axis=1, dtype=xp.float64)


class _ChannelOperand:
    """A per-channel operand in the two shapes :meth:`_ChannelView.part`
    hands out chunks in."""

    def __init__(self, plain, tiled):
        self.plain, self.tiled = plain, tiled

    def on(self, chunk):
        return self.tiled if chunk.ndim == 4 else self.plain


def _product(values):
    out = 1
    for v in values:
        out *= v
    return out


def _scratch(slot, like, xp, shape=None):
    """A C-contiguous scratch array of ``shape`` (default ``like.shape``) and
    ``like``'s dtype, reused across calls (:func:`workspace`) when it is
    chunk-sized and freshly allocated otherwise.  The content is undefined."""
    shape = like.shape if shape is None else shape
    if _product(shape) * like.itemsize > 4 * _CHUNK_BYTES:
        return xp.empty(shape, like.dtype)
    return workspace(slot, shape, like.dtype, xp)


def _require_param(param, fname):
    if isinstance(param, str) or param is None:
        raise TypeError(
            f"{fname}: expected at least 2 arguments (x, param); got {param!r} as param")


def _channel_window_sum(a, before, after, xp, out):
    """``out[:, k] = sum(a[:, t] for max(0, k - before) <= t <= min(C - 1, k + after))``
    for ``P x C x Q`` arrays; ``out`` must not overlap ``a``."""
    d = a.shape[1]
    before, after = min(before, d - 1), min(after, d - 1)
    if before == d - 1 and after == d - 1:
        # every channel sees every other one (e.g. LRN as L2 normalisation)
        out[...] = a.sum(axis=1, keepdims=True, dtype=xp.float64)
    elif before + after == 0:
        out[...] = a
    elif before + after <= _MAX_LOOP_OFFSETS:
        # a zero-padded copy, then one whole-array add per window offset
        # (adding into channel slices of ``out`` in place is several times slower)
        padded = _scratch("lrn_padded", a, xp, (a.shape[0], before + d + after, a.shape[2]))
        padded[:, :before] = 0
        padded[:, before + d:] = 0
        padded[:, before:before + d] = a
        xp.add(padded[:, 0:d], padded[:, 1:1 + d], out=out)
        for offset in range(2, before + after + 1):
            out += padded[:, offset:offset + d]
    else:
        cumulative = xp.cumsum(a, axis=1, dtype=xp.float64)
        zero = xp.zeros((a.shape[0], 1, a.shape[2]), xp.float64)
        cumulative = xp.concatenate([zero, cumulative], axis=1)
        k = xp.arange(d)
        upper = xp.minimum(k + after + 1, d)
        lower = xp.maximum(k - before, 0)
        xp.subtract(cumulative[:, upper], cumulative[:, lower], out=out, casting="unsafe")
    return out


# ---------------------------------------------------------------------------
# vl_nnnormalize

def vl_nnnormalize(x, param, *args, dzdy=None, **opts):
    """CNN Local Response Normalisation (LRN) across channels.

    ``Y = vl_nnnormalize(X, PARAM)`` normalises each element of ``X`` by the
    energy of a window of neighbouring channels at the same pixel, with
    ``PARAM = [N, KAPPA, ALPHA, BETA]``::

        L(i,j,k,n) = KAPPA + ALPHA * sum_{t in Q(k)} X(i,j,t,n)^2
        Y = X * L^(-BETA)

    where the window of channel ``k`` (0-based, ``D`` channels) is
    ``Q(k) = {t : max(0, k - m1) <= t <= min(D - 1, k + m2)}`` with
    ``m1 = floor((N - 1) / 2)`` channels before and ``m2 = N - 1 - m1``
    after (an even ``N`` reaches one channel further *after* ``k``).

    ``DX = vl_nnnormalize(X, PARAM, DZDY)`` computes the derivative::

        DX(t) = DZDY(t) * L(t)^(-BETA)
                - 2 * ALPHA * BETA * X(t) * sum_{k : t in Q(k)} DZDY(k) * X(k) * L(k)^(-BETA-1)

    This is MatConvNet's convention, not Caffe's: Caffe's (and PyTorch's)
    ``alpha`` is ``N * ALPHA`` here, and their even windows extend before
    ``k``.  With ``N >= 2 * D`` every channel sees all others, so
    ``PARAM = [2*D, 0, 1, 0.5]`` divides each pixel's channel vector by its
    L2 norm.  Powers are exact (MatConvNet's CPU code approximates them to
    about 0.5%; its GPU code is exact).

    Parameters
    ----------
    x : array, ``H x W x D x N``
        float32 or float64; missing trailing dimensions are 1 and dimensions
        past the 4th fold into the 4th.
    param : 4 numbers ``[N, KAPPA, ALPHA, BETA]``
        Any sequence or array with 4 elements; ``N`` is an integer ``>= 1``.
    dzdy : array ``H x W x D x N``, optional
        Derivative of the output, same dtype as ``x``; passing it selects
        backward mode (``None`` or an empty array is forward mode).

    Other Parameters
    ----------------
    Verbose, Cudnn, NoCudnn, CudnnWorkspaceLimit :
        Accepted for compatibility; no numerical effect.

    Returns
    -------
    y : array ``H x W x D x N`` of ``x``'s dtype (forward)
    dx : array shaped exactly like ``x`` (backward)

    Examples
    --------
    >>> x = np.random.randn(13, 13, 96, 2).astype(np.float32)
    >>> y = vl_nnnormalize(x, [5, 1, 2e-5, 0.75])        # AlexNet's LRN
    >>> dx = vl_nnnormalize(x, [5, 1, 2e-5, 0.75], np.ones_like(y))
    """
    fname = "vl_nnnormalize"
    _require_param(param, fname)
    dzdy, args = split_derivative(fname, args, dzdy)
    parse_options(fname, args, opts, {}, gpu=True)
    values = numbers_of(param, fname, "param [N, KAPPA, ALPHA, BETA]", (4,))
    size = values[0]
    if size != round(size) or size < 1:
        raise ValueError(
            f"{fname}: the window size N = param[0] must be an integer >= 1, got {size:g}")
    size = int(size)
    kappa, alpha, beta = (float(v) for v in values[1:])
    xp, _, (x, dzdy) = block_tensors(fname, x=x, dzdy=dzdy)
    x4 = to4d(x)
    before = (size - 1) // 2
    after = size - 1 - before

    view = _ChannelView(x4, xp)
    x3 = view.of(x4)
    if dzdy is not None:
        check_derivative(fname, dzdy, x4.shape, "x")
        dy3 = view.of(to4d(dzdy))
    out3, out = view.empty(x.dtype)
    for rows in view.chunks:
        xs, outs = x3[rows], out3[rows]
        squares = xp.multiply(xs, xs, out=_scratch("lrn_a", xs, xp))
        # L = KAPPA + ALPHA * (window sum of X^2)
        denom = outs if dzdy is None else _scratch("lrn_denom", xs, xp)
        _channel_window_sum(squares, before, after, xp, denom)
        denom *= alpha
        denom += kappa
        if dzdy is None:
            xp.power(denom, -beta, out=outs)
            outs *= xs
            continue
        dys = dy3[rows]
        scale = xp.power(denom, -beta, out=_scratch("lrn_scale", xs, xp))     # L^(-BETA)
        # DZDY(k) X(k) L(k)^(-BETA-1), summed over the channels k whose window
        # holds t: the mirrored window (m2 channels before t, m1 after)
        back = xp.multiply(dys, xs, out=squares)
        back *= scale
        back /= denom
        spread = _channel_window_sum(back, after, before, xp, denom)
        spread *= xs
        spread *= 2.0 * alpha * beta
        xp.multiply(dys, scale, out=outs)
        outs -= spread
    return out if dzdy is None else like_shape(out, x.shape)


# ---------------------------------------------------------------------------
# vl_nnnormalizelp

def vl_nnnormalizelp(x, *args, dzdy=None, return_norms=False, **opts):
    """CNN Lp normalisation.

    ``Y = vl_nnnormalizelp(X)`` divides ``X`` by its Lp norm taken over the
    dimensions ``Dimensions`` (by default the channels)::

        NORMS = (sum_{reduced dims} X^p + Epsilon)^(1/p)
        Y = X / NORMS

    ``Y, NORMS = vl_nnnormalizelp(X, return_norms=True)`` also returns the
    norms.

    ``DX = vl_nnnormalizelp(X, DZDY)`` computes the derivative::

        DX = DZDY / NORMS - S * X^(p-1) / NORMS^(p+1),
        S = sum_{reduced dims} DZDY * X

    ``X^p`` is a plain power (no absolute value, as in MatConvNet), so only
    even exponents are meaningful for data with negative values; a
    fractional power of a negative number is NaN.

    Parameters
    ----------
    x : array, ``H x W x C x N``
    dzdy : array ``H x W x C x N``, optional
        Passing it selects backward mode (``None`` or an empty array is
        forward mode).
    return_norms : bool, default False
        Forward mode only: return ``(y, norms)``.  Ignored in backward mode,
        which returns ``dx`` alone.

    Other Parameters
    ----------------
    Exponent, P : float, default 2
        The exponent ``p`` (``P`` is MatConvNet's alias); non-zero.
    Epsilon : float, default 0.01
        Added to the sum of powers before the root.
    Dimensions : sequence of int, default [3]
        1-based dimensions reduced over (3 = channels); each ``>= 1``.
        Dimensions past the 4th are singleton in the 4-D view and reduce
        nothing; an empty list reduces nothing.
    Spatial : flag
        Same as ``Dimensions=[1, 2]`` (one norm per channel and image).
        Cannot be combined with ``Dimensions``.
    Norms : array, optional
        Use these norms instead of computing them (forward and backward);
        any shape with as many elements as the norms, read in column-major
        order; same dtype as ``x``.
    Verbose, Cudnn, NoCudnn, CudnnWorkspaceLimit :
        Accepted for compatibility; no numerical effect.

    Returns
    -------
    y : array ``H x W x C x N`` of ``x``'s dtype (forward)
    norms : array (forward, with ``return_norms=True``)
        ``x``'s 4-D shape with the reduced dimensions set to 1 (the given
        ``Norms`` in that shape when they were passed).
    dx : array shaped exactly like ``x`` (backward)

    Examples
    --------
    >>> x = np.random.randn(7, 7, 64, 4).astype(np.float32)
    >>> y, norms = vl_nnnormalizelp(x, return_norms=True)     # over channels
    >>> norms.shape
    (7, 7, 1, 4)
    >>> y = vl_nnnormalizelp(x, 'p', 4, 'spatial')            # MATLAB style
    """
    fname = "vl_nnnormalizelp"
    dzdy, args = split_derivative(fname, args, dzdy)
    o = parse_options(fname, args, opts,
                      {"Exponent": None, "P": None, "Epsilon": 0.01, "Dimensions": None,
                       "Norms": None},
                      flags=("Spatial",), gpu=True)
    exponents = [as_float(v, fname, name) for name, v in (("Exponent", o.Exponent), ("P", o.P))
                 if v is not None]
    if len(set(exponents)) > 1:
        raise ValueError(
            f"{fname}: Exponent and its alias P disagree ({exponents[0]:g} vs {exponents[1]:g})")
    p = exponents[0] if exponents else 2.0
    if p == 0:
        raise ValueError(f"{fname}: Exponent must be non-zero")
    epsilon = as_float(o.Epsilon, fname, "Epsilon")
    if o.Spatial and o.Dimensions is not None:
        raise ValueError(f"{fname}: give either the Spatial flag or Dimensions, not both")
    if o.Spatial:
        dims = (1, 2)
    elif o.Dimensions is None:
        dims = (3,)
    else:
        dims = int_vector(o.Dimensions, fname, "Dimensions", tuple(range(0, 65)), 1)
    reduce_axes = tuple(sorted({d - 1 for d in dims if d <= 4}))

    xp, _, (x, dzdy, given) = block_tensors(fname, x=x, dzdy=dzdy, Norms=o.Norms)
    x4 = to4d(x)
    norms_shape = tuple(1 if axis in reduce_axes else s for axis, s in enumerate(x4.shape))
    if dzdy is not None:
        check_derivative(fname, dzdy, x4.shape, "x")

    def power(a, exponent):
        return a * a if exponent == 2 else xp.power(a, exponent)

    if given is not None:
        count = _product(norms_shape)
        if given.size != count:
            raise ValueError(
                f"{fname}: Norms has {given.size} elements (shape {tuple(given.shape)}) but "
                f"the norms of x (shape {tuple(x.shape)}) over dimensions {list(dims)} have "
                f"shape {norms_shape} ({count} elements)")
        norms = given.reshape(norms_shape, order="F")
    else:
        norms = power(x4, p).sum(axis=reduce_axes, keepdims=True) if reduce_axes \
            else power(x4, p)
        norms += epsilon
        norms = xp.sqrt(norms) if p == 2 else xp.power(norms, 1.0 / p)

    if dzdy is None:
        y = x4 / norms
        if return_norms:
            return y, (norms.copy() if given is not None else norms)
        return y
    dy4 = to4d(dzdy)
    total = (dy4 * x4).sum(axis=reduce_axes, keepdims=True)     # S
    # S X^(p-1) / NORMS^(p+1)
    back = x4 / power(norms, 3) if p == 2 else \
        xp.power(x4, p - 1) / xp.power(norms, p + 1)
    back *= total
    dx = dy4 / norms
    dx -= back
    return like_shape(dx, x.shape)


# ---------------------------------------------------------------------------
# vl_nnspnorm

def vl_nnspnorm(x, param, *args, dzdy=None, **opts):
    """CNN spatial normalisation.

    ``Y = vl_nnspnorm(X, PARAM)`` divides each element of ``X`` by the
    energy of its channel in a ``PH x PW`` neighbourhood, with
    ``PARAM = [PH, PW, ALPHA, BETA]``::

        N2 = vl_nnpool(X^2, [PH, PW], method='avg', pad=[PT, PB, PL, PR])
        F = 1 + ALPHA * N2
        Y = F^(-BETA) * X

    with ``PT = floor((PH - 1) / 2)``, ``PB = PH - 1 - PT``,
    ``PL = floor((PW - 1) / 2)``, ``PR = PW - 1 - PL``, so ``N2`` has the size
    of ``X``; as average pooling, each mean divides by the number of
    in-image pixels of the window.

    ``DX = vl_nnspnorm(X, PARAM, DZDY)`` computes the derivative::

        DX = F^(-BETA) * DZDY - 2 * ALPHA * BETA * X * T,
        T = vl_nnpool(X^2, [PH, PW], F^(-BETA-1) * DZDY * X, method='avg', pad=...)

    (``T`` is the average-pooling backward applied to ``F^(-BETA-1) DZDY X``.)

    Parameters
    ----------
    x : array, ``H x W x C x N``
    param : 4 numbers ``[PH, PW, ALPHA, BETA]``
        ``PH`` and ``PW`` are integers ``>= 1``.
    dzdy : array ``H x W x C x N``, optional
        Passing it selects backward mode (``None`` or an empty array is
        forward mode).

    The block takes no options (as in MatConvNet).

    Returns
    -------
    y : array ``H x W x C x N`` of ``x``'s dtype (forward)
    dx : array shaped exactly like ``x`` (backward)

    Examples
    --------
    >>> x = np.random.randn(13, 17, 4, 5)
    >>> y = vl_nnspnorm(x, [3, 3, 0.1, 0.75])
    """
    fname = "vl_nnspnorm"
    _require_param(param, fname)
    dzdy, args = split_derivative(fname, args, dzdy)
    parse_options(fname, args, opts, {})
    values = numbers_of(param, fname, "param [PH, PW, ALPHA, BETA]", (4,))
    window = int_vector(values[:2], fname, "the window size param[0:2] = [PH, PW]", (2,), 1)
    alpha, beta = float(values[2]), float(values[3])
    xp, _, (x, dzdy) = block_tensors(fname, x=x, dzdy=dzdy)
    x4 = to4d(x)
    ph, pw = window
    pad_top, pad_left = (ph - 1) // 2, (pw - 1) // 2
    pad = [pad_top, ph - 1 - pad_top, pad_left, pw - 1 - pad_left]
    if dzdy is not None:
        check_derivative(fname, dzdy, x4.shape, "x")
    squares = x4 * x4
    factor = vl_nnpool(squares, [ph, pw], method="avg", pad=pad)
    factor *= alpha
    factor += 1
    scale = xp.power(factor, -beta)                 # F^(-BETA)
    if dzdy is None:
        return scale * x4
    dy4 = to4d(dzdy)
    inner = dy4 * x4
    inner *= scale
    inner /= factor                                 # F^(-BETA-1) DZDY X
    spread = vl_nnpool(squares, [ph, pw], inner, method="avg", pad=pad)
    spread *= x4
    spread *= 2.0 * alpha * beta
    dx = scale * dy4
    dx -= spread
    return like_shape(dx, x.shape)


# ---------------------------------------------------------------------------
# vl_nnnoffset

def vl_nnnoffset(x, param, *args, dzdy=None, **opts):
    """CNN norm-dependent offset.

    ``Y = vl_nnnoffset(X, PARAM)`` subtracts from each element of ``X`` a
    power of the energy of its pixel's channel vector, with
    ``PARAM = [A, B]``::

        L(i,j,n) = max(sum_k X(i,j,k,n)^2, 1e-8)
        Y = X - A * L^B                               (the same for every k)

    ``DX = vl_nnnoffset(X, PARAM, DZDY)`` computes the derivative::

        DX = DZDY - 2 * A * B * X * (sum_k DZDY) * L^(B-1)

    (the clamp's zero derivative is ignored, as in MatConvNet).  MatConvNet
    evaluates this block in single precision whatever the data; here the
    output keeps ``x``'s dtype.

    Parameters
    ----------
    x : array, ``H x W x C x N`` (any number of dimensions; the channels are
        the third)
    param : 2 numbers ``[A, B]``
    dzdy : array shaped like ``x``, optional
        Passing it selects backward mode (``None`` or an empty array is
        forward mode).

    The block takes no options (as in MatConvNet).

    Returns
    -------
    y : array shaped like ``x`` (forward)
    dx : array shaped like ``x`` (backward)

    Examples
    --------
    >>> x = np.random.randn(4, 5, 10, 3)
    >>> y = vl_nnnoffset(x, [0.34, 0.5])
    """
    fname = "vl_nnnoffset"
    _require_param(param, fname)
    dzdy, args = split_derivative(fname, args, dzdy)
    parse_options(fname, args, opts, {})
    weight, exponent = (float(v) for v in numbers_of(param, fname, "param [A, B]", (2,)))
    xp, _, (x, dzdy) = block_tensors(fname, x=x, dzdy=dzdy)
    x4 = to4d(x)
    if dzdy is not None:
        check_derivative(fname, dzdy, x4.shape, "x")
    energy = xp.maximum(xp.einsum("hwcn,hwcn->hwn", x4, x4), x.dtype.type(1e-8))[:, :, None]
    if dzdy is None:
        offset = xp.power(energy, exponent)
        offset *= weight
        return like_shape(x4 - offset, x.shape)
    dy4 = to4d(dzdy)
    coef = dy4.sum(axis=2, keepdims=True)
    coef *= xp.power(energy, exponent - 1)
    coef *= 2.0 * weight * exponent
    dx = dy4 - x4 * coef
    return like_shape(dx, x.shape)


# ---------------------------------------------------------------------------
# vl_nnbnorm

def _channel_vector(a, c, fname, name):
    if a is None or a.size != c:
        got = "is empty" if a is None else f"has {a.size} elements (shape {tuple(a.shape)})"
        raise ValueError(f"{fname}: {name} {got} but x has C = {c} channels")
    return a.reshape(-1, order="F")


def vl_nnbnorm(x, g, b, *args, dzdy=None, return_moments=False, **opts):
    """CNN batch normalisation.

    ``Y = vl_nnbnorm(X, G, B)`` normalises each channel of ``X`` by the
    mean and standard deviation of that channel over the batch (all pixels
    of all images, ``M = H * W * N`` values), then scales by ``G`` and shifts
    by ``B``::

        MU(k)    = (1/M) sum_{i,j,n} X(i,j,k,n)
        SIGMA(k) = sqrt((1/M) sum_{i,j,n} (X(i,j,k,n) - MU(k))^2 + Epsilon)
        Y(i,j,k,n) = G(k) * (X(i,j,k,n) - MU(k)) / SIGMA(k) + B(k)

    (biased variance; ``SIGMA`` is a standard deviation that includes
    ``Epsilon``).  ``Y, MOMENTS = vl_nnbnorm(X, G, B, return_moments=True)``
    also returns ``MOMENTS = [MU, SIGMA]`` as a ``C x 2`` array.

    ``DX, DG, DB = vl_nnbnorm(X, G, B, DZDY)`` computes the derivatives::

        DB(k) = sum_{i,j,n} DZDY(i,j,k,n)
        DG(k) = sum_{i,j,n} DZDY(i,j,k,n) * (X(i,j,k,n) - MU(k)) / SIGMA(k)
        DX    = G(k) / SIGMA(k) * (DZDY - DB(k) / M)
                - G(k) / SIGMA(k) * DG(k) / (M * SIGMA(k)) * (X - MU(k))

    and ``DX, DG, DB, MOMENTS = vl_nnbnorm(X, G, B, DZDY, return_moments=True)``
    also returns the moments used.

    With ``Moments=[MU, SIGMA]`` given (test mode), ``MU`` and ``SIGMA`` are
    used verbatim (``Epsilon`` is not added again) and the forward is the
    affine map ``G * (X - MU) / SIGMA + B``.  The backward then still
    evaluates the batch formula above with the given ``MU``, ``SIGMA``
    (MatConvNet's behaviour; it is not the derivative of the affine map).

    Parameters
    ----------
    x : array, ``H x W x C x N``
    g, b : arrays with ``C`` elements, any shape
        Per-channel gains and biases, same dtype as ``x``; both required.
    dzdy : array ``H x W x C x N``, optional
        Passing it selects backward mode (``None`` or an empty array is
        forward mode).
    return_moments : bool, default False
        Also return ``moments`` (last in the tuple).

    Other Parameters
    ----------------
    Epsilon : float, default 1e-4
        Added to the variance before the square root (only when the moments
        are computed from the batch).
    Moments : array with ``2 C`` elements, optional
        ``[MU, SIGMA]`` read in column-major order (a ``C x 2`` array or
        ``[mu_1, ..., mu_C, sigma_1, ..., sigma_C]``); same dtype as ``x``.
    Cudnn, NoCudnn, Verbose, CudnnWorkspaceLimit :
        Accepted for compatibility; no numerical effect.

    Returns
    -------
    y : array ``H x W x C x N`` of ``x``'s dtype (forward)
    (dx, dg, db) : tuple (backward)
        Shaped exactly like ``x``, ``g`` and ``b``.
    moments : array ``C x 2`` ``[MU, SIGMA]`` (with ``return_moments=True``)

    Examples
    --------
    >>> x = np.random.randn(8, 8, 3, 16).astype(np.float32)
    >>> g, b = np.ones(3, np.float32), np.zeros(3, np.float32)
    >>> y, moments = vl_nnbnorm(x, g, b, return_moments=True)
    >>> y_test = vl_nnbnorm(x, g, b, moments=moments)       # same as y
    >>> dx, dg, db = vl_nnbnorm(x, g, b, np.ones_like(y))
    """
    fname = "vl_nnbnorm"
    for name, value in (("g", g), ("b", b)):
        if isinstance(value, str):
            raise TypeError(
                f"{fname}: expected at least 3 arguments (x, g, b); got option '{value}' as {name}")
    dzdy, args = split_derivative(fname, args, dzdy)
    o = parse_options(fname, args, opts, {"Epsilon": 1e-4, "Moments": None}, gpu=True)
    epsilon = as_float(o.Epsilon, fname, "Epsilon")
    xp, _, (x, g, b, dzdy, given) = block_tensors(fname, x=x, g=g, b=b, dzdy=dzdy,
                                                  Moments=o.Moments)
    x4 = to4d(x)
    h, w, c, n = x4.shape
    count = h * w * n
    gain = _channel_vector(g, c, fname, "g")
    bias = _channel_vector(b, c, fname, "b")
    if dzdy is not None:
        check_derivative(fname, dzdy, x4.shape, "x")

    if given is not None:
        if given.size != 2 * c:
            raise ValueError(
                f"{fname}: Moments has {given.size} elements (shape {tuple(given.shape)}) but "
                f"must have 2 * C = {2 * c} ([MU, SIGMA] for the {c} channels of x)")
        moments = given.reshape(c, 2, order="F").copy()
        mu, sigma = moments[:, 0], moments[:, 1]
    view = _ChannelView(x4, xp)
    x3 = view.of(x4)
    dy3 = view.of(to4d(dzdy)) if dzdy is not None else None
    dtype = x.dtype.type
    # Corrected two-pass moments: a first mean REF, then the sums of
    # D = X - REF and D^2 give MU = REF + mean(D) and the biased variance
    # mean(D^2) - mean(D)^2.  This is MatConvNet's E[X^2] - MU^2 without its
    # cancellation (never negative), and float32 data keep float32 accuracy
    # however large their mean.  The backward's sums over DZDY and DZDY D
    # share the second pass, which keeps D in the backward's output; the last
    # pass turns it into DX in place.  Chunk sums are accumulated in float64.
    # (A reference from a sample of the data instead of the first pass
    # measured no faster: that pass is one BLAS matrix-vector product.)
    # The chunk passes can run on the shared threads (per-channel sums
    # accumulated per thread over fixed chunks, added in thread order), but
    # on 2 cores that measured no faster than one thread (27x27x96x16:
    # 0.9-1.3x, the per-call glue of ~10 numpy calls per 512 KB chunk holds
    # the GIL): BNORM_THREADS is 1.
    workers = min(_BNORM_THREADS, max_workers(xp, x4.nbytes), len(view.chunks))

    def chunk_sums(count, body):
        """``body(rows, sums)`` over all chunks; returns ``count`` float64
        C-vectors summed over the chunks."""
        sums = [[xp.zeros(c, xp.float64) for _ in range(count)] for _ in range(workers)]
        run_chunks(lambda k, rows: body(rows, sums[k]), view.chunks, workers)
        totals = sums[0]
        for part in sums[1:]:
            for total, more in zip(totals, part):
                total += more
        return totals

    def each_chunk(body):
        run_chunks(lambda k, rows: body(rows), view.chunks, workers)

    if given is None:
        def mean_pass(rows, sums):
            sums[0] += view.channel_sum(view.part(x3, rows))
        total, = chunk_sums(1, mean_pass)
        reference = (total / count).astype(dtype)              # REF
    else:
        reference = mu
    reference_operand = view.channel(reference)
    out3, out = view.empty(x.dtype)

    def difference_pass(rows, sums):
        sum_d, sum_dd, sum_dy, sum_dyd = sums
        xs = view.part(x3, rows)
        # the backward keeps D in its output; the forward recomputes X - MU
        # below, so that Y is the same with the moments given or computed
        d = xp.subtract(xs, reference_operand.on(xs), out=view.part(out3, rows)
                        if dzdy is not None else _scratch("bnorm_d", xs, xp))
        if dzdy is not None:
            dys = view.part(dy3, rows)
            sum_dy += view.channel_sum(dys)
            sum_dyd += view.channel_sum(xp.multiply(dys, d, out=_scratch("bnorm_e", xs, xp)))
        if given is None:
            sum_d += view.channel_sum(d)
            sum_dd += view.channel_sum(xp.multiply(d, d, out=_scratch("bnorm_e", xs, xp)))
    sum_d, sum_dd, sum_dy, sum_dyd = chunk_sums(4, difference_pass)
    if given is None:
        shift = sum_d / count
        variance = xp.maximum(sum_dd / count - shift * shift, 0)
        mu = (reference + shift).astype(dtype)
        sigma = xp.sqrt(variance + epsilon).astype(dtype)
        moments = xp.stack([mu, sigma], axis=1) if return_moments else None
    # X - MU = D - (MU - REF), exactly D with given moments
    offset = mu.astype(xp.float64) - reference

    if dzdy is None:
        mean = view.channel(mu)
        ratio, offset = view.channel(gain / sigma), view.channel(bias)

        def normalise(rows):
            ys = view.part(out3, rows)
            xp.subtract(view.part(x3, rows), mean.on(ys), out=ys)
            ys *= ratio.on(ys)
            ys += offset.on(ys)
        each_chunk(normalise)
        return (out, moments) if return_moments else out

    # sum DZDY (X - MU) = sum DZDY D - (MU - REF) sum DZDY
    dbias = sum_dy.astype(dtype)
    dgain = ((sum_dyd - offset * sum_dy) / sigma).astype(dtype)
    ratio = gain / sigma
    # DX = ratio (DZDY - DB/M) - ratio DG / (M SIGMA) (X - MU)
    #    = coef D + (constant - coef offset) + ratio DZDY,  coef = -ratio DG / (M SIGMA)
    coef = -ratio * dgain / (count * sigma)
    centered_coef = view.channel(coef)
    constant = view.channel((-ratio * dbias / count - coef * offset).astype(dtype))
    ratio = view.channel(ratio)

    def derivative(rows):
        dxs = view.part(out3, rows)
        dxs *= centered_coef.on(dxs)
        dxs += constant.on(dxs)
        dxs += xp.multiply(view.part(dy3, rows), ratio.on(dxs), out=_scratch("bnorm_d", dxs, xp))
    each_chunk(derivative)
    out = (like_shape(out, x.shape), like_shape(dgain, g.shape), like_shape(dbias, b.shape))
    return out + (moments,) if return_moments else out
