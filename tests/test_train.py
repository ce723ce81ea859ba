"""simplenn.train.cnn_train: the parameter update against a hand computation
(momentum, Nesterov, weight decay, per-layer multipliers, interleaved
sub-batches, bnorm moments, solvers), resuming from checkpoints (exactly
the uninterrupted run; corrupt checkpoints skipped), the checkpoint layout
and its atomic writing, the statistics, the error functions, the options
and their errors, the printed progress and the figures."""

import os
import sys
import warnings

import numpy as np
import pytest
import scipy.io

from simplenn import solvers
from simplenn.io import load_net
from simplenn.struct import Struct
from simplenn.train import cnn_train, error_binary, error_multiclass

QUIET = {"verbose": False, "plotStatistics": False}


# --------------------------------------------------------------------------
# tiny problems

def make_imdb(n_train=8, n_val=0, shape=(2, 2, 2), classes=3, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    data = rng.standard_normal(shape + (n,)).astype(dtype)
    labels = rng.integers(1, classes + 1, n)
    sets = np.r_[np.ones(n_train), 2 * np.ones(n_val)]
    return {"images": {"data": data, "labels": labels, "set": sets}}


def get_batch(imdb, batch):
    return imdb["images"]["data"][:, :, :, batch], imdb["images"]["labels"][batch]


def linear_net(dtype=np.float64, seed=1, channels=2, classes=3, **conv_fields):
    """conv (2 x 2 filters on a 2 x 2 input: one score per class) + softmaxloss."""
    rng = np.random.default_rng(seed)
    conv = {"type": "conv",
            "weights": [0.5 * rng.standard_normal((2, 2, channels, classes)).astype(dtype),
                        0.1 * rng.standard_normal((1, classes)).astype(dtype)]}
    conv.update(conv_fields)
    return {"layers": [conv, {"type": "softmaxloss"}]}


def dropout_net(seed=2):
    """conv 3x3 -> relu -> dropout -> conv 3x3 -> softmaxloss on 5 x 5 x 1 images."""
    rng = np.random.default_rng(seed)
    f = np.float32
    return {"layers": [
        {"type": "conv", "weights": [0.3 * rng.standard_normal((3, 3, 1, 4)).astype(f),
                                     np.zeros((1, 4), f)]},
        {"type": "relu"},
        {"type": "dropout", "rate": 0.3},
        {"type": "conv", "weights": [0.3 * rng.standard_normal((3, 3, 4, 3)).astype(f),
                                     np.zeros((1, 3), f)]},
        {"type": "softmaxloss"}]}


def dropout_imdb():
    return make_imdb(n_train=24, n_val=8, shape=(5, 5, 1), dtype=np.float32, seed=3)


# --------------------------------------------------------------------------
# the update, by hand

def softmax_gradients(w, b, x, labels):
    """Derivatives of the mean softmax log-loss of ``x`` (2 x 2 x C x N
    images, one 2 x 2 filter bank): MatConvNet HEAD's normalised loss."""
    scores = np.einsum("hwcn,hwck->kn", x, w) + b.reshape(-1, 1)
    p = np.exp(scores - scores.max(0))
    p /= p.sum(0)
    n = x.shape[3]
    onehot = np.zeros_like(p)
    onehot[labels - 1, np.arange(n)] = 1
    d = (p - onehot) / n
    loss = -np.log(p[labels - 1, np.arange(n)]).sum()
    errors = (scores.argmax(0) + 1 != labels).sum()
    return np.einsum("hwcn,kn->hwck", x, d), d.sum(1).reshape(b.shape), loss, errors


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_updates_equal_the_hand_computation(tmp_path, nesterov):
    imdb = make_imdb(n_train=8)
    net = linear_net(learningRate=[2, 0.5], weightDecay=[1, 0])
    seed, base_lr, decay, momentum = 3, 0.5, 0.01, 0.9
    trained, info = cnn_train(net, imdb, get_batch, expDir=str(tmp_path), numEpochs=1,
                              batchSize=4, numSubBatches=2, learningRate=[base_lr, 0.1],
                              weightDecay=decay, momentum=momentum, randomSeed=seed,
                              nesterovUpdate=nesterov, **QUIET)

    x, labels = imdb["images"]["data"], imdb["images"]["labels"]
    order = np.random.default_rng(seed + 1).permutation(8)
    w, b = (a.copy() for a in net["layers"][0]["weights"])
    rates, decays = (base_lr * 2, base_lr * 0.5), (decay * 1, decay * 0)
    velocity = [0.0, 0.0]
    loss_sum = error_sum = 0.0
    for start in (0, 4):
        batch = order[start:start + 4]
        total = [0.0, 0.0]
        for sub in (batch[0::2], batch[1::2]):  # interleaved sub-batches
            dw, db, loss, errors = softmax_gradients(w, b, x[..., sub], labels[sub])
            total = [total[0] + dw, total[1] + db]
            loss_sum += loss
            error_sum += errors
        params = [w, b]
        for j in (1, 0):  # MatConvNet goes from the last weight to the first
            g = total[j] / 2 + decays[j] * params[j]
            velocity[j] = momentum * velocity[j] - g
            delta = momentum * velocity[j] - g if nesterov else velocity[j]
            params[j] = params[j] + rates[j] * delta
        w, b = params

    got_w, got_b = trained.layers[0].weights
    np.testing.assert_allclose(got_w, w, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got_b, b, rtol=1e-12, atol=1e-14)
    assert got_w.dtype == np.float64
    np.testing.assert_allclose(info.train.objective, [loss_sum / 8], rtol=1e-12)
    np.testing.assert_allclose(info.train.top1err, [error_sum / 8], rtol=1e-12)
    assert info.train.num == [8]
    # the caller's network is untouched
    np.testing.assert_array_equal(net["layers"][0]["weights"][0],
                                  linear_net(learningRate=[2, 0.5])["layers"][0]["weights"][0])
    assert "learningRate" in net["layers"][0] and "precious" not in net["layers"][0]


def test_default_multipliers_and_frozen_weights(tmp_path):
    net = linear_net(learningRate=[0, 1], weightDecay=[0, 1])
    trained, _ = cnn_train(net, make_imdb(), get_batch, expDir=str(tmp_path), numEpochs=1,
                           batchSize=8, **QUIET)
    # learning rate 0 and weight decay 0: the filters do not move at all
    np.testing.assert_array_equal(trained.layers[0].weights[0], net["layers"][0]["weights"][0])
    assert not np.array_equal(trained.layers[0].weights[1], net["layers"][0]["weights"][1])
    # layers without multipliers get ones(1, J); the scores layer is made precious
    fresh, _ = cnn_train(linear_net(), make_imdb(), get_batch, expDir=str(tmp_path / "b"),
                         numEpochs=1, batchSize=8, **QUIET)
    np.testing.assert_array_equal(fresh.layers[0].learningRate, np.ones((1, 2)))
    np.testing.assert_array_equal(fresh.layers[0].weightDecay, np.ones((1, 2)))
    assert fresh.layers[1].learningRate.shape == (1, 0)
    assert fresh.layers[0].precious


def test_bnorm_moments_are_blended_with_the_third_rate(tmp_path):
    rng = np.random.default_rng(5)
    imdb = make_imdb(n_train=4)
    x, _ = get_batch(imdb, np.arange(4))
    k = 3
    moments0 = rng.standard_normal((k, 2))
    net = linear_net(learningRate=[0, 0], weightDecay=[0, 0])
    net["layers"].insert(1, {"type": "bnorm", "weights": [np.ones(k), np.zeros(k), moments0],
                             "learningRate": [0, 0, 0.3], "weightDecay": [0, 0]})
    seed = 7
    trained, _ = cnn_train(net, imdb, get_batch, expDir=str(tmp_path), numEpochs=1,
                           batchSize=4, numSubBatches=2, randomSeed=seed, **QUIET)
    w, b = net["layers"][0]["weights"]
    order = np.random.default_rng(seed + 1).permutation(4)
    total = 0
    for sub in (order[0::2], order[1::2]):
        y = np.einsum("hwcn,hwck->kn", x[..., sub], w) + b.reshape(-1, 1)
        mu = y.mean(1)
        sigma = np.sqrt(((y - mu[:, None]) ** 2).mean(1) + 1e-5)  # tidy's epsilon
        total = total + np.stack([mu, sigma], 1)
    expected = 0.7 * moments0 + (0.3 / 2) * total
    np.testing.assert_allclose(trained.layers[1].weights[2], expected, rtol=1e-10)
    # gains and biases have rate 0 and decay 0: untouched
    np.testing.assert_array_equal(trained.layers[1].weights[0], np.ones(k))


def test_a_solver_gets_the_scaled_decayed_gradient(tmp_path):
    imdb = make_imdb(n_train=4)
    net = linear_net(learningRate=[1, 1], weightDecay=[1, 1])
    seed, lr, decay = 0, 0.05, 0.02
    trained, _ = cnn_train(net, imdb, get_batch, expDir=str(tmp_path), numEpochs=1,
                           batchSize=4, numSubBatches=2, learningRate=lr, weightDecay=decay,
                           solver=solvers.adam, solverOpts={"Beta1": 0.5}, randomSeed=seed,
                           **QUIET)
    x, labels = imdb["images"]["data"], imdb["images"]["labels"]
    order = np.random.default_rng(seed + 1).permutation(4)
    w, b = net["layers"][0]["weights"]
    total = [0, 0]
    for sub in (order[0::2], order[1::2]):
        dw, db, _, _ = softmax_gradients(w, b, x[..., sub], labels[sub])
        total = [total[0] + dw, total[1] + db]
    opts = {"beta1": 0.5, "beta2": 0.999, "eps": 1e-8}
    want_w, _ = solvers.adam(w, 0, total[0] / 2 + decay * w, opts, lr)
    want_b, _ = solvers.adam(b, 0, total[1] / 2 + decay * b, opts, lr)
    np.testing.assert_allclose(trained.layers[0].weights[0], want_w, rtol=1e-12)
    np.testing.assert_allclose(trained.layers[0].weights[1], want_b, rtol=1e-12)
    state = scipy.io.loadmat(str(tmp_path / "net-epoch-1.mat"))["state"]
    adam_state = state["solverState"][0, 0][0, 0][0, 0]
    assert set(adam_state.dtype.names) == {"m", "v", "t"}
    assert adam_state["t"][0, 0][0, 0] == 1


# --------------------------------------------------------------------------
# checkpoints and resuming

def final_weights(net):
    return [w for layer in net.layers for w in layer.weights]


def assert_same_weights(a, b):
    wa, wb = final_weights(a), final_weights(b)
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(np.asarray(x).ravel(), np.asarray(y).ravel())


RESUME_OPTIONS = dict(batchSize=8, numSubBatches=2, learningRate=[0.05, 0.02], randomSeed=11,
                      **QUIET)


@pytest.mark.parametrize("solver", [None, solvers.adam])
def test_resume_equals_an_uninterrupted_run(tmp_path, solver):
    imdb = dropout_imdb()
    extra = {} if solver is None else {"solver": solver}
    whole, whole_info = cnn_train(dropout_net(), imdb, get_batch, expDir=str(tmp_path / "a"),
                                  numEpochs=3, **RESUME_OPTIONS, **extra)
    cnn_train(dropout_net(), imdb, get_batch, expDir=str(tmp_path / "b"), numEpochs=1,
              **RESUME_OPTIONS, **extra)
    # a different starting network: resuming ignores it and loads epoch 1
    resumed, resumed_info = cnn_train(dropout_net(seed=99), imdb, get_batch,
                                      expDir=str(tmp_path / "b"), numEpochs=3,
                                      **RESUME_OPTIONS, **extra)
    assert_same_weights(whole, resumed)
    for mode in ("train", "val"):
        for name in ("objective", "top1err", "top5err", "num"):
            assert whole_info[mode][name] == resumed_info[mode][name]
        assert len(resumed_info[mode].time) == 3


def test_float64_networks_resume_in_float64(tmp_path):
    imdb = make_imdb(n_train=8)
    options = dict(batchSize=4, numSubBatches=2, learningRate=0.3, **QUIET)
    whole, _ = cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path / "a"),
                         numEpochs=2, **options)
    cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path / "b"), numEpochs=1,
              **options)
    resumed, _ = cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path / "b"),
                           numEpochs=2, **options)
    assert_same_weights(whole, resumed)
    assert all(w.dtype == np.float64 for w in final_weights(resumed))


