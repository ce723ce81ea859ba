"""The training engine shared by the trainers (simplenn.training)."""

import math
import os
import time

import numpy as np
import pytest
import scipy.io

from simplenn import cnn_train, solvers
from simplenn.io import load_net
from simplenn.struct import Struct
from simplenn.training import (ParamSlot, Trainer, parse_training_options,
                               remove_stale_temporaries, update_parameters)
from simplenn.training.options import COMMON_OPTIONS

QUIET = {"verbose": False, "plotStatistics": False}


def sgd(**changes):
    return Struct({"weightDecay": 0.01, "momentum": 0.9, "nesterovUpdate": False,
                   "solver": None, "solverOpts": None, **changes})


# --------------------------------------------------------------------------
# the update rules

@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_update(nesterov):
    rng = np.random.default_rng(0)
    w, v, g = rng.standard_normal(5), rng.standard_normal(5), rng.standard_normal(5)
    values, states = [w.copy()], [v.copy()]
    slot = ParamSlot(values, 0, g, learning_rate=2.0, weight_decay=3.0, der_scale=0.25,
                     state_holder=states, state_key=0)
    update_parameters([slot], 0.1, sgd(nesterovUpdate=nesterov))
    grad = 0.25 * g + (0.01 * 3.0) * w
    velocity = 0.9 * v - grad
    delta = 0.9 * velocity - grad if nesterov else velocity
    np.testing.assert_allclose(states[0], velocity)
    np.testing.assert_allclose(values[0], w + (0.1 * 2.0) * delta)


def test_solver_average_notrain_and_skipped_slots():
    rng = np.random.default_rng(1)
    w = [rng.standard_normal(3) for _ in range(5)]
    g = [rng.standard_normal(3) for _ in range(5)]
    values = [x.copy() for x in w]
    states = [0] * 5
    slots = [ParamSlot(values, 0, g[0], der_scale=0.5, state_holder=states, state_key=0),
             ParamSlot(values, 1, g[1], method="average", learning_rate=0.2, der_scale=0.5),
             ParamSlot(values, 2, g[2], method="notrain"),
             ParamSlot(values, 3, None, state_holder=states, state_key=3),
             ParamSlot(values, 4, g[4], learning_rate=0.0, weight_decay=0.0,
                       state_holder=states, state_key=4)]
    opts = sgd(solver=solvers.adam, solverOpts=solvers.adam())
    rates = update_parameters(slots, 0.01, opts)
    assert rates == [0.01, 0.002, 0.01, 0.01, 0.0]
    expected, state = solvers.adam(w[0], 0, 0.5 * g[0] + 0.01 * w[0], solvers.adam(), 0.01)
    np.testing.assert_allclose(values[0], expected)
    np.testing.assert_allclose(states[0].m, state.m)
    np.testing.assert_allclose(values[1], 0.8 * w[1] + 0.1 * g[1])
    for k in (2, 3, 4):  # notrain, no derivative, rate and decay 0
        np.testing.assert_array_equal(values[k], w[k])
    assert states[3] == 0 and states[4] == 0


# --------------------------------------------------------------------------
# the loop over a model that is not SimpleNN: batches, shares, statistics

class RecordingModel:
    """A least-squares model ``y = a * x`` that records what it is given."""

    def __init__(self):
        self.net = Struct(a=[np.zeros(1)])
        self.batches = []
        self.sums = 0.0
        self.der = None

    def initial_solver_state(self):
        return [0]

    def begin(self, state, device, mode):
        pass

    def end(self, state, device, mode):
        pass

    def reset_statistics(self):
        self.sums = 0.0

    def statistics(self, num, elapsed):
        return {"objective": self.sums / num if num else 0.0}

    def evaluate(self, data, train, accumulate, hold_on, device, params):
        x, y = data
        self.batches.append((params.epoch, train, accumulate, hold_on, tuple(x.astype(int))))
        residual = self.net.a[0] * x - y
        self.sums += float(np.sum(residual ** 2))
        der = np.array([2 * np.sum(residual * x)])
        self.der = der if not accumulate else self.der + der

    def param_slots(self, state, params, evaluated):
        return [ParamSlot(self.net.a, 0, self.der if evaluated else None, weight_decay=0.0,
                          der_scale=1 / (params.batchSize), state_holder=state.solverState,
                          state_key=0)]

    def after_update(self, state, params, slots, rates):
        pass

    def checkpoint_variables(self, state, stats):
        return {"net": {"a": self.net.a[0]}, "stats": {"n": float(len(stats.train))}}

    def load_checkpoint(self, path):
        raise AssertionError("not resumed in these tests")

    def snapshot(self, net_part):
        return {"a": list(self.net.a)}

    def restore(self, snapshot):
        self.net.a[:] = snapshot["a"]


