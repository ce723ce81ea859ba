"""cnn_train_dag (dagnn/train.py) on the shared training engine."""

import importlib.util
import os
import warnings

import numpy as np
import pytest

import dagnn
from dagnn import cnn_train_dag
from simplenn import cnn_train, struct

HERE = os.path.dirname(os.path.abspath(__file__))
QUIET = {"verbose": False, "plotStatistics": False}


def load_example(name):
    path = os.path.join(os.path.dirname(HERE), "examples", name + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------
# one tiny net, updated by hand

def tiny_net():
    """conv 1x1 (2 -> 3) -> bnorm -> conv 2x2 (3 -> 4 classes) -> loss, float64."""
    rng = np.random.default_rng(3)
    net = dagnn.DagNN()
    net.addLayer("conv1", dagnn.Conv("size", [1, 1, 2, 3]), "input", "x1", ["c1f", "c1b"])
    net.addLayer("bn", dagnn.BatchNorm("numChannels", 3), "x1", "x2", ["bnm", "bnb", "bnx"])
    net.addLayer("conv2", dagnn.Conv("size", [2, 2, 3, 4]), "x2", "prediction", ["c2f", "c2b"])
    net.addLayer("loss", dagnn.Loss("loss", "softmaxlog"), ["prediction", "label"],
                 "objective")
    values = {"c1f": rng.standard_normal((1, 1, 2, 3)), "c1b": rng.standard_normal(3),
              "bnm": 1 + 0.1 * rng.standard_normal(3), "bnb": 0.1 * rng.standard_normal(3),
              "bnx": np.abs(rng.standard_normal((3, 2))),
              "c2f": rng.standard_normal((2, 2, 3, 4)), "c2b": rng.standard_normal(4)}
    for name, value in values.items():
        net.params[net.getParamIndex(name)].value = value
    configure(net)
    return net


def configure(net):
    """Per-parameter rates and methods of the hand-checked step."""
    net.params[net.getParamIndex("c1b")].trainMethod = "notrain"
    net.params[net.getParamIndex("c1f")].weightDecay = 3.0
    net.params[net.getParamIndex("c2f")].learningRate = 2.0
    net.params[net.getParamIndex("bnx")].learningRate = 0.3
    return net


def tiny_imdb(n=8):
    rng = np.random.default_rng(4)
    return {"images": {"data": rng.standard_normal((2, 2, 2, n)),
                       "labels": rng.integers(1, 5, size=n).astype(np.float64),
                       "set": np.ones(n)}}


def get_inputs(imdb, batch):
    return ["input", imdb["images"]["data"][:, :, :, batch],
            "label", imdb["images"]["labels"][batch]]


def test_two_steps_equal_the_update_by_hand(tmp_path):
    imdb = tiny_imdb()
    lr, decay, momentum = 0.05, 0.01, 0.9
    trained, stats = cnn_train_dag(tiny_net(), imdb, get_inputs, expDir=str(tmp_path),
                                   numEpochs=1, batchSize=4, numSubBatches=2,
                                   learningRate=lr, weightDecay=decay, momentum=momentum,
                                   val=np.nan, **QUIET)

    # by hand: the epoch's shuffle, batches of 4 in 2 interleaved sub-batches
    # whose derivatives (each of a loss averaged over its 2 images) are summed
    reference = tiny_net()
    order = np.random.default_rng(0 + 1).permutation(8)
    velocity = {p.name: 0.0 for p in reference.params}
    for t in (0, 4):
        batch = order[t:t + 4]
        summed = {}
        for s in range(2):
            probe = configure(reference.copy())
            probe.eval(get_inputs(imdb, batch[s::2]), ["objective", 1])
            for p in probe.params:
                summed[p.name] = summed.get(p.name, 0) + p.der
        for p in reference.params:
            g, w = summed[p.name], p.value
            if p.name == "c1b":  # notrain
                continue
            if p.name == "bnx":  # average: (1 - a) w + a / numWorkers / fanout * g
                p.value = (1 - 0.3) * w + (0.3 / 2 / 1) * g
                continue
            g = g / 2 + decay * p.weightDecay * w
            velocity[p.name] = momentum * velocity[p.name] - g
            p.value = w + lr * p.learningRate * velocity[p.name]
    for p, q in zip(trained.params, reference.params):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-12, atol=1e-12, err_msg=p.name)
    assert np.array_equal(trained.params[1].value, tiny_net().params[1].value)  # notrain
    assert stats.train.num == [8] and list(stats.train) == ["num", "time", "objective"]


