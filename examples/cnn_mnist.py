#!/usr/bin/env python3
"""cnn_mnist: train LeNet on handwritten digits with cnn_train.

A port of MatConvNet's ``examples/mnist/cnn_mnist.m`` and
``cnn_mnist_init.m``.  Run it from the repository root::

    python3 examples/cnn_mnist.py                      # embedded digits, under a minute
    python3 examples/cnn_mnist.py --batch-norm         # with batch normalisation
    python3 examples/cnn_mnist.py --data-dir data/mnist  # the real MNIST (IDX files)
    python3 examples/cnn_mnist.py --quick              # a few seconds: smoke test
    python3 examples/cnn_mnist.py --network-type dagnn # the same LeNet as a DagNN
    mpiexec -n 2 python3 examples/cnn_mnist.py         # 2 workers (pip install '.[mpi]')

It builds the network, prepares an image database (``imdb``), trains with
``cnn_train`` and prints the final validation error and where the training
curves (``net-train.png``) and checkpoints (``net-epoch-N.mat``) are.

The network (``cnn_mnist_init``) is LeNet as MatConvNet builds it, single
precision, weights ``0.01 * randn``, zero biases::

    28x28x1 -> conv 5x5x1x20 -> 24x24x20 -> max pool 2/2 -> 12x12x20
            -> conv 5x5x20x50 -> 8x8x50 -> max pool 2/2 -> 4x4x50
            -> conv 4x4x50x500 -> 1x1x500 -> relu
            -> conv 1x1x500x10 -> 1x1x10 -> softmaxloss

``--batch-norm`` inserts a ``bnorm`` layer after each of the first three
convolutions (learning rates ``[1 1 0.05]``, no weight decay) and drops
the bias of the convolution before it, as ``cnn_mnist_init``'s
``batchNormalization`` option does.

The data (``getMnistImdb``).  With ``--data-dir`` pointing to the four IDX
files of the MNIST distribution (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each may be gzipped: ``.gz``), the 60,000
training images form set 1 and the 10,000 test images set 3, which is the
validation set, exactly as cnn_mnist.m.  Nothing is downloaded.  Without
it the script uses a small data set that ships with scikit-learn: the
1,797 8x8 handwritten digits of ``sklearn.datasets.load_digits`` (values
0..16), resampled to MNIST's framing (each digit scaled to 20x20 and
centred in a 28x28 image, as MNIST's digits are) and to MNIST's range
0..255, and split at random (seed 0) into 80% training (set 1) and 20%
validation (set 3).  Either way, pixels stay in 0..255 (not rescaled) and
the mean training image is subtracted from every image and kept in
``imdb.images.data_mean``.  Labels are 1-based: digit ``d`` has label
``d + 1``.

Training.  ``cnn_train(net, imdb, get_batch, ...)`` with
``val = np.flatnonzero(imdb.images.set == 3)`` (0-based positions, where
MATLAB has ``find(imdb.images.set == 3)``).  On MNIST the options are
cnn_mnist's (``batchSize`` 100, ``learningRate`` 0.001, 20 epochs; momentum
0.9 and weight decay 0.0005 are cnn_train's defaults).  The embedded
digits have about 40 times fewer training images, so 20 such epochs are
only 300 updates: their defaults are batches of 50 and twice the learning
rate, for 15 epochs (``DIGITS_TRAIN_OPTS``).  ``--epochs``,
``--batch-size`` and ``--learning-rate`` override either.

DagNN.  ``--network-type dagnn`` (cnn_mnist's ``networkType``) converts
the same LeNet with ``DagNN.fromSimpleNN(net, canonicalNames=True)``, adds
two Loss layers for the top-1 (``error``) and top-5 (``top5err``) errors,
and trains it with ``cnn_train_dag``, whose ``get_batch`` returns the
named inputs ``['input', images, 'label', labels]``; its experiment folder
gets ``-dagnn`` in its name.

Checkpoints.  cnn_train saves ``net-epoch-N.mat`` in the experiment folder
after every epoch and resumes from the last one, so a second run continues
where the first stopped (and trains nothing if it finished): change
``--exp-dir``, delete the folder, or pass ``--no-continue`` to start
afresh.  The folder defaults to ``data/<data>-baseline`` (``data`` is
``mnist`` or ``digits``), with ``-bnorm`` and ``-quick`` appended for those
options, as cnn_mnist names its ``expDir`` after its options.  (cnn_mnist.m
also caches the imdb there as ``imdb.mat``; building it takes a second or
two, so this port does not.)
"""

import argparse
import gzip
import importlib.util
import os
import re
import sys
import time

