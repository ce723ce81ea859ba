"""p-distance to a target."""

import numpy as np

from ._backend import as_tensor, block_tensors, common_dtype
from ._options import as_float, parse_options, split_derivative


def _padded(shape, ndim):
    """MATLAB's view of ``shape`` with ``ndim`` dimensions (trailing 1s)."""
    return tuple(shape) + (1,) * (ndim - len(shape))


def _broadcast(fname, a_name, a_shape, b_name, b_shape):
    """MATLAB's ``bsxfun`` shape of two padded shapes: equal or 1 per dim."""
    out = []
    for i, (m, n) in enumerate(zip(a_shape, b_shape)):
        if m != n and 1 not in (m, n):
            raise ValueError(
                f"{fname}: {b_name} of shape {b_shape} does not broadcast against "
                f"{a_name} of shape {a_shape} (dimension {i + 1}: {n} vs {m}; sizes "
                f"must be equal or 1)")
        out.append(max(m, n) if 0 not in (m, n) else 0)
    return tuple(out)


def _sum_to(a, shape):
    """Sum ``a`` over the dimensions that were broadcast from ``shape``."""
    axes = tuple(i for i, (s, t) in enumerate(zip(a.shape, shape)) if t == 1 and s != 1)
    return a.sum(axis=axes, keepdims=True) if axes else a


def _real_array(value, fname, name, xp):
    """Any real numeric array (weights, scalar derivatives); ``None`` if empty."""
    if value is None:
        return None
    if not hasattr(value, "dtype"):
        try:
            value = np.asarray(value)
        except Exception:
            raise ValueError(
                f"{fname}: {name} must be numeric, got {type(value).__name__}") from None
    if value.dtype == object or value.dtype.kind not in "biuf":
        raise ValueError(f"{fname}: {name} must be real numeric, got dtype {value.dtype}")
    if value.size == 0:
        return None
    return xp.asarray(value)


