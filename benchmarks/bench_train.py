#!/usr/bin/env python
"""Benchmark one training step of LeNet (MatConvNet's MNIST network).

One step is what ``cnn_train`` does for every batch: ``vl_simplenn``
forward and backward on a batch of 100 28 x 28 x 1 float32 images, then the
SGD-with-momentum update of every weight (``learningRate`` 0.001,
``momentum`` 0.9, ``weightDecay`` 0.0005, MatConvNet's rule: ``g = dzdw +
decay * w; v = momentum * v - g; w = w + lr * v``; bnorm moments take
``w = (1 - a) * w + a * moments``).  The network is the one of
``examples/cnn_mnist.py`` (``cnn_mnist_init``): conv 5x5x1x20, max pool
2/2, conv 5x5x20x50, max pool 2/2, conv 4x4x50x500, relu, conv 1x1x500x10,
softmaxloss; and LeNet with batch normalisation (a bnorm layer after each
of the first three convolutions, ``cnn_mnist_init``'s
``batchNormalization``).  Both are timed by default; ``--network plain``
or ``--network bnorm`` times one.

When ``import torch`` works the same step is timed in PyTorch with
``torch.set_num_threads(2)``: an equivalent ``nn.Sequential`` (same
weights, NCHW copies of the same images), ``nn.CrossEntropyLoss`` (the
batch average, as MatConvNet's softmaxloss) and ``torch.optim.SGD(lr=0.001,
momentum=0.9, weight_decay=0.0005)`` (the same update with the velocity's
sign flipped; no decay on the bnorm parameters, as MatConvNet's
``weightDecay [0 0]``).  ``ratio = torch time / our time``: above 1 we are
faster.  Before timing, one step of each from the same weights is compared
(``rel err``: the largest difference between the two weight updates
relative to the largest update, a quick check that the two steps are the
same computation; ~1e-5 in float32).

Rows:

* ``train step``: forward + backward + update, what a training batch costs;
* ``val forward``: ``vl_simplenn`` in test mode (``torch.no_grad`` and
  ``model.eval()``), what a validation batch costs;
* ``cnn_train epoch`` and ``cnn_train_dag epoch`` (ours only, skipped
  with ``--no-epoch``): the trainers' overhead.  In each of
  ``--epoch-rounds`` rounds, the bare step is run back to back as many
  times as an epoch of ``--epoch-images`` random training images has
  batches (``bare loop``: the mean step, no batch fetching; for
  ``cnn_train_dag`` the step of the same LeNet as a DagNN, ``net.eval``
  and the same update), then a whole epoch of the trainer over those
  images without validation, figures or messages (batch fetching, error
  counts, statistics, the update, set-up, the checkpoint).  The row gives the
  median images/s of each and the median of the per-round ratios
  ``epoch / bare loop``: what share of the bare step's rate the trainer
  keeps; and the median share of the epoch's wall time spent inside the
  step's own work (the network call and the update, timed inside the
  epoch), which a busy machine skews far less than the ratio of two runs.  ``scipy.io`` (imported by the first checkpoint of a process,
  ~0.6 s once) is imported before timing.

Usage::

    python benchmarks/bench_train.py [--batch-size 100] [--repeat 10]
                                     [--network both|plain|bnorm]
                                     [--no-torch] [--no-epoch]

Measuring (/work/shared/PERFORMANCE.md): torch's and OpenBLAS's idle
threads spin for about 0.13 s after each call, so each side is timed in its
own block (warm-up steps, then back-to-back steps) with a pause between
blocks, and the minimum over the steps is reported.  ``/proc/stat`` tells
how many cores other processes kept busy during a block; a block with more
than ``--busy`` cores of foreign load is redone up to ``--retries`` times.
The ``busy`` column is the least foreign load seen (cores), marked ``!``
above ``--busy``: rerun such a row on a quiet machine before trusting it.
"""

import argparse
import gc
import importlib
import math
import os
import sys
import tempfile
import time

import numpy as np

try:
    from simplenn import vl_simplenn, vl_simplenn_tidy
except ImportError:  # running from a checkout without the editable install
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from simplenn import vl_simplenn, vl_simplenn_tidy

PAUSE_S = 0.25          # idle time between timing blocks (thread spin ~0.13 s)
LEARNING_RATE = 0.001   # cnn_mnist_init's trainOpts and cnn_train's defaults
MOMENTUM = 0.9
WEIGHT_DECAY = 0.0005


