"""cnn_train_dag: MatConvNet's DagNN trainer (``examples/cnn_train_dag.m``, HEAD).

The epoch loop, the update, checkpoints, progress, figures and the MPI
workers are the shared engine of :mod:`simplenn.training` (the same as
``cnn_train``'s); this module holds what is DagNN's: ``net.eval`` with
named inputs and ``derOutputs``, the parameters' ``trainMethod``,
``learningRate`` and ``weightDecay``, the statistics of the ``Loss``
layers, and checkpoints holding the DagNN's saved form.
"""

from collections.abc import Mapping

import numpy as np

from simplenn import matfile
from simplenn.struct import Struct
from simplenn.training.checkpoints import solver_states
from simplenn.training import (COMMON_OPTIONS, ParamSlot, Trainer, get_communicator,
                               image_subset, parse_training_options, per_statistic,
                               stats_from_variable, stats_variable)

from .dagnn import DagNN
from .io import saved_form, saved_variables
from .loss import Loss

__all__ = ["cnn_train_dag", "extract_stats"]

FNAME = "cnn_train_dag"

OPTIONS = {
    **COMMON_OPTIONS,
    "derOutputs": ["objective", 1],
    "extractStatsFn": None,
}

_METHODS = ("gradient", "average", "notrain")


def extract_stats(stats, net):
    """MatConvNet's default ``extractStatsFn``: the running ``average`` of
    every :class:`dagnn.Loss` layer (``ignoreAverage`` false), named by the
    layer's output variable, added to ``stats``."""
    for layer in net.layers:
        block = layer.block
        if isinstance(block, Loss) and not block.ignoreAverage:
            stats[layer.outputs[0]] = float(np.asarray(block.average))
    return stats