def test_without_saved_momentum_resume_still_matches(tmp_path):
    imdb = dropout_imdb()
    whole, _ = cnn_train(dropout_net(), imdb, get_batch, expDir=str(tmp_path / "a"),
                         numEpochs=2, saveSolverState=False, **RESUME_OPTIONS)
    cnn_train(dropout_net(), imdb, get_batch, expDir=str(tmp_path / "b"), numEpochs=1,
              saveMomentum=False, **RESUME_OPTIONS)
    resumed, _ = cnn_train(dropout_net(), imdb, get_batch, expDir=str(tmp_path / "b"),
                           numEpochs=2, saveSolverState=False, **RESUME_OPTIONS)
    assert_same_weights(whole, resumed)
    state = scipy.io.loadmat(str(tmp_path / "b" / "net-epoch-2.mat"))["state"]
    assert state["solverState"][0, 0].size == 0


def test_continue_false_starts_over(tmp_path):
    imdb = make_imdb()
    first, _ = cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path), numEpochs=1,
                         batchSize=4, **QUIET)
    again, info = cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path), numEpochs=1,
                            batchSize=4, continue_=False, **QUIET)
    assert_same_weights(first, again)
    assert len(info.train.objective) == 1
    also, _ = cnn_train(linear_net(), imdb, get_batch, **{"expDir": str(tmp_path),
                                                           "numEpochs": 1, "batchSize": 4,
                                                           "continue": False}, **QUIET)
    assert_same_weights(first, also)