# --------------------------------------------------------------------------
# the network (examples/cnn_mnist.py's cnn_mnist_init)
# --------------------------------------------------------------------------

def lenet(batch_norm, rng):
    """LeNet as MatConvNet's cnn_mnist_init builds it, tidied."""
    f = np.float32(1 / 100)

    def conv(fh, fw, c, k):
        return {"type": "conv",
                "weights": [f * rng.standard_normal((fh, fw, c, k), dtype=np.float32),
                            np.zeros((1, k), np.float32)],
                "stride": 1, "pad": 0}

    def pool():
        return {"type": "pool", "method": "max", "pool": [2, 2], "stride": 2, "pad": 0}

    layers = [conv(5, 5, 1, 20), pool(), conv(5, 5, 20, 50), pool(), conv(4, 4, 50, 500),
              {"type": "relu"}, conv(1, 1, 500, 10), {"type": "softmaxloss"}]
    if batch_norm:
        for l in (0, 3, 6):  # after each of the first three conv layers (0-based)
            k = layers[l]["weights"][0].shape[3]
            layers[l]["weights"][1] = None  # the conv bias is redundant before bnorm
            layers.insert(l + 1, {"type": "bnorm",
                                  "weights": [np.ones((k, 1), np.float32),
                                              np.zeros((k, 1), np.float32)],
                                  "learningRate": np.array([1, 1, 0.05]),
                                  "weightDecay": np.array([0, 0])})
    return vl_simplenn_tidy({"layers": layers, "meta": {"inputSize": [28, 28, 1]}})


def multipliers(layer, name, count):
    values = layer.get(name)
    if values is None:
        return [1.0] * count
    # Python floats: a NumPy float64 scalar would promote float32 weights
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


class OurStep:
    """vl_simplenn forward/backward plus cnn_train's SGD momentum update."""

    def __init__(self, net, images, labels):
        self.net = net
        self.images = images
        net.layers[-1]["class"] = labels
        self.velocity = [[0] * len(layer.get("weights") or []) for layer in net.layers]
        self.res = None

    def train(self):
        layers = self.net.layers
        self.res = vl_simplenn(self.net, self.images, 1.0, self.res, mode="normal",
                               conserveMemory=True)
        for l, layer in enumerate(layers):
            weights = layer.get("weights") or []
            rates = multipliers(layer, "learningRate", len(weights))
            decays = multipliers(layer, "weightDecay", len(weights))
            for j, w in enumerate(weights):
                grad = self.res[l].dzdw[j] if self.res[l].dzdw else None
                if w is None or grad is None:
                    continue
                if layer["type"] == "bnorm" and j == 2:
                    weights[j] = (1 - rates[j]) * w + rates[j] * grad
                    continue
                grad = grad + (WEIGHT_DECAY * decays[j]) * w
                self.velocity[l][j] = MOMENTUM * self.velocity[l][j] - grad
                weights[j] = w + (LEARNING_RATE * rates[j]) * self.velocity[l][j]
        return self.res[-1].x

    def forward(self):
        return vl_simplenn(self.net, self.images, None, None, mode="test",
                           conserveMemory=True)[-2].x

    def parameters(self):
        """Filters and biases, as torch arrays them (for the comparison)."""
        out = []
        for layer in self.net.layers:
            if layer["type"] == "conv":
                w, b = layer["weights"][0], layer["weights"][1]
                out.append(np.asarray(w).transpose(3, 2, 0, 1))
                if b is not None:
                    out.append(np.asarray(b).ravel())
            elif layer["type"] == "bnorm":
                out += [np.asarray(layer["weights"][0]).ravel(),
                        np.asarray(layer["weights"][1]).ravel()]
        return out


class DagStep:
    """The same step on the LeNet DagNN (``fromSimpleNN``): ``net.eval``
    forward and backward, then the same update of every parameter."""

    def __init__(self, net, images, labels):
        self.net = net
        self.inputs = ["input", images, "label", labels]
        self.velocity = [0] * len(net.params)

    def train(self):
        net = self.net
        net.mode = "normal"
        net.eval(self.inputs, ["objective", 1])
        for p, param in enumerate(net.params):
            w, grad = param.value, param.der
            if param.trainMethod == "average":
                rate = float(param.learningRate)
                param.value = (1 - rate) * w + (rate / param.fanout) * grad
                continue
            grad = grad + (WEIGHT_DECAY * float(param.weightDecay)) * w
            self.velocity[p] = MOMENTUM * self.velocity[p] - grad
            param.value = w + (LEARNING_RATE * float(param.learningRate)) * self.velocity[p]


