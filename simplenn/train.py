"""cnn_train: MatConvNet's SimpleNN trainer (``examples/cnn_train.m``, HEAD).

Stochastic gradient descent with momentum (or one of the solvers of
:mod:`simplenn.solvers`) over a SimpleNN network, epoch by epoch, with a
checkpoint ``net-epoch-N.mat`` after every epoch from which training
resumes.  The epoch loop, the update, the checkpoints, the progress and
the figures are the shared engine of :mod:`simplenn.training`; this module
holds what is SimpleNN's: the ``vl_simplenn`` call, the per-layer
multipliers and the error functions.  The arithmetic is MatConvNet's
final code (see MATCONVNET_SEMANTICS.md, sections 27, 28 and 31).
"""

import math
import os
import re
from collections.abc import Mapping

import numpy as np

from vlnn._backend import get_array_module, shape4

from . import matfile
from .display import vl_simplenn_display
from .io import layer_to_mat, network_from_variables
from .move import vl_simplenn_move
from .simplenn import vl_simplenn
from .struct import Struct
from .tidy import vl_simplenn_tidy
from .training.checkpoints import solver_states
from .training import (COMMON_OPTIONS, ParamSlot, Printer, Trainer, figure_tools,
                       get_communicator, image_subset, parse_training_options,
                       per_statistic, save_figure, stats_from_variable, stats_variable,
                       to_host)

__all__ = ["cnn_train", "error_multiclass", "error_binary", "error_none"]

FNAME = "cnn_train"

