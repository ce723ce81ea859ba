"""Workers of a data-parallel run: who am I, and how we exchange.

A communicator hides how the workers talk (ChainerMN's model): its rank
and size, one allreduce of all the parameter derivatives packed into a
single flat buffer per step, a broadcast of the initial state from
worker 0, and the combination of the epoch statistics.  A single process
gets :class:`SingleProcess`, which does nothing and never imports
mpi4py; a process started by an MPI launcher with more than one process
gets :class:`MPICommunicator`.

The launcher is recognised from its environment, before mpi4py is
imported: ``OMPI_COMM_WORLD_SIZE`` (Open MPI), ``PMI_SIZE`` (MPICH,
Intel MPI, and Slurm's ``srun --mpi=pmi2``), ``MV2_COMM_WORLD_SIZE``
(MVAPICH), ``PMIX_SIZE``, or Slurm's ``SLURM_STEP_NUM_TASKS`` inside a
job step (``srun``, where ``SLURM_PROCID`` is set).
"""

import os
import sys
import traceback

import numpy as np

from vlnn._backend import get_array_module, is_device_array

from .device import to_host

__all__ = ["world_size_from_environment", "get_communicator", "SingleProcess",
           "MPICommunicator"]

_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")


def world_size_from_environment(environ=None):
    """The number of processes the MPI launcher started (1 without one)."""
    environ = os.environ if environ is None else environ
    for name in _SIZE_VARIABLES:
        value = environ.get(name)
        if value:
            return _positive(value, name)
    if environ.get("SLURM_PROCID") is not None and environ.get("SLURM_STEP_NUM_TASKS"):
        return _positive(environ["SLURM_STEP_NUM_TASKS"], "SLURM_STEP_NUM_TASKS")
    return 1


def _positive(value, name):
    try:
        size = int(value)
    except ValueError:
        raise RuntimeError(f"the MPI launcher's {name}={value!r} is not a number of "
                           "processes") from None
    return max(size, 1)


_WORLD = None


def get_communicator(fname="cnn_train"):
    """The communicator of this process (made once, then shared)."""
    global _WORLD
    if _WORLD is None:
        size = world_size_from_environment()
        if size <= 1:
            _WORLD = SingleProcess()
        else:
            try:
                from mpi4py import MPI
            except ImportError:
                raise RuntimeError(
                    f"{fname}: this process is one of {size} started by an MPI launcher, "
                    "but mpi4py is not installed, so the workers cannot cooperate (they "
                    "would train {size} separate copies racing on the same checkpoints); "
                    "pip install 'vlnn[mpi]' (mpi4py and an MPI runtime), or run one "
                    "process".replace("{size}", str(size))) from None
            _WORLD = MPICommunicator(MPI)
    return _WORLD


class SingleProcess:
    """One worker: every exchange is the identity."""

    rank = 0
    size = 1
    local_size = 1

    def allreduce_arrays(self, arrays):
        return arrays

    def bcast(self, obj):
        return obj

    def allgather(self, obj):
        return [obj]

    def barrier(self):
        pass

    def abort_on_error(self, exc, fname):
        pass


class MPICommunicator:
    """The workers of ``MPI.COMM_WORLD``.

    An exception that escapes the training loop in one worker ends every
    worker (:meth:`abort_on_error`: the failing rank and the error are
    printed to stderr, then ``MPI.COMM_WORLD.Abort(1)``), and so does an
    exception that reaches the top level of a worker's script (an
    ``excepthook``): no worker is left waiting in a collective for a peer
    that is gone.
    """

    def __init__(self, mpi):
        self.MPI = mpi
        self.comm = mpi.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        # the workers sharing this machine's cores (and memory) with this one
        self.local_size = self.comm.Split_type(mpi.COMM_TYPE_SHARED).Get_size()
        self.allreduce_seconds = 0.0  # time spent in allreduce_arrays (benchmarks)
        self.allreduce_calls = 0
        previous = sys.excepthook

        def excepthook(kind, value, tb):
            sys.stderr.write(f"worker {self.rank} of {self.size} failed:\n"
                             + "".join(traceback.format_exception(kind, value, tb)))
            sys.stderr.flush()
            if self.size > 1:
                self.comm.Abort(1)
            previous(kind, value, tb)

        sys.excepthook = excepthook

    def allreduce_arrays(self, arrays):
        """Sum each array over the workers, all in one ``Allreduce`` of a
        flat buffer (float64 when the arrays mix precisions); returns new
        arrays with the original shapes, dtypes and devices."""
        import time

        start = time.perf_counter()
        hosts = [np.asarray(to_host(a)) for a in arrays]
        dtype = np.result_type(*[h.dtype for h in hosts]) if hosts else np.float64
        sizes = [h.size for h in hosts]
        buffer = np.empty(sum(sizes), dtype=dtype)
        offset = 0
        for host, size in zip(hosts, sizes):
            buffer[offset:offset + size] = host.ravel()
            offset += size
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
        out = []
        offset = 0
        for original, host, size in zip(arrays, hosts, sizes):
            summed = buffer[offset:offset + size].reshape(host.shape).astype(host.dtype,
                                                                              copy=False)
            offset += size
            if is_device_array(original):
                summed = get_array_module(original).asarray(summed)
            out.append(summed)
        self.allreduce_seconds += time.perf_counter() - start
        self.allreduce_calls += 1
        return out

    def bcast(self, obj):
        """Worker 0's ``obj`` on every worker (pickled)."""
        return self.comm.bcast(obj, root=0)

    def allgather(self, obj):
        """Every worker's ``obj``, in rank order."""
        return self.comm.allgather(obj)

    def barrier(self):
        self.comm.Barrier()

    def abort_on_error(self, exc, fname):
        """Print which worker failed and why, then end every worker."""
        sys.stderr.write(f"{fname}: worker {self.rank} of {self.size} failed, stopping all "
                         f"workers:\n" + "".join(traceback.format_exception(
                             type(exc), exc, exc.__traceback__)))
        sys.stderr.flush()
        self.comm.Abort(1)

