"""The epoch loop shared by cnn_train and cnn_train_dag.

:class:`Trainer` runs MatConvNet's loop (``examples/cnn_train.m``,
``cnn_train_dag.m``): per epoch, seeded shuffles, the learning-rate
schedule, the training images in batches of interleaved sub-batches with
one parameter update per batch, the validation images, then the
per-epoch extensions (checkpoint, figure) and ``postEpochFn``.  What a
network type does differently is a *model* object the loop calls:

``model.net``
    The network (handed to ``postEpochFn``).
``model.initial_solver_state()``
    The solver state before the first update (nested lists of ``0``).
``model.begin(state, device, mode)`` / ``model.end(state, device, mode)``
    Before and after an epoch's training or validation (GPU moves).
``model.reset_statistics()``, ``model.statistics(num, elapsed)``
    Start the epoch's statistics; their running averages over the
    ``num`` images this worker saw so far in ``elapsed`` seconds (a
    mapping name -> value; ``num`` and ``time`` are set after).
``model.evaluate(data, train, accumulate, hold_on, device, params)``
    Forward (and backward when ``train``) on what ``get_batch`` returned,
    adding the parameter derivatives to the previous sub-batch's when
    ``accumulate``, and adding to the statistics.
``model.param_slots(state, params, evaluated)``
    The :class:`~simplenn.training.update.ParamSlot` of every parameter
    after a batch (``der`` ``None`` everywhere when this worker evaluated
    nothing in the batch).
``model.after_update(state, params, slots, rates)``
    Optional per-batch work after the update (diagnostics).
``model.load_checkpoint(path)``, ``model.checkpoint_variables(state, stats)``
    Read a checkpoint (returns ``(net_part, state, stats)``); the MATLAB
    variables of one.
``model.snapshot(net_part)``, ``model.restore(snapshot)``
    What worker 0 sends so that every worker starts from the same
    network (``net_part`` is the loaded checkpoint's or ``None``).

With several workers (:mod:`simplenn.training.comm`), worker ``r`` of
``P`` takes ``subset[t + r + s*P : batch_end : numSubBatches*P]`` of the
batch starting at ``t`` (sub-batch ``s``), the parameter derivatives are
summed across workers in one allreduce per batch, the statistics are
combined at the end of each epoch (averages weighted by ``num``, ``num``
summed), and only worker 0 prints, plots and writes checkpoints.
"""

import contextlib
import cProfile
import io
import math
import os
import pstats
import time
from collections.abc import Mapping

import numpy as np

from vlnn._backend import get_array_module

from ..struct import Struct
from .checkpoints import (checkpoint_path, last_checkpoint, remove_stale_temporaries, resume,
                          write_checkpoint)
from .comm import get_communicator
from .device import Device, dropout_generator, seeded_dropout
from .options import learning_rates
from .output import Printer, Progress, plot_statistics
from .update import update_parameters

__all__ = ["Trainer", "combine_statistics", "allreduce_derivatives"]


