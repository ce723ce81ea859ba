"""The example scripts run end to end (examples/)."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def child_environment():
    """The environment of an example run as a subprocess: the repository
    root first on its path, so that a plain checkout (nothing installed)
    runs the examples against this tree's packages."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_conv_relu_conv_passes():
    done = subprocess.run([sys.executable, os.path.join(EXAMPLES, "conv_relu_conv.py")],
                          capture_output=True, text=True, timeout=120, env=child_environment(),
                          cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout.splitlines()[-1]


def test_cnn_mnist_init_is_matconvnets_lenet():
    cnn_mnist = load_example("cnn_mnist")
    net = cnn_mnist.cnn_mnist_init()
    assert [layer.type for layer in net.layers] == [
        "conv", "pool", "conv", "pool", "conv", "relu", "conv", "softmaxloss"]
    shapes = [layer.weights[0].shape for layer in net.layers if layer.type == "conv"]
    assert shapes == [(5, 5, 1, 20), (5, 5, 20, 50), (4, 4, 50, 500), (1, 1, 500, 10)]
    assert all(layer.weights[0].dtype == np.float32 for layer in net.layers
               if layer.type == "conv")

    net = cnn_mnist.cnn_mnist_init(batch_normalization=True)
    types = [layer.type for layer in net.layers]
    assert types == ["conv", "bnorm", "pool", "conv", "bnorm", "pool", "conv", "bnorm",
                     "relu", "conv", "softmaxloss"]
    for l in (0, 3, 6):  # the conv before each bnorm has no bias
        assert net.layers[l].weights[1] is None
        k = net.layers[l].weights[0].shape[3]
        assert net.layers[l + 1].weights[0].shape[0] == k


def test_read_idx(tmp_path):
    import gzip

    cnn_mnist = load_example("cnn_mnist")
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + np.array([2, 3, 4], ">u4").tobytes()
    (tmp_path / "plain").write_bytes(header + images.tobytes())
    with gzip.open(tmp_path / "zipped.gz", "wb") as fh:
        fh.write(header + images.tobytes())
    np.testing.assert_array_equal(cnn_mnist.read_idx(str(tmp_path / "plain")), images)
    np.testing.assert_array_equal(cnn_mnist.read_idx(str(tmp_path / "zipped.gz")), images)
    (tmp_path / "short").write_bytes(header + images.tobytes()[:-1])
    with pytest.raises(ValueError, match="header"):
        cnn_mnist.read_idx(str(tmp_path / "short"))


def test_mnist_imdb_from_idx_files(tmp_path):
    cnn_mnist = load_example("cnn_mnist")
    rng = np.random.default_rng(0)
    counts = {"train": 6, "t10k": 4}
    pictures = {}
    for part, n in counts.items():
        pictures[part] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        (tmp_path / f"{part}-images-idx3-ubyte").write_bytes(
            bytes([0, 0, 8, 3]) + np.array([n, 28, 28], ">u4").tobytes()
            + pictures[part].tobytes())
        (tmp_path / f"{part}-labels-idx1-ubyte").write_bytes(
            bytes([0, 0, 8, 1]) + np.array([n], ">u4").tobytes()
            + np.arange(n, dtype=np.uint8).tobytes())
    imdb = cnn_mnist.get_mnist_imdb(str(tmp_path))
    assert imdb.images.data.shape == (28, 28, 1, 10)
    assert imdb.images.data.dtype == np.float32
    np.testing.assert_array_equal(imdb.images.set, [1] * 6 + [3] * 4)
    np.testing.assert_array_equal(imdb.images.labels, list(range(1, 7)) + list(range(1, 5)))
    mean = pictures["train"].mean(axis=0)
    np.testing.assert_allclose(imdb.images.data_mean[:, :, 0], mean, rtol=1e-6)
    # rows x columns: data(i, j) is pixel row i, column j, minus the mean
    np.testing.assert_allclose(imdb.images.data[:, :, 0, 7],
                               pictures["t10k"][1] - mean, rtol=1e-5, atol=1e-4)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        cnn_mnist.get_mnist_imdb(str(tmp_path / "missing"))


def test_digits_imdb():
    pytest.importorskip("sklearn")
    cnn_mnist = load_example("cnn_mnist")
    imdb = cnn_mnist.get_digits_imdb()
    assert imdb.images.data.shape == (28, 28, 1, 1797)
    assert imdb.images.data.dtype == np.float32
    assert set(np.unique(imdb.images.set)) == {1, 3}
    assert np.sum(imdb.images.set == 3) == 359
    assert imdb.images.labels.min() == 1 and imdb.images.labels.max() == 10
    train = imdb.images.set == 1
    np.testing.assert_allclose(imdb.images.data[:, :, :, train].mean(axis=3), 0, atol=1e-3)
    # MNIST's range and framing: 0..255 before the mean is subtracted, and a
    # blank 4-pixel border
    pixels = imdb.images.data + imdb.images.data_mean[:, :, :, np.newaxis]
    assert pixels.min() > -1e-3 and pixels.max() < 255 + 1e-3 and pixels.max() > 250
    assert np.abs(pixels[:4]).max() < 1e-3 and np.abs(pixels[:, -4:]).max() < 1e-3


@pytest.mark.parametrize("batch_normalization", [False, True])
def test_cnn_mnist_trains_on_embedded_digits(tmp_path, batch_normalization):
    pytest.importorskip("sklearn")
    cnn_mnist = load_example("cnn_mnist")
    net, info = cnn_mnist.cnn_mnist(exp_dir=str(tmp_path), quick=True, plotStatistics=False,
                                    verbose=False, batch_normalization=batch_normalization)
    assert len(info.train.objective) == 2 and len(info.val.top1err) == 2
    assert info.train.num[-1] == 300 and info.val.num[-1] == 100
    objective = info.train.objective
    assert objective[1] < objective[0] < np.log(10) + 0.1
    assert info.val.top1err[-1] < 0.5  # far better than chance (0.9) after 12 updates
    assert sorted(os.listdir(tmp_path)) == ["net-epoch-1.mat", "net-epoch-2.mat"]


def test_cnn_mnist_main_prints_the_result(tmp_path, capsys):
    pytest.importorskip("sklearn")
    cnn_mnist = load_example("cnn_mnist")
    assert cnn_mnist.main(["--quick", "--epochs", "1", "--exp-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "validation: objective" in out and "top1err" in out
    assert os.path.join(str(tmp_path), "net-epoch-N.mat") in out
    # a second run resumes from the checkpoint and trains nothing more
    assert cnn_mnist.main(["--quick", "--epochs", "1", "--exp-dir", str(tmp_path)]) == 0
    assert "resumed after epoch 1" in capsys.readouterr().out
