"""cnn_train: MatConvNet's SimpleNN trainer (``examples/cnn_train.m``, HEAD).

Stochastic gradient descent with momentum (or one of the solvers of
:mod:`simplenn.solvers`) over a SimpleNN network, epoch by epoch, with a
checkpoint ``net-epoch-N.mat`` after every epoch from which training
resumes.  The arithmetic is MatConvNet's final code (see
MATCONVNET_SEMANTICS.md, sections 27, 28 and 31); the differences are the
Python conventions (0-based image positions) and the points listed in
:func:`cnn_train`'s Notes.
"""

import contextlib
import cProfile
import inspect
import io as _stdio
import math
import os
import pstats
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping

import numpy as np

from vlnn._backend import get_array_module, gpu_module, shape4, to_host
from vlnn._options import as_float, as_int, numbers_of, parse_options

from . import matfile
from .io import layer_to_mat, network_from_variables
from .display import vl_simplenn_display
from .move import vl_simplenn_move
from .simplenn import vl_simplenn
from .struct import Struct
from .tidy import vl_simplenn_tidy

__all__ = ["cnn_train"]

FNAME = "cnn_train"

OPTIONS = {
    "expDir": os.path.join("data", "exp"),
    "continue": True,
    "batchSize": 256,
    "numSubBatches": 1,
    "train": None,
    "val": None,
    "gpus": None,
    "epochSize": math.inf,
    "prefetch": False,
    "numEpochs": 300,
    "learningRate": 0.001,
    "weightDecay": 0.0005,
    "solver": None,
    "solverOpts": None,
    "momentum": 0.9,
    "saveSolverState": True,
    "saveMomentum": None,
    "nesterovUpdate": False,
    "randomSeed": 0,
    "memoryMapFile": os.path.join(tempfile.gettempdir(), "matconvnet.bin"),
    "profile": False,
    "parameterServer": None,
    "conserveMemory": True,
    "backPropDepth": math.inf,
    "sync": False,
    "cudnn": True,
    "errorFunction": "multiclass",
    "errorLabels": None,
    "plotDiagnostics": False,
    "plotStatistics": True,
    "postEpochFn": None,
    "verbose": True,
}

_CHECKPOINT = re.compile(r"net-epoch-(\d+)\.mat")
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")