class Trainer:
    """MatConvNet's training loop over a model (see the module's help).

    Parameters
    ----------
    model : object
        The network-type specific part (cnn_train's or cnn_train_dag's).
    imdb, get_batch
        The image database and ``data = get_batch(imdb, batch)``.
    opts : Struct
        Parsed options (:func:`~simplenn.training.options.parse_training_options`)
        with ``train`` and ``val`` already 0-based position arrays.
    fname : str
        The trainer's name, for messages.
    comm : communicator, optional
        Default :func:`~simplenn.training.comm.get_communicator`.
    """

    def __init__(self, model, imdb, get_batch, opts, fname, comm=None):
        self.model, self.imdb, self.get_batch = model, imdb, get_batch
        self.opts, self.fname = opts, fname
        self.comm = get_communicator(fname) if comm is None else comm
        self.lead = self.comm.rank == 0
        self.say = Printer(opts.verbose and self.lead)
        self.device = Device(opts.gpus, fname, self.comm.rank, self.comm.size)
        self.exp_dir = os.fspath(opts.expDir)

    # ------------------------------------------------------------------
    def run(self):
        """Train; returns ``(state, stats)``, ``stats`` holding one record
        per epoch in ``stats.train`` and ``stats.val``."""
        try:
            with _cores_shared(getattr(self.comm, "local_size", 1)):
                return self._run()
        except BaseException as exc:
            self.comm.abort_on_error(exc, self.fname)
            raise

    def _run(self):
        o, model, comm = self.opts, self.model, self.comm
        training = o.train.size > 0
        stats = Struct(train=[], val=[])
        state = None
        start = 0
        net_part = None
        if self.lead:
            os.makedirs(self.exp_dir, exist_ok=True)
            remove_stale_temporaries(self.exp_dir)
            start = last_checkpoint(self.exp_dir) if o["continue"] else 0
            if start >= 1:
                start, loaded = resume(self.exp_dir, start, model.load_checkpoint, self.fname)
                if loaded is not None:
                    self.say(f"{self.fname}: resuming by loading epoch {start}")
                    net_part, state, stats = loaded
                else:
                    start = 0
        if comm.size > 1:
            # every worker starts from worker 0's weights, solver state and epoch
            payload = comm.bcast((start, model.snapshot(net_part), state, stats)
                                 if self.lead else None)
            start, snapshot, state, stats = payload
            model.restore(snapshot)
        elif net_part is not None:
            model.restore(model.snapshot(net_part))

        notice = [o.plotStatistics or o.get("plotDiagnostics", False)]
        learning_rate = o.learningRate
        for epoch in range(start + 1, o.numEpochs + 1):
            # Seed from the epoch and randomSeed: a restarted run reproduces
            # the shuffles (and dropout masks) of an uninterrupted one.
            generator = np.random.default_rng(o.randomSeed + epoch)
            params = Struct(o)
            params.epoch = epoch
            params.learningRate = float(learning_rate[min(epoch, learning_rate.size) - 1])
            order = o.train[generator.permutation(o.train.size)]
            params.train = order[:min(o.epochSize, order.size)] \
                if math.isfinite(o.epochSize) else order
            params.val = o.val[generator.permutation(o.val.size)]
            params.imdb = self.imdb
            params.getBatch = self.get_batch
            params.numWorkers = comm.size

            dropout = dropout_generator(generator, o.randomSeed + epoch, comm.rank)
            gpu_seed = o.randomSeed + epoch + 100003 * comm.rank
            with self.device, seeded_dropout(dropout, self.device, gpu_seed):
                state = self.process_epoch(state, params, "train")
                state = self.process_epoch(state, params, "val")

            if comm.size > 1:
                state.stats = combine_statistics(comm.allgather(dict(state.stats)))
            stats.train.append(state.stats.train)
            stats.val.append(state.stats.val)
            if self.lead:
                if training:
                    write_checkpoint(checkpoint_path(self.exp_dir, epoch),
                                     model.checkpoint_variables(state, stats), self.fname)
                if o.plotStatistics:
                    plot_statistics(stats, os.path.join(self.exp_dir, "net-train.png"),
                                    notice, self.say, self.fname)

            if o.postEpochFn is not None:
                value = o.postEpochFn(model.net, params, state)
                if value is not None:
                    learning_rate = learning_rates(value, self.fname)
                    if np.all(learning_rate == 0):
                        break
        return state, stats

    # ------------------------------------------------------------------
    def process_epoch(self, state, params, mode):
        """Train or validate (``mode``) on the epoch's images."""
        model, device, comm = self.model, self.device, self.comm
        if state is None:
            state = Struct()
        if not state.get("solverState"):
            # every solver starts at 0 (MatConvNet's momentum initialisation)
            state.solverState = model.initial_solver_state()
        if "stats" not in state or not isinstance(state.stats, Mapping):
            state.stats = Struct()
        if device.gpu:
            state.solverState = device.move_states(state.solverState)
        model.begin(state, device, mode)

        profiler = cProfile.Profile() if params.profile else None
        if profiler is not None:
            profiler.enable()

        subset = params[mode]
        train = mode == "train"
        count = subset.size
        batch_size_opt, num_sub = params.batchSize, params.numSubBatches
        workers, rank = comm.size, comm.rank
        stride = num_sub * workers
        num = 0
        stats = Struct(num=0, time=0.0)  # something to return even for no images
        adjust_time = 0.0
        model.reset_statistics()
        num_batches = -(-count // batch_size_opt)
        progress = Progress(self.say, mode, params.epoch, num_batches)
        get_batch, imdb = self.get_batch, self.imdb
        start = time.perf_counter()
        for t in range(0, count, batch_size_opt):
            batch_size = min(batch_size_opt, count - t)
            batch_end = min(t + batch_size_opt, count)
            evaluated = False
            for s in range(num_sub):
                batch = subset[t + rank + s * workers:batch_end:stride]
                num += batch.size
                if batch.size == 0:
                    continue
                data = get_batch(imdb, batch)
                if params.prefetch:
                    if s == num_sub - 1:
                        next_batch = subset[t + batch_size_opt + rank:
                                            min(t + 2 * batch_size_opt, count):stride]
                    else:
                        next_batch = subset[t + rank + (s + 1) * workers:batch_end:stride]
                    if next_batch.size:
                        get_batch(imdb, next_batch)
                model.evaluate(data, train, evaluated, s < num_sub - 1, device, params)
                evaluated = True

            if train:
                slots = model.param_slots(state, params, evaluated)
                if workers > 1:
                    allreduce_derivatives(slots, comm)
                rates = update_parameters(slots, params.learningRate, params)
                model.after_update(state, params, slots, rates)

            # statistics: running averages over the images seen so far
            elapsed = time.perf_counter() - start + adjust_time
            batch_time = elapsed - stats.time
            stats = Struct(model.statistics(num, elapsed))
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
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
            if "prof" not in state or not isinstance(state.prof, Mapping):
                state.prof = Struct()
            state.prof[mode] = text.getvalue()
            self.say(f"{self.fname}: profile of {mode} epoch {params.epoch}:\n{text.getvalue()}")
        if not params.saveSolverState:
            state.solverState = []
        elif device.gpu:
            state.solverState = device.gather_states(state.solverState)
        model.end(state, device, mode)
        return state


def allreduce_derivatives(slots, comm):
    """Sum the slots' derivatives over the workers in one flat buffer.

    A worker that computed nothing for a parameter (no images in the
    batch) contributes zeros; a parameter no worker computed keeps
    ``der = None`` (a count per slot travels in the same buffer).
    """
    present = [slot for slot in slots if slot.value is not None]
    if not present:
        return
    arrays = []
    for slot in present:
        if slot.der is None:
            xp = get_array_module(slot.value)
            arrays.append(xp.zeros(np.shape(slot.value), dtype=slot.value.dtype))
        else:
            arrays.append(slot.der)
    # the counts in the buffer's own precision (small integers are exact)
    dtype = np.result_type(*[a.dtype for a in arrays])
    arrays.append(np.array([slot.der is not None for slot in present], dtype=dtype))
    summed = comm.allreduce_arrays(arrays)
    counts = summed[-1]
    for slot, der, computed in zip(present, summed[:-1], counts):
        slot.der = der if computed > 0 else None


def combine_statistics(per_worker):
    """MatConvNet's ``accumulateStats``: for ``train`` and ``val``, every
    statistic averaged over the workers weighted by their ``num``, and
    ``num`` summed."""
    combined = Struct()
    for mode in ("train", "val"):
        records = [worker.get(mode) for worker in per_worker if worker.get(mode) is not None]
        if not records:
            continue
        total = sum(int(record.get("num", 0)) for record in records)
        out = Struct()
        for name in records[0]:
            if name == "num":
                continue
            if total > 0:
                out[name] = sum(float(record.get(name, 0.0)) * int(record.get("num", 0))
                                for record in records) / total
            else:
                out[name] = float(records[0][name])
        out.num = total
        combined[mode] = out
    return combined


@contextlib.contextmanager
def _cores_shared(workers):
    """With ``workers`` processes on this machine (MPI), give each its
    share of the cores: the blocks' threads (:func:`vlnn.set_num_threads`)
    and the BLAS threads are held at ``cores // workers`` (at least 1)
    while training runs, then restored.  Without that, every worker would
    start as many threads as there are cores and the workers would fight
    for them.  One worker: nothing changes."""
    if workers <= 1:
        yield
        return
    import vlnn
    from vlnn._threads import blas_threads

    share = max(1, (os.cpu_count() or 1) // workers)
    previous = vlnn.set_num_threads(min(share, vlnn.get_num_threads()))
    try:
        with blas_threads(share):
            yield
    finally:
        vlnn.set_num_threads(previous)
