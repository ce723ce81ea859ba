"""Where a worker computes (the CPU or one GPU) and its random streams."""

import contextlib
from collections.abc import Mapping

import numpy as np

from vlnn._backend import gpu_module, to_host
from vlnn._options import as_int

from ..struct import Struct

__all__ = ["Device", "to_host", "seeded_dropout", "dropout_generator"]


class Device:
    """The CPU, or one GPU (CuPy) selected by MatConvNet's 1-based number.

    ``gpus`` is the trainer's option; with several workers (``rank`` of
    ``size``), worker ``r`` takes ``gpus[r]`` and the list must have one
    entry per worker.
    """

    def __init__(self, gpus, fname, rank=0, size=1):
        ids = [] if gpus is None else list(np.asarray(gpus, dtype=np.float64).ravel())
        if size > 1 and ids:
            if len(ids) != size:
                raise ValueError(f"{fname}: with {size} workers, gpus must list one GPU per "
                                 f"worker (worker r uses gpus[r]), got {gpus!r}")
            ids = [ids[rank]]
        elif len(ids) > 1:
            raise ValueError(f"{fname}: training on several GPUs needs one process per GPU "
                             f"(mpiexec -n {len(ids)} ...); give at most one GPU in gpus to a "
                             f"single process, got {gpus!r}")
        self.gpu = bool(ids)
        self._context = None
        if self.gpu:
            number = as_int(ids[0], fname, "gpus", minimum=1)
            self.cupy = gpu_module(f"{fname}: gpus={gpus!r}")
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
        """An array moved to this device (numbers and strings unchanged)."""
        if not self.gpu or value is None or isinstance(value, (str, bytes)):
            return value
        if isinstance(value, (int, float, np.number)):
            return value
        return self.cupy.asarray(value)

    def map_states(self, states, move):
        """Apply ``move`` to every array of a nested list of solver states
        (numbers, arrays, or records of arrays)."""
        if isinstance(states, list):
            return [self.map_states(item, move) for item in states]
        if isinstance(states, Mapping):
            return Struct({k: move(v) for k, v in states.items()})
        return move(states)

    def move_states(self, states):
        return self.map_states(states, lambda v: self.cupy.asarray(v)
                               if isinstance(v, np.ndarray) else v)

    def gather_states(self, states):
        return self.map_states(states, to_host)


def dropout_generator(epoch_generator, seed, rank):
    """The generator of worker ``rank``'s dropout masks in an epoch.

    Worker 0 (and a single process) draws from the epoch's generator, as
    MATLAB's ``rng(epoch + randomSeed)`` also drives dropout in
    MatConvNet; worker ``r > 0`` from its own stream seeded by
    ``(randomSeed + epoch, r)``, so the workers' masks differ.
    """
    if rank == 0:
        return epoch_generator
    return np.random.default_rng([seed, rank])


@contextlib.contextmanager
def seeded_dropout(generator, device, seed):
    """Let ``generator`` draw the blocks' random numbers (dropout masks)
    while the network runs, through :func:`vlnn.set_random_generator`;
    the caller's generator is restored after.  Data on the GPU draw from a
    CuPy state that vlnn seeds from ``generator``.  The one place that
    knows how the trainers seed the blocks."""
    import vlnn

    previous = vlnn.set_random_generator(generator)
    try:
        yield
    finally:
        vlnn.set_random_generator(previous)