def cnn_train(net, imdb, get_batch, *args, **opts):
    """Train a SimpleNN network with stochastic gradient descent.

    ``net, info = cnn_train(net, imdb, get_batch, **opts)`` trains ``net``
    on the images of ``imdb`` with SGD and momentum (or with ``solver``),
    validating after every epoch.  It is MatConvNet's ``cnn_train``: same
    options, defaults, update rules and checkpoints.  Each epoch the
    training images are visited in a new random order, in batches of
    ``batchSize``; each batch is evaluated (forward and backward) by
    :func:`~simplenn.simplenn.vl_simplenn` in ``numSubBatches`` interleaved
    sub-batches whose parameter derivatives are summed, and then every
    parameter is updated once.  The validation images are then evaluated
    in test mode (dropout off, stored bnorm moments).

    After every epoch the network, the solver state and the statistics are
    saved to ``expDir/net-epoch-<epoch>.mat``; a new call with the same
    ``expDir`` resumes after the last complete checkpoint (``continue``).
    The shuffles are seeded by ``randomSeed + epoch``, so a resumed run
    reproduces the uninterrupted one.

    Parameters
    ----------
    net : mapping
        The network (``layers``, optional ``meta``), tidied first with
        :func:`~simplenn.tidy.vl_simplenn_tidy` (the input is not modified).
        It needs at least two layers: the last is the loss, whose ``class``
        field receives each batch's labels; the one before it gives the
        scores for the error functions (its ``precious`` is set so that
        ``conserveMemory`` keeps them).  When training, a layer without
        ``learningRate`` or ``weightDecay`` gets ``ones((1, J))`` (``J`` its
        number of weights): per-weight multipliers of the global rate and
        decay.  For ``bnorm`` the third learning rate is the rate of the
        moving average of the moments (``1`` replaces them with the last
        batch's; MatConvNet's MNIST example uses ``[1, 1, 0.05]``).
    imdb : mapping or object
        The image database, passed untouched to ``get_batch``.  Only
        ``imdb.images.set`` (or ``imdb['images']['set']``) is read, for the
        default ``train`` and ``val``.
    get_batch : callable
        ``images, labels = get_batch(imdb, batch)``, where ``batch`` is an
        integer ndarray of **0-based** image positions; ``images`` is an
        ``H x W x C x N`` array (NumPy; moved to the GPU when ``gpus`` is
        set) and ``labels`` the loss layer's ``class`` (1-based class
        labels for the softmax losses).
    *args
        MATLAB-style ``'Name', value`` option pairs.

    Other Parameters
    ----------------
    expDir : str, default ``'data/exp'``
        Folder for the checkpoints and figures, created if missing.
    continue : bool, default True
        Resume from the last checkpoint in ``expDir``.  ``continue`` is a
        Python keyword: write ``continue_=False`` (underscores are ignored
        in option names), ``**{'continue': False}`` or the pair
        ``'continue', False``.
    batchSize : int, default 256
        Images per parameter update.
    numSubBatches : int, default 1
        Split each batch into this many sub-batches evaluated one after the
        other (to save memory); sub-batch ``s`` (0-based) takes the batch's
        images ``s, s + numSubBatches, ...``.  The summed derivatives are
        divided by ``numSubBatches``.
    train : array of int, default ``np.flatnonzero(imdb.images.set == 1)``
        0-based positions of the training images; ``None`` or empty means
        the default; ``nan`` means none (evaluation mode: no training, no
        checkpoints).
    val : array of int, default ``np.flatnonzero(imdb.images.set == 2)``
        0-based positions of the validation images; ``None`` or empty means
        the default; ``nan`` means none.
    gpus : list of int, default ``[]``
        ``[]``: compute on the CPU.  ``[k]``: compute on GPU ``k`` with
        CuPy, numbered from 1 as MATLAB's ``gpuDevice`` (``[1]`` is CuPy
        device 0); the network and solver state move there for each epoch
        and back to the CPU after it.  Several GPUs are not supported.
    epochSize : int or inf, default inf
        At most this many training images per epoch (the first ones of the
        epoch's shuffle).
    prefetch : bool, default False
        After fetching a sub-batch, also call ``get_batch`` on the next one
        and discard the result (lets a caching ``get_batch`` read ahead).
    numEpochs : int, default 300
        Train up to this epoch (counting the epochs of a resumed run).
    learningRate : float or sequence of float, default 0.001
        The learning rate, or one per epoch: epoch ``e`` (1-based) uses
        ``learningRate[min(e, len(learningRate)) - 1]``.
    weightDecay : float, default 0.0005
        Weight decay (L2) coefficient, times each layer's ``weightDecay``.
    solver : callable or None, default None
        ``None``: SGD with momentum.  Otherwise ``w, state = solver(w,
        state, grad, solverOpts, lr)`` as the functions of
        :mod:`simplenn.solvers`; its state starts at ``0``.
    solverOpts : mapping, default ``solver()``
        Hyper-parameters for ``solver``, merged over its defaults (what
        ``solver()`` returns when it can be called without arguments; an
        entry that is not among them is a ``TypeError``, as in
        MatConvNet).  Names are matched case-insensitively.  Valid only
        with ``solver``.
    momentum : float, default 0.9
        Momentum of the default SGD solver.
    saveSolverState : bool, default True
        Keep the solver state (the momentum) from epoch to epoch, and save
        it in the checkpoints; ``False`` restarts it at 0 every epoch.
    saveMomentum : bool, default None
        The name of ``saveSolverState`` in older MatConvNet versions; when
        given it sets ``saveSolverState``.
    nesterovUpdate : bool, default False
        Nesterov's accelerated gradient in the default SGD solver.
    randomSeed : int, default 0
        Epoch ``e`` draws its shuffles (and the dropout masks) from
        ``numpy.random.default_rng(randomSeed + e)``.
    memoryMapFile : str, default ``<tempdir>/matconvnet.bin``
        MatConvNet's multi-GPU exchange file; accepted and unused.
    profile : bool, default False
        Profile each epoch's training and validation with :mod:`cProfile`;
        the report is printed and kept in ``state.prof.train`` and
        ``state.prof.val`` (saved in the checkpoint).
    parameterServer : mapping, default ``{'method': 'mmap', 'prefix': 'mcn'}``
        MatConvNet's multi-GPU parameter server settings; accepted and
        unused (one worker).
    conserveMemory : bool, default True
        Passed to :func:`~simplenn.simplenn.vl_simplenn`.
    backPropDepth : int or inf, default inf
        Passed to :func:`~simplenn.simplenn.vl_simplenn`: only the last
        layers are trained.
    sync : bool, default False
        Passed to :func:`~simplenn.simplenn.vl_simplenn`.
    cudnn : bool, default True
        Passed to :func:`~simplenn.simplenn.vl_simplenn`.
    errorFunction : {'multiclass', 'binary', 'none'} or callable, default 'multiclass'
        The error statistics.  ``'multiclass'``: ``top1err`` and
        ``top5err`` from the scores ``res[-2].x`` (images whose label is
        not the best-scoring class, resp. not among the five best); labels
        ``<= 0`` are ignored and a second label channel, when present,
        weighs the images.  ``'binary'``: ``binerr``, the number of score
        entries whose sign disagrees with the label's (labels shaped like
        the scores, or one per image).  ``'none'``: no
        error.  A callable ``err = f(params, labels, res)`` returns the
        **summed** error counts of a sub-batch, one per ``errorLabels``
        entry.
    errorLabels : list of str, default by ``errorFunction``
        Names of the errors: ``['top1err', 'top5err']`` (multiclass),
        ``['binerr']`` (binary), ``[]`` (none or a callable).
    plotDiagnostics : bool, default False
        After each training batch, compute MatConvNet's diagnostics of the
        conv layers (relative update size ``variation`` and output
        ``power``, kept in ``res[i].stats``) and draw them to
        ``expDir/net-diagnostics.png`` (matplotlib).
    plotStatistics : bool, default True
        After each epoch, draw the statistics per epoch (one panel per
        statistic, training and validation curves) to
        ``expDir/net-train.png`` with matplotlib's Agg backend.  Without
        matplotlib a one-line notice is printed instead.
    postEpochFn : callable, default None
        Called after each epoch as ``f(net, params, state)``.  A return
        value other than ``None`` becomes the new ``learningRate``; if it
        is 0, training stops.
    verbose : bool, default True
        Print the network table, one progress line per batch (a tqdm bar
        when tqdm is installed) and notices.  ``False`` prints nothing.

    Returns
    -------
    net : Struct
        The trained network, on the CPU.
    info : Struct
        ``info.train`` and ``info.val`` (also ``info['train']``): a
        :class:`~simplenn.struct.Struct` of lists, one value per epoch
        (resumed epochs included), for each statistic: ``objective`` (the
        average loss per image), the error labels (average errors per
        image), ``num`` (images processed) and ``time`` (seconds).  A
        statistic missing in some epoch is ``nan`` there.

    Raises
    ------
    TypeError
        An unknown option (the message lists the valid ones), ``solverOpts``
        without ``solver`` or with an entry the solver does not have, a
        ``solver``, ``postEpochFn`` or ``get_batch`` that is not callable.
    ValueError
        A bad option value (named), a network with fewer than two layers,
        a network that cannot be saved in a checkpoint (custom layers: their
        callables cannot be stored; raised before training starts), a
        layer whose ``learningRate``/``weightDecay`` has fewer entries than
        weights, an error function that returns fewer counts than
        ``errorLabels``, missing ``imdb.images.set`` when ``train`` or
        ``val`` is not given.

    Notes
    -----
    The update of weight ``j`` of layer ``l`` after each batch, with
    ``g`` the summed derivative of the sub-batches (MatConvNet HEAD):

    * bnorm moments (``j == 2`` of a ``bnorm`` layer), with
      ``a = layer.learningRate[2]``:
      ``w = (1 - a) * w + (a / numSubBatches) * g``;
    * otherwise, with ``lr = learningRate * layer.learningRate[j]`` and
      ``decay = weightDecay * layer.weightDecay[j]``, and only when
      ``lr > 0 or decay > 0``: ``g = g / numSubBatches + decay * w``; then
      the default solver does ``v = momentum * v - g``,
      ``delta = momentum * v - g`` (Nesterov) or ``v``, and
      ``w = w + lr * delta`` (``v`` starts at 0); a ``solver`` does
      ``w, state = solver(w, state, g, solverOpts, lr)``.

    The statistics are running averages over the images of the epoch; the
    objective of a sub-batch is ``N * res[-1].x`` (``N`` images; the loss
    layers return the average), so ``objective`` is the average loss.

    Checkpoints.  ``net-epoch-N.mat`` holds MatConvNet's three variables,
    in the MAT v7 layout of :func:`~simplenn.io.save_net`: ``net`` (a
    struct with ``layers`` and ``meta``), ``state`` (``solverState``, a
    cell per layer of cells per weight, each ``0``, an array or a struct;
    ``stats`` of the last epoch; ``prof`` when profiling) and ``stats``
    (``train`` and ``val``, ``1 x epochs`` struct arrays).
    :func:`~simplenn.io.load_net` reads a checkpoint as a model.  The file
    is written whole to a temporary file in ``expDir`` and renamed over
    the checkpoint (``os.replace``), so a crash never leaves a partial
    ``net-epoch-N.mat``.  Resuming takes the highest ``N`` whose file reads
    completely; a file that does not (truncated or corrupt, or lacking
    ``net``, ``state`` or ``stats``) is skipped with a ``RuntimeWarning``
    and the previous epoch is tried (MatConvNet stops with an error
    instead); it is overwritten when training reaches that epoch again.
    If no checkpoint reads, training starts from ``net`` with a second
    warning.  ``stats`` is the last variable written, so a file cut short
    anywhere fails to read.  Weights keep their precision (float32 or
    float64) in the checkpoints.  Networks with custom layers can be
    evaluated (``train=nan``) but not trained, since their callables
    cannot be stored.

    Differences from MatConvNet: one worker only (``gpus`` holds at most one
    GPU; ``memoryMapFile`` and ``parameterServer`` are accepted and
    unused); the training figure is a PNG (``net-train.png``), not a PDF;
    the statistics are accumulated in double precision; ``prefetch`` skips
    empty batches; ``'binary'`` lays labels with one element per image
    along the images (MATLAB's ``bsxfun`` would cross a ``1 x N`` label
    row with the ``1 x 1 x K x N`` scores); ``errorLabels`` must be valid
    MATLAB field names; ``verbose`` is ours.  As MATLAB's ``rng(randomSeed +
    epoch)`` also drives ``rand`` in dropout, the epoch's generator is
    installed as :data:`vlnn.dropout.DEFAULT_RNG` while the epoch runs (and
    CuPy's global random state is seeded on the GPU), so that dropout
    networks resume exactly too.

    Examples
    --------
    >>> def get_batch(imdb, batch):
    ...     return imdb['images']['data'][:, :, :, batch], imdb['images']['labels'][batch]
    >>> net, info = cnn_train(net, imdb, get_batch, expDir='data/mnist',
    ...                       batchSize=100, numEpochs=20, learningRate=0.001,
    ...                       val=np.flatnonzero(imdb['images']['set'] == 3))
    >>> info.val.top1err[-1]
    """
    o = _parse(args, opts)
    device = _Device(o.gpus)
    if not callable(get_batch):
        raise TypeError(f"{FNAME}: get_batch must be callable, got {type(get_batch).__name__}")
    exp_dir = os.fspath(o.expDir)
    os.makedirs(exp_dir, exist_ok=True)
    o.train = _subset(o.train, imdb, 1, "train")
    o.val = _subset(o.val, imdb, 2, "val")
    say = _Printer(o.verbose)

    # ----------------------------------------------------------------------
    # initialisation

    net = vl_simplenn_tidy(net)
    layers = net.layers
    if len(layers) < 2:
        raise ValueError(f"{FNAME}: the network needs at least two layers (the scores and the "
                         f"loss), got {len(layers)}")
    layers[-2]["precious"] = True  # keep the predictions, used for the errors
    for layer in layers:
        # own lists: the updates below replace weights of the copy only
        layer["weights"] = list(layer.get("weights") or [])
    if o.verbose:
        vl_simplenn_display(net, batchSize=o.batchSize)

    evaluate_mode = o.train.size == 0
    if not evaluate_mode:
        for layer in layers:
            count = len(layer["weights"])
            if "learningRate" not in layer:
                layer["learningRate"] = np.ones((1, count))
            if "weightDecay" not in layer:
                layer["weightDecay"] = np.ones((1, count))

    o.errorFunction, o.errorLabels = _error_function(o.errorFunction, o.errorLabels)
    if not evaluate_mode:
        _check_storable(net)

    # ----------------------------------------------------------------------
    # train and validate

    stats = Struct(train=[], val=[])
    state = None
    start = _last_checkpoint(exp_dir) if o["continue"] else 0
    if start >= 1:
        start, loaded = _resume(exp_dir, start)
        if loaded is not None:
            say(f"{FNAME}: resuming by loading epoch {start}")
            net, state, stats = loaded
            layers = net.layers
        else:
            start = 0

    plot_notice = [o.plotStatistics or o.plotDiagnostics]
    learning_rate = o.learningRate
    for epoch in range(start + 1, o.numEpochs + 1):
        # Seed from the epoch and randomSeed: a restarted run reproduces the
        # shuffles (and dropout masks) of an uninterrupted one.
        generator = np.random.default_rng(o.randomSeed + epoch)
        params = Struct(o)
        params.epoch = epoch
        params.learningRate = float(learning_rate[min(epoch, learning_rate.size) - 1])
        train = o.train[generator.permutation(o.train.size)]
        params.train = train[:min(o.epochSize, train.size)] if math.isfinite(o.epochSize) \
            else train
        params.val = o.val[generator.permutation(o.val.size)]
        params.imdb = imdb
        params.getBatch = get_batch

        with device, _seeded_dropout(generator, device, o.randomSeed + epoch):
            net, state = _process_epoch(net, state, params, "train", device, exp_dir, say)
            net, state = _process_epoch(net, state, params, "val", device, exp_dir, say)

        stats.train.append(state.stats.train)
        stats.val.append(state.stats.val)
        if not evaluate_mode:
            _save_checkpoint(_checkpoint_path(exp_dir, epoch), net, state, stats)

        if o.plotStatistics:
            _plot_statistics(stats, os.path.join(exp_dir, "net-train.png"), plot_notice, say)

        if o.postEpochFn is not None:
            value = o.postEpochFn(net, params, state)
            if value is not None:
                learning_rate = _learning_rates(value)
                if np.all(learning_rate == 0):
                    break

    return net, Struct(train=_per_statistic(stats.train), val=_per_statistic(stats.val))