def test_errors(tmp_path):
    imdb = tiny_imdb()
    with pytest.raises(ValueError, match="derOutputs must be specified"):
        cnn_train_dag(tiny_net(), imdb, get_inputs, expDir=str(tmp_path), derOutputs=[],
                      **QUIET)
    net = tiny_net()
    net.params[0].trainMethod = "sgd"
    with pytest.raises(ValueError, match="unknown training method 'sgd' for parameter 'c1f'"):
        cnn_train_dag(net, imdb, get_inputs, expDir=str(tmp_path), numEpochs=1, **QUIET)
    with pytest.raises(TypeError, match="must be a dagnn.DagNN"):
        cnn_train_dag({"layers": []}, imdb, get_inputs, expDir=str(tmp_path), **QUIET)
    with pytest.raises(TypeError, match="extractStatsFn must be callable"):
        cnn_train_dag(tiny_net(), imdb, get_inputs, expDir=str(tmp_path), extractStatsFn=1,
                      **QUIET)
    with pytest.raises(TypeError, match="unknown option 'numEpoch'"):
        cnn_train_dag(tiny_net(), imdb, get_inputs, expDir=str(tmp_path), numEpoch=1,
                      **QUIET)


def test_extract_stats_fn_and_evaluation_mode(tmp_path):
    def extract(stats, net):
        stats["loss"] = float(net.layers[-1].block.average)
        stats["seen"] = stats["num"]
        return stats

    net = tiny_net()
    before = [np.copy(p.value) for p in net.params]
    _, stats = cnn_train_dag(net, tiny_imdb(), get_inputs, expDir=str(tmp_path), numEpochs=1,
                             batchSize=3, train=np.nan, val=np.arange(8),
                             extractStatsFn=extract, **QUIET)
    assert stats.val.seen == [8] and stats.val.num == [8]
    assert os.listdir(tmp_path) == []  # evaluation mode: no checkpoints
    for p, value in zip(net.params, before):
        np.testing.assert_array_equal(p.value, value)


# --------------------------------------------------------------------------
# LeNet: cnn_train_dag after fromSimpleNN equals cnn_train

