"""Activations: the point-wise vl_nnrelu and vl_nnsigmoid, and vl_nnsoftmax over channels."""

from ._backend import block_tensors, check_derivative, like_shape, shape4, to4d
from ._im2col import workspace, zeros_operand
from ._threads import elementwise, max_workers, memory_flat, run_chunks, split
from ._options import as_float, parse_options, split_derivative


def vl_nnrelu(x, *args, dzdy=None, **opts):
    """CNN rectified linear unit.

    ``Y = vl_nnrelu(X)`` applies the rectifier to ``X`` (any shape).

    ``DX = vl_nnrelu(X, DZDY)`` computes the derivative; ``vl_nnrelu(X, None,
    ...)`` (MATLAB's ``[]``) is the forward form with options.

    Parameters
    ----------
    x : array, any shape
    dzdy : array shaped like ``x``, optional

    Other Parameters
    ----------------
    Leak : float, default 0
        ``Y = X`` where ``X > 0`` and ``Y = Leak * X`` elsewhere.

    Returns
    -------
    y : array shaped like ``x`` (forward)
    dx : array shaped like ``x`` (backward): ``DZDY * (Leak + (1 - Leak) * [X > 0])``;
        the derivative at 0 is ``Leak``.  Because ``[Y > 0] == [X > 0]`` for
        ``Leak >= 0``, the output ``Y`` may be passed in place of ``X``.
    """
    fname = "vl_nnrelu"
    dzdy, args = split_derivative(fname, args, dzdy)
    o = parse_options(fname, args, opts, {"Leak": 0})
    leak = as_float(o.Leak, fname, "Leak")
    xp, _, (x, dzdy) = block_tensors(fname, x=x, dzdy=dzdy)
    if dzdy is not None:
        if shape4(dzdy.shape) != shape4(x.shape):
            raise ValueError(
                f"{fname}: dzdy has shape {tuple(dzdy.shape)} but x has shape {tuple(x.shape)}")
        dzdy = dzdy.reshape(x.shape, order="F") if dzdy.shape != x.shape else dzdy
    zero, leak = x.dtype.type(0), x.dtype.type(leak)
    # One fused pass over cache-sized pieces of the flat data (on the shared
    # threads when large) where x and dzdy are laid out alike; the same
    # expressions on the whole arrays otherwise.
    out = xp.empty_like(x)
    flat_out, flat_x = memory_flat(out), memory_flat(x)
    flat_dy = None if dzdy is None or dzdy.strides != x.strides else memory_flat(dzdy)
    if flat_out is None or flat_x is None or out.strides != x.strides \
            or (dzdy is not None and flat_dy is None):
        if dzdy is None:
            if leak == 0:
                return xp.fmax(x, zero)  # MATLAB max(x, 0) maps NaN to 0
            return x * xp.where(x > 0, x.dtype.type(1), leak)
        if leak == 0:
            return dzdy * (x > 0)
        return dzdy * xp.where(x > 0, x.dtype.type(1), leak)

    # (fmax's zero is an array operand: its SIMD loop needs two arrays)
    def forward(o, a):
        if leak == 0:
            # MATLAB max(x, 0) maps NaN to 0
            xp.fmax(a, zeros_operand(a.size, a.dtype, xp), out=o)
        else:
            _leaky_slope(xp, a, leak, o)
            o *= a

    def backward(o, a, g):
        if leak == 0:
            positive = workspace("relu_mask", a.shape, bool, xp)
            xp.greater(a, zero, out=positive)
            xp.multiply(g, positive, out=o)
        else:
            _leaky_slope(xp, a, leak, o)
            o *= g

    if dzdy is None:
        elementwise(forward, flat_out, flat_x)
    else:
        elementwise(backward, flat_out, flat_x, flat_dy)
    return out


def _leaky_slope(xp, a, leak, out):
    """``out = 1 where a > 0 else leak`` (NaN: ``leak``)."""
    positive = workspace("relu_mask", a.shape, bool, xp)
    xp.greater(a, 0, out=positive)
    out[...] = leak
    xp.copyto(out, a.dtype.type(1), where=positive)


def stable_sigmoid(x, xp):
    """``1 / (1 + exp(-x))`` without overflow: only ``exp(-|x|)`` is taken."""
    small = xp.exp(-xp.abs(x))
    one = x.dtype.type(1)
    return xp.where(x >= 0, one, small) / (one + small)


def vl_nnsigmoid(x, *args, dzdy=None, **opts):
    """CNN sigmoid nonlinearity.

    ``Y = vl_nnsigmoid(X)`` computes the sigmoid of the data ``X`` (any
    shape), element by element::

        Y = 1 / (1 + exp(-X))

    ``DX = vl_nnsigmoid(X, DZDY)`` computes the derivative of the block
    projected onto ``DZDY``, which has the shape of ``X``::

        DX = DZDY * Y * (1 - Y)

    with ``Y`` recomputed from ``X``.  ``None`` (MATLAB's ``[]``) or an empty
    array as ``DZDY`` is the forward form.  The block has no options.

    Parameters
    ----------
    x : array, any shape, float32 or float64
    dzdy : array shaped like ``x``, optional
        Passing it selects backward mode.

    Returns
    -------
    y : array shaped like ``x`` (forward)
    dx : array shaped like ``x`` (backward)

    Notes
    -----
    Both directions are evaluated through ``exp(-|X|)``, so no intermediate
    overflows for scores of any size: ``Y`` saturates at exactly 0 and 1 and
    the derivative ``exp(-|X|) / (1 + exp(-|X|))^2`` (which equals
    ``Y (1 - Y)``) decays to 0.  NaN propagates.
    """
    fname = "vl_nnsigmoid"
    dzdy, args = split_derivative(fname, args, dzdy)
    parse_options(fname, args, opts, {})
    xp, _, (x, dzdy) = block_tensors(fname, x=x, dzdy=dzdy)
    if dzdy is None:
        return stable_sigmoid(x, xp)
    check_derivative(fname, dzdy, x.shape, "x")
    # Y (1 - Y) == e / (1 + e)^2 with e = exp(-|X|), for either sign of X
    small = xp.exp(-xp.abs(x))
    denom = x.dtype.type(1) + small
    denom *= denom
    small /= denom
    return like_shape(dzdy, x.shape) * small