class TorchStep:
    """The same network and step in PyTorch."""

    def __init__(self, torch, net, images, labels):
        nn = torch.nn
        self.torch = torch
        modules, decay, no_decay = [], [], []
        for layer in net.layers:
            kind = layer["type"]
            if kind == "conv":
                w, b = layer["weights"][0], layer["weights"][1]
                fh, fw, c, k = w.shape
                conv = nn.Conv2d(c, k, (fh, fw), bias=b is not None)
                with torch.no_grad():
                    conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(
                        np.asarray(w).transpose(3, 2, 0, 1))))
                    if b is not None:
                        conv.bias.copy_(torch.from_numpy(np.asarray(b).ravel()))
                modules.append(conv)
                decay += list(conv.parameters())
            elif kind == "pool":
                modules.append(nn.MaxPool2d(2, 2))
            elif kind == "relu":
                modules.append(nn.ReLU())
            elif kind == "bnorm":
                k = np.asarray(layer["weights"][0]).size
                # momentum = MatConvNet's moment rate 0.05; eps as tidy's
                norm = nn.BatchNorm2d(k, eps=float(layer.get("epsilon", 1e-5)), momentum=0.05)
                modules.append(norm)
                no_decay += list(norm.parameters())
        modules.append(nn.Flatten())
        self.model = nn.Sequential(*modules)
        self.loss = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(
            [{"params": decay, "weight_decay": WEIGHT_DECAY},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=LEARNING_RATE, momentum=MOMENTUM)
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1)))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64).ravel() - 1)

    def train(self):
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.model(self.images), self.labels)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def forward(self):
        self.model.eval()
        with self.torch.no_grad():
            return self.model(self.images)

    def parameters(self):
        return [p.detach().numpy() for p in self.model.parameters()]


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------