# --------------------------------------------------------------------------
# options

def _parse(args, opts):
    o = Struct(parse_options(FNAME, args, opts, OPTIONS))
    o.batchSize = as_int(o.batchSize, FNAME, "batchSize", minimum=1)
    o.numSubBatches = as_int(o.numSubBatches, FNAME, "numSubBatches", minimum=1)
    o.numEpochs = as_int(o.numEpochs, FNAME, "numEpochs", minimum=0)
    o.randomSeed = as_int(o.randomSeed, FNAME, "randomSeed", minimum=0)
    o.epochSize = _count_or_inf(o.epochSize, "epochSize")
    o.learningRate = _learning_rates(o.learningRate)
    o.weightDecay = as_float(o.weightDecay, FNAME, "weightDecay")
    o.momentum = as_float(o.momentum, FNAME, "momentum")
    for name in ("continue", "prefetch", "saveSolverState", "nesterovUpdate", "profile",
                 "conserveMemory", "sync", "cudnn", "plotDiagnostics", "plotStatistics",
                 "verbose"):
        o[name] = _bool(o[name], name)
    if o.saveMomentum is not None:
        o.saveSolverState = _bool(o.saveMomentum, "saveMomentum")
    if o.expDir is None or not isinstance(o.expDir, (str, os.PathLike)):
        raise ValueError(f"{FNAME}: expDir must be a folder name, got {o.expDir!r}")
    if o.solver is not None and not callable(o.solver):
        raise TypeError(f"{FNAME}: solver must be a callable w, state = solver(w, state, grad, "
                        f"opts, lr) or None (SGD), got {type(o.solver).__name__}")
    if o.solver is None:
        if o.solverOpts is not None:
            raise TypeError(f"{FNAME}: solverOpts is valid only together with a solver")
    else:
        o.solverOpts = _solver_options(o.solver, o.solverOpts)
    if o.postEpochFn is not None and not callable(o.postEpochFn):
        raise TypeError(f"{FNAME}: postEpochFn must be callable, got "
                        f"{type(o.postEpochFn).__name__}")
    if o.parameterServer is None:
        o.parameterServer = Struct(method="mmap", prefix="mcn")
    return o