OPTIONS = {
    **COMMON_OPTIONS,
    "conserveMemory": True,
    "backPropDepth": math.inf,
    "sync": False,
    "cudnn": True,
    "errorFunction": "multiclass",
    "errorLabels": None,
    "plotDiagnostics": False,
}

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
        and back to the CPU after it.  Several GPUs need one process each
        (``mpiexec -n P``, see Notes): worker ``r`` uses ``gpus[r]``, and
        the list must have ``P`` entries.
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
        MatConvNet's multi-GPU exchange file; accepted and unused (the
        workers exchange through MPI).
    profile : bool, default False
        Profile each epoch's training and validation with :mod:`cProfile`;
        the report is printed and kept in ``state.prof.train`` and
        ``state.prof.val`` (saved in the checkpoint).
    parameterServer : mapping, default ``{'method': 'mmap', 'prefix': 'mcn'}``
        MatConvNet's multi-GPU parameter server settings; accepted and
        unused (the workers exchange through MPI).
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
    in the MAT layout of :func:`~simplenn.io.save_net` (uncompressed): ``net`` (a
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

    Several workers.  Started by an MPI launcher with ``P > 1`` processes
    (``mpiexec -n P python3 script.py``; detected from the launcher's
    environment, see :mod:`simplenn.training.comm`), cnn_train runs as
    MatConvNet's multi-GPU ``spmd`` code: ``batchSize`` is the global
    batch, worker ``r`` (0-based) takes the images
    ``subset[t + r + s*P : batch_end : numSubBatches*P]`` of sub-batch
    ``s`` of the batch starting at ``t``, the parameter derivatives are
    summed across the workers before every update (one allreduce of a
    flat buffer) and divided by ``numWorkers = P * numSubBatches`` in the
    rules above, bnorm moments included.  Worker 0's network and solver
    state (or the checkpoint it resumes from) are sent to every worker at
    the start; only worker 0 prints, draws and writes checkpoints; the
    returned statistics (and the checkpoints') are the workers' combined
    (averages weighted by ``num``, ``num`` summed).  Worker ``r > 0``
    draws its dropout masks from ``numpy.random.default_rng([randomSeed +
    epoch, r])``.  An exception in one worker stops all of them
    (``MPI.COMM_WORLD.Abort``) after printing the failing rank and the
    error.  mpi4py is imported only then (``pip install 'vlnn[mpi]'``).

    Differences from MatConvNet: ``memoryMapFile`` and ``parameterServer``
    are accepted and unused (MPI replaces them); the checkpoints are not
    compressed (network weights do not compress); the training figure is a
    PNG (``net-train.png``), not a PDF;
    the statistics are accumulated in double precision; ``prefetch`` skips
    empty batches; ``'binary'`` lays labels with one element per image
    along the images (MATLAB's ``bsxfun`` would cross a ``1 x N`` label
    row with the ``1 x 1 x K x N`` scores); ``errorLabels`` must be valid
    MATLAB field names; ``verbose`` is ours.  As MATLAB's ``rng(randomSeed +
    epoch)`` also drives ``rand`` in dropout, the epoch's generator is
    installed with :func:`vlnn.set_random_generator` while the epoch runs
    (the caller's is restored after), so that dropout networks resume
    exactly too.  Hidden temporary files
    ``.net-epoch-N.mat.*.tmp`` left in ``expDir`` by a run killed while
    writing a checkpoint are removed when training starts.

    Examples
    --------
    >>> def get_batch(imdb, batch):
    ...     return imdb['images']['data'][:, :, :, batch], imdb['images']['labels'][batch]
    >>> net, info = cnn_train(net, imdb, get_batch, expDir='data/mnist',
    ...                       batchSize=100, numEpochs=20, learningRate=0.001,
    ...                       val=np.flatnonzero(imdb['images']['set'] == 3))
    >>> info.val.top1err[-1]
    """
    o = parse_training_options(FNAME, args, opts, OPTIONS)
    if not callable(get_batch):
        raise TypeError(f"{FNAME}: get_batch must be callable, got {type(get_batch).__name__}")
    o.train = image_subset(o.train, imdb, 1, "train", FNAME)
    o.val = image_subset(o.val, imdb, 2, "val", FNAME)
    comm = get_communicator(FNAME)
    say = Printer(o.verbose and comm.rank == 0)

    net = vl_simplenn_tidy(net)
    layers = net.layers
    if len(layers) < 2:
        raise ValueError(f"{FNAME}: the network needs at least two layers (the scores and the "
                         f"loss), got {len(layers)}")
    layers[-2]["precious"] = True  # keep the predictions, used for the errors
    for layer in layers:
        # own lists: the updates replace weights of the copy only
        layer["weights"] = list(layer.get("weights") or [])
    if say.verbose:
        vl_simplenn_display(net, batchSize=o.batchSize)

    if o.train.size > 0:
        for layer in layers:
            count = len(layer["weights"])
            if "learningRate" not in layer:
                layer["learningRate"] = np.ones((1, count))
            if "weightDecay" not in layer:
                layer["weightDecay"] = np.ones((1, count))
        _check_storable(net)
    o.errorFunction, o.errorLabels = _error_function(o.errorFunction, o.errorLabels)

    model = SimpleNNModel(net, o, comm.rank == 0)
    trainer = Trainer(model, imdb, get_batch, o, FNAME, comm)
    _, stats = trainer.run()
    return model.net, Struct(train=per_statistic(stats.train), val=per_statistic(stats.val))


# --------------------------------------------------------------------------
# what the engine calls: SimpleNN's evaluation, parameters and checkpoints

class SimpleNNModel:
    """The SimpleNN side of :class:`~simplenn.training.Trainer`."""

    def __init__(self, net, opts, lead=True):
        self.net = net
        self.opts = opts
        self.lead = lead
        self.res = None
        self.error = None
        self.table = None

    def initial_solver_state(self):
        return [[0] * len(layer["weights"]) for layer in self.net.layers]

    def begin(self, state, device, mode):
        if device.gpu:
            self.net = vl_simplenn_move(self.net, "gpu")
        self.res = None
        self.table = None  # made at the first update of the epoch

    def end(self, state, device, mode):
        self.res = None
        if device.gpu:
            self.net = vl_simplenn_move(self.net, "cpu")
            self.net.layers[-1]["class"] = to_host(self.net.layers[-1].get("class"))

    def reset_statistics(self):
        self.error = None

    def statistics(self, num, elapsed):
        if self.error is None or num == 0:
            averages = np.zeros(len(self.opts.errorLabels) + 1)
        else:
            averages = self.error / num
        stats = Struct(objective=float(averages[0]))
        for i, name in enumerate(self.opts.errorLabels):
            stats[name] = float(averages[i + 1])
        return stats

    def evaluate(self, data, train, accumulate, hold_on, device, params):
        images, labels = data
        images = device.to_device(images)
        self.net.layers[-1]["class"] = device.to_device(labels)
        self.res = vl_simplenn(self.net, images, 1.0 if train else None, self.res,
                               accumulate=accumulate,
                               mode="normal" if train else "test",
                               conserveMemory=params.conserveMemory,
                               backPropDepth=params.backPropDepth,
                               sync=params.sync,
                               cudnn=params.cudnn)
        counts = _sub_batch_counts(params, labels, self.res, images)
        if self.error is not None and counts.size != self.error.size:
            raise ValueError(f"{FNAME}: the error function returned {counts.size - 1} counts "
                             f"for this sub-batch but {self.error.size - 1} before")
        self.error = counts if self.error is None else self.error + counts

    def param_slots(self, state, params, evaluated):
        """One slot per weight, last layer first (MatConvNet's order)."""
        scale = 1.0 / (params.numSubBatches * params.numWorkers)
        layers, res = self.net.layers, self.res
        if self.table is None:
            self.table = _update_table(layers)
        slots = []
        for l, j, method, rate, decay in self.table:
            der = None
            if evaluated and res is not None:
                derivatives = res[l].dzdw
                if derivatives and j < len(derivatives):
                    der = derivatives[j]
            slots.append(ParamSlot(layers[l]["weights"], j, der, method, rate, decay, scale,
                                   state.solverState[l], j))
        return slots

    def after_update(self, state, params, slots, rates):
        if not params.plotDiagnostics:
            return
        for (l, j, method, _, _), slot, rate in zip(self.table, slots, rates):
            if slot.der is not None and method == "gradient":
                _diagnose(self.net.layers[l], l, j, rate, self.res, state)
        if self.lead:
            _plot_diagnostics(self.res, os.path.join(os.fspath(params.expDir),
                                                     "net-diagnostics.png"))

    def checkpoint_variables(self, state, stats):
        net = self.net
        return {
            "net": matfile.struct_value({
                "layers": matfile.cell([layer_to_mat(layer, i)
                                        for i, layer in enumerate(net.layers)]),
                "meta": matfile.to_mat(net.get("meta") or Struct(), "meta"),
            }, "net"),
            "state": matfile.to_mat(state, "state"),
            # written last: a file cut short anywhere lacks a readable 'stats'
            "stats": stats_variable(stats),
        }

    def load_checkpoint(self, path):
        return _load_checkpoint(path)

    def snapshot(self, net_part):
        if net_part is not None:
            return {"net": net_part}
        return {"weights": [list(layer["weights"]) for layer in self.net.layers]}

    def restore(self, snapshot):
        if "net" in snapshot:
            self.net = snapshot["net"]
        else:
            for layer, weights in zip(self.net.layers, snapshot["weights"]):
                layer["weights"] = list(weights)


def _update_table(layers):
    """``(l, j, method, learningRate, weightDecay)`` of every weight, last
    layer and last weight first; bnorm moments (``j == 2``) are a moving
    average with their layer rate."""
    table = []
    for l in range(len(layers) - 1, -1, -1):
        layer = layers[l]
        weights = layer["weights"]
        for j in range(len(weights) - 1, -1, -1):
            if weights[j] is None:
                continue  # e.g. a conv layer without biases
            rate = _multiplier(layer, "learningRate", j, l)
            if j == 2 and layer.get("type") == "bnorm":
                table.append((l, j, "average", rate, 0.0))
            else:
                table.append((l, j, "gradient", rate, _multiplier(layer, "weightDecay", j, l)))
    return table


def _multiplier(layer, name, j, index):
    values = layer.get(name)
    values = np.asarray(to_host(values), dtype=np.float64).ravel(order="F") \
        if values is not None else np.zeros(0)
    if j >= values.size:
        raise ValueError(f"{FNAME}: layer {index} (0-based, '{layer.get('name')}') has "
                         f"{len(layer['weights'])} weights but its {name} has {values.size} "
                         f"entries ({layer.get(name)!r})")
    return float(values[j])


def _sub_batch_counts(params, labels, res, images):
    """``[objective, errors...]`` summed over the sub-batch, in double."""
    loss = np.asarray(to_host(res[-1].x), dtype=np.float64)
    scores = res[-2].x if res[-2].x is not None else images
    count = shape4(scores.shape)[3]
    errors = params.errorFunction(params, labels, res)
    errors = np.asarray(to_host(errors), dtype=np.float64).ravel(order="F")
    if errors.size < len(params.errorLabels):
        raise ValueError(f"{FNAME}: the error function returned {errors.size} counts but "
                         f"errorLabels names {len(params.errorLabels)}: "
                         f"{list(params.errorLabels)}")
    return np.concatenate([[np.sum(count * loss)], errors])


# --------------------------------------------------------------------------
# error functions (MatConvNet's error_multiclass, error_binary, error_none)

def error_multiclass(params, labels, res):
    """Top-1 and top-5 errors (summed) of the scores ``res[-2].x``."""
    predictions = _scores(res)
    # 1-based class indices by decreasing score (ties: lower index first,
    # as MATLAB's stable sort)
    order = np.argsort(-predictions, axis=2, kind="stable") + 1
    labels = np.asarray(to_host(labels))
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
    labels = np.asarray(to_host(labels))
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
    x = np.asarray(to_host(x))
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
# checkpoints

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
    stats = stats_from_variable(variables["stats"], path)
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
        values = solver_states(item, count, path)
        if values is None:
            raise ValueError(f"{path}: state.solverState of layer '{layer.get('name')}' does "
                             f"not match its {count} weights")
        states.append(values)
    return states


# --------------------------------------------------------------------------
# diagnostics (plotDiagnostics)

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


def _plot_diagnostics(res, path):
    """MatConvNet's diagnostics figure: relative update sizes and output
    powers of the conv layers."""
    tools = figure_tools([False], None, FNAME)
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
        axes.plot(np.squeeze(np.asarray(to_host(scores))))
    save_figure(figure, canvas_class, path)
