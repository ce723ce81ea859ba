"""Losses."""

import numpy as np

from ._backend import as_tensor, common_dtype, get_array_module, to4d
from ._options import parse_options, split_derivative


def _label_array(c, fname, xp):
    """Labels may be any real numeric type; return them as an array of xp."""
    if c is None:
        raise ValueError(f"{fname}: labels c must not be empty")
    if not hasattr(c, "dtype"):
        try:
            c = np.asarray(c)
        except Exception:
            raise ValueError(f"{fname}: labels c must be numeric, got {type(c).__name__}") from None
    if c.dtype == object or not (np.issubdtype(c.dtype, np.number) or c.dtype == bool) \
            or np.issubdtype(c.dtype, np.complexfloating):
        raise ValueError(f"{fname}: labels c must be real numeric, got dtype {c.dtype}")
    if c.size == 0:
        raise ValueError(f"{fname}: labels c must not be empty")
    return xp.asarray(c)


def per_location_labels(c, x4, fname, xp, channels=(1, 2)):
    """MatConvNet's label forms for ``x`` of ``H x W x D x N``, returned as
    ``H x W x K x N`` with ``K`` in ``channels``:

    1. ``numel(c) == N``: one label per image;
    2. ``size(c, 1) == size(c, 2) == 1``: replicated over ``H x W``;
    3. ``H x W x K x N`` as given.
    """
    h, w, _, n = x4.shape
    c = _label_array(c, fname, xp)
    if c.size == n:
        c4 = c.reshape(1, 1, 1, n, order="F")
    else:
        c4 = to4d(c)
    if c4.shape[0] == 1 and c4.shape[1] == 1 and (h, w) != (1, 1):
        c4 = xp.broadcast_to(c4, (h, w) + c4.shape[2:])
    if c4.shape[:2] != (h, w) or c4.shape[3] != n or c4.shape[2] not in channels:
        forms = " or ".join(f"{h} x {w} x {k} x {n}" for k in channels)
        raise ValueError(
            f"{fname}: labels c of shape {tuple(c.shape)} do not fit x of shape "
            f"{tuple(x4.shape)}: expected {n} labels (one per image) or {forms}")
    return c4


def class_indices(labels, num_classes, fname, xp):
    """1-based class labels -> (0-based indices, keep mask); labels <= 0 are
    ignored, anything else must be an integer in ``1..num_classes``."""
    lab = labels.astype(np.float64)
    keep = lab > 0
    bad = (keep & ((lab > num_classes) | (lab != xp.floor(lab)))) | xp.isnan(lab)
    if bool(bad.any()):
        first = float(lab[bad].ravel()[0])
        raise ValueError(
            f"{fname}: labels must be integers in 1..{num_classes} (the number of classes, "
            f"size(x, 3)) or 0 to ignore; got {first:g}")
    index = xp.where(keep, lab - 1, 0).astype(np.intp)
    return index, keep


def vl_nnsoftmaxloss(x, c, dzdy=None, *args, **opts):
    """CNN combined softmax and logistic loss (deprecated in MatConvNet in
    favour of ``vl_nnloss``, kept for old networks).

    ``Y = vl_nnsoftmaxloss(X, C)`` applies the softmax operator along the
    channels of ``X`` and the log loss against the 1-based labels ``C``.

    ``DX = vl_nnsoftmaxloss(X, C, DZDY)`` computes the derivative.

    Parameters
    ----------
    x : array, ``H x W x D x N``
        Scores of ``D`` classes at every location of every image.
    c : array of 1-based labels, any real numeric type
        ``N`` labels (one per image), any array with ``size(c, 1) ==
        size(c, 2) == 1`` (replicated over ``H x W``), ``H x W x 1 x N``
        (one label per location) or ``H x W x 2 x N`` whose second channel
        holds per-location weights.  Label 0 (or negative) is ignored.
    dzdy : scalar or array broadcastable to ``H x W x 1 x N``, optional
        Passing it selects backward mode; may be a Python or float64 scalar
        for float32 ``x``.

    Other Parameters
    ----------------
    normalise : bool, default True
        Divide by the number of images ``N`` (MatConvNet's final code).
        ``False`` gives the plain sum of MatConvNet v1.0-beta25.

    Returns
    -------
    y : 0-d array of ``x``'s dtype (forward)::

        y = (1/N) sum_{i,j,n} w(i,j,n) (log sum_k exp X(i,j,k,n) - X(i,j,c,n))

    dx : array shaped like ``x`` (backward)::

        dx = (1/N) dzdy w (softmax(X) - [k == c])
    """
    fname = "vl_nnsoftmaxloss"
    dzdy, args = split_derivative(dzdy, args)
    o = parse_options(fname, args, opts, {"normalise": True})
    xp = get_array_module(x, c, dzdy)
    x = as_tensor(x, fname, "x", xp)
    if x is None:
        raise ValueError(f"{fname}: x must not be empty")
    common_dtype(fname, x=x)
    x4 = to4d(x)
    h, w, d, n = x4.shape
    c4 = per_location_labels(c, x4, fname, xp)
    index, keep = class_indices(c4[:, :, :1], d, fname, xp)
    weight = keep.astype(x.dtype)
    if c4.shape[2] == 2:
        weight = weight * c4[:, :, 1:2].astype(x.dtype)
    if o.normalise:
        weight = weight / x.dtype.type(n)

    # log-sum-exp with the maximum subtracted: finite for huge scores
    top = x4.max(axis=2, keepdims=True)
    ex = xp.exp(x4 - top)
    total = ex.sum(axis=2, keepdims=True)
    if dzdy is None:
        picked = xp.take_along_axis(x4, index, axis=2)
        loss = weight * (top + xp.log(total) - picked)
        return xp.asarray(loss.sum(dtype=x.dtype), dtype=x.dtype)

    dzdy = xp.asarray(dzdy)
    if dzdy.dtype.kind not in "fiu" or np.iscomplexobj(dzdy):
        raise ValueError(f"{fname}: dzdy must be real, got dtype {dzdy.dtype}")
    dzdy = dzdy.astype(x.dtype, copy=False)
    if dzdy.ndim > 0:
        dz4 = to4d(dzdy) if dzdy.ndim <= 4 else dzdy
        try:
            xp.broadcast_shapes(dz4.shape, (h, w, 1, n))
        except ValueError:
            raise ValueError(
                f"{fname}: dzdy of shape {tuple(dzdy.shape)} does not broadcast to "
                f"{h} x {w} x 1 x {n}") from None
        dzdy = dz4
    scale = weight * dzdy
    dx = ex / total
    onehot_value = xp.take_along_axis(dx, index, axis=2) - 1
    xp.put_along_axis(dx, index, onehot_value, axis=2)
    dx *= scale
    return dx.reshape(x.shape, order="F") if dx.shape != x.shape else dx