class PeerOf2:
    """Worker ``rank`` of two whose peer sends the same derivatives."""

    size = 2

    def __init__(self, rank):
        self.rank = rank

    def allreduce_arrays(self, arrays):
        return [2 * a for a in arrays]

    def bcast(self, obj):
        # what worker 0 sends at the start: epoch 0, its weights, no state
        return (0, {"a": [np.zeros(1)]}, None, Struct(train=[], val=[])) if obj is None \
            else obj

    def allgather(self, obj):
        return [obj, obj]

    def abort_on_error(self, exc, fname):
        pass


def run_recording(tmp_path, comm=None, **options):
    x = np.arange(20, dtype=np.float64)
    imdb = {"x": x, "y": 3 * x}
    opts = parse_training_options("test", (), {"expDir": str(tmp_path), "numEpochs": 1,
                                               "batchSize": 8, "learningRate": 0.001,
                                               "momentum": 0.0, **QUIET, **options},
                                  COMMON_OPTIONS)
    opts.train = np.arange(14)
    opts.val = np.arange(14, 20)
    model = RecordingModel()
    trainer = Trainer(model, imdb, lambda db, batch: (db["x"][batch], db["y"][batch]), opts,
                      "test", comm)
    state, stats = trainer.run()
    return model, state, stats


def test_sub_batches_are_interleaved_and_every_image_is_seen_once(tmp_path):
    model, _, stats = run_recording(tmp_path, numSubBatches=3)
    train = [b for b in model.batches if b[1]]
    order = np.random.default_rng(0 + 1).permutation(14)  # the epoch's shuffle
    expected = [tuple(order[t + s:min(t + 8, 14):3]) for t in (0, 8) for s in range(3)]
    assert [b[4] for b in train] == expected
    assert [b[2] for b in train] == [False, True, True] * 2  # accumulate after the first
    assert [b[3] for b in train] == [True, True, False] * 2  # holdOn but the last
    assert stats.train[0].num == 14 and stats.val[0].num == 6
    assert os.path.exists(tmp_path / "net-epoch-1.mat")


def test_worker_share_of_each_batch(tmp_path):
    model, _, stats = run_recording(tmp_path, comm=PeerOf2(1), numSubBatches=2)
    train = [b[4] for b in model.batches if b[1]]
    order = np.random.default_rng(1).permutation(14)
    # worker r = 1 of P = 2: subset[t + r + s*P : batch_end : numSubBatches*P]
    expected = [tuple(order[t + 1 + s * 2:min(t + 8, 14):4]) for t in (0, 8) for s in range(2)]
    assert train == [e for e in expected if e]
    # combined statistics: the peer reports the same 7 images, num is summed
    assert stats.train[0].num == 14
    # worker 1 writes nothing
    assert os.listdir(tmp_path) == []


def test_the_update_is_the_hand_computed_step(tmp_path):
    model, state, _ = run_recording(tmp_path, numSubBatches=2)
    x = np.arange(20, dtype=np.float64)
    order = np.random.default_rng(1).permutation(14)
    a = 0.0
    for t in (0, 8):
        batch = x[order[t:t + 8]]
        a = a - 0.001 * (2 * np.sum((a * batch - 3 * batch) * batch)) / 8
    np.testing.assert_allclose(model.net.a[0], a)


# --------------------------------------------------------------------------
# checkpoints

def make_imdb():
    rng = np.random.default_rng(0)
    return {"images": {"data": rng.standard_normal((2, 2, 2, 8)),
                       "labels": rng.integers(1, 4, size=8).astype(float),
                       "set": np.ones(8)}}