def test_finished_run_returns_the_checkpoint(tmp_path):
    imdb = make_imdb()
    trained, info = cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path), numEpochs=2,
                              batchSize=4, **QUIET)
    again, again_info = cnn_train(linear_net(seed=5), imdb, get_batch, expDir=str(tmp_path),
                                  numEpochs=2, batchSize=4, **QUIET)
    # nothing left to train: the loaded network, in its own precision
    assert_same_weights(trained, again)
    assert all(w.dtype == np.float64 for w in final_weights(again))
    assert again_info.train.objective == info.train.objective


@pytest.mark.parametrize("kept", [0.02, 0.5, 0.98])
def test_truncated_checkpoint_is_skipped_with_a_warning(tmp_path, kept):
    imdb = dropout_imdb()
    whole, _ = cnn_train(dropout_net(), imdb, get_batch, expDir=str(tmp_path / "a"),
                         numEpochs=2, **RESUME_OPTIONS)
    folder = tmp_path / "b"
    cnn_train(dropout_net(), imdb, get_batch, expDir=str(folder), numEpochs=2, **RESUME_OPTIONS)
    path = folder / "net-epoch-2.mat"
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * kept)])  # as if the copy or the disk failed
    with pytest.warns(RuntimeWarning, match="net-epoch-2.mat"):
        resumed, info = cnn_train(dropout_net(), imdb, get_batch, expDir=str(folder),
                                  numEpochs=2, **RESUME_OPTIONS)
    # resumed from epoch 1 and retrained epoch 2: the uninterrupted result
    assert_same_weights(whole, resumed)
    assert len(info.train.objective) == 2
    load_net(path)  # rewritten whole