def digits(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return struct({"images": {
        "data": (40 * rng.standard_normal((28, 28, 1, n))).astype(np.float32),
        "labels": rng.integers(1, 11, size=n).astype(np.float64),
        "set": np.r_[np.ones(n - 10), 3 * np.ones(10)]}})


def in_double(net):
    """The net with float64 weights (a SimpleNN mapping or a DagNN)."""
    if isinstance(net, dagnn.DagNN):
        for p in net.params:
            p.value = np.asarray(p.value, np.float64)
        return net
    for layer in net["layers"]:
        layer["weights"] = [None if w is None else np.asarray(w, np.float64)
                            for w in layer.get("weights", [])]
    return net


@pytest.mark.parametrize("batch_normalization", [False, True])
def test_lenet_as_dagnn_trains_as_simplenn(tmp_path, batch_normalization):
    # In double precision: both trainers call the same blocks, but on
    # arrays that may be laid out differently, so single-precision rounding
    # differs; a max-pool window whose two largest values are that close
    # then routes its gradient elsewhere, and a few steps amplify that into
    # visibly different weights.  float64 keeps both runs within 1e-4.
    cnn_mnist = load_example("cnn_mnist")
    imdb = digits()
    imdb.images.data = imdb.images.data.astype(np.float64)
    val = np.flatnonzero(imdb.images.set == 3)
    options = dict(numEpochs=2, batchSize=10, numSubBatches=2, learningRate=0.01, val=val,
                   **QUIET)
    simple, info = cnn_train(
        in_double(cnn_mnist.cnn_mnist_init(batch_normalization=batch_normalization)),
        imdb, cnn_mnist.get_batch, expDir=str(tmp_path / "s"), **options)
    dag = in_double(cnn_mnist.cnn_mnist_init(batch_normalization=batch_normalization,
                                             network_type="dagnn"))
    dag, stats = cnn_train_dag(dag, imdb, cnn_mnist.get_dagnn_batch,
                               expDir=str(tmp_path / "d"), **options)
    expected = dagnn.DagNN.fromSimpleNN(simple, canonicalNames=True)
    for p in dag.params:
        q = expected.params[expected.getParamIndex(p.name)]
        np.testing.assert_allclose(p.value, q.value, rtol=1e-4, atol=1e-6, err_msg=p.name)
    np.testing.assert_allclose(stats.train.objective, info.train.objective, rtol=1e-5)
    np.testing.assert_allclose(stats.val.error, info.val.top1err)
    np.testing.assert_allclose(stats.val.top5err, info.val.top5err)


# --------------------------------------------------------------------------
# checkpoints

def final_values(net):
    # a file has no 1-D arrays: a vector comes back as a 1 x N row
    return [np.array(p.value).ravel(order="F") for p in net.params]


def test_continue_equals_an_uninterrupted_run(tmp_path):
    imdb = tiny_imdb(12)
    options = dict(batchSize=4, learningRate=0.05, val=np.arange(8, 12), train=np.arange(8),
                   **QUIET)
    straight, straight_stats = cnn_train_dag(tiny_net(), imdb, get_inputs,
                                             expDir=str(tmp_path / "a"), numEpochs=3, **options)
    cnn_train_dag(tiny_net(), imdb, get_inputs, expDir=str(tmp_path / "b"), numEpochs=1,
                  **options)
    resumed, resumed_stats = cnn_train_dag(tiny_net(), imdb, get_inputs,
                                           expDir=str(tmp_path / "b"), numEpochs=3, **options)
    for a, b in zip(final_values(straight), final_values(resumed)):
        np.testing.assert_array_equal(a, b)
    # the moments' trainMethod comes back with the BatchNorm block
    assert resumed.params[resumed.getParamIndex("bnx")].trainMethod == "average"
    assert resumed_stats.val.objective == straight_stats.val.objective
    # a checkpoint is a DagNN model file too
    loaded = dagnn.load_net(tmp_path / "a" / "net-epoch-3.mat")
    for a, b in zip(final_values(straight), final_values(loaded)):
        np.testing.assert_array_equal(a, b)


def test_truncated_last_checkpoint_is_skipped(tmp_path):
    imdb = tiny_imdb(12)
    options = dict(batchSize=4, learningRate=0.05, val=np.arange(8, 12), train=np.arange(8),
                   **QUIET)
    straight, _ = cnn_train_dag(tiny_net(), imdb, get_inputs, expDir=str(tmp_path / "a"),
                                numEpochs=2, **options)
    cnn_train_dag(tiny_net(), imdb, get_inputs, expDir=str(tmp_path / "b"), numEpochs=2,
                  **options)
    last = tmp_path / "b" / "net-epoch-2.mat"
    last.write_bytes(last.read_bytes()[:len(last.read_bytes()) // 2])
    (tmp_path / "b" / ".net-epoch-2.mat.x1y2z3.tmp").write_bytes(b"partial")
    with pytest.warns(RuntimeWarning, match="skipping checkpoint .*net-epoch-2.mat"):
        resumed, _ = cnn_train_dag(tiny_net(), imdb, get_inputs, expDir=str(tmp_path / "b"),
                                   numEpochs=2, **options)
    for a, b in zip(final_values(straight), final_values(resumed)):
        np.testing.assert_array_equal(a, b)
    assert sorted(os.listdir(tmp_path / "b")) == ["net-epoch-1.mat", "net-epoch-2.mat"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dagnn.load_net(last)  # rewritten whole


# --------------------------------------------------------------------------
# examples/cnn_mnist.py --network-type dagnn

def test_cnn_mnist_example_as_dagnn_with_batch_norm(tmp_path):
    # (without batch normalisation: test_cnn_mnist_main_as_dagnn)
    pytest.importorskip("sklearn")
    cnn_mnist = load_example("cnn_mnist")
    net, info = cnn_mnist.cnn_mnist(exp_dir=str(tmp_path), quick=True, network_type="dagnn",
                                    batch_normalization=True, plotStatistics=False,
                                    verbose=False)
    assert isinstance(net, dagnn.DagNN)
    assert info.train.num == [300, 300] and info.val.num == [100, 100]
    assert sorted(info.val) == ["error", "num", "objective", "time", "top5err"]
    assert info.train.objective[1] < info.train.objective[0] < np.log(10) + 0.1
    assert info.val.error[-1] < 0.5  # far better than chance (0.9) after 12 updates
    assert sorted(os.listdir(tmp_path)) == ["net-epoch-1.mat", "net-epoch-2.mat"]
    loaded = dagnn.load_net(tmp_path / "net-epoch-2.mat")
    assert [p.name for p in loaded.params] == [p.name for p in net.params]


def test_cnn_mnist_main_as_dagnn(tmp_path, capsys):
    pytest.importorskip("sklearn")
    cnn_mnist = load_example("cnn_mnist")
    argv = ["--quick", "--epochs", "1", "--network-type", "dagnn", "--exp-dir", str(tmp_path)]
    assert cnn_mnist.main(argv) == 0
    out = capsys.readouterr().out
    assert "epochs: 1," in out and "validation: objective" in out and "top1err" in out
    assert "python3 -m dagnn print" in out
    assert sorted(os.listdir(tmp_path)) == ["net-epoch-1.mat", "net-train.png"] or \
        sorted(os.listdir(tmp_path)) == ["net-epoch-1.mat"]  # without matplotlib
