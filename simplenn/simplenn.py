"""vl_simplenn: evaluate a SimpleNN network (a chain of vlnn blocks),
forward and, given an output derivative, backward."""

import math
import time
from collections.abc import Mapping

import numpy as np

from vlnn._backend import get_array_module, is_device_array, is_empty
from vlnn._options import as_float, as_int, parse_options

from .layers import LAYERS, LOSS_TYPES, Mode, as_record, describe, is_precious, new_record
from .naming import layer_label

FNAME = "vl_simplenn"

OPTIONS = {
    "mode": "normal",
    "conserveMemory": False,
    "accumulate": False,
    "backPropDepth": math.inf,
    "skipForward": False,
    "sync": False,
    "cudnn": True,
    "parameterServer": None,
    "holdOn": False,
}


def vl_simplenn(net, x, dzdy=None, res=None, *args, **opts):
    """Evaluate a SimpleNN network.

    ``RES = vl_simplenn(NET, X)`` evaluates the convnet ``NET`` on data
    ``X``.

    ``RES = vl_simplenn(NET, X, DZDY)`` evaluates the convnet ``NET`` and
    its derivative on data ``X`` and output derivative ``DZDY`` (forward +
    backward pass).

    ``RES = vl_simplenn(NET, X, None, RES)`` evaluates ``NET`` on ``X``
    reusing the structure ``RES``.

    ``RES = vl_simplenn(NET, X, DZDY, RES)`` evaluates ``NET`` on ``X`` and
    its derivatives reusing the structure ``RES``.

    SimpleNN networks are "simple" in the sense that they are a linear
    sequence of computational layers.  Most networks expect the input data
    ``X`` standardised (rescaled, mean subtracted); doing so is left to the
    user, with the information usually found in ``NET.meta``.  Use
    ``vl_simplenn_tidy`` to make an old network current,
    ``vl_simplenn_move`` to move it between CPU and GPU and
    ``vl_simplenn_display`` to print a summary.

    Parameters
    ----------
    net : mapping
        ``net['layers']`` (or ``net.layers``) is the list of layers (plain
        dicts work); ``net['meta']`` is ignored here.  See *Layers* below.
    x : array ``H x W x C x N``
        The network input (NumPy or CuPy); becomes ``res[0].x``.
    dzdy : scalar or array, optional
        The derivative of the objective with respect to the network output
        (``1.0`` for a network ending in a loss).  Given and non-empty, it
        selects the backward pass; ``None`` or an empty array (MATLAB's
        ``[]``) is forward only.
    res : list, optional
        A result list from a previous call to reuse (required for
        ``accumulate`` and ``skipForward``).  It is updated in place and
        returned.  ``None`` or an empty list makes a new one.

    Other Parameters
    ----------------
    mode : {'normal', 'test'}, default 'normal'
        Case-insensitive.  In test mode dropout and batch normalisation are
        bypassed: dropout is the identity and bnorm uses the moments stored
        in its third weight.  (When a network is deployed it may be
        preferable to remove such blocks altogether.)  The backward pass of
        bnorm always uses the batch statistics.
    conserveMemory : bool, default False
        Aggressively delete intermediate results (set them to ``None``).
        This has a very small cost and allows training much larger models;
        it can be useful to disable it for debugging.  A forward-only call
        clears every ``res[i].x`` (the input ``res[0].x`` included) except
        the network output ``res[-1].x`` and the outputs of ``loss`` and
        ``softmaxloss`` layers.  With back-propagation, keeps the parameter
        derivatives, ``res[0]`` (input and its derivative) and ``res[-1]``
        (output and ``dzdy``) and clears the rest of ``x`` and ``dzdx``.  A
        layer whose ``precious`` field is true keeps its output
        ``res[i + 1].x`` (and ``res[i + 1].dzdx``).  With ``backPropDepth``,
        the data below the back-propagated layers are cleared as in a
        forward-only call, and the input of the first back-propagated layer
        once its derivative is computed (unless that layer is precious).
    accumulate : bool, default False
        Add the parameter derivatives to those already in the given ``res``
        instead of replacing them (bnorm moments are summed too).  Useful to
        split a batch into sub-batches.
    backPropDepth : int or inf, default inf
        Back-propagate only through the last ``backPropDepth`` layers (must
        be > 0); earlier layers get no ``dzdx`` or ``dzdw``.
    skipForward : bool, default False
        Reuse the forward values in the given ``res`` and compute only the
        backward pass.  Requires ``dzdy`` (error
        ``simplenn:skipForwardNoBackwPass``) and ``res`` (error
        ``simplenn:skipForwardEmptyRes``); ``res[0].x`` is not reset.
    sync : bool, default False
        With CuPy data, wait for the GPU after each layer (makes the layer
        times meaningful; no numerical effect).
    cudnn : bool, default True
        Pass ``'Cudnn'`` (else ``'NoCudnn'``) to the conv, convt and pool
        blocks; bnorm always gets ``'NoCudnn'``.  No numerical effect.
    parameterServer : object with ``push(name, value)``, default None
        After each ``conv``, ``convt`` and ``bnorm`` layer's backward pass,
        push each parameter derivative ``res[i].dzdw[j]`` under the name
        ``'l%d_%d' % (i + 1, j + 1)`` (MatConvNet's 1-based layer and weight
        numbers) and then clear it (``None``).
    holdOn : bool, default False
        Do not push to the parameter server in this call.

    Options are named as in MatConvNet, matched case-insensitively with
    underscores ignored (``conserveMemory``, ``conserve_memory``), and may
    also be given MATLAB-style:
    ``vl_simplenn(net, x, 1.0, None, 'conserveMemory', True)``.

    Returns
    -------
    res : list of ``len(net.layers) + 1`` :class:`~simplenn.struct.Struct`
        records (attribute and key access), with fields:

        - ``res[i + 1].x``: the output of layer ``i`` (0-based); hence
          ``res[0].x`` is the network input.
        - ``res[i + 1].aux``: auxiliary output of layer ``i``; dropout
          stores its mask there.
        - ``res[i + 1].dzdx``: the derivative of the network output with
          respect to the output of layer ``i``; ``res[0].dzdx`` is the
          derivative with respect to the network input and
          ``res[-1].dzdx`` is ``dzdy``.
        - ``res[i].dzdw``: list of the derivatives with respect to the
          parameters of layer ``i`` (``[dfilters, dbiases]`` for conv and
          convt; ``[dgains, dbiases, moments]`` for bnorm, where
          ``moments`` is the ``C x 2`` batch ``[MU, SIGMA]``, not a
          derivative); ``[]`` for the other layers.
        - ``res[i].time``, ``res[i].backwardTime``: seconds spent in the
          forward and backward pass of layer ``i``.
        - ``res[i].stats``: unused here (room for the trainer).

        Cleared and not computed entries are ``None``.

    Raises
    ------
    ValueError
        Unknown layer type (forward pass; the backward pass skips such a
        layer, as MatConvNet does), a missing required field, a bad
        ``mode``, ``backPropDepth <= 0``, ``skipForward`` without ``dzdy``
        or ``res``, a ``res`` of the wrong length.  Messages name the
        layer by its 0-based index, type and name.
    TypeError
        An unknown option; a ``net`` without ``layers``; a ``res`` that is
        not a list; a custom layer function that does not return a record.

    Notes
    -----
    *Layers.*
    Each layer is a mapping with a ``type`` and the fields of that type;
    ``name`` and ``precious`` (default false) are common to all.  A layer
    need not be tidied: fields that ``vl_simplenn_tidy`` fills in take its
    defaults (shown below); the others are required.

    ``'conv'``
        wraps ``vl_nnconv``: ``weights = [filters, biases]``, ``stride``
        (1), ``pad`` (0), ``dilate`` (1), ``opts`` (extra block options: a
        list of MATLAB-style pairs and flags, or a dict).
    ``'convt'``
        wraps ``vl_nnconvt``: ``weights``, ``upsample`` (1), ``crop`` (0),
        ``numGroups`` (1), ``opts``.
    ``'pool'``
        wraps ``vl_nnpool``: ``pool`` (size), ``method`` (``'max'`` or
        ``'avg'``; ``'max'``), ``stride`` (1), ``pad`` (0), ``opts``.
    ``'normalize'``, ``'lrn'``
        wrap ``vl_nnnormalize``: ``param`` (``[5, 1, 0.0001/5, 0.75]``).
    ``'spnorm'``
        wraps ``vl_nnspnorm``: ``param``.
    ``'bnorm'``
        wraps ``vl_nnbnorm``: ``weights = [gains, biases, moments]``,
        ``epsilon`` (1e-5).  The moments are used only in test mode.
    ``'relu'``
        wraps ``vl_nnrelu``: ``leak`` (0; passed only when positive).
    ``'sigmoid'``, ``'softmax'``
        wrap ``vl_nnsigmoid``, ``vl_nnsoftmax``.
    ``'noffset'``
        wraps ``vl_nnnoffset``: ``param``.
    ``'dropout'``
        wraps ``vl_nndropout``: ``rate`` (0.5).  Bypassed in test mode.
    ``'loss'``
        wraps ``vl_nnloss`` with its default options (softmax log-loss,
        normalised by the number of images): ``class`` (the labels).
    ``'softmaxloss'``
        wraps ``vl_nnsoftmaxloss``: ``class``.
    ``'pdist'``
        wraps ``vl_nnpdist`` with ``class`` as the target ``x0``: ``p``
        (2), ``noRoot`` (False), ``epsilon`` (1e-3), ``aggregate`` (False),
        ``instanceWeights`` (None).
    ``'custom'``
        ``forward`` and ``backward`` callables, called as
        ``res[i + 1] = layer.forward(layer, res[i], res[i + 1])`` and
        ``res[i] = layer.backward(layer, res[i], res[i + 1])``; each must
        return the updated record.  The layer may carry any other fields.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.randn(8, 8, 3, 4).astype(np.float32)
    >>> net = {'layers': [
    ...     {'type': 'conv', 'pad': 1,
    ...      'weights': [np.random.randn(3, 3, 3, 10).astype(np.float32),
    ...                  np.zeros(10, np.float32)]},
    ...     {'type': 'relu'},
    ...     {'type': 'pool', 'pool': 8, 'method': 'avg'},
    ...     {'type': 'softmaxloss', 'class': np.array([1, 5, 10, 2])}]}
    >>> res = vl_simplenn(net, x, 1.0)              # forward and backward
    >>> res[-1].x.shape, res[-1].x.dtype            # the objective
    ((), dtype('float32'))
    >>> [d.shape for d in res[0].dzdw]
    [(3, 3, 3, 10), (10,)]
    >>> res = vl_simplenn(net, x, mode='test', conserveMemory=True)
    >>> [r.x is None for r in res]
    [True, True, True, True, False]
    """
    # MATLAB-style options may start in the dzdy or res slot
    if isinstance(dzdy, str):
        args, dzdy, res = (dzdy, res) + args, None, None
    elif isinstance(res, str):
        args, res = (res,) + args, None
    o = parse_options(FNAME, args, opts, OPTIONS)
    conserve = _as_bool(o.conserveMemory, "conserveMemory")
    accumulate = _as_bool(o.accumulate, "accumulate")
    skip_forward = _as_bool(o.skipForward, "skipForward")
    sync = _as_bool(o.sync, "sync")
    hold_on = _as_bool(o.holdOn, "holdOn")
    depth = _back_prop_depth(o.backPropDepth)
    if not isinstance(o.mode, str) or o.mode.lower() not in ("normal", "test"):
        raise ValueError(f"{FNAME}: unknown mode {o.mode!r} (use 'normal' or 'test')")
    mode = Mode(test=o.mode.lower() == "test",
                cudnn="Cudnn" if _as_bool(o.cudnn, "cudnn") else "NoCudnn")
    server = o.parameterServer
    if server is not None and not callable(getattr(server, "push", None)):
        raise TypeError(f"{FNAME}: parameterServer must have a push(name, value) method, "
                        f"got {type(server).__name__}")

    layers = _layers_of(net)
    n = len(layers)
    # the first back-propagated layer (MatConvNet's backPropLim, 0-based)
    first_bp = 0 if math.isinf(depth) else max(n - depth, 0)
    doder = not _is_empty_derivative(dzdy)
    if skip_forward and not doder:
        raise ValueError(f"{FNAME}: skipForward is valid only when the backward pass is "
                         f"computed (dzdy given) [simplenn:skipForwardNoBackwPass]")
    if res is None or len(res) == 0:
        if skip_forward:
            raise ValueError(f"{FNAME}: the res list must be provided for skipForward "
                             f"[simplenn:skipForwardEmptyRes]")
        res = [new_record() for _ in range(n + 1)]
    else:
        _check_res(res, n)
    gpu = is_device_array(x)

    if not skip_forward:
        res[0].x = x

    # ----------------------------------------------------------------------
    # forward pass

    for i in range(0 if skip_forward else n):
        layer = layers[i]
        start = time.perf_counter()
        forward, _ = _entry(layer, i)
        forward(layer, res, i, mode)

        # optionally forget intermediate results: res[i].x, unless it is
        # needed by the backward pass or is the output of a loss or of a
        # precious layer
        needs_bprop = doder and i >= first_bp
        forget = conserve and not needs_bprop
        if i > 0:
            producer = layers[i - 1]
            forget = forget and producer.get("type") not in LOSS_TYPES \
                and not is_precious(producer)
        if forget:
            res[i].x = None

        if gpu and sync:
            _synchronize(x)
        res[i].time = time.perf_counter() - start

    # ----------------------------------------------------------------------
    # backward pass

    if doder:
        res[n].dzdx = dzdy
        for i in range(n - 1, first_bp - 1, -1):
            layer = layers[i]
            start = time.perf_counter()
            entry = _known(layer.get("type"))
            # an unknown type is skipped, as in MatConvNet (the forward
            # pass, when it runs, has already rejected it)
            dzdw = entry[1](layer, res, i, mode) if entry is not None else None
            if dzdw is not None:
                if accumulate:
                    dzdw = _accumulated(res[i].dzdw, dzdw)
                res[i].dzdw = dzdw
                if server is not None and not hold_on:
                    for j, value in enumerate(dzdw):
                        server.push(f"l{i + 1}_{j + 1}", value)
                        dzdw[j] = None
            if conserve and not is_precious(layer) and i != n - 1:
                res[i + 1].dzdx = None
                res[i + 1].x = None
            if gpu and sync:
                _synchronize(x)
            res[i].backwardTime = time.perf_counter() - start
        if 0 < first_bp < n and conserve and not is_precious(layers[first_bp]):
            res[first_bp].dzdx = None
            res[first_bp].x = None
    return res