def test_checkpoint_without_stats_and_garbage_are_skipped(tmp_path):
    imdb = make_imdb()
    trained, _ = cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path), numEpochs=1,
                           batchSize=4, **QUIET)
    (tmp_path / "net-epoch-3.mat").write_bytes(os.urandom(300))
    # MatConvNet's partially saved epoch: net and state, no stats yet
    scipy.io.savemat(str(tmp_path / "net-epoch-2.mat"), {"net": {"layers": np.zeros(1)},
                                                         "state": np.zeros(1)})
    with pytest.warns(RuntimeWarning) as caught:
        loaded, info = cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path),
                                 numEpochs=1, batchSize=4, **QUIET)
    text = " ".join(str(w.message) for w in caught)
    assert "net-epoch-3.mat" in text and "net-epoch-2.mat" in text and "no stats" in text
    assert_same_weights(trained, loaded)
    assert len(info.train.objective) == 1


def test_no_readable_checkpoint_trains_from_the_start(tmp_path):
    imdb = make_imdb()
    fresh, _ = cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path / "a"),
                         numEpochs=1, batchSize=4, **QUIET)
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "net-epoch-1.mat").write_bytes(b"")
    with pytest.warns(RuntimeWarning) as caught:
        trained, _ = cnn_train(linear_net(), imdb, get_batch, expDir=str(folder), numEpochs=1,
                               batchSize=4, **QUIET)
    messages = [str(w.message) for w in caught]
    assert "the file is empty" in messages[0] and "no readable checkpoint" in messages[1]
    assert_same_weights(fresh, trained)
    load_net(folder / "net-epoch-1.mat")


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    imdb = make_imdb()
    cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path), numEpochs=1, batchSize=4,
              **QUIET)
    before = (tmp_path / "net-epoch-1.mat").read_bytes()

    def failing_savemat(stream, *args, **kwargs):
        stream.write(b"MATLAB 5.0 MAT-file, partial")
        raise OSError("disk full")

    monkeypatch.setattr(scipy.io, "savemat", failing_savemat)
    with pytest.raises(OSError, match="disk full"):
        cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path), numEpochs=2,
                  batchSize=4, **QUIET)
    assert sorted(os.listdir(tmp_path)) == ["net-epoch-1.mat"]  # no partial or temporary file
    assert (tmp_path / "net-epoch-1.mat").read_bytes() == before