def _bool(value, name):
    if isinstance(value, str) or value is None:
        raise ValueError(f"{FNAME}: {name} must be true or false, got {value!r}")
    return as_float(value, FNAME, name) != 0


def _count_or_inf(value, name):
    try:
        if np.size(value) == 1 and np.isposinf(np.asarray(value, dtype=np.float64)).all():
            return math.inf
    except (TypeError, ValueError):
        pass
    return as_int(value, FNAME, name, minimum=1)


def _learning_rates(value):
    if np.size(value) == 0:
        raise ValueError(f"{FNAME}: learningRate must be a number or a non-empty sequence of "
                         f"numbers (one per epoch), got {value!r}")
    rates = numbers_of(value, FNAME, "learningRate", (np.size(value),))
    if np.any(rates < 0):
        raise ValueError(f"{FNAME}: learningRate must be >= 0, got {value!r}")
    return rates


def _solver_options(solver, given):
    """MatConvNet's ``opts.solverOpts = opts.solver()`` with the given
    options merged over the defaults (names matched case-insensitively)."""
    try:
        inspect.signature(solver).bind()
        callable_without_arguments = True
    except (TypeError, ValueError):
        callable_without_arguments = False
    defaults = None
    if callable_without_arguments:
        try:
            defaults = solver()
        except Exception:  # a solver that cannot report its defaults
            defaults = None
    merged = Struct(defaults) if isinstance(defaults, Mapping) else Struct()
    if given is None:
        return merged
    if not isinstance(given, Mapping):
        raise ValueError(f"{FNAME}: solverOpts must be a mapping, got {type(given).__name__}")
    canonical = {key.lower().replace("_", ""): key for key in merged if isinstance(key, str)}
    for key, value in given.items():
        name = canonical.get(key.lower().replace("_", "")) if isinstance(key, str) else None
        if name is None:
            if isinstance(defaults, Mapping):
                raise TypeError(f"{FNAME}: unknown solverOpts entry {key!r}; the solver's "
                                f"options are: {', '.join(map(str, merged)) or '(none)'}")
            name = key
        merged[name] = value
    return merged


def _get(obj, name):
    if isinstance(obj, Mapping):
        return obj[name]
    return getattr(obj, name)


def _is_nan_marker(value):
    """MATLAB's ``NaN`` for "no images"."""
    if isinstance(value, (str, bytes)) or value is None:
        return False
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return array.size == 1 and bool(np.isnan(array).all())


def _subset(value, imdb, set_code, name):
    """The 0-based positions of the ``train`` or ``val`` images."""
    if _is_nan_marker(value):
        return np.zeros(0, dtype=np.int64)
    if value is not None and np.size(value) > 0:
        try:
            positions = np.asarray(value)
        except (TypeError, ValueError):
            raise ValueError(f"{FNAME}: {name} must be an array of 0-based image positions, "
                             f"got {value!r}") from None
        positions = positions.ravel(order="F")
        if positions.dtype == bool or not np.issubdtype(positions.dtype, np.number) or \
                np.iscomplexobj(positions):
            raise ValueError(f"{FNAME}: {name} must be an array of 0-based image positions "
                             f"(integers), got {value!r}")
        if np.any(~np.isfinite(positions)) or np.any(positions != np.round(positions)) or \
                np.any(positions < 0):
            raise ValueError(f"{FNAME}: {name} must hold non-negative integers (0-based image "
                             f"positions), got {value!r}")
        return positions.astype(np.int64)
    try:
        sets = _get(_get(imdb, "images"), "set")
    except (KeyError, AttributeError, TypeError):
        raise ValueError(f"{FNAME}: {name} was not given and imdb has no images.set to take "
                         f"it from (images with set == {set_code})") from None
    return np.flatnonzero(np.asarray(sets).ravel(order="F") == set_code).astype(np.int64)