def cnn_train_dag(net, imdb, get_batch, *args, **opts):
    """Train a DagNN with stochastic gradient descent.

    ``net, stats = cnn_train_dag(net, imdb, get_batch, **opts)`` is
    MatConvNet's ``cnn_train_dag``: the loop, options, checkpoints and
    ``continue`` of :func:`simplenn.cnn_train`, for a :class:`dagnn.DagNN`.
    Each batch is evaluated by ``net.eval(inputs, derOutputs)`` in
    ``numSubBatches`` interleaved sub-batches whose parameter derivatives
    are summed (``net.accumulateParamDers``), then every parameter is
    updated by its ``trainMethod``; the validation images are evaluated
    with ``net.mode = 'test'``.

    Parameters
    ----------
    net : DagNN
        The network, trained in place (MatConvNet's DagNN is a handle
        object) and returned; when training resumes from a checkpoint the
        returned network is the one read from it.
    imdb : mapping or object
        The image database, passed untouched to ``get_batch``; only
        ``imdb.images.set`` is read, for the default ``train`` and ``val``.
    get_batch : callable
        ``inputs = get_batch(imdb, batch)``: the network inputs for the
        **0-based** image positions ``batch``, as ``net.eval`` takes them
        (MatConvNet's flat list ``['input', images, 'label', labels]`` or
        a dict).  Arrays are moved to the GPU when ``gpus`` is set.
    *args
        MATLAB-style ``'Name', value`` option pairs.

    Other Parameters
    ----------------
    expDir, continue, batchSize, numSubBatches, train, val, gpus, prefetch, epochSize, numEpochs, learningRate, weightDecay, solver, solverOpts, momentum, saveSolverState, nesterovUpdate, randomSeed, memoryMapFile, profile, parameterServer, plotStatistics, postEpochFn, verbose
        As :func:`simplenn.cnn_train` (same defaults: ``expDir``
        ``'data/exp'``, ``continue`` True, ``batchSize`` 256,
        ``numSubBatches`` 1, ``numEpochs`` 300, ``learningRate`` 0.001,
        ``weightDecay`` 0.0005, ``momentum`` 0.9, ``randomSeed`` 0, ...).
    derOutputs : list or dict, default ``['objective', 1]``
        The derivatives that start back-propagation, as ``net.eval``'s
        ``derOutputs``; needed when training.
    extractStatsFn : callable, default :func:`extract_stats`
        ``stats = f(stats, net)`` after every batch: adds the statistics to
        report to ``stats`` (which holds ``num`` and ``time``); the default
        takes every ``Loss`` layer's running average, named by its output
        variable.

    Returns
    -------
    net : DagNN
        The trained network, on the CPU.
    stats : Struct
        ``stats.train`` and ``stats.val``: one list per statistic (the
        names ``extractStatsFn`` gives, ``num``, ``time``) with one value
        per epoch, as :func:`simplenn.cnn_train`'s ``info``.

    Raises
    ------
    TypeError
        An unknown option, a ``get_batch``, ``extractStatsFn``, ``solver``
        or ``postEpochFn`` that is not callable, ``net`` not a DagNN.
    ValueError
        A bad option value (named), empty ``derOutputs`` when training, a
        parameter whose ``trainMethod`` is not ``'gradient'``,
        ``'average'`` or ``'notrain'`` (named), missing ``imdb.images.set``
        when ``train`` or ``val`` is not given.

    Notes
    -----
    The update of parameter ``p`` after each batch, with ``g`` its
    derivative summed over the sub-batches (and workers) and
    ``numWorkers = numSubBatches * P`` (``P`` MPI workers, see
    :func:`simplenn.cnn_train`):

    * ``'average'`` (bnorm moments), with ``a = p.learningRate``:
      ``w = (1 - a) * w + (a / numWorkers / p.fanout) * g``;
    * ``'gradient'``, with ``lr = learningRate * p.learningRate`` and
      ``decay = weightDecay * p.weightDecay``, only when ``lr > 0 or decay
      > 0``: ``g = g / numWorkers + decay * w``, then SGD with momentum (or
      ``solver``) exactly as in :func:`simplenn.cnn_train`;
    * ``'notrain'``: never changes.

    Checkpoints ``net-epoch-N.mat`` hold MatConvNet's variables ``net``
    (the DagNN's saved form, ``net.saveobj()``; :func:`dagnn.load_net`
    reads the file as a model), ``state`` (``solverState``, one entry per
    parameter; ``stats`` of the epoch) and ``stats``; written atomically,
    resumed from the newest complete one, stale temporaries removed, as
    :func:`simplenn.cnn_train` does.  Unlike MatConvNet's, the checkpoints
    keep each parameter's ``trainMethod`` (a field of ``net.params`` that
    ``loadobj``, MatConvNet's too, sets back), so a ``'notrain'`` parameter
    stays frozen after resuming.  The running averages of the ``Loss``
    layers are reset after every epoch's training and validation
    (``net.reset()``).
    """
    o = parse_training_options(FNAME, args, opts, OPTIONS)
    if not isinstance(net, DagNN):
        raise TypeError(f"{FNAME}: net must be a dagnn.DagNN, got {type(net).__name__} "
                        "(convert a SimpleNN network with dagnn.DagNN.fromSimpleNN)")
    if not callable(get_batch):
        raise TypeError(f"{FNAME}: get_batch must be callable, got {type(get_batch).__name__}")
    if o.extractStatsFn is None:
        o.extractStatsFn = extract_stats
    elif not callable(o.extractStatsFn):
        raise TypeError(f"{FNAME}: extractStatsFn must be callable, got "
                        f"{type(o.extractStatsFn).__name__}")
    o.train = image_subset(o.train, imdb, 1, "train", FNAME)
    o.val = image_subset(o.val, imdb, 2, "val", FNAME)
    if o.train.size > 0 and (o.derOutputs is None or len(o.derOutputs) == 0):
        raise ValueError(f"{FNAME}: derOutputs must be specified when training")

    model = DagNNModel(net, o.extractStatsFn)
    trainer = Trainer(model, imdb, get_batch, o, FNAME, get_communicator(FNAME))
    _, stats = trainer.run()
    return model.net, Struct(train=per_statistic(stats.train), val=per_statistic(stats.val))