def test_checkpoint_layout(tmp_path):
    imdb = make_imdb(n_train=8, n_val=4, dtype=np.float32)
    trained, _ = cnn_train(linear_net(dtype=np.float32), imdb, get_batch, expDir=str(tmp_path),
                           numEpochs=2, batchSize=4, **QUIET)
    assert sorted(os.listdir(tmp_path)) == ["net-epoch-1.mat", "net-epoch-2.mat"]
    mat = scipy.io.loadmat(str(tmp_path / "net-epoch-2.mat"))
    assert {"net", "state", "stats"} <= set(mat)
    net = mat["net"][0, 0]
    assert set(net.dtype.names) == {"layers", "meta"}
    assert net["layers"].shape == (1, 2)
    layer = net["layers"][0, 0][0, 0]
    assert layer["type"][0] == "conv"
    assert layer["weights"][0, 0].dtype == np.float32
    np.testing.assert_array_equal(layer["learningRate"], np.ones((1, 2)))
    state = mat["state"][0, 0]
    assert {"solverState", "stats"} <= set(state.dtype.names)
    momentum = state["solverState"][0, 0][0, 0]
    assert momentum.shape == trained.layers[0].weights[0].shape
    stats = mat["stats"][0, 0]
    train = stats["train"]
    assert train.shape == (1, 2)
    assert list(train.dtype.names) == ["objective", "top1err", "top5err", "num", "time"]
    assert train[0, 1]["num"][0, 0] == 8 and stats["val"][0, 0]["num"][0, 0] == 4
    # the checkpoint is also a model file for load_net
    loaded = load_net(tmp_path / "net-epoch-2.mat")
    np.testing.assert_array_equal(loaded.layers[0].weights[0], trained.layers[0].weights[0])


# --------------------------------------------------------------------------
# statistics and error functions

def test_info_structure(tmp_path):
    imdb = make_imdb(n_train=8, n_val=4)
    _, info = cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path), numEpochs=3,
                        batchSize=3, **QUIET)
    assert isinstance(info, Struct) and info.train is info["train"]
    for mode, count in (("train", 8), ("val", 4)):
        stats = info[mode]
        assert list(stats) == ["objective", "top1err", "top5err", "num", "time"]
        assert all(len(values) == 3 for values in stats.values())
        assert stats.num == [count] * 3
        assert all(isinstance(v, float) for v in stats.objective)
        assert all(0 <= v <= 1 for v in stats.top1err + stats.top5err)
        assert all(t >= 0 for t in stats.time)
    assert info.train.top5err == [0.0] * 3  # three classes: always in the top 5


def test_error_multiclass_counts():
    scores = np.zeros((1, 1, 7, 4))
    scores[0, 0, :, 0] = [7, 6, 5, 4, 3, 2, 1]  # label 1 best
    scores[0, 0, :, 1] = [7, 6, 5, 4, 3, 2, 1]  # label 5: top-5 only
    scores[0, 0, :, 2] = [7, 6, 5, 4, 3, 2, 1]  # label 7: neither
    scores[0, 0, :, 3] = [1, 1, 1, 1, 1, 1, 1]  # ignored (label 0)
    res = [Struct(x=None), Struct(x=scores), Struct(x=np.float64(0))]
    assert error_multiclass(None, np.array([1, 5, 7, 0]), res) == [2.0, 1.0]
    assert error_multiclass(None, np.array([[1, 5, 7, 0]]), res) == [2.0, 1.0]
    # ties go to the lower class index, as MATLAB's stable sort
    res[1].x = np.ones((1, 1, 3, 2))
    assert error_multiclass(None, np.array([1, 2]), res) == [1.0, 0.0]
    # a second label channel weighs the images; spatial labels H x W x 1 x N
    scores = np.zeros((2, 1, 3, 1))
    scores[0, 0, :, 0] = [3, 2, 1]
    scores[1, 0, :, 0] = [1, 2, 3]
    res[1].x = scores
    labels = np.zeros((2, 1, 2, 1))
    labels[:, 0, 0, 0] = [2, 2]
    labels[:, 0, 1, 0] = [0.25, 2.0]
    assert error_multiclass(None, labels, res) == [2.25, 0.0]