import numpy as np

import dagnn
from dagnn import cnn_train_dag
from simplenn import Struct, cnn_train, vl_simplenn_tidy
from simplenn.training import get_communicator

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

CHECKPOINT = re.compile(r"net-epoch-(\d+)\.mat")

# Training options of the embedded digits (1,437 training images).  With
# cnn_mnist's options (batches of 100, learning rate 0.001, 20 epochs) they
# get 300 updates where MNIST gets 12,000, and end at 2.2% validation
# error; batches of 50 and twice the rate reach 1.4% in 15 epochs.  On
# MNIST the options are cnn_mnist_init's net.meta.trainOpts.
DIGITS_TRAIN_OPTS = {"batchSize": 50, "numEpochs": 15, "learningRate": 0.002}


# --------------------------------------------------------------------------
# cnn_mnist_init
# --------------------------------------------------------------------------

def cnn_mnist_init(batch_normalization=False, seed=0, network_type="simplenn"):
    """LeNet for 28x28x1 images, as MatConvNet's ``cnn_mnist_init``.

    ``rng(0)`` and ``f * randn(..., 'single')`` become a seeded NumPy
    generator: the same distribution, not MATLAB's numbers.  Returns the
    tidied network with ``meta.inputSize``, ``meta.trainOpts`` and
    ``meta.classes``; with ``network_type='dagnn'``, that network as a
    DagNN (``fromSimpleNN`` with canonical names: inputs ``input`` and
    ``label``, outputs ``prediction`` and ``objective``) with two more
    Loss layers for the errors, ``error`` (top-1) and ``top5err``.
    """
    rng = np.random.default_rng(seed)
    f = np.float32(1 / 100)

    def conv(fh, fw, c, k):
        return Struct(type="conv",
                      weights=[f * rng.standard_normal((fh, fw, c, k), dtype=np.float32),
                               np.zeros((1, k), np.float32)],
                      stride=1, pad=0)

    def max_pool():
        return Struct(type="pool", method="max", pool=[2, 2], stride=2, pad=0)

    net = Struct(layers=[])
    net.layers.append(conv(5, 5, 1, 20))
    net.layers.append(max_pool())
    net.layers.append(conv(5, 5, 20, 50))
    net.layers.append(max_pool())
    net.layers.append(conv(4, 4, 50, 500))
    net.layers.append(Struct(type="relu"))
    net.layers.append(conv(1, 1, 500, 10))
    net.layers.append(Struct(type="softmaxloss"))

    # optionally switch to batch normalization; MATLAB's insertBnorm(net, 1),
    # (net, 4), (net, 7) with 1-based positions, each counting the bnorm
    # layers inserted before it
    if batch_normalization:
        net = insert_bnorm(net, 1)
        net = insert_bnorm(net, 4)
        net = insert_bnorm(net, 7)

    # meta parameters
    net.meta = Struct(inputSize=[28, 28, 1],
                      trainOpts=Struct(learningRate=0.001, numEpochs=20, batchSize=100),
                      classes=Struct(name=[str(c) for c in range(1, 11)]))

    # fill in default values
    net = vl_simplenn_tidy(net)
    if network_type == "simplenn":
        return net
    if network_type != "dagnn":
        raise ValueError(f"network_type must be 'simplenn' or 'dagnn', got {network_type!r}")
    net = dagnn.DagNN.fromSimpleNN(net, canonicalNames=True)
    net.addLayer("top1err", dagnn.Loss("loss", "classerror"), ["prediction", "label"], "error")
    net.addLayer("top5err", dagnn.Loss("loss", "topkerror", "opts", ["topk", 5]),
                 ["prediction", "label"], "top5err")
    return net


def insert_bnorm(net, l):
    """Insert a bnorm layer after the conv layer ``net.layers{l}`` (``l``
    1-based, as in cnn_mnist_init) and drop that layer's bias."""
    conv = net.layers[l - 1]
    assert "weights" in conv
    ndim = conv.weights[0].shape[3]
    layer = Struct(type="bnorm",
                   weights=[np.ones((ndim, 1), np.float32), np.zeros((ndim, 1), np.float32)],
                   learningRate=[1, 1, 0.05],
                   weightDecay=[0, 0])
    conv.weights[1] = None  # eliminate the bias in the previous conv layer
    net.layers.insert(l, layer)
    return net


# --------------------------------------------------------------------------
# the image database
# --------------------------------------------------------------------------

