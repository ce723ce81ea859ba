"""Data-parallel training over MPI (simplenn.training.comm, cnn_train).

The runs with several workers are real: ``mpiexec -n 2`` on
tests/_mpi_worker.py, skipped only when mpi4py or mpiexec is missing
(``pip install 'vlnn[mpi]'`` installs both).
"""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from simplenn.struct import Struct
from simplenn.training import (ParamSlot, allreduce_derivatives, combine_statistics,
                               update_parameters, world_size_from_environment)
from simplenn.training import comm as comm_module
from simplenn.training.device import Device, dropout_generator

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "_mpi_worker.py")
TIMEOUT_S = 90


def mpiexec_command(n):
    """``mpiexec`` for ``n`` local processes, or skip the test."""
    try:
        import importlib.util

        if importlib.util.find_spec("mpi4py") is None:
            pytest.skip("mpi4py is not installed (pip install 'vlnn[mpi]')")
    except ImportError:
        pytest.skip("mpi4py is not installed")
    exe = shutil.which("mpiexec")
    if exe is None:
        pytest.skip("mpiexec is not installed (pip install 'vlnn[mpi]')")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    if "open mpi" in (version.stdout + version.stderr).lower():
        return [exe, "--oversubscribe", "-n", str(n)]
    return [exe, "-launcher", "fork", "-n", str(n)]  # MPICH's hydra


def launch(n, config, timeout=TIMEOUT_S):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    start = time.perf_counter()
    done = subprocess.run(mpiexec_command(n) + [sys.executable, WORKER, json.dumps(config)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    return done, time.perf_counter() - start


def load(folder, rank):
    with np.load(os.path.join(folder, f"out-{rank}.npz")) as data:
        return {name: data[name] for name in data.files}


def assert_close(a, b, rtol=1e-5, atol=1e-6):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol, err_msg=name)


@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mpi") / "two"
    done, _ = launch(2, {"exp": str(folder), "epochs": 2, "sub": 2, "verbose": True})
    assert done.returncode == 0, done.stderr
    return folder, done


def test_two_workers_equal_one_process(two_worker_run, tmp_path):
    folder, _ = two_worker_run
    sys.path.insert(0, HERE)
    try:
        import _mpi_worker
    finally:
        sys.path.remove(HERE)
    _mpi_worker.run({"exp": str(tmp_path), "epochs": 2, "sub": 2})
    single = load(tmp_path, 0)
    rank0, rank1 = load(folder, 0), load(folder, 1)
    for name in rank0:
        np.testing.assert_array_equal(rank0[name], rank1[name], err_msg=name)
    assert_close(rank0, single)  # float32: only the summation order differs
    assert rank0["val_num"].tolist() == [8, 8]  # the workers' counts summed


def test_two_workers_of_cnn_train_dag_equal_one_process(tmp_path):
    sys.path.insert(0, HERE)
    try:
        import _mpi_worker
    finally:
        sys.path.remove(HERE)
    config = {"epochs": 2, "sub": 2, "trainer": "dagnn"}
    done, _ = launch(2, {"exp": str(tmp_path / "two"), **config})
    assert done.returncode == 0, done.stderr
    _mpi_worker.run({"exp": str(tmp_path), **config})
    single = load(tmp_path, 0)
    rank0, rank1 = load(tmp_path / "two", 0), load(tmp_path / "two", 1)
    for name in rank0:
        np.testing.assert_array_equal(rank0[name], rank1[name], err_msg=name)
    assert_close(rank0, single)
    assert sorted(os.listdir(tmp_path / "two")) == ["net-epoch-1.mat", "net-epoch-2.mat",
                                                   "out-0.npz", "out-1.npz"]


def test_one_set_of_checkpoints_and_progress_from_worker_0(two_worker_run):
    folder, done = two_worker_run
    assert sorted(os.listdir(folder)) == ["net-epoch-1.mat", "net-epoch-2.mat", "out-0.npz",
                                          "out-1.npz"]
    out = done.stdout + done.stderr
    assert out.count("train: epoch 01") >= 1 and out.count("layer|") == 1


def test_two_workers_continue_from_epoch_1(two_worker_run, tmp_path):
    folder, _ = two_worker_run
    shutil.copy(folder / "net-epoch-1.mat", tmp_path / "net-epoch-1.mat")
    done, _ = launch(2, {"exp": str(tmp_path), "epochs": 2, "sub": 2, "verbose": True})
    assert done.returncode == 0, done.stderr
    assert (done.stdout + done.stderr).count("resuming by loading epoch 1") == 1
    resumed = load(tmp_path, 0)
    uninterrupted = load(folder, 0)
    for name in resumed:
        if name.startswith("w"):
            np.testing.assert_allclose(resumed[name], uninterrupted[name], rtol=1e-6,
                                       atol=1e-7, err_msg=name)
    np.testing.assert_allclose(resumed["val_top1err"], uninterrupted["val_top1err"])


def test_a_failing_worker_stops_every_worker(tmp_path):
    done, seconds = launch(2, {"exp": str(tmp_path), "epochs": 3, "fail_rank": 1}, timeout=60)
    assert done.returncode != 0
    assert seconds < 30
    assert "worker 1 of 2 failed" in done.stderr
    assert "get_batch broke on purpose" in done.stderr
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".npz")]


