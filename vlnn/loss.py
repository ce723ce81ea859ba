"""Losses: ``vl_nnsoftmaxloss`` and ``vl_nnloss``, with the label helpers
they share (label forms, 1-based class indices, ``dzdy`` and weights)."""

import numpy as np

from ._backend import block_tensors, like_shape, to4d
from ._options import as_float, as_int, parse_options, split_derivative
from .activations import softmax_parts, stable_sigmoid


def _real_array(a, fname, name, xp):
    """Labels and weights may be any real numeric type; return an array of xp."""
    if not hasattr(a, "dtype"):
        try:
            a = np.asarray(a)
        except Exception:
            raise ValueError(f"{fname}: {name} must be numeric, got {type(a).__name__}") from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) \
            or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{fname}: {name} must be real numeric, got dtype {a.dtype}")
    return xp.asarray(a)


def _label_array(c, fname, xp):
    """The labels ``c`` as an array of xp; empty labels are an error."""
    if c is None:
        raise ValueError(f"{fname}: labels c must not be empty")
    c = _real_array(c, fname, "labels c", xp)
    if c.size == 0:
        raise ValueError(f"{fname}: labels c must not be empty")
    return c


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
        forms = [f"{n} labels (one per image)"] if 1 in channels else []
        forms += [f"{h} x {w} x {k} x {n}" for k in channels]
        raise ValueError(
            f"{fname}: labels c of shape {tuple(c.shape)} do not fit x of shape "
            f"{tuple(x4.shape)}: expected {' or '.join(forms)}")
    return c4


def class_indices(labels, num_classes, fname, xp, ignore_negative=True):
    """1-based class labels -> (0-based indices, keep mask).

    Label 0 is ignored (index 0, keep False); so are negative labels when
    ``ignore_negative`` (``vl_nnsoftmaxloss``), which are errors otherwise
    (``vl_nnloss``).  Anything else must be an integer in ``1..num_classes``.
    """
    lab = labels.astype(np.float64)
    if ignore_negative:
        keep = lab > 0
        bad = keep & (lab > num_classes)
    else:
        keep = lab != 0
        bad = keep & ((lab < 1) | (lab > num_classes))
    bad = (bad | (keep & (lab != xp.floor(lab)))) | xp.isnan(lab)
    if bool(bad.any()):
        first = float(lab[bad].ravel()[0])
        raise ValueError(
            f"{fname}: labels must be integers in 1..{num_classes} (the number of classes, "
            f"size(x, 3)) or 0 to ignore; got {first:g}")
    index = xp.where(keep, lab - 1, 0).astype(np.intp)
    return index, keep


def _broadcasts_to(shape, target):
    """Whether an array of ``shape`` broadcasts to exactly ``target``."""
    try:
        return np.broadcast_shapes(tuple(shape), tuple(target)) == tuple(target)
    except ValueError:
        return False


def loss_dzdy(dzdy, fname, xp, dtype, target):
    """A loss block's ``dzdy``: a real scalar (Python, float64 or any real
    type: MATLAB's single arithmetic keeps the data's class) or an array
    broadcastable to ``target``, the shape of the per-location (or
    per-element) loss.  Returned cast to ``dtype``."""
    dzdy = xp.asarray(dzdy)
    if dzdy.dtype.kind not in "fiu":
        raise ValueError(f"{fname}: dzdy must be real, got dtype {dzdy.dtype}")
    dzdy = dzdy.astype(dtype, copy=False)
    if dzdy.ndim == 0:
        return dzdy
    dz4 = to4d(dzdy)
    if not _broadcasts_to(dz4.shape, target):
        raise ValueError(
            f"{fname}: dzdy of shape {tuple(dzdy.shape)} does not broadcast to "
            f"{' x '.join(str(s) for s in target)}")
    return dz4


# ---------------------------------------------------------------------------
# softmax log loss, shared by vl_nnsoftmaxloss and vl_nnloss(..., 'softmaxlog')

def _softmaxlog_loss(x4, index, xp):
    """``log sum_k exp x_k - x_c`` at every location (``H x W x 1 x N``)."""
    top, _, total = softmax_parts(x4, xp)
    picked = xp.take_along_axis(x4, index, axis=2)
    return top + xp.log(total) - picked


def _softmaxlog_derivative(x4, index, scale, xp):
    """``scale * (softmax(x) - onehot(c))``; ``scale`` broadcasts to
    ``H x W x 1 x N``."""
    _, ex, total = softmax_parts(x4, xp)
    # softmax_c - 1 is formed before scaling: exact where softmax_c is near 1
    at_label = (xp.take_along_axis(ex, index, axis=2) / total - 1) * scale
    ex *= scale / total
    xp.put_along_axis(ex, index, at_label, axis=2)
    return ex