def read_idx(path):
    """An IDX file (the MNIST format), gzipped or not, as a uint8 array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    # magic number: two zero bytes, the type (0x08 = unsigned byte), the
    # number of dimensions; then one big-endian uint32 per dimension
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: holds {data.size} values, its header says {shape}")
    return data.reshape(shape)


def find_mnist_file(data_dir, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(data_dir, candidate)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(
        f"{data_dir}: no {name} (or {name}.gz); --data-dir must hold the four MNIST IDX "
        f"files: {', '.join(MNIST_FILES)}")


def make_imdb(images, labels, sets, classes):
    """An imdb from ``N x 28 x 28`` images (row-major, 0..255), digits and
    set codes: data ``H x W x 1 x N`` single, mean-subtracted."""
    # N x rows x columns -> rows x columns x 1 x N (H x W x C x N)
    data = np.ascontiguousarray(images.transpose(1, 2, 0)[:, :, np.newaxis, :],
                                dtype=np.float32)
    data_mean = data[:, :, :, sets == 1].mean(axis=3, dtype=np.float64).astype(np.float32)
    data -= data_mean[:, :, :, np.newaxis]

    imdb = Struct()
    imdb.images = Struct(data=data,
                         data_mean=data_mean,
                         labels=labels.astype(np.float64) + 1,  # 1-based class labels
                         set=sets)
    imdb.meta = Struct(sets=["train", "val", "test"], classes=classes)
    return imdb


def get_mnist_imdb(data_dir):
    """MNIST from its IDX files (cnn_mnist's getMnistImdb, without download)."""
    x1, y1, x2, y2 = (read_idx(find_mnist_file(data_dir, name)) for name in MNIST_FILES)
    images = np.concatenate([x1, x2])
    labels = np.concatenate([y1, y2])
    sets = np.concatenate([np.ones(len(y1)), 3 * np.ones(len(y2))])
    return make_imdb(images, labels, sets, [str(d) for d in range(10)])


def get_digits_imdb(seed=0, val_fraction=0.2):
    """scikit-learn's 8x8 digits, framed and scaled like MNIST."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    # MNIST fits each digit in a 20x20 box centred in a 28x28 image: scale
    # the 8x8 images to 20x20 (bilinear), pad 4 pixels on every side, and
    # map the range 0..16 to 0..255
    images = zoom(digits.images.astype(np.float64), (1, 20 / 8, 20 / 8), order=1)
    images = np.pad(np.clip(images, 0, 16), ((0, 0), (4, 4), (4, 4))) * (255 / 16)
    labels = digits.target

    order = np.random.default_rng(seed).permutation(len(labels))
    sets = np.ones(len(labels))
    sets[order[:round(val_fraction * len(labels))]] = 3
    return make_imdb(images, labels, sets, [str(d) for d in range(10)])


def get_batch(imdb, batch):
    """``[im, labels] = getBatch(imdb, batch)``; ``batch`` holds 0-based positions."""
    images = imdb.images.data[:, :, :, batch]
    labels = imdb.images.labels[batch]
    return images, labels


def get_dagnn_batch(imdb, batch):
    """``inputs = getDagNNBatch(opts, imdb, batch)``: the DagNN's named inputs."""
    images, labels = get_batch(imdb, batch)
    return ["input", images, "label", labels]


# --------------------------------------------------------------------------
# cnn_mnist
# --------------------------------------------------------------------------

def default_exp_dir(data_dir, batch_normalization, quick, network_type="simplenn"):
    """``data/<data>-baseline``, ``-dagnn``, ``-bnorm`` and ``-quick``
    appended as set."""
    return os.path.join("data", ("mnist" if data_dir else "digits") + "-baseline"
                        + ("-dagnn" if network_type == "dagnn" else "")
                        + ("-bnorm" if batch_normalization else "")
                        + ("-quick" if quick else ""))


def cnn_mnist(data_dir=None, exp_dir=None, batch_normalization=False, quick=False,
              network_type="simplenn", **train):
    """Train LeNet; returns ``(net, info)`` as cnn_train (or, with
    ``network_type='dagnn'``, cnn_train_dag) does.

    ``train`` holds cnn_train options that override the defaults
    (``numEpochs``, ``batchSize``, ``learningRate``, ``continue``, ...).
    """
    if exp_dir is None:
        exp_dir = default_exp_dir(data_dir, batch_normalization, quick, network_type)

    # prepare the data
    imdb = get_mnist_imdb(data_dir) if data_dir else get_digits_imdb()
    net = cnn_mnist_init(batch_normalization=batch_normalization, network_type=network_type)

    opts = dict(net.meta.trainOpts) if data_dir else dict(DIGITS_TRAIN_OPTS)
    opts["expDir"] = exp_dir
    opts["train"] = np.flatnonzero(imdb.images.set == 1)
    opts["val"] = np.flatnonzero(imdb.images.set == 3)
    if quick:
        # a smoke test: two epochs over a few batches
        opts.update(numEpochs=2, batchSize=50)
        opts["train"] = opts["train"][:300]
        opts["val"] = opts["val"][:100]
    opts.update(train)

    # train
    if network_type == "dagnn":
        return cnn_train_dag(net, imdb, get_dagnn_batch, **opts)
    return cnn_train(net, imdb, get_batch, **opts)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Train LeNet on handwritten digits with cnn_train "
                    "(MatConvNet's cnn_mnist).")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="folder with the four MNIST IDX files (gzipped or not); "
                             "default: scikit-learn's embedded 8x8 digits")
    parser.add_argument("--exp-dir", metavar="DIR",
                        help="checkpoints and figures (default: data/<data>-baseline...)")
    parser.add_argument("--batch-norm", action="store_true",
                        help="insert bnorm layers (cnn_mnist_init's batchNormalization)")
    parser.add_argument("--network-type", choices=("simplenn", "dagnn"), default="simplenn",
                        help="train a SimpleNN with cnn_train (default) or the same LeNet "
                             "as a DagNN with cnn_train_dag (cnn_mnist's networkType)")
    parser.add_argument("--epochs", type=int, metavar="N",
                        help="numEpochs (default: 15 on the digits, 20 on MNIST)")
    parser.add_argument("--batch-size", type=int, metavar="N",
                        help="batchSize (default: 50 on the digits, 100 on MNIST)")
    parser.add_argument("--learning-rate", type=float, metavar="LR",
                        help="learningRate (default: 0.002 on the digits, 0.001 on MNIST)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2 epochs on 300 training and 100 validation images")
    parser.add_argument("--continue", dest="continue_", default=True,
                        action=argparse.BooleanOptionalAction,
                        help="resume from the last checkpoint in the experiment folder "
                             "(default; --no-continue starts afresh)")
    args = parser.parse_args(argv)
    if args.data_dir:
        try:
            for name in MNIST_FILES:
                find_mnist_file(args.data_dir, name)
        except FileNotFoundError as error:
            parser.error(str(error))
    elif importlib.util.find_spec("sklearn") is None:
        parser.error("the embedded digits need scikit-learn: "
                     "python3 -m pip install -e '.[examples]', or pass --data-dir")

    train = {"continue": args.continue_}
    if args.epochs is not None:
        train["numEpochs"] = args.epochs
    if args.batch_size is not None:
        train["batchSize"] = args.batch_size
    if args.learning_rate is not None:
        train["learningRate"] = args.learning_rate

    exp_dir = args.exp_dir or default_exp_dir(args.data_dir, args.batch_norm, args.quick,
                                              args.network_type)
    done = [int(m.group(1)) for m in map(CHECKPOINT.fullmatch, os.listdir(exp_dir)) if m] \
        if args.continue_ and os.path.isdir(exp_dir) else []
    start = time.perf_counter()
    net, info = cnn_mnist(data_dir=args.data_dir, exp_dir=exp_dir,
                          batch_normalization=args.batch_norm, quick=args.quick,
                          network_type=args.network_type, **train)
    elapsed = time.perf_counter() - start
    if get_communicator().rank != 0:
        return 0  # under mpiexec, worker 0 reports for all

    epochs = len(info.val.objective)
    print()
    if not epochs:
        print("no epoch trained")
        return 0
    resumed = f" (resumed after epoch {max(done)})" if done else ""
    print(f"epochs: {epochs}, wall time {elapsed:.1f} s (data and training){resumed}")
    top1 = "error" if args.network_type == "dagnn" else "top1err"  # the DagNN's var name
    print(f"training:   objective {info.train.objective[-1]:.4f}, "
          f"top1err {100 * info.train[top1][-1]:.2f}%")
    print(f"validation: objective {info.val.objective[-1]:.4f}, "
          f"top1err {100 * info.val[top1][-1]:.2f}%, "
          f"top5err {100 * info.val.top5err[-1]:.2f}%")
    figure = os.path.join(exp_dir, "net-train.png")
    if os.path.exists(figure):
        print(f"training curves: {figure}")
    print(f"checkpoints: {os.path.join(exp_dir, 'net-epoch-N.mat')} (N = 1..{epochs})")
    checkpoint = os.path.join(exp_dir, f"net-epoch-{epochs}.mat")
    if args.network_type == "dagnn":
        print(f"the network: python3 -m dagnn print {checkpoint}")
    else:
        print(f"the network: python3 -m simplenn display {checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