def cpu_busy_s():
    """(busy seconds of all CPUs since boot, CPU seconds of this process),
    or None where /proc/stat is missing."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    own = os.times()
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), own.user + own.system


def time_block(fn, repeat, warmup):
    """Minimum seconds of ``repeat`` back-to-back calls after ``warmup``
    calls, and the average number of cores other processes kept busy."""
    for _ in range(warmup):
        fn()
    gc.collect()
    gc.disable()
    before, start = cpu_busy_s(), time.perf_counter()
    best = math.inf
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    finally:
        gc.enable()
    after, wall = cpu_busy_s(), time.perf_counter() - start
    load = None
    if before is not None and after is not None and wall > 0.05:
        load = max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / wall)
    time.sleep(PAUSE_S)
    return best, load


def timed(fn, repeat, warmup, retries, busy):
    """:func:`time_block`, redone while another process held more than
    ``busy`` cores (at most ``retries`` times); the minimum is kept and the
    least foreign load seen is returned with it."""
    best, load = time_block(fn, repeat, warmup)
    for _ in range(retries):
        if load is None or load <= busy:
            break
        again, load_again = time_block(fn, repeat, 1)
        best = min(best, again)
        load = load_again if load_again is not None else load
    return best, load


def epoch_overhead(batch_norm, images, batch_size, rounds, seed, trainer="cnn_train"):
    """Median images/s of the bare loop and of a trainer's epoch over the
    same number of batches, and the median of their per-round ratios.
    ``trainer``: ``'cnn_train'`` (the bare step of :class:`OurStep`) or
    ``'cnn_train_dag'`` (LeNet as a DagNN, the bare step of
    :class:`DagStep`)."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((28, 28, 1, images), dtype=np.float32) * 80
    labels = rng.integers(1, 11, size=images).astype(np.float64)
    imdb = {"images": {"data": data, "labels": labels, "set": np.ones(images)}}
    # a batch as get_batch returns it (a contiguous copy)
    first = np.ascontiguousarray(data[:, :, :, :batch_size]), labels[:batch_size]
    if trainer == "cnn_train":
        from simplenn import cnn_train as train

        def get_batch(imdb, batch):
            return imdb["images"]["data"][:, :, :, batch], imdb["images"]["labels"][batch]

        net = lenet(batch_norm, np.random.default_rng(seed))
        bare = OurStep(lenet(batch_norm, np.random.default_rng(seed)), *first)
    else:
        import dagnn
        from dagnn import cnn_train_dag as train

        def get_batch(imdb, batch):
            return ["input", imdb["images"]["data"][:, :, :, batch],
                    "label", imdb["images"]["labels"][batch]]

        def dag():
            return dagnn.DagNN.fromSimpleNN(lenet(batch_norm, np.random.default_rng(seed)),
                                            canonicalNames=True)

        net = dag()
        bare = DagStep(dag(), *first)
    steps = -(-images // batch_size)
    for _ in range(2):
        bare.train()
    bare_rates, epoch_rates, ratios, shares = [], [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            bare.train()
        bare_rate = steps * batch_size / (time.perf_counter() - start)
        time.sleep(PAUSE_S)
        with tempfile.TemporaryDirectory() as exp_dir, StepClock(trainer) as clock:
            start = time.perf_counter()
            train(net, imdb, get_batch, expDir=exp_dir, batchSize=batch_size, numEpochs=1,
                  val=math.nan, plotStatistics=False, verbose=False, continue_=False)
            wall = time.perf_counter() - start
        time.sleep(PAUSE_S)
        bare_rates.append(bare_rate)
        epoch_rates.append(images / wall)
        ratios.append(images / wall / bare_rate)
        shares.append(clock.seconds / wall)
    return (float(np.median(bare_rates)), float(np.median(epoch_rates)),
            float(np.median(ratios)), float(np.median(shares)))


class StepClock:
    """Adds up, during an epoch, the seconds spent in the step's own work:
    the network call (``vl_simplenn`` as cnn_train calls it, or
    ``DagNN.eval``) and the engine's ``update_parameters``.  Its share of
    the epoch's wall time does not depend on how fast the machine is at the
    moment (both sides slow down together), unlike a ratio of two runs."""

    def __init__(self, trainer):
        import simplenn.train
        import simplenn.training.loop

        self.targets = [(simplenn.training.loop, "update_parameters")]
        if trainer == "cnn_train":
            self.targets.append((simplenn.train, "vl_simplenn"))
        else:
            import dagnn

            self.targets.append((dagnn.DagNN, "eval"))
        self.seconds = 0.0

    def __enter__(self):
        self.saved = [(owner, name, getattr(owner, name)) for owner, name in self.targets]
        for owner, name, function in self.saved:
            setattr(owner, name, self._timed(function))
        return self

    def __exit__(self, *exc):
        for owner, name, function in self.saved:
            setattr(owner, name, function)
        return False

    def _timed(self, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def update_err(before, ours, theirs):
    """Largest difference of the two weight updates relative to the largest
    update (the weights themselves barely move in one step)."""
    ours = [np.asarray(a, np.float64) - b for a, b in zip(ours, before)]
    theirs = [np.asarray(a, np.float64) - b for a, b in zip(theirs, before)]
    scale = max(float(np.max(np.abs(t))) for t in theirs)
    return max(float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs)) / scale


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=100, help="images per step (100)")
    ap.add_argument("--repeat", type=int, default=10, help="timed steps per block (10)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (3)")
    ap.add_argument("--network", choices=("both", "plain", "bnorm"), default="both",
                    help="LeNet, LeNet with batch normalisation, or both (default)")
    ap.add_argument("--batch-norm", action="store_true", help="same as --network bnorm")
    ap.add_argument("--no-torch", action="store_true", help="do not time torch")
    ap.add_argument("--no-epoch", action="store_true", help="skip the cnn_train epoch row")
    ap.add_argument("--epoch-images", type=int, default=1000,
                    help="training images of the cnn_train epoch row (1000)")
    ap.add_argument("--epoch-rounds", type=int, default=5,
                    help="bare-loop / epoch pairs timed for the epoch row (5)")
    ap.add_argument("--retries", type=int, default=2,
                    help="redo a block this many times while other processes are busy (2)")
    ap.add_argument("--busy", type=float, default=0.3,
                    help="foreign load (cores) above which a block is redone (0.3)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.batch_norm:
        args.network = "bnorm"

    torch = None
    if not args.no_torch:
        try:
            import torch
        except Exception as exc:  # not installed, or a broken installation
            print(f"torch is not usable ({type(exc).__name__}): timing vlnn only")
            torch = None
    if torch is not None:
        torch.set_num_threads(2)
        torch.manual_seed(args.seed)
    importlib.import_module("scipy.io")  # imported once per process by the first checkpoint

    print(f"numpy {np.__version__}" + (f", torch {torch.__version__} (2 threads)"
                                      if torch is not None else "") + f", {os.cpu_count()} cores")
    variants = {"both": (False, True), "plain": (False,), "bnorm": (True,)}[args.network]
    contended = []
    for batch_norm in variants:
        contended += run_network(args, torch, batch_norm)
    if contended:
        print(f"\nwarning: other processes kept more than {args.busy} cores busy while timing "
              f"{', '.join(contended)} (marked !): rerun on a quiet machine")
    print("\nratio = torch time / our time (above 1: vlnn is faster); minimum over "
          f"{args.repeat} steps per block")
    return 0


def run_network(args, torch, batch_norm):
    """Time one network; returns the labels of the rows timed under load."""
    rng = np.random.default_rng(args.seed)
    n = args.batch_size
    # mean-subtracted MNIST pixels spread about +-100 around 0
    images = rng.standard_normal((28, 28, 1, n), dtype=np.float32) * 80
    labels = rng.integers(1, 11, size=n)
    name = "LeNet" + (" + bnorm" if batch_norm else "")
    print(f"\n{name}, batch of {n} 28x28x1 float32 images, SGD momentum {MOMENTUM}, "
          f"lr {LEARNING_RATE}, weight decay {WEIGHT_DECAY}")

    ours = OurStep(lenet(batch_norm, rng), images, labels)
    theirs = TorchStep(torch, ours.net, images, labels) if torch is not None else None
    if theirs is not None:
        before = [np.array(p, np.float64) for p in ours.parameters()]
        loss_ours = float(ours.train())
        loss_theirs = float(theirs.train())
        err = update_err(before, ours.parameters(), theirs.parameters())
        print(f"one step from the same weights: loss {loss_ours:.6f} (ours) "
              f"{loss_theirs:.6f} (torch); rel err of the weight updates {err:.1e}")

    rows = []
    for label, ours_fn, theirs_fn in (
            ("train step", ours.train, theirs.train if theirs else None),
            ("val forward", ours.forward, theirs.forward if theirs else None)):
        ours_s, ours_load = timed(ours_fn, args.repeat, args.warmup, args.retries, args.busy)
        theirs_s, theirs_load = (timed(theirs_fn, args.repeat, args.warmup, args.retries,
                                       args.busy) if theirs_fn else (None, None))
        loads = [v for v in (ours_load, theirs_load) if v is not None]
        rows.append((label, ours_s, theirs_s, max(loads) if loads else None))

    print(f"{'':<16}{'ours ms':>9}{'img/s':>9}{'torch ms':>10}{'img/s':>9}{'ratio':>8}  busy")
    for label, ours_s, theirs_s, load in rows:
        line = f"{label:<16}{1e3 * ours_s:>9.2f}{n / ours_s:>9.0f}"
        if theirs_s is not None:
            line += f"{1e3 * theirs_s:>10.2f}{n / theirs_s:>9.0f}{theirs_s / ours_s:>8.2f}"
        else:
            line += f"{'-':>10}{'-':>9}{'-':>8}"
        if load is not None:
            line += f"  {load:.2f}" + (" !" if load > args.busy else "")
        print(line)

    if not args.no_epoch:
        for trainer in ("cnn_train", "cnn_train_dag"):
            bare_rate, epoch_rate, ratio, share = epoch_overhead(
                batch_norm, args.epoch_images, n, args.epoch_rounds, args.seed, trainer)
            print(f"{trainer} epoch of {args.epoch_images} images: {epoch_rate:.0f} img/s, "
                  f"bare loop {bare_rate:.0f} img/s: the trainer keeps {100 * ratio:.0f}% of "
                  f"the bare step rate; {100 * share:.1f}% of the epoch is the step's own "
                  f"work (medians of {args.epoch_rounds} rounds)")
    return [f"{name} {row[0]}" for row in rows if row[3] is not None and row[3] > args.busy]


if __name__ == "__main__":
    sys.exit(main())