# --------------------------------------------------------------------------
# error functions (MatConvNet's error_multiclass, error_binary, error_none)

def _host(value):
    return to_host(value)


def error_multiclass(params, labels, res):
    """Top-1 and top-5 errors (summed) of the scores ``res[-2].x``."""
    predictions = _scores(res)
    # 1-based class indices by decreasing score (ties: lower index first,
    # as MATLAB's stable sort)
    order = np.argsort(-predictions, axis=2, kind="stable") + 1
    labels = np.asarray(_host(labels))
    if labels.size == predictions.shape[3]:
        # be resilient to badly formatted labels
        labels = labels.reshape((1, 1, 1, -1), order="F")
    else:
        labels = labels.reshape(shape4(labels.shape), order="F")
    # skip null labels; a second channel, when present, weighs the images
    mass = (labels[:, :, 0:1, :] > 0).astype(np.float64)
    if labels.shape[2] == 2:
        mass = mass * labels[:, :, 1:2, :]
        labels = labels[:, :, 0:1, :]
    top = min(5, order.shape[2])
    error = order[:, :, :top, :] != labels
    return [float(np.sum(mass * error[:, :, 0:1, :])),
            float(np.sum(mass * error.min(axis=2, keepdims=True)))]


def error_binary(params, labels, res):
    """The number of scores ``res[-2].x`` whose sign disagrees with the label's."""
    predictions = _scores(res)
    labels = np.asarray(_host(labels))
    if labels.size == predictions.size:
        labels = labels.reshape(predictions.shape, order="F")
    elif labels.size == predictions.shape[3]:
        # one label per image, as error_multiclass reads them
        labels = labels.reshape((1, 1, 1, -1), order="F")
    else:
        labels = labels.reshape(shape4(labels.shape), order="F")
    return [float(np.sum(predictions * labels < 0))]


def error_none(params, labels, res):
    """No error statistics."""
    return []


def _scores(res):
    x = res[-2].x
    if x is None:
        raise ValueError(f"{FNAME}: the scores res[-2].x were cleared; the error function "
                         "needs them (is the layer before the loss precious?)")
    x = np.asarray(_host(x))
    return x.reshape(shape4(x.shape), order="F")


def _error_function(function, labels):
    if labels is not None and not isinstance(labels, (list, tuple, str)):
        raise ValueError(f"{FNAME}: errorLabels must be a list of names, got {labels!r}")
    labels = [labels] if isinstance(labels, str) else list(labels or [])
    for name in labels:
        # they name fields of the statistics structs in the checkpoints
        if not (isinstance(name, str) and _FIELD_NAME.fullmatch(name)) \
                or name in ("objective", "num", "time"):
            raise ValueError(f"{FNAME}: errorLabels must be valid MATLAB field names other "
                             f"than objective, num and time, got {name!r}")
    if callable(function):
        return function, labels
    if isinstance(function, str):
        kind = function.lower()
        if kind == "none":
            return error_none, labels
        if kind == "multiclass":
            return error_multiclass, labels or ["top1err", "top5err"]
        if kind == "binary":
            return error_binary, labels or ["binerr"]
    raise ValueError(f"{FNAME}: unknown errorFunction {function!r} (use 'multiclass', "
                     "'binary', 'none' or a callable f(params, labels, res))")


# --------------------------------------------------------------------------
# one epoch of training or validation