def test_error_binary_counts():
    scores = np.array([1.0, -2.0, 3.0, -0.5]).reshape(1, 1, 1, 4)
    res = [Struct(x=None), Struct(x=scores), Struct(x=0.0)]
    assert error_binary(None, np.array([1, 1, -1, -1]), res) == [2.0]
    # several scores per image: labels shaped like them, or one per image
    res[1].x = np.zeros((1, 1, 2, 2))
    res[1].x[0, 0, :, 0] = [1.0, -1.0]
    res[1].x[0, 0, :, 1] = [2.0, 3.0]
    assert error_binary(None, np.array([1, -1]), res) == [3.0]
    assert error_binary(None, np.array([1, 1, 1, -1]).reshape(1, 1, 2, 2), res) == [2.0]


@pytest.mark.parametrize("function, names", [
    ("multiclass", ["top1err", "top5err"]),
    ("binary", ["binerr"]),
    ("none", []),
])
def test_error_function_names(tmp_path, function, names):
    _, info = cnn_train(linear_net(), make_imdb(), get_batch, expDir=str(tmp_path),
                        numEpochs=1, batchSize=4, errorFunction=function, **QUIET)
    assert list(info.train) == ["objective"] + names + ["num", "time"]
    if function == "binary":  # labels are positive: the negative scores count
        assert 0 < info.train.binerr[0] < 3


def test_custom_error_function(tmp_path):
    imdb = make_imdb(n_train=8, n_val=4)
    seen = []

    def label_one(params, labels, res):
        seen.append((params.epoch, res[-2].x.shape))
        return [np.sum(labels == 1), np.sum(labels == 2)]

    _, info = cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path), numEpochs=1,
                        batchSize=4, errorFunction=label_one, errorLabels=["ones", "twos"],
                        **QUIET)
    labels = imdb["images"]["labels"]
    assert info.train.ones == [np.mean(labels[:8] == 1)]
    assert info.val.twos == [np.mean(labels[8:] == 2)]
    assert seen[0] == (1, (1, 1, 3, 4))
    with pytest.raises(ValueError, match="returned 2 counts but errorLabels names 3"):
        cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path / "b"), numEpochs=1,
                  batchSize=4, errorFunction=label_one, errorLabels=["a", "b", "c"], **QUIET)


# --------------------------------------------------------------------------
# options

def test_default_subsets_evaluation_mode_and_epoch_size(tmp_path):
    imdb = make_imdb(n_train=6, n_val=3)
    imdb["images"]["set"] = np.array([1, 1, 1, 1, 3, 3, 2, 2, 2])
    _, info = cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path / "a"),
                        numEpochs=1, batchSize=4, **QUIET)
    assert info.train.num == [4] and info.val.num == [3]  # set 1 and set 2
    _, info = cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path / "b"),
                        numEpochs=1, batchSize=4, train=[0, 1], val=np.array([4, 5]),
                        epochSize=1, **QUIET)
    assert info.train.num == [1] and info.val.num == [2]
    net = linear_net()
    evaluated, info = cnn_train(net, imdb, get_batch, expDir=str(tmp_path / "c"), numEpochs=2,
                                batchSize=4, train=np.nan, **QUIET)
    assert os.listdir(tmp_path / "c") == []  # no checkpoints in evaluation mode
    assert_same_weights(evaluated, Struct(layers=[Struct(weights=net["layers"][0]["weights"]),
                                                  Struct(weights=[])]))
    assert info.train.num == [0, 0] and list(info.train) == ["num", "time"]
    assert info.val.num == [3, 3]
    _, info = cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path / "d"),
                        numEpochs=1, batchSize=4, val=float("nan"), **QUIET)
    assert info.val.num == [0]