def get_batch(imdb, batch):
    return imdb["images"]["data"][:, :, :, batch], imdb["images"]["labels"][batch]


def linear_net():
    rng = np.random.default_rng(1)
    return {"layers": [{"type": "conv", "weights": [0.1 * rng.standard_normal((2, 2, 2, 3)),
                                                     np.zeros((1, 3))]},
                       {"type": "softmaxloss"}]}


def test_stale_checkpoint_temporaries_are_removed(tmp_path):
    # what a run killed while writing net-epoch-N.mat leaves behind
    stale = [".net-epoch-1.mat.k3x_9q2a.tmp", ".net-epoch-12.mat.abcdefgh.tmp"]
    kept = [".net-train.png.abc.tmp", "notes.tmp", ".net-epoch-1.mat.bak"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"MATLAB 5.0 MAT-file, partial")
    cnn_train(linear_net(), make_imdb(), get_batch, expDir=str(tmp_path), numEpochs=1,
              batchSize=4, **QUIET)
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["net-epoch-1.mat"])


def test_young_temporaries_can_be_spared(tmp_path):
    (tmp_path / ".net-epoch-3.mat.abcd.tmp").write_bytes(b"")
    old = tmp_path / ".net-epoch-2.mat.efgh.tmp"
    old.write_bytes(b"")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert remove_stale_temporaries(str(tmp_path), min_age_s=60) == [old.name]
    assert os.listdir(tmp_path) == [".net-epoch-3.mat.abcd.tmp"]


def test_checkpoints_are_uncompressed_and_read_back(tmp_path):
    trained, _ = cnn_train(linear_net(), make_imdb(), get_batch, expDir=str(tmp_path),
                           numEpochs=1, batchSize=4, **QUIET)
    path = tmp_path / "net-epoch-1.mat"
    raw = path.read_bytes()
    # an uncompressed MAT v5 file stores its elements as miMATRIX (tag 14),
    # a compressed one as miCOMPRESSED (tag 15)
    first_tag = int.from_bytes(raw[128:132], "little")
    assert first_tag == 14
    assert set(scipy.io.whosmat(str(path))) >= {("net", (1, 1), "struct")} or \
        [name for name, *_ in scipy.io.whosmat(str(path))] == ["net", "state", "stats"]
    np.testing.assert_array_equal(load_net(path).layers[0].weights[0],
                                  trained.layers[0].weights[0])


def test_learning_rate_schedule_and_stop(tmp_path):
    seen = []

    def post(net, params, state):
        seen.append(params.learningRate)
        return [0.5, 0.25] if params.epoch == 1 else (0 if params.epoch == 2 else None)

    model, _, stats = run_recording(tmp_path, numEpochs=5, learningRate=[0.1, 0.2, 0.3],
                                    postEpochFn=post)
    assert seen == [0.1, 0.25]  # epoch 2 takes entry 2 of the new schedule; 0 stops
    assert len(stats.train) == 2
    assert math.isfinite(stats.train[-1].objective)


def test_workers_on_one_machine_share_its_cores():
    # MPI workers on one machine each get cores // workers threads (blocks
    # and BLAS) while training, and the settings come back afterwards
    import os

    import vlnn
    from simplenn.training.loop import _cores_shared

    before = vlnn.get_num_threads()
    with _cores_shared(2):
        assert vlnn.get_num_threads() == min(before, max(1, (os.cpu_count() or 1) // 2))
    assert vlnn.get_num_threads() == before
    with _cores_shared(1):
        assert vlnn.get_num_threads() == before


def test_set_num_threads_round_trip_and_errors():
    import vlnn

    previous = vlnn.set_num_threads(1)
    try:
        assert vlnn.get_num_threads() == 1
        x = np.random.default_rng(0).standard_normal((64, 64, 32, 8)).astype(np.float32)
        one = vlnn.vl_nnrelu(x, x)
        vlnn.set_num_threads(3)
        np.testing.assert_array_equal(vlnn.vl_nnrelu(x, x), one)
        with pytest.raises(ValueError, match="set_num_threads: n must be a positive integer"):
            vlnn.set_num_threads(0)
    finally:
        vlnn.set_num_threads(previous)
    assert vlnn.get_num_threads() == previous