def vl_nnpdist(x, x0, p, *args, dzdy=None, **opts):
    """CNN p-distance from a target.

    ``Y = vl_nnpdist(X, X0, P)`` computes, at every pixel, the ``P``-distance
    between the feature vector of ``X`` (along the channels) and the one of
    ``X0``::

        Y(i,j,1,n) = (sum_d |X(i,j,d,n) - X0(i,j,d,n)|^P)^(1/P)

    ``DX, DX0 = vl_nnpdist(X, X0, P, DZDY)`` computes the derivatives with
    respect to ``X`` and ``X0``.

    Parameters
    ----------
    x : array, ``H x W x D x N``
    x0 : array broadcastable against ``x``
        Typically ``H x W x D x N`` or ``1 x 1 x D x N`` (one target per
        image), broadcast as MATLAB's ``bsxfun`` does (missing trailing
        dimensions are 1; each dimension equal or 1).  Same dtype as ``x``.
    p : positive real scalar
        ``1`` and ``2`` have dedicated formulas; any other positive value
        uses the general one.
    dzdy : array, optional
        Passing it selects backward mode.  Shaped like ``Y`` (before
        aggregation), or one element (broadcast; any real type, as a loss
        derivative; required with ``aggregate``).

    Other Parameters
    ----------------
    noRoot : bool, default False
        Do not take the ``1/P`` power: ``Y = sum_d |X - X0|^P`` (for
        ``P = 2`` the squared Euclidean distance).
    epsilon : float, default 1e-6
        Lower bound of the quantities divided by in the derivatives (see
        below); the forward pass does not use it.
    aggregate : bool, default False
        Return the sum of all the distances, a 0-d array of ``x``'s dtype.
    instanceWeights : array broadcastable to ``Y``, default None
        Multiplies each distance (``Y = W * Y``) and, in backward mode,
        ``DZDY`` (``DZDY := W * DZDY``).  A scalar or one weight per pixel
        (``H x W x 1 x N``); any real numeric type.

    Returns
    -------
    y : array ``H x W x 1 x N`` of ``x``'s dtype (forward), or a 0-d array
        with ``aggregate``.  With ``d = X - X0`` and sums over channels:

        ========  =======================  ==================
        ``P``     root (default)           ``noRoot``
        ========  =======================  ==================
        1         ``sum |d|``              ``sum |d|``
        2         ``sqrt(sum d^2)``        ``sum d^2``
        other     ``(sum |d|^P)^(1/P)``    ``sum |d|^P``
        ========  =======================  ==================

    dx, dx0 : arrays shaped like ``x`` and ``x0`` (backward).  With
        ``s = sign(d)`` and ``e = epsilon``::

            root,   P == 1:  DX = DZDY s
            root,   P == 2:  DX = DZDY d / sqrt(max(sum d^2, e))
            root,   P < 1:   DX = DZDY (sum |d|^P)^((1-P)/P) max(|d|, e)^(P-1) s
            root,   other:   DX = DZDY max(sum |d|^P, e)^((1-P)/P) |d|^(P-1) s
            noRoot, P == 1:  DX = DZDY s
            noRoot, P == 2:  DX = 2 DZDY d
            noRoot, P < 1:   DX = P DZDY max(|d|, e)^(P-1) s
            noRoot, other:   DX = P DZDY |d|^(P-1) s

        ``DX0 = -DX``, summed over the dimensions along which ``x0`` was
        broadcast so that it has ``x0``'s shape (MatConvNet returns it with
        ``x``'s shape instead; this is a deliberate deviation).  Likewise
        ``DX`` is summed back if ``x`` was the broadcast one.
    """
    fname = "vl_nnpdist"
    dzdy, args = split_derivative(fname, args, dzdy)
    o = parse_options(fname, args, opts, {"noRoot": False, "epsilon": 1e-6,
                                          "aggregate": False, "instanceWeights": None})
    p = as_float(p, fname, "p")
    if p <= 0:
        raise ValueError(f"{fname}: p must be positive, got {p!r}")
    no_root = as_float(o.noRoot, fname, "noRoot") != 0
    aggregate = as_float(o.aggregate, fname, "aggregate") != 0
    epsilon = as_float(o.epsilon, fname, "epsilon")
    if epsilon < 0:
        raise ValueError(f"{fname}: epsilon must be >= 0, got {epsilon!r}")
    # dzdy may be a scalar of any real type: it is checked with the output
    xp, dtype, (x, x0) = block_tensors(fname, required=("x", "x0"),
                                       others=(dzdy, o.instanceWeights), x=x, x0=x0)
    t = dtype.type

    ndim = max(4, x.ndim, x0.ndim)
    x_shape, x0_shape = _padded(x.shape, ndim), _padded(x0.shape, ndim)
    d_shape = _broadcast(fname, "x", x_shape, "x0", x0_shape)
    y_shape = d_shape[:2] + (1,) + d_shape[3:]

    weights = _real_array(o.instanceWeights, fname, "instanceWeights", xp)
    if weights is not None:
        if weights.ndim > ndim or _broadcast(fname, "the output", y_shape, "instanceWeights",
                                             _padded(weights.shape, ndim)) != y_shape:
            raise ValueError(
                f"{fname}: instanceWeights of shape {tuple(weights.shape)} do not broadcast "
                f"to the output of shape {y_shape}")
        weights = weights.astype(dtype, copy=False).reshape(_padded(weights.shape, ndim))

    d = x.reshape(x_shape) - x0.reshape(x0_shape)
    pp = t(p)

    dzdy = _real_array(dzdy, fname, "dzdy", xp)
    if dzdy is None:
        if p == 1:
            y = xp.abs(d).sum(axis=2, keepdims=True)
        elif p == 2:
            y = (d * d).sum(axis=2, keepdims=True)
            if not no_root:
                y = xp.sqrt(y)
        else:
            y = (xp.abs(d) ** pp).sum(axis=2, keepdims=True)
            if not no_root:
                y = y ** t(1 / p)
        if weights is not None:
            y = weights * y
        if aggregate:
            return xp.asarray(y.sum(dtype=dtype), dtype=dtype)
        return y

    # A one-element derivative (the aggregate's, or a loss-style scalar) may
    # be any real type; a full one is a tensor argument like x.
    if dzdy.size == 1:
        dy = dzdy.astype(dtype, copy=False).reshape((1,) * ndim)
    elif aggregate:
        raise ValueError(
            f"{fname}: with aggregate, dzdy must have one element, got shape "
            f"{tuple(dzdy.shape)}")
    else:
        dzdy = as_tensor(dzdy, fname, "dzdy", xp)
        common_dtype(fname, x=x, dzdy=dzdy)
        if dzdy.ndim > ndim or _padded(dzdy.shape, ndim) != y_shape:
            raise ValueError(
                f"{fname}: dzdy has shape {tuple(dzdy.shape)} but the output has shape "
                f"{y_shape}")
        dy = dzdy.reshape(y_shape)
    if weights is not None:
        dy = weights * dy

    sign = xp.sign(d)
    eps = t(epsilon)
    if p == 1:
        dd = dy * sign
    elif p == 2:
        if no_root:
            dd = (t(2) * dy) * d
        else:
            norm = xp.sqrt(xp.maximum((d * d).sum(axis=2, keepdims=True), eps))
            dd = (dy / norm) * d
    elif p < 1:
        # the kink at d = 0 makes |d|^(p-1) diverge: clamp |d| from below
        grad = xp.maximum(xp.abs(d), eps) ** (pp - t(1)) * sign
        if no_root:
            dd = (pp * dy) * grad
        else:
            total = (xp.abs(d) ** pp).sum(axis=2, keepdims=True)
            dd = (dy * total ** t((1 - p) / p)) * grad
    else:
        grad = xp.abs(d) ** (pp - t(1)) * sign
        if no_root:
            dd = (pp * dy) * grad
        else:
            total = xp.maximum((xp.abs(d) ** pp).sum(axis=2, keepdims=True), eps)
            dd = (dy * total ** t((1 - p) / p)) * grad
    dx = _sum_to(dd, x_shape).reshape(x.shape)
    dx0 = -_sum_to(dd, x0_shape).reshape(x0.shape)
    return dx, dx0