def _process_epoch(net, state, params, mode, device, exp_dir, say):
    layers = net.layers
    if state is None:
        state = Struct()
    if not state.get("solverState"):
        # every solver starts at 0 (MatConvNet's momentum initialisation)
        state.solverState = [[0] * len(layer["weights"]) for layer in layers]
    if "stats" not in state or not isinstance(state.stats, Mapping):
        state.stats = Struct()
    if device.gpu:
        net = vl_simplenn_move(net, "gpu")
        state.solverState = device.move_states(state.solverState)
        layers = net.layers

    profiler = cProfile.Profile() if params.profile else None
    if profiler is not None:
        profiler.enable()

    subset = params[mode]
    train = mode == "train"
    count = subset.size
    batch_size_opt, num_sub = params.batchSize, params.numSubBatches
    num = 0
    stats = Struct(num=0, time=0.0)  # something to return even for no images
    adjust_time = 0.0
    res = None
    error = None
    num_batches = -(-count // batch_size_opt)
    progress = _Progress(say, mode, params.epoch, num_batches)
    start = time.perf_counter()
    for t in range(0, count, batch_size_opt):
        batch_size = min(batch_size_opt, count - t)
        batch_end = min(t + batch_size_opt, count)
        for s in range(num_sub):
            batch = subset[t + s:batch_end:num_sub]
            num += batch.size
            if batch.size == 0:
                continue
            images, labels = params.getBatch(params.imdb, batch)
            if params.prefetch:
                if s == num_sub - 1:
                    next_batch = subset[t + batch_size_opt:min(t + 2 * batch_size_opt, count)
                                        :num_sub]
                else:
                    next_batch = subset[t + s + 1:batch_end:num_sub]
                if next_batch.size:
                    params.getBatch(params.imdb, next_batch)
            images = device.to_device(images)
            layers[-1]["class"] = device.to_device(labels)
            res = vl_simplenn(net, images, 1.0 if train else None, res,
                              accumulate=s != 0,
                              mode="normal" if train else "test",
                              conserveMemory=params.conserveMemory,
                              backPropDepth=params.backPropDepth,
                              sync=params.sync,
                              cudnn=params.cudnn)
            counts = _sub_batch_counts(params, labels, res, images)
            if error is not None and counts.size != error.size:
                raise ValueError(f"{FNAME}: the error function returned {counts.size - 1} counts "
                                 f"for this sub-batch but {error.size - 1} before")
            error = counts if error is None else error + counts

        if train:
            net, res, state = _accumulate_gradients(net, res, state, params)
            layers = net.layers
            if params.plotDiagnostics:
                _plot_diagnostics(res, os.path.join(exp_dir, "net-diagnostics.png"))

        # statistics: running averages over the images seen so far
        elapsed = time.perf_counter() - start + adjust_time
        batch_time = elapsed - stats.time
        stats = _extract_stats(params, error / num)
        stats.num = num
        stats.time = elapsed
        current_speed = batch_size / batch_time if batch_time > 0 else math.inf
        average_speed = (t + batch_size) / elapsed if elapsed > 0 else math.inf
        if t == 3 * batch_size_opt:
            # compensate for the first three iterations, which are outliers
            adjust_time = 4 * batch_time - elapsed
            stats.time = elapsed + adjust_time
        progress.update(t // batch_size_opt + 1, average_speed, current_speed, stats)
    progress.close()

    state.stats[mode] = stats
    if profiler is not None:
        profiler.disable()
        text = _stdio.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
        if "prof" not in state or not isinstance(state.prof, Mapping):
            state.prof = Struct()
        state.prof[mode] = text.getvalue()
        say(f"{FNAME}: profile of {mode} epoch {params.epoch}:\n{text.getvalue()}")
    if not params.saveSolverState:
        state.solverState = []
    elif device.gpu:
        state.solverState = device.gather_states(state.solverState)
    if device.gpu:
        net = vl_simplenn_move(net, "cpu")
        net.layers[-1]["class"] = _host(net.layers[-1].get("class"))
    return net, state


def _sub_batch_counts(params, labels, res, images):
    """``[objective, errors...]`` summed over the sub-batch, in double."""
    loss = np.asarray(_host(res[-1].x), dtype=np.float64)
    scores = res[-2].x if res[-2].x is not None else images
    count = shape4(scores.shape)[3]
    errors = params.errorFunction(params, labels, res)
    errors = np.asarray(_host(errors), dtype=np.float64).ravel(order="F")
    if errors.size < len(params.errorLabels):
        raise ValueError(f"{FNAME}: the error function returned {errors.size} counts but "
                         f"errorLabels names {len(params.errorLabels)}: "
                         f"{list(params.errorLabels)}")
    return np.concatenate([[np.sum(count * loss)], errors])


def _extract_stats(params, errors):
    stats = Struct(objective=float(errors[0]))
    for i, name in enumerate(params.errorLabels):
        stats[name] = float(errors[i + 1])
    return stats


# --------------------------------------------------------------------------
# the parameter update (MatConvNet HEAD's accumulateGradients, one worker)

def _multiplier(layer, name, j, index):
    values = layer.get(name)
    values = np.asarray(_host(values), dtype=np.float64).ravel(order="F") \
        if values is not None else np.zeros(0)
    if j >= values.size:
        raise ValueError(f"{FNAME}: layer {index} (0-based, '{layer.get('name')}') has "
                         f"{len(layer['weights'])} weights but its {name} has {values.size} "
                         f"entries ({layer.get(name)!r})")
    return float(values[j])


def _accumulate_gradients(net, res, state, params):
    num_workers = params.numSubBatches
    layers = net.layers
    for l in range(len(layers) - 1, -1, -1):
        layer = layers[l]
        derivatives = res[l].dzdw or []
        for j in range(len(derivatives) - 1, -1, -1):
            grad = derivatives[j]
            weights = layer["weights"]
            if grad is None or j >= len(weights) or weights[j] is None:
                continue  # e.g. a conv layer without biases
            w = weights[j]
            if j == 2 and layer.get("type") == "bnorm":
                # bnorm moments: a moving average of the batch moments
                rate = _multiplier(layer, "learningRate", j, l)
                weights[j] = (1 - rate) * w + (rate / num_workers) * grad
                continue
            decay = params.weightDecay * _multiplier(layer, "weightDecay", j, l)
            rate = params.learningRate * _multiplier(layer, "learningRate", j, l)
            if rate > 0 or decay > 0:
                # normalise the gradient and add the weight decay
                grad = (1 / num_workers) * grad + decay * w
                if params.solver is None:
                    # SGD with momentum; the rate multiplies the velocity at
                    # update time, it is not folded into it
                    velocity = params.momentum * state.solverState[l][j] + (-1.0) * grad
                    state.solverState[l][j] = velocity
                    if params.nesterovUpdate:
                        delta = params.momentum * velocity - grad
                    else:
                        delta = velocity
                    weights[j] = 1.0 * w + rate * delta
                else:
                    weights[j], state.solverState[l][j] = params.solver(
                        w, state.solverState[l][j], grad, params.solverOpts, rate)
            if params.plotDiagnostics:
                _diagnose(layer, l, j, rate, res, state)
    return net, res, state


def _diagnose(layer, l, j, rate, res, state):
    """MatConvNet's per-layer diagnostics, kept in ``res[l].stats``."""
    if layer.get("type") not in ("conv", "convt"):
        return
    solver_state = state.solverState[l][j]
    variation = math.nan
    if hasattr(solver_state, "shape") or isinstance(solver_state, (int, float)):
        xp = get_array_module(solver_state)
        variation = rate * float(xp.mean(xp.abs(xp.asarray(solver_state))))
    output = res[l + 1].x
    if output is None:
        power = math.nan
    else:
        xp = get_array_module(output)
        power = float(xp.mean(output.astype(np.float64) ** 2))
    if j == 0:
        w = layer["weights"][0]
        xp = get_array_module(w)
        base = float(xp.mean(w.astype(np.float64) ** 2))
        label = "filters"
    else:
        base = math.sqrt(power) if power == power else math.nan
        label = "biases"
    stats = res[l].stats if isinstance(res[l].stats, Mapping) else Struct()
    variations = list(stats.get("variation", []))
    labels = list(stats.get("label", []))
    while len(variations) <= j:
        variations.append(math.nan)
        labels.append("")
    variations[j] = variation / base if base else math.inf
    labels[j] = f"{layer.get('name')}_{label}"
    stats.update(variation=variations, label=labels, power=power,
                 powerLabel=str(layer.get("name")))
    res[l].stats = stats


# --------------------------------------------------------------------------
# devices and random numbers

class _Device:
    """The CPU, or one GPU (CuPy) selected by MatConvNet's 1-based number."""

    def __init__(self, gpus):
        ids = [] if gpus is None else list(np.asarray(gpus, dtype=np.float64).ravel())
        if len(ids) > 1:
            raise ValueError(f"{FNAME}: training on several GPUs is not supported; give at most "
                             f"one GPU in gpus, got {gpus!r}")
        self.gpu = bool(ids)
        self._context = None
        if self.gpu:
            number = as_int(ids[0], FNAME, "gpus", minimum=1)
            self.cupy = gpu_module(f"{FNAME}: gpus={gpus!r}")
            self.index = number - 1

    def __enter__(self):
        if self.gpu:
            self._context = self.cupy.cuda.Device(self.index)
            self._context.__enter__()
        return self

    def __exit__(self, *exc):
        if self._context is not None:
            context, self._context = self._context, None
            return context.__exit__(*exc)
        return False

    def to_device(self, value):
        if not self.gpu or value is None or isinstance(value, (str, bytes)):
            return value
        if isinstance(value, (int, float, np.number)):
            return value
        return self.cupy.asarray(value)

    def _map(self, states, move):
        out = []
        for layer_states in states:
            moved = []
            for s in layer_states:
                if isinstance(s, Mapping):
                    s = Struct({k: move(v) for k, v in s.items()})
                else:
                    s = move(s)
                moved.append(s)
            out.append(moved)
        return out

    def move_states(self, states):
        return self._map(states, lambda v: self.cupy.asarray(v) if isinstance(v, np.ndarray)
                         else v)

    def gather_states(self, states):
        return self._map(states, _host)


@contextlib.contextmanager
def _seeded_dropout(generator, device, seed):
    """Let the epoch's generator draw the dropout masks (MATLAB's global
    ``rng`` does that in MatConvNet); the previous generator is restored."""
    import vlnn.dropout as dropout

    previous = dropout.DEFAULT_RNG
    dropout.DEFAULT_RNG = generator
    if device.gpu:
        device.cupy.random.seed(seed)
    try:
        yield
    finally:
        dropout.DEFAULT_RNG = previous


# --------------------------------------------------------------------------
# checkpoints

def _checkpoint_path(exp_dir, epoch):
    return os.path.join(exp_dir, f"net-epoch-{epoch}.mat")


def _last_checkpoint(exp_dir):
    """The largest ``N`` among the files ``net-epoch-N.mat`` (0 if none)."""
    epochs = [int(m.group(1)) for m in map(_CHECKPOINT.fullmatch, os.listdir(exp_dir)) if m]
    return max(epochs, default=0)


def _save_checkpoint(path, net, state, stats):
    """Write ``net``, ``state`` and ``stats`` to ``path`` atomically."""
    variables = {
        "net": matfile.struct_value({
            "layers": matfile.cell([layer_to_mat(layer, i)
                                    for i, layer in enumerate(net.layers)]),
            "meta": matfile.to_mat(net.get("meta") or Struct(), "meta"),
        }, "net"),
        "state": matfile.to_mat(state, "state"),
        # written last: a file cut short anywhere lacks a readable 'stats'
        "stats": matfile.struct_value({name: _struct_array(stats[name], f"stats.{name}")
                                 for name in ("train", "val")}, "stats"),
    }
    matfile.write_mat(path, variables, FNAME)


def _check_storable(net):
    """Fail before training, not after the first epoch, when the network
    cannot be written to a checkpoint (a custom layer's callables, a field
    name MATLAB rejects, an object without a MATLAB counterpart)."""
    try:
        for i, layer in enumerate(net.layers):
            layer_to_mat(layer, i)
        matfile.to_mat(net.get("meta") or Struct(), "meta")
    except ValueError as exc:
        raise ValueError(f"{FNAME}: the network cannot be saved in the checkpoints "
                         f"net-epoch-N.mat: {exc}") from exc


def _struct_array(records, where):
    """A ``1 x E`` MATLAB struct array of per-epoch statistics (fields
    missing in an epoch are NaN)."""
    names = []
    for record in records:
        names.extend(name for name in record if name not in names)
    if not records or not names:
        return np.zeros((0, 0))
    out = np.empty((1, len(records)), dtype=[(name, object) for name in names])
    for e, record in enumerate(records):
        for name in names:
            out[name][0, e] = matfile.to_mat(record.get(name, math.nan), f"{where}.{name}")
    return out


def _resume(exp_dir, last):
    """``(epoch, (net, state, stats))`` of the newest checkpoint that reads
    completely, trying ``last``, ``last - 1``, ...; ``(0, None)`` if none."""
    for epoch in range(last, 0, -1):
        path = _checkpoint_path(exp_dir, epoch)
        if not os.path.exists(path):
            continue
        try:
            return epoch, _load_checkpoint(path)
        except Exception as exc:  # any reading failure: try the previous epoch
            warnings.warn(f"{FNAME}: skipping checkpoint {path}, which cannot be read "
                          f"completely ({exc}); trying the previous epoch", RuntimeWarning,
                          stacklevel=3)
    warnings.warn(f"{FNAME}: no readable checkpoint in {exp_dir}; training from the start",
                  RuntimeWarning, stacklevel=3)
    return 0, None


def _load_checkpoint(path):
    variables = matfile.read_mat(path)
    missing = [name for name in ("net", "state", "stats") if name not in variables]
    if missing:
        raise ValueError(f"{path} was only partially saved: no {', '.join(missing)}")
    net = vl_simplenn_tidy(network_from_variables({"net": variables["net"]}, path))
    for layer in net.layers:
        layer["weights"] = [_c_order(w) for w in layer.get("weights") or []]
    state = matfile.to_python(variables["state"], "state")
    state = Struct(state) if isinstance(state, Mapping) else Struct()
    state.solverState = _solver_states(state.get("solverState"), net.layers, path)
    if not isinstance(state.get("stats"), Mapping):
        state.stats = Struct()
    raw = matfile.to_python(variables["stats"], "stats")
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: 'stats' is not a struct")
    stats = Struct(train=_epoch_records(raw.get("train")), val=_epoch_records(raw.get("val")))
    return net, state, stats


def _c_order(value):
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value)
    return value


def _solver_states(saved, layers, path):
    """The per-layer, per-weight solver states read back (MATLAB stores a
    cell of numbers as a numeric array, and a 1 x 1 cell as its item)."""
    if saved is None or (isinstance(saved, list) and not saved):
        return []
    if not isinstance(saved, list) or len(saved) != len(layers):
        raise ValueError(f"{path}: state.solverState does not match the {len(layers)} layers")
    states = []
    for layer, item in zip(layers, saved):
        count = len(layer["weights"])
        if count == 0:
            states.append([])
            continue
        if isinstance(item, list) and len(item) == count:
            values = item
        elif count == 1 and not isinstance(item, list):
            values = [item]
        elif isinstance(item, np.ndarray) and item.dtype.kind == "f" and item.size == count:
            values = [float(v) for v in item.ravel(order="F")]
        else:
            raise ValueError(f"{path}: state.solverState of layer '{layer.get('name')}' does "
                             f"not match its {count} weights")
        states.append([_state_value(v) for v in values])
    return states


def _state_value(value):
    if isinstance(value, Mapping):
        return Struct({k: _c_order(v) for k, v in value.items()})
    return _c_order(value)


def _epoch_records(value):
    if value is None:
        return []
    records = [value] if isinstance(value, Mapping) else list(value)
    out = []
    for record in records:
        out.append(Struct({name: (int(v) if name == "num" else float(v))
                           if isinstance(v, (int, float, np.number)) else v
                           for name, v in record.items()}))
    return out


def _per_statistic(records):
    """Per-epoch records -> one list per statistic (NaN where missing)."""
    names = []
    for record in records:
        names.extend(name for name in record if name not in names)
    return Struct({name: [record.get(name, math.nan) for record in records] for name in names})


# --------------------------------------------------------------------------
# output: progress lines and figures

class _Printer:
    def __init__(self, verbose):
        self.verbose = verbose

    def __call__(self, text):
        if self.verbose:
            print(text, flush=True)


class _Progress:
    """One line per batch: a tqdm bar when tqdm is installed, plain text
    otherwise (MatConvNet's format)."""

    def __init__(self, say, mode, epoch, total):
        self.say, self.mode, self.epoch, self.total = say, mode, epoch, total
        self.bar = None
        if say.verbose and total > 0:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=f"{mode}: epoch {epoch:02d}", unit="batch",
                                file=sys.stdout, leave=True, dynamic_ncols=True)

    def update(self, batch, average_speed, current_speed, stats):
        if not self.say.verbose:
            return
        values = " ".join(f"{name}: {stats[name]:.3f}" for name in sorted(stats)
                          if name not in ("num", "time"))
        text = f"{average_speed:.1f} ({current_speed:.1f}) Hz {values}"
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        else:
            self.say(f"{self.mode}: epoch {self.epoch:02d}: {batch:3d}/{self.total:3d}: {text}")

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _figure_tools(notice, say):
    """matplotlib's Figure and Agg canvas, or ``None`` (with a one-time notice)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        if notice[0]:
            say(f"{FNAME}: matplotlib is not installed; no figures are drawn "
                "(pip install matplotlib)")
            notice[0] = False
        return None
    return Figure, FigureCanvasAgg


def _save_figure(figure, canvas_class, path):
    """Render with the Agg canvas and replace ``path`` atomically."""
    canvas_class(figure)
    folder = os.path.dirname(path) or "."
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                         dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            figure.savefig(stream, format="png")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def _plot_statistics(stats, path, notice, say):
    """One panel per statistic (not ``num`` or ``time``), train and val."""
    tools = _figure_tools(notice, say)
    if tools is None:
        return
    figure_class, canvas_class = tools
    from matplotlib.ticker import MaxNLocator

    curves = {mode: _per_statistic(stats[mode]) for mode in ("train", "val")}
    plots = sorted({name for mode in curves for name in curves[mode]} - {"num", "time"})
    if not plots:
        return
    figure = figure_class(figsize=(4 * len(plots), 3.5), layout="constrained")
    for k, name in enumerate(plots):
        axes = figure.add_subplot(1, len(plots), k + 1)
        for mode in ("train", "val"):
            if name in curves[mode]:
                values = curves[mode][name]
                axes.plot(range(1, len(values) + 1), values, "o-", label=mode)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(name)
        axes.legend()
        axes.grid(True)
    _save_figure(figure, canvas_class, path)


def _plot_diagnostics(res, path):
    """MatConvNet's diagnostics figure: relative update sizes and output
    powers of the conv layers."""
    tools = _figure_tools([False], None)
    if tools is None:
        return
    figure_class, canvas_class = tools
    records = [r.stats for r in res if isinstance(r.stats, Mapping) and "variation" in r.stats]
    variation = [v for r in records for v in r.variation]
    labels = [name for r in records for name in r.label]
    power = [math.sqrt(r.power) if r.power == r.power else math.nan for r in records]
    figure = figure_class(figsize=(10, 8), layout="constrained")
    axes = figure.add_subplot(2, 2, 1)
    axes.barh(range(len(variation)), variation)
    axes.set(yticks=range(len(variation)), yticklabels=labels, xscale="log", xlim=(1e-5, 1),
             title="Variation")
    axes.invert_yaxis()
    axes.grid(True)
    axes = figure.add_subplot(2, 2, 2)
    axes.barh(range(len(power)), power)
    axes.set(yticks=range(len(power)), yticklabels=[r.powerLabel for r in records],
             xscale="log", xlim=(1e-5, 1e5), title="Power")
    axes.invert_yaxis()
    axes.grid(True)
    scores = res[-2].x
    if scores is not None:
        axes = figure.add_subplot(2, 2, 3)
        axes.plot(np.squeeze(np.asarray(_host(scores))))
    _save_figure(figure, canvas_class, path)