class DagNNModel:
    """The DagNN side of :class:`simplenn.training.Trainer`."""

    def __init__(self, net, extract=extract_stats):
        self.net = net
        self.extract = extract

    def initial_solver_state(self):
        return [0] * len(self.net.params)

    def begin(self, state, device, mode):
        self.net.reset()
        if device.gpu:
            self.net.move("gpu")

    def end(self, state, device, mode):
        self.net.reset()
        if device.gpu:
            self.net.move("cpu")

    def reset_statistics(self):
        pass  # the Loss layers' averages start at 0 after net.reset()

    def statistics(self, num, elapsed):
        return self.extract(Struct(num=num, time=elapsed), self.net)

    def evaluate(self, data, train, accumulate, hold_on, device, params):
        inputs = _to_device(data, device)
        net = self.net
        if train:
            net.mode = "normal"
            net.accumulateParamDers = accumulate
            net.eval(inputs, params.derOutputs, holdOn=hold_on)
        else:
            net.mode = "test"
            net.eval(inputs)

    def param_slots(self, state, params, evaluated):
        scale = 1.0 / (params.numSubBatches * params.numWorkers)
        slots = []
        for p, param in enumerate(self.net.params):
            method = param.trainMethod
            if method not in _METHODS:
                raise ValueError(f"{FNAME}: unknown training method {method!r} for parameter "
                                 f"'{param.name}' (use 'gradient', 'average' or 'notrain')")
            der_scale = scale / param.fanout if method == "average" else scale
            slots.append(ParamSlot(param, "value", param.der if evaluated else None, method,
                                   _number(param.learningRate), _number(param.weightDecay),
                                   der_scale, state.solverState, p))
        return slots

    def after_update(self, state, params, slots, rates):
        pass

    def checkpoint_variables(self, state, stats):
        saved = saved_variables(self.net, FNAME)
        # the params with their trainMethod, which saveobj drops and
        # loadobj (MatConvNet's too) sets back: a 'notrain' stays so
        records = [dict(record, trainMethod=param.trainMethod)
                   for record, param in zip(self.net.saveobj().params, self.net.params)]
        saved["params"] = matfile.struct_array(
            records, "params", FNAME,
            fields=("name", "value", "learningRate", "weightDecay", "trainMethod"))
        return {
            "net": matfile.struct_value(saved, "net", FNAME),
            "state": matfile.to_mat(state, "state", FNAME),
            # written last: a file cut short anywhere lacks a readable 'stats'
            "stats": stats_variable(stats),
        }

    def load_checkpoint(self, path):
        variables = matfile.read_mat(path)
        missing = [name for name in ("net", "state", "stats") if name not in variables]
        if missing:
            raise ValueError(f"{path} was only partially saved: no {', '.join(missing)}")
        saved = variables["net"]
        if not (isinstance(saved, matfile.MatStruct) and len(saved.records) == 1):
            raise ValueError(f"{path}: 'net' is not a DagNN's saved form")
        net = DagNN.loadobj(saved_form(saved.records[0], path))
        for param in net.params:
            # MATLAB's column-major arrays in C order: the sums of the
            # blocks then run in the order of an uninterrupted run
            if isinstance(param.value, np.ndarray):
                param.value = np.ascontiguousarray(param.value)
        state = matfile.to_python(variables["state"], "state")
        state = Struct(state) if isinstance(state, Mapping) else Struct()
        state.solverState = _solver_states(state.get("solverState"), len(net.params), path)
        if not isinstance(state.get("stats"), Mapping):
            state.stats = Struct()
        return net, state, stats_from_variable(variables["stats"], path)

    def snapshot(self, net_part):
        if net_part is not None:
            return {"saved": net_part.saveobj(),
                    "trainMethod": [param.trainMethod for param in net_part.params]}
        return {"values": [param.value for param in self.net.params]}

    def restore(self, snapshot):
        if "saved" in snapshot:
            self.net = DagNN.loadobj(snapshot["saved"])
            for param, method in zip(self.net.params, snapshot["trainMethod"]):
                param.trainMethod = method
        else:
            for param, value in zip(self.net.params, snapshot["values"]):
                param.value = value



def _number(value):
    values = np.asarray(value, dtype=np.float64).ravel()
    return float(values[0]) if values.size else 0.0


def _to_device(data, device):
    if not device.gpu:
        return data
    if isinstance(data, Mapping):
        return {name: device.to_device(value) for name, value in data.items()}
    items = list(data)
    return [item if k % 2 == 0 else device.to_device(item) for k, item in enumerate(items)]


def _solver_states(saved, count, path):
    """One solver state per parameter read back (MATLAB stores a cell of
    numbers as a numeric array, and a 1 x 1 cell as its item)."""
    if saved is None or (isinstance(saved, list) and not saved):
        return []
    values = solver_states(saved, count, path)
    if values is None:
        raise ValueError(f"{path}: state.solverState does not match the {count} parameters")
    return values