# softmax_parts splits inputs of at least this many bytes: on 2 cores the
# threads cost 0.2-0.4 ms a call (1000 x 128 float32 scores, 512 KB: 1.1 ->
# 1.9 ms fwd+bwd), and pay off from about 1 ms of exponentials (64x64x21x8,
# 2.75 MB: 17.9 -> 12.5 ms).
_SOFTMAX_PARALLEL_MIN_BYTES = 2 * 2 ** 20


def softmax_parts(x4, xp):
    """``(m, e, s)`` of the ``H x W x D x N`` array ``x4``: the channel
    maximum ``m``, ``e = exp(x - m)`` and its channel sum ``s`` (with the
    maximum subtracted nothing overflows).

    numpy's float32 ``exp`` takes about 2 ns per element on one core; large
    inputs are cut into slabs along the longest of ``H``, ``W`` and ``N``
    and run on the shared threads (four numpy calls per slab; every
    location's values and sums are those of the whole-array expressions)."""
    workers = max_workers(xp, x4.nbytes) if x4.nbytes >= _SOFTMAX_PARALLEL_MIN_BYTES else 1
    axis = max((0, 1, 3), key=lambda a: x4.shape[a])
    if workers == 1 or x4.shape[axis] < 2:
        top = x4.max(axis=2, keepdims=True)
        ex = x4 - top
        xp.exp(ex, out=ex)
        return top, ex, ex.sum(axis=2, keepdims=True)
    ex = xp.empty_like(x4)
    reduced = x4.shape[:2] + (1,) + x4.shape[3:]
    top, total = xp.empty(reduced, x4.dtype), xp.empty(reduced, x4.dtype)

    def slab(_k, piece):
        index = (slice(None),) * axis + (slice(*piece),)
        xs, es = x4[index], ex[index]
        xp.max(xs, axis=2, keepdims=True, out=top[index])
        xp.subtract(xs, top[index], out=es)
        xp.exp(es, out=es)
        xp.sum(es, axis=2, keepdims=True, out=total[index])
    size = x4.shape[axis]
    run_chunks(slab, split(size, -(-size // workers)), workers, blas=0)
    return top, ex, total


def vl_nnsoftmax(x, *args, dzdy=None, **opts):
    """CNN softmax over the channels.

    ``Y = vl_nnsoftmax(X)`` applies the softmax operator to the data ``X``
    (``H x W x D x N``) along the third (channel) dimension, independently
    at every location ``(i, j)`` of every image ``n``::

        Y(i,j,k,n) = exp(X(i,j,k,n)) / sum_q exp(X(i,j,q,n))

    ``DX = vl_nnsoftmax(X, DZDY)`` computes the derivative of the block
    projected onto ``DZDY``, which has the shape of ``X``::

        DX = Y * (DZDY - sum_q DZDY(i,j,q,n) Y(i,j,q,n))

    with ``Y`` recomputed from ``X``.  The block has no options.

    Parameters
    ----------
    x : array, ``H x W x D x N``, float32 or float64
        Missing trailing dimensions are 1 (an ``H x W x D`` array is one
        image; an array with fewer than 3 dimensions has ``D = 1``, where
        the softmax is 1), dimensions past the 4th count as images.
    dzdy : array shaped like ``x``, optional
        Passing it selects backward mode.  ``None`` (or an empty array) is
        the forward form; MatConvNet's ``vl_nnsoftmax(X, [])`` would take
        the backward branch, the API's rule is that ``None`` is forward.

    Returns
    -------
    y : array shaped like ``x`` (forward)
    dx : array shaped like ``x`` (backward)

    Notes
    -----
    The maximum over the channels is subtracted before exponentiating, as
    in MatConvNet, so scores of any size give finite results; the output is
    unchanged by adding a constant to all the channels of a location.  NaN
    or infinite scores make their location NaN, as in MatConvNet.
    """
    fname = "vl_nnsoftmax"
    dzdy, args = split_derivative(fname, args, dzdy)
    parse_options(fname, args, opts, {})
    xp, _, (x, dzdy) = block_tensors(fname, x=x, dzdy=dzdy)
    if dzdy is not None:
        check_derivative(fname, dzdy, x.shape, "x")
    x4 = to4d(x)
    _, y, total = softmax_parts(x4, xp)
    y /= total
    if dzdy is None:
        return like_shape(y, x.shape)
    dz4 = to4d(dzdy)
    dx = dz4 - (dz4 * y).sum(axis=2, keepdims=True)
    dx *= y
    return like_shape(dx, x.shape)