# --------------------------------------------------------------------------
# one process, and the pieces, without MPI

def test_one_process_never_imports_mpi4py(tmp_path):
    code = ("import sys, json; sys.path.insert(0, sys.argv[1]); import _mpi_worker; "
            "_mpi_worker.run(json.loads(sys.argv[2])); "
            "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'; print('ok')")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI", "OMPI_", "MV2_", "PMIX", "SLURM"))}
    env["PYTHONPATH"] = ROOT
    done = subprocess.run([sys.executable, "-c", code, HERE,
                           json.dumps({"exp": str(tmp_path), "epochs": 1})],
                          capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_several_workers_without_mpi4py_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(comm_module, "_WORLD", None)
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(RuntimeError, match=r"one of 2 started by an MPI launcher.*mpi4py "
                                           r"is not installed"):
        comm_module.get_communicator("cnn_train")
    monkeypatch.setattr(comm_module, "_WORLD", None)


@pytest.mark.parametrize("environ, size", [
    ({}, 1),
    ({"PMI_SIZE": "4", "PMI_RANK": "1"}, 4),
    ({"OMPI_COMM_WORLD_SIZE": "3"}, 3),
    ({"MV2_COMM_WORLD_SIZE": "2"}, 2),
    ({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "8"}, 8),
    ({"SLURM_NTASKS": "8"}, 1),  # a batch script itself is one process
])
def test_world_size_from_the_launcher(environ, size):
    assert world_size_from_environment(environ) == size


def test_gpus_must_name_one_gpu_per_worker():
    with pytest.raises(ValueError, match="one GPU per worker"):
        Device([1, 2, 3], "cnn_train", rank=0, size=2)
    assert not Device(None, "cnn_train", rank=1, size=2).gpu


class FakeWorkers:
    """Worker 0 of two whose peer contributed ``other`` (one array per
    exchanged array): the sum an MPI allreduce would return."""

    rank, size = 0, 2

    def __init__(self, other):
        self.other = other
        self.calls = 0

    def allreduce_arrays(self, arrays):
        self.calls += 1
        return [a + b for a, b in zip(arrays, self.other)]


def test_allreduce_sums_in_one_buffer_and_keeps_missing_derivatives():
    w = [np.ones((2, 2), np.float32), np.ones(3, np.float32), np.ones(1, np.float32)]
    slots = [ParamSlot(w, 0, np.full((2, 2), 1, np.float32)),
             ParamSlot(w, 1, None),  # this worker had no images
             ParamSlot(w, 2, None)]  # nobody computed this one
    peer = [np.full((2, 2), 2, np.float32), np.full(3, 5, np.float32), np.zeros(1, np.float32),
            np.array([1, 1, 0], np.float32)]
    comm = FakeWorkers(peer)
    allreduce_derivatives(slots, comm)
    assert comm.calls == 1
    np.testing.assert_array_equal(slots[0].der, np.full((2, 2), 3))
    np.testing.assert_array_equal(slots[1].der, np.full(3, 5))
    assert slots[2].der is None


def test_bnorm_moments_average_over_the_workers():
    # MatConvNet sums the moments' derivatives of the workers and divides by
    # numWorkers: with rate 1 the moments become the workers' average
    moments = [np.zeros((2, 2))]
    mine, theirs = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[3.0, 2.0], [1.0, 0.0]])
    slot = ParamSlot(moments, 0, mine, method="average", learning_rate=1.0, der_scale=1 / 2)
    allreduce_derivatives([slot], FakeWorkers([theirs, np.ones(1)]))
    update_parameters([slot], 0.1, Struct(weightDecay=0.0, momentum=0.9,
                                          nesterovUpdate=False, solver=None))
    np.testing.assert_allclose(moments[0], (mine + theirs) / 2)


def test_statistics_are_averaged_by_images():
    a = {"train": Struct(objective=1.0, top1err=0.5, time=2.0, num=30),
         "val": Struct(objective=2.0, time=1.0, num=0)}
    b = {"train": Struct(objective=3.0, top1err=0.0, time=4.0, num=10),
         "val": Struct(objective=4.0, time=3.0, num=10)}
    out = combine_statistics([a, b])
    assert out.train.num == 40 and out.val.num == 10
    assert out.train.objective == pytest.approx((30 * 1 + 10 * 3) / 40)
    assert out.train.top1err == pytest.approx(15 / 40)
    assert out.train.time == pytest.approx((60 + 40) / 40)
    assert out.val.objective == pytest.approx(4.0)


def test_dropout_streams_per_worker():
    epoch = np.random.default_rng(7)
    assert dropout_generator(epoch, 7, 0) is epoch  # one process: the epoch's generator
    one, two = dropout_generator(epoch, 7, 1), dropout_generator(epoch, 7, 2)
    draws = [g.random(4) for g in (one, two, dropout_generator(epoch, 8, 1))]
    assert not np.allclose(draws[0], draws[1]) and not np.allclose(draws[0], draws[2])
    np.testing.assert_array_equal(draws[0], dropout_generator(epoch, 7, 1).random(4))