def _as_bool(value, name):
    if isinstance(value, str) or value is None:
        raise ValueError(f"{FNAME}: {name} must be true or false, got {value!r}")
    return as_float(value, FNAME, name) != 0


def _back_prop_depth(value):
    """A positive integer or +inf."""
    try:
        infinite = np.size(value) == 1 and bool(np.isposinf(np.asarray(value, np.float64)).all())
    except (TypeError, ValueError):
        infinite = False
    if infinite:
        return math.inf
    depth = as_float(value, FNAME, "backPropDepth")
    if not depth > 0:
        raise ValueError(f"{FNAME}: backPropDepth must be > 0, got {value!r}")
    return as_int(depth, FNAME, "backPropDepth")


def _is_empty_derivative(dzdy):
    """MATLAB's ``isempty(dzdy)``: ``None``, an empty array or sequence."""
    if isinstance(dzdy, (list, tuple)):
        return len(dzdy) == 0
    return is_empty(dzdy)


def _layers_of(net):
    if not isinstance(net, Mapping) or "layers" not in net:
        raise TypeError(f"{FNAME}: net must be a mapping with a 'layers' list, "
                        f"got {type(net).__name__}")
    layers = net["layers"]
    for i, layer in enumerate(layers):
        if not isinstance(layer, Mapping):
            raise TypeError(f"{FNAME}: {layer_label(i)} must be a mapping, "
                            f"got {type(layer).__name__}")
    return layers