def test_matlab_style_pairs(tmp_path):
    a, _ = cnn_train(linear_net(), make_imdb(), get_batch, "expDir", str(tmp_path / "a"),
                     "NumEpochs", 1, "batchsize", 4, "verbose", False, "plotStatistics", False)
    b, _ = cnn_train(linear_net(), make_imdb(), get_batch, expDir=str(tmp_path / "b"),
                     num_epochs=1, batch_size=4, **QUIET)
    assert_same_weights(a, b)


def test_post_epoch_fn_sets_the_rate_and_stops(tmp_path):
    calls = []

    def schedule(net, params, state):
        calls.append((params.epoch, params.learningRate, sorted(state.stats)))
        return 0.0 if params.epoch == 2 else 0.25

    _, info = cnn_train(linear_net(), make_imdb(), get_batch, expDir=str(tmp_path),
                        numEpochs=5, batchSize=4, learningRate=0.1, postEpochFn=schedule,
                        **QUIET)
    assert calls == [(1, 0.1, ["train", "val"]), (2, 0.25, ["train", "val"])]
    assert len(info.train.objective) == 2
    assert sorted(os.listdir(tmp_path)) == ["net-epoch-1.mat", "net-epoch-2.mat"]


def test_prefetch_fetches_ahead_without_changing_results(tmp_path):
    imdb = make_imdb()
    batches = []

    def counting(imdb, batch):
        batches.append(list(batch))
        return get_batch(imdb, batch)

    plain, _ = cnn_train(linear_net(), imdb, counting, expDir=str(tmp_path / "a"), numEpochs=1,
                         batchSize=4, numSubBatches=2, **QUIET)
    plain_batches = list(batches)
    batches.clear()
    ahead, _ = cnn_train(linear_net(), imdb, counting, expDir=str(tmp_path / "b"), numEpochs=1,
                         batchSize=4, numSubBatches=2, prefetch=True, **QUIET)
    assert_same_weights(plain, ahead)
    # every sub-batch but the last is followed by a fetch of the next one
    assert batches[0::2] == plain_batches and batches[1::2] == plain_batches[1:]


@pytest.mark.parametrize("options, error, message", [
    ({"numEpoch": 1}, TypeError, "unknown option 'numEpoch'"),
    ({"solverOpts": {"beta1": 0.5}}, TypeError, "solverOpts is valid only"),
    ({"solver": "adam"}, TypeError, "solver must be a callable"),
    ({"solver": solvers.adam, "solverOpts": {"beta": 0.5}}, TypeError, "unknown solverOpts"),
    ({"postEpochFn": 3}, TypeError, "postEpochFn must be callable"),
    ({"batchSize": 0}, ValueError, "batchSize"),
    ({"numSubBatches": 1.5}, ValueError, "numSubBatches"),
    ({"learningRate": -0.1}, ValueError, "learningRate"),
    ({"learningRate": []}, ValueError, "learningRate"),
    ({"errorFunction": "top1"}, ValueError, "unknown errorFunction"),
    ({"train": [0, -1]}, ValueError, "train"),
    ({"val": [0.5]}, ValueError, "val"),
    ({"gpus": [1, 2]}, ValueError, "several GPUs"),
    ({"continue": "yes"}, ValueError, "continue"),
    ({"epochSize": 0}, ValueError, "epochSize"),
])
def test_bad_options(tmp_path, options, error, message):
    with pytest.raises(error, match=message):
        cnn_train(linear_net(), make_imdb(), get_batch, expDir=str(tmp_path), numEpochs=1,
                  **{**QUIET, **options})


def test_bad_networks_and_data(tmp_path):
    with pytest.raises(ValueError, match="at least two layers"):
        cnn_train({"layers": [{"type": "softmaxloss"}]}, make_imdb(), get_batch,
                  expDir=str(tmp_path), **QUIET)
    with pytest.raises(ValueError, match="learningRate has 1 entries"):
        cnn_train(linear_net(learningRate=[1]), make_imdb(), get_batch, expDir=str(tmp_path),
                  numEpochs=1, **QUIET)
    with pytest.raises(ValueError, match="images.set"):
        cnn_train(linear_net(), {"images": {}}, get_batch, expDir=str(tmp_path), **QUIET)
    custom = {"type": "custom", "forward": lambda layer, a, b: b,
              "backward": lambda layer, a, b: a}
    with pytest.raises(ValueError, match="cannot be saved in the checkpoints"):
        cnn_train({"layers": [custom, {"type": "softmaxloss"}]}, make_imdb(), get_batch,
                  expDir=str(tmp_path), **QUIET)
    with pytest.raises(ValueError, match="errorLabels"):
        cnn_train(linear_net(), make_imdb(), get_batch, expDir=str(tmp_path),
                  errorLabels=["top-1"], **QUIET)
    with pytest.raises(TypeError, match="get_batch"):
        cnn_train(linear_net(), make_imdb(), None, expDir=str(tmp_path), **QUIET)


