#!/usr/bin/env python
"""Benchmark data-parallel training over MPI on this machine.

Times the MNIST LeNet training step of ``benchmarks/bench_train.py``
(global batch of 100 28 x 28 x 1 float32 images; ``vl_simplenn`` forward
and backward, then the SGD-momentum update of the training engine) in two
set-ups that use the same cores:

* ``1 worker x 2 threads``: one process, vlnn's two convolution threads
  and OpenBLAS at its default;
* ``2 workers x 1 thread``: ``mpiexec -n 2``, each worker on its 50 images
  with one convolution thread and ``OPENBLAS_NUM_THREADS=1``, the
  derivatives summed by the engine's allreduce (one flat float32 buffer of
  all 431,080 parameters, 1.7 MB, per step) before the update.

For each, the median step time and images/s; for the MPI run also the
median time of the allreduce per step (after a barrier, so without the
wait for the slower worker) and its share of the step.  Each
worker times ``--steps`` steps after ``--warmup`` untimed ones; a step of
the 2-worker run is the slower worker's.

Usage::

    python benchmarks/bench_mpi.py [--steps 20] [--warmup 3] [--batch-norm]

Needs mpi4py and mpiexec (``pip install 'vlnn[mpi]'``).  Launched with
``--worker`` it is one worker (what the driver runs).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))


def worker(args):
    """One worker: time the step on this worker's share; rank 0 prints JSON."""
    import vlnn

    # a worker that shares the cores with another keeps to its share (what
    # cnn_train does under mpiexec)
    vlnn.set_num_threads(args.threads)
    from bench_train import lenet
    from simplenn import vl_simplenn
    from simplenn.struct import Struct
    from simplenn.training import (ParamSlot, allreduce_derivatives, get_communicator,
                                   update_parameters)

    comm = get_communicator("bench_mpi")
    rng = np.random.default_rng(0)
    images = rng.standard_normal((28, 28, 1, args.batch_size), dtype=np.float32) * 80
    labels = rng.integers(1, 11, size=args.batch_size).astype(np.float64)
    share = slice(comm.rank, args.batch_size, comm.size)  # MatConvNet's interleaved share
    images, labels = np.ascontiguousarray(images[:, :, :, share]), labels[share]
    net = lenet(args.batch_norm, np.random.default_rng(0))
    net.layers[-1]["class"] = labels
    velocity = [[0] * len(layer.get("weights") or []) for layer in net.layers]
    opts = Struct(weightDecay=0.0005, momentum=0.9, nesterovUpdate=False, solver=None,
                  solverOpts=None)
    res = None
    step_s, reduce_s = [], []
    for k in range(args.warmup + args.steps):
        if comm.size > 1:
            comm.barrier()
        start = time.perf_counter()
        res = vl_simplenn(net, images, 1.0, res, mode="normal")
        slots = []
        for l, layer in enumerate(net.layers):
            weights = layer.get("weights") or []
            for j, w in enumerate(weights):
                if w is None:
                    continue
                bnorm_moments = layer["type"] == "bnorm" and j == 2
                slots.append(ParamSlot(weights, j, res[l].dzdw[j],
                                       "average" if bnorm_moments else "gradient",
                                       0.05 if bnorm_moments else 1.0,
                                       0.0 if layer["type"] == "bnorm" else 1.0,
                                       1.0 / comm.size, velocity[l], j))
        if comm.size > 1:
            comm.barrier()  # the allreduce alone, not the wait for the slower worker
        before = time.perf_counter()
        if comm.size > 1:
            allreduce_derivatives(slots, comm)
        after = time.perf_counter()
        update_parameters(slots, 0.001, opts)
        elapsed = time.perf_counter() - start
        if k >= args.warmup:
            step_s.append(elapsed)
            reduce_s.append(after - before)
    steps = comm.allgather(step_s)
    slowest = np.max(np.array(steps), axis=0)  # a step ends when the slower worker is done
    if comm.rank == 0:
        parameters = sum(int(np.size(w)) for layer in net.layers
                         for w in (layer.get("weights") or []) if w is not None)
        print(json.dumps({"step_s": float(np.median(slowest)),
                          "reduce_s": float(np.median(reduce_s)),
                          "parameters": parameters}))


def launch(command, threads, args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    if threads == 1:
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cmd = command + [sys.executable, os.path.abspath(__file__), "--worker", "--threads",
                     str(threads), "--steps", str(args.steps), "--warmup", str(args.warmup),
                     "--batch-size", str(args.batch_size)] + \
        (["--batch-norm"] if args.batch_norm else [])
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="timed steps (20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (3)")
    ap.add_argument("--batch-size", type=int, default=100, help="global batch (100)")
    ap.add_argument("--batch-norm", action="store_true", help="LeNet with bnorm layers")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("mpiexec not found: pip install 'vlnn[mpi]'")
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True)
    flags = ["--oversubscribe"] if "open mpi" in (version.stdout + version.stderr).lower() \
        else ["-launcher", "fork"]
    one = launch([], 2, args)
    two = launch([mpiexec] + flags + ["-n", "2"], 1, args)
    n = args.batch_size
    name = "LeNet" + (" + bnorm" if args.batch_norm else "")
    print(f"{name}, global batch {n}, {os.cpu_count()} cores, "
          f"{one['parameters']:,} parameters ({4 * one['parameters'] / 2**20:.2f} MiB float32 "
          f"allreduced per step)")
    print(f"{'':<24}{'step ms':>9}{'img/s':>9}{'allreduce ms':>14}{'share':>8}")
    print(f"{'1 worker x 2 threads':<24}{1e3 * one['step_s']:>9.1f}{n / one['step_s']:>9.0f}"
          f"{'-':>14}{'-':>8}")
    print(f"{'2 workers x 1 thread':<24}{1e3 * two['step_s']:>9.1f}{n / two['step_s']:>9.0f}"
          f"{1e3 * two['reduce_s']:>14.2f}{100 * two['reduce_s'] / two['step_s']:>7.1f}%")
    print("median over the timed steps; a 2-worker step is the slower worker's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