def _known(kind):
    """The table entry of a layer type, or None (types are exact strings,
    case-sensitive as MATLAB's ``switch``)."""
    return LAYERS.get(kind) if isinstance(kind, str) else None


def _entry(layer, i):
    """The ``(forward, backward)`` pair of a layer's type."""
    if "type" not in layer:
        raise ValueError(f"{FNAME}: {describe(layer, i)} has no field 'type'")
    entry = _known(layer["type"])
    if entry is None:
        raise ValueError(f"{FNAME}: unknown layer type {layer['type']!r} of "
                         f"{layer_label(i, layer)}; known types: {', '.join(LAYERS)}")
    return entry


def _check_res(res, n):
    """A given ``res`` must have ``n + 1`` entries; plain dicts become
    :class:`Struct` records (same arrays) and missing fields are added."""
    if not isinstance(res, list):
        raise TypeError(f"{FNAME}: res must be the list returned by a previous call, "
                        f"got {type(res).__name__}")
    if len(res) != n + 1:
        raise ValueError(f"{FNAME}: res has {len(res)} entries but the network has {n} "
                         f"layers (res needs {n + 1})")
    for i, record in enumerate(res):
        if record is None:
            res[i] = new_record()
        elif isinstance(record, Mapping):
            res[i] = as_record(record)
        else:
            raise TypeError(f"{FNAME}: res[{i}] must be a record (mapping), "
                            f"got {type(record).__name__}")


def _accumulated(old, new):
    """``old[j] + new[j]`` for each parameter; a missing or cleared old entry
    counts as zero.  New arrays: the ones the caller holds are left alone."""
    old = list(old or [])
    out = []
    for j, value in enumerate(new):
        previous = old[j] if j < len(old) else None
        out.append(value if previous is None else previous if value is None
                   else previous + value)
    return out


def _synchronize(x):
    get_array_module(x).cuda.Device().synchronize()