def vl_nnsoftmaxloss(x, c, *args, dzdy=None, **opts):
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

    See Also
    --------
    vl_nnloss : ``vl_nnloss(X, C, loss='softmaxlog')`` is the same loss
        (labels ``<= 0`` are ignored here, only ``0`` there).
    """
    fname = "vl_nnsoftmaxloss"
    dzdy, args = split_derivative(fname, args, dzdy)
    if dzdy is not None and np.size(dzdy) == 0:
        dzdy = None        # MATLAB's []: the forward form (API.md)
    o = parse_options(fname, args, opts, {"normalise": True})
    # labels and dzdy may be of any real type: checked below
    xp, _, (x,) = block_tensors(fname, others=(c, dzdy), x=x)
    x4 = to4d(x)
    h, w, d, n = x4.shape
    c4 = per_location_labels(c, x4, fname, xp)
    index, keep = class_indices(c4[:, :, :1], d, fname, xp)
    weight = keep.astype(x.dtype)
    if c4.shape[2] == 2:
        weight = weight * c4[:, :, 1:2].astype(x.dtype)
    if o.normalise:
        weight = weight / x.dtype.type(n)

    if dzdy is None:
        loss = weight * _softmaxlog_loss(x4, index, xp)
        return xp.asarray(loss.sum(dtype=x.dtype), dtype=x.dtype)
    dzdy = loss_dzdy(dzdy, fname, xp, x.dtype, (h, w, 1, n))
    dx = _softmaxlog_derivative(x4, index, weight * dzdy, xp)
    return like_shape(dx, x.shape)


# ---------------------------------------------------------------------------
# vl_nnloss

CATEGORICAL_LOSSES = ("classerror", "topkerror", "log", "softmaxlog", "mhinge", "mshinge")
BINARY_LOSSES = ("binaryerror", "binarylog", "logistic", "hinge")

# the 'log' loss derivative divides by max(x_c, LOG_FLOOR), as MatConvNet does
LOG_FLOOR = 1e-8


def _instance_weights(value, target, fname, xp, dtype):
    """``instanceWeights`` (MATLAB's ``[]`` -> None) as an array that
    broadcasts (MATLAB-style: missing trailing dimensions are 1) to
    ``target``, the shape of the labels."""
    if value is None:
        return None
    weights = _real_array(value, fname, "instanceWeights", xp)
    if weights.size == 0:
        return None
    w4 = to4d(weights)
    if not _broadcasts_to(w4.shape, target):
        raise ValueError(
            f"{fname}: instanceWeights of shape {tuple(weights.shape)} does not broadcast to "
            f"the labels' shape {' x '.join(str(s) for s in target)}")
    return w4.astype(dtype)


def _without_nan(a, xp):
    """NaN -> -inf: MATLAB's ``max`` over a dimension skips NaN."""
    return xp.where(xp.isnan(a), a.dtype.type(-np.inf), a)


def _categorical_loss(loss, x4, index, top_k, xp):
    """Per-location loss ``t`` (``H x W x 1 x N``) of a categorical loss."""
    if loss == "softmaxlog":
        return _softmaxlog_loss(x4, index, xp)
    one, zero = x4.dtype.type(1), x4.dtype.type(0)
    picked = xp.take_along_axis(x4, index, axis=2)
    if loss == "log":
        return -xp.log(picked)
    if loss == "mhinge":
        return xp.fmax(zero, one - picked)       # MATLAB's max(0, NaN) is 0
    classes = xp.arange(x4.shape[2]).reshape(1, 1, -1, 1)
    if loss == "classerror":
        guess = xp.expand_dims(_without_nan(x4, xp).argmax(axis=2), 2)   # first maximum
        return (guess != index).astype(x4.dtype)
    if loss == "topkerror":
        # rank of the label in MATLAB's stable descending sort: NaN first,
        # ties in class order; no sort needed
        nan_x, nan_c = xp.isnan(x4), xp.isnan(picked)
        above = (x4 > picked) | (nan_x & ~nan_c)
        tied_before = ((x4 == picked) | (nan_x & nan_c)) & (classes < index)
        rank = (above | tied_before).sum(axis=2, keepdims=True)
        return (rank >= top_k).astype(x4.dtype)
    # mshinge: margin against the best other class
    rival = xp.where((classes == index) | xp.isnan(x4), x4.dtype.type(-np.inf), x4)
    return xp.fmax(zero, one - picked + rival.max(axis=2, keepdims=True))


def _categorical_derivative(loss, x4, index, p, xp):
    """``dX`` of a categorical loss; ``p`` (weights, dzdy and the 1/N
    factor) broadcasts to ``H x W x 1 x N``."""
    zero = x4.dtype.type(0)
    if loss in ("classerror", "topkerror"):
        return xp.zeros(x4.shape, x4.dtype)
    if loss == "softmaxlog":
        return _softmaxlog_derivative(x4, index, p, xp)
    classes = xp.arange(x4.shape[2]).reshape(1, 1, -1, 1)
    at_label = classes == index
    picked = xp.take_along_axis(x4, index, axis=2)
    if loss == "log":
        return xp.where(at_label, -p / xp.fmax(picked, x4.dtype.type(LOG_FLOOR)), zero)
    if loss == "mhinge":
        return xp.where(at_label, -p * (picked < 1), zero)
    # mshinge: -W at the label, +W at the best other class q (first maximum).
    # Comparing with the rival's score (-inf when D == 1) rather than x_q
    # keeps D == 1 at zero, where MatConvNet's backward writes +W on the
    # label although the forward loss is identically 0.
    rivals = xp.where(at_label | xp.isnan(x4), x4.dtype.type(-np.inf), x4)
    best = xp.expand_dims(rivals.argmax(axis=2), 2)
    rival = xp.take_along_axis(rivals, best, axis=2)
    active = p * ((picked - rival) < 1)
    return xp.where(at_label, -active, zero) + xp.where(classes == best, active, zero)


def _binary_loss(loss, x4, labels, threshold, xp):
    """Per-element loss ``t`` (``H x W x D x N``) of an attribute loss."""
    one, zero = x4.dtype.type(1), x4.dtype.type(0)
    if loss == "binaryerror":
        return (xp.sign(x4 - x4.dtype.type(threshold)) != labels).astype(x4.dtype)
    if loss == "binarylog":
        half = x4.dtype.type(0.5)
        return -xp.log(labels * (x4 - half) + half)
    if loss == "logistic":
        # log(1 + exp(a)), a = -c x, as max(a, 0) + log(1 + exp(-|a|)): no overflow
        a = -labels * x4
        return xp.maximum(a, zero) + xp.log1p(xp.exp(-xp.abs(a)))
    return xp.fmax(zero, one - labels * x4)     # hinge


def _binary_derivative(loss, x4, labels, p, xp):
    """``dX`` of an attribute loss; ``p`` broadcasts to ``H x W x D x N``."""
    if loss == "binaryerror":
        return xp.zeros(x4.shape, x4.dtype)
    if loss == "binarylog":
        return -p / (x4 + (labels - 1) * x4.dtype.type(0.5))
    if loss == "logistic":
        # c / (1 + exp(c x)) == c * sigmoid(-c x), evaluated without overflow
        return -p * labels * stable_sigmoid(-labels * x4, xp)
    return -p * labels * (labels * x4 < 1)    # hinge


def vl_nnloss(x, c, *args, dzdy=None, **opts):
    """CNN categorical or attribute loss.

    ``Y = vl_nnloss(X, C)`` computes the loss incurred by the prediction
    scores ``X`` given the labels ``C``; ``Y = vl_nnloss(X, C, None, ...)``
    (MATLAB's ``[]``) is the same with options.

    ``DX = vl_nnloss(X, C, DZDY)`` computes the derivative of the block
    projected onto the output derivative ``DZDY``.  ``DX`` has the shape of
    ``X``.

    The scores ``X`` are a field of prediction vectors, an
    ``H x W x D x N`` array: ``H x W`` locations (``H = W = 1`` for image
    classification, more for dense labelling such as segmentation), ``D``
    classes or attributes, ``N`` images.  The loss is summed over the
    locations (and, for attribute losses, over the attributes), weighted
    by ``instanceWeights``, and divided by ``N`` (``normalise``).

    The labels ``C`` come in three forms:

    1. ``N`` elements (any shape, e.g. ``(N,)`` or ``1 x 1 x 1 x N``): one
       categorical label in ``1..D`` per image, applied at every location;
    2. ``H x W x 1 x N``: one categorical label per location;
    3. ``H x W x D x N``: attribute labels, ``+1`` (present) or ``-1``
       (absent) for every score; several attributes may be present at once.

    Categorical losses (forms 1 and 2) take integer labels in ``1..D``,
    attribute losses form 3 (or form 1 when ``D == 1``).  Any label **equal
    to 0** is ignored.  An ``H x W`` or ``H x W x K`` array is one image
    (missing trailing dimensions are 1) and an array with
    ``size(c, 1) == size(c, 2) == 1`` is replicated over the locations.

    Losses, selected with ``loss=`` (names are case-insensitive); ``x`` is
    the score vector of a location, ``x_c`` the score of its label:

    ``classerror``
        ``t = [argmax_k x_k != c]`` (the first maximum).  Flat: the
        derivative is 0, so it assesses but cannot train.
    ``topkerror``
        ``t = 1`` unless ``c`` is among the ``topK`` highest scores (a
        stable descending sort: among equal scores the lower class index
        ranks first).  ``topK = 1`` is ``classerror``.  Derivative 0.
    ``log``
        ``t = -log(x_c)``, for scores that are probabilities (non-negative,
        summing to one, e.g. the output of ``vl_nnsoftmax``).  Derivative
        ``-1 / max(x_c, 1e-8)`` at the label, as in MatConvNet.
    ``softmaxlog`` (default)
        ``t = -log(p_c)``, ``p = softmax(x)``: the multinomial logistic
        loss, ``log sum_k exp(x_k) - x_c``, evaluated with the maximum
        subtracted (finite for scores of any size).  Derivative
        ``p - [k == c]``.
    ``mhinge``
        ``t = max(0, 1 - x_c)``, for scores that already are margins.
    ``mshinge``
        ``t = max(0, 1 - x_c + max_{k != c} x_k)``: the Crammer-Singer
        multiclass structured hinge loss.  Derivative ``-1`` at ``c`` and
        ``+1`` at the best other class (the first maximum) where ``t > 0``.

    Attribute losses (form 3), for every score ``x`` with label ``c``:

    ``binaryerror``
        ``t = [sign(x - threshold) != c]`` (``x == threshold`` counts as an
        error).  Derivative 0.
    ``binarylog``
        ``t = -log(c (x - 0.5) + 0.5)``, for ``x`` the probability that the
        attribute is present (in ``[0, 1]``).
    ``logistic``
        ``t = log(1 + exp(-c x))``, evaluated without overflow: the
        ``binarylog`` loss of ``sigmoid(x)``; equal to ``softmaxlog`` with
        score ``x`` for the class ``c = +1`` and score 0 for ``c = -1``.
        Derivative ``-c / (1 + exp(c x))``.
    ``hinge``
        ``t = max(0, 1 - c x)``: the binary hinge loss; equal to
        ``mshinge`` with scores ``[x, 0]``.

    Parameters
    ----------
    x : array, ``H x W x D x N``, float32 or float64
    c : array of labels, any real numeric type
        See the three forms above.
    dzdy : scalar or array, optional
        Passing it (not ``None``, not empty) selects backward mode.  A
        scalar as in MatConvNet (a Python or float64 scalar is fine for
        float32 ``x``), or an array broadcastable to the shape of the
        labels (``H x W x 1 x N`` or ``H x W x D x N``), which then acts as
        per-location weights of the derivative.

    Other Parameters
    ----------------
    loss : str, default 'softmaxlog'
        One of the losses above.
    instanceWeights : array, default None
        Per-instance weights ``w``: ``Y = sum w t`` (with the ignored labels'
        ``w`` set to 0).  Any real array that broadcasts, MATLAB-style (its
        missing trailing dimensions are 1), to the shape of the labels:
        for categorical losses ``H x W``, ``H x W x 1`` or ``H x W x 1 x N``
        (``1 x 1 x 1 x N`` weighs whole images); for attribute losses also
        ``H x W x D``, ``H x W x D x N`` or ``1 x 1 x D`` (per attribute).
        Cast to ``x``'s dtype.
    classWeights : array, default None
        Accepted for compatibility and **ignored**: MatConvNet declares the
        option but never uses it.  Weigh classes through
        ``instanceWeights`` (e.g. ``class_weight[c - 1]`` per location).
    threshold : float, default 0
        Decision threshold of ``binaryerror`` (0.5 for probabilities).
    topK : int, default 5
        ``K`` of ``topkerror``; must not exceed ``D`` in that loss's forward
        call (MatConvNet fails there with an index error).
    normalise : bool, default True
        Divide the loss and its derivative by the number of images ``N``
        (MatConvNet's final code).  ``False`` gives the plain sum of
        MatConvNet v1.0-beta25.

    Returns
    -------
    y : 0-d array of ``x``'s dtype (forward)::

        y = (1/N) sum_{i,j,k,n} w(i,j,k,n) t(i,j,k,n)

        (k runs over the single label channel for categorical losses)
    dx : array shaped like ``x`` (backward): ``(1/N) dzdy w dt/dx``.

    Raises
    ------
    ValueError
        Unknown loss (the message lists the valid ones); labels that fit
        none of the forms; categorical labels outside ``{0, 1..D}``;
        ``topK > D`` in the forward ``topkerror``; ``instanceWeights`` or ``dzdy``
        that do not broadcast to the labels' shape.
    TypeError
        Unknown option.

    Notes
    -----
    Deliberate differences from MatConvNet's code, which would give a wrong
    result instead:

    * categorical labels other than 0 and ``1..D`` (MatConvNet silently
      reads class 1 for negative labels, or another image's scores for
      labels above ``D``) raise ``ValueError``;
    * an element whose weight is 0 (label 0, or an instance weight 0)
      contributes exactly 0 to ``y`` and ``dx`` even where its loss is
      infinite or NaN; MatConvNet multiplies by 0 and gets NaN (e.g. the
      ``log`` loss of an ignored pixel whose class-1 probability
      underflowed to 0);
    * ``mshinge`` with ``D == 1`` has derivative 0, like its (constant 0)
      forward value;
    * scores with more than 4 dimensions fold the trailing ones into ``N``
      and the loss is divided by that ``N`` in both directions.

    Attribute labels are not checked: ``logistic`` and ``hinge`` accept any
    real label as a scale of the margin, as in MatConvNet.
    """
    fname = "vl_nnloss"
    dzdy, args = split_derivative(fname, args, dzdy)
    o = parse_options(fname, args, opts, {
        "loss": "softmaxlog", "instanceWeights": None, "classWeights": None,
        "threshold": 0, "topK": 5, "normalise": True})
    loss = o.loss.lower() if isinstance(o.loss, str) else None
    if loss not in CATEGORICAL_LOSSES + BINARY_LOSSES:
        raise ValueError(
            f"{fname}: unknown loss {o.loss!r}; valid losses: "
            f"{', '.join(CATEGORICAL_LOSSES + BINARY_LOSSES)}")
    # threshold and topK are read (and checked) only by the loss that uses them
    threshold = as_float(o.threshold, fname, "threshold") if loss == "binaryerror" else 0.0
    top_k = as_int(o.topK, fname, "topK", minimum=1) if loss == "topkerror" else 0
    normalise = o.normalise if isinstance(o.normalise, bool) else \
        bool(as_float(o.normalise, fname, "normalise"))
    if dzdy is not None and np.size(dzdy) == 0:
        dzdy = None        # MATLAB's []: the forward form
    # labels, dzdy and instanceWeights may be of any real type: checked below
    xp, dtype, (x,) = block_tensors(fname, others=(c, dzdy, o.instanceWeights), x=x)
    x4 = to4d(x)
    h, w, d, n = x4.shape
    categorical = loss in CATEGORICAL_LOSSES
    c4 = per_location_labels(c, x4, fname, xp, channels=(1,) if categorical else (d,))
    if categorical:
        index, keep = class_indices(c4, d, fname, xp, ignore_negative=False)
    else:
        labels = c4.astype(dtype)
        keep = labels != 0
    weight = None if bool(keep.all()) else keep.astype(dtype)
    instance = _instance_weights(o.instanceWeights, c4.shape, fname, xp, dtype)
    if instance is not None:
        weight = instance if weight is None else weight * instance
    zero = dtype.type(0)

    if dzdy is None:
        # the backward of topkerror is 0 and never reads topK (as in MatConvNet)
        if loss == "topkerror" and top_k > d:
            raise ValueError(
                f"{fname}: topK = {top_k} exceeds the number of classes size(x, 3) = {d}")
        if categorical:
            t = _categorical_loss(loss, x4, index, top_k, xp)
        else:
            t = _binary_loss(loss, x4, labels, threshold, xp)
        if weight is not None:
            # masked before weighting: a zero weight never meets an infinite t
            t = xp.where(weight != 0, t, zero) * weight
        y = t.sum(dtype=dtype)
        if normalise:
            y = y / dtype.type(n)
        return xp.asarray(y, dtype=dtype)

    p = loss_dzdy(dzdy, fname, xp, dtype, c4.shape)
    if weight is not None:
        p = p * weight
    if normalise:
        p = p / dtype.type(n)
    if categorical:
        dx = _categorical_derivative(loss, x4, index, p, xp)
    else:
        dx = _binary_derivative(loss, x4, labels, p, xp)
    if weight is not None:
        dx = xp.where(weight != 0, dx, zero)
    return like_shape(dx, x.shape)