# --------------------------------------------------------------------------
# output

def block_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)


def test_progress_lines_and_silence(tmp_path, capsys, monkeypatch):
    block_tqdm(monkeypatch)
    imdb = make_imdb(n_train=8, n_val=4)
    cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path), numEpochs=1, batchSize=4,
              plotStatistics=False)
    out = capsys.readouterr().out
    assert "train: epoch 01:   1/  2:" in out and "train: epoch 01:   2/  2:" in out
    assert "val: epoch 01:   1/  1:" in out
    assert " Hz objective: " in out and "top1err: " in out
    assert "layer|" in out  # the network table
    cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path), numEpochs=2, batchSize=4,
              plotStatistics=False)
    assert "resuming by loading epoch 1" in capsys.readouterr().out
    cnn_train(linear_net(), imdb, get_batch, expDir=str(tmp_path), numEpochs=3, batchSize=4,
              verbose=False)
    assert capsys.readouterr().out == ""


def test_tqdm_progress(tmp_path, capsys):
    pytest.importorskip("tqdm")
    cnn_train(linear_net(), make_imdb(), get_batch, expDir=str(tmp_path), numEpochs=1,
              batchSize=4, plotStatistics=False)
    captured = capsys.readouterr()
    assert "train: epoch 01" in captured.out + captured.err


def test_training_figure(tmp_path):
    pytest.importorskip("matplotlib")
    cnn_train(linear_net(), make_imdb(n_train=8, n_val=4), get_batch, expDir=str(tmp_path),
              numEpochs=2, batchSize=4, verbose=False)
    figure = tmp_path / "net-train.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["net-epoch-1.mat", "net-epoch-2.mat",
                                            "net-train.png"]


def test_notice_without_matplotlib(tmp_path, capsys, monkeypatch):
    block_tqdm(monkeypatch)
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    cnn_train(linear_net(), make_imdb(), get_batch, expDir=str(tmp_path), numEpochs=2,
              batchSize=4)
    out = capsys.readouterr().out
    assert out.count("matplotlib is not installed") == 1
    assert not (tmp_path / "net-train.png").exists()


def test_diagnostics(tmp_path):
    pytest.importorskip("matplotlib")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # log axes of zero-width bars
        cnn_train(linear_net(), make_imdb(), get_batch, expDir=str(tmp_path), numEpochs=1,
                  batchSize=4, plotDiagnostics=True, **QUIET)
    assert (tmp_path / "net-diagnostics.png").exists()


def test_profile_is_kept_in_the_state(tmp_path):
    cnn_train(linear_net(), make_imdb(), get_batch, expDir=str(tmp_path), numEpochs=1,
              batchSize=4, profile=True, **QUIET)
    state = scipy.io.loadmat(str(tmp_path / "net-epoch-1.mat"))["state"][0, 0]
    assert "function calls" in str(state["prof"][0, 0]["train"][0])


def test_gpu_matches_cpu(tmp_path):
    cupy = pytest.importorskip("cupy")
    try:
        cupy.zeros(1)
    except Exception:
        pytest.skip("no usable GPU")
    imdb = make_imdb(n_train=8, n_val=4, dtype=np.float32)
    cpu, cpu_info = cnn_train(linear_net(np.float32), imdb, get_batch,
                              expDir=str(tmp_path / "a"), numEpochs=2, batchSize=4, **QUIET)
    gpu, gpu_info = cnn_train(linear_net(np.float32), imdb, get_batch,
                              expDir=str(tmp_path / "b"), numEpochs=2, batchSize=4, gpus=[1],
                              **QUIET)
    for a, b in zip(final_weights(cpu), final_weights(gpu)):
        assert isinstance(b, np.ndarray)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cpu_info.train.objective, gpu_info.train.objective, rtol=1e-4)
