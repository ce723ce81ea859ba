#!/usr/bin/env python
"""Benchmark vl_simplenn on an AlexNet-sized network: time and peak memory.

One forward + backward pass of MatConvNet's AlexNet layout (conv 11x11/4,
LRN, max pooling 3x3/2, grouped convolutions, fully-connected layers with
dropout, softmax loss) on a batch of 16 227x227x3 float32 images with
random weights, through ``vl_simplenn`` with and without
``conserveMemory``, and, when PyTorch is installed, the same network as a
``torch.nn.Sequential`` with 2 threads.

Each configuration runs in its own Python process, so that its peak memory
is its own: ``tracemalloc`` peak (numpy's allocations during the pass) and
the process's maximum resident set size (``ru_maxrss``, weights and
interpreter included).

Usage::

    python benchmarks/bench_simplenn.py [--batch N] [--repeat R] [--no-torch]
"""

import argparse
import json
import os
import subprocess
import sys
import time


def alexnet(np, batch_norm=False):
    """MatConvNet's AlexNet (imagenet/cnn_imagenet_init.m, 'alexnet') as a
    list of simplenn layer dicts with random float32 weights."""
    rng = np.random.default_rng(0)

    def conv(name, fh, fw, c, k, stride=1, pad=0):
        scale = np.sqrt(2.0 / (fh * fw * c))
        return {"type": "conv", "name": name, "stride": stride, "pad": pad,
                "weights": [(scale * rng.standard_normal((fh, fw, c, k))).astype(np.float32),
                            np.zeros((1, k), np.float32)]}

    def relu(name):
        return {"type": "relu", "name": name}

    def lrn(name):
        return {"type": "normalize", "name": name, "param": [5, 1, 0.0001 / 5, 0.75]}

    def pool(name):
        return {"type": "pool", "name": name, "method": "max", "pool": [3, 3], "stride": 2,
                "pad": 0}

    return {"layers": [
        conv("conv1", 11, 11, 3, 96, stride=4), relu("relu1"), lrn("norm1"), pool("pool1"),
        conv("conv2", 5, 5, 48, 256, pad=2), relu("relu2"), lrn("norm2"), pool("pool2"),
        conv("conv3", 3, 3, 256, 384, pad=1), relu("relu3"),
        conv("conv4", 3, 3, 192, 384, pad=1), relu("relu4"),
        conv("conv5", 3, 3, 192, 256, pad=1), relu("relu5"), pool("pool5"),
        conv("fc6", 6, 6, 256, 4096), relu("relu6"), {"type": "dropout", "rate": 0.5},
        conv("fc7", 1, 1, 4096, 4096), relu("relu7"), {"type": "dropout", "rate": 0.5},
        conv("fc8", 1, 1, 4096, 1000), {"type": "softmaxloss", "class": None},
    ], "meta": {}}


def run_simplenn(batch, repeat, conserve):
    import resource
    import tracemalloc

    import numpy as np

    from simplenn import vl_simplenn, vl_simplenn_tidy

    net = vl_simplenn_tidy(alexnet(np))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((227, 227, 3, batch), dtype=np.float32)
    net.layers[-1]["class"] = rng.integers(1, 1001, batch).astype(np.float32)
    vl_simplenn(net, x, 1.0, conserveMemory=conserve)          # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        vl_simplenn(net, x, 1.0, conserveMemory=conserve)
        times.append(time.perf_counter() - t)
    tracemalloc.start()
    res = vl_simplenn(net, x, 1.0, conserveMemory=conserve)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kept = sum(r.x.nbytes for r in res if r.x is not None) + \
        sum(r.dzdx.nbytes for r in res if getattr(r.dzdx, "nbytes", None))
    return {"time": min(times), "peak": peak, "res_bytes": kept,
            "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def run_torch(batch, repeat):
    import resource

    import torch
    from torch import nn

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(),
        nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 4096, 6), nn.ReLU(), nn.Dropout(0.5),
        nn.Conv2d(4096, 4096, 1), nn.ReLU(), nn.Dropout(0.5),
        nn.Conv2d(4096, 1000, 1), nn.Flatten())
    x = torch.randn(batch, 3, 227, 227)
    labels = torch.randint(0, 1000, (batch,))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        model.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), labels)
        loss.backward()

    step()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"time": min(times), "peak": None, "res_bytes": None,
            "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def child(kind, batch, repeat):
    if kind == "torch":
        out = run_torch(batch, repeat)
    else:
        out = run_simplenn(batch, repeat, conserve=(kind == "conserve"))
    print(json.dumps(out))


def mb(n):
    return "-" if n is None else f"{n / 2 ** 20:8.0f} MB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.batch, args.repeat)
        return
    kinds = ["plain", "conserve"]
    if not args.no_torch:
        try:
            import torch  # noqa: F401
            kinds.append("torch")
        except ImportError:
            print("(torch not installed: no PyTorch comparison)")
    rows = {}
    for kind in kinds:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", kind,
                               "--batch", str(args.batch), "--repeat", str(args.repeat)],
                              capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{kind} run failed:\n{proc.stderr}")
        rows[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
        time.sleep(0.5)
    print(f"AlexNet forward+backward, batch {args.batch}, 227x227x3 float32, "
          f"minimum over {args.repeat} passes")
    print(f"{'configuration':28s} {'time/pass':>10s} {'img/s':>7s} {'tracemalloc peak':>17s} "
          f"{'res kept':>11s} {'max RSS':>11s}")
    names = {"plain": "vl_simplenn", "conserve": "vl_simplenn conserveMemory",
             "torch": "torch nn.Sequential"}
    for kind, r in rows.items():
        print(f"{names[kind]:28s} {r['time'] * 1e3:8.0f} ms {args.batch / r['time']:7.1f} "
              f"{mb(r['peak']):>17s} {mb(r['res_bytes']):>11s} {mb(r['maxrss']):>11s}")
    if "torch" in rows:
        print(f"ratio torch time / vl_simplenn time: "
              f"{rows['torch']['time'] / rows['plain']['time']:.2f} (plain), "
              f"{rows['torch']['time'] / rows['conserve']['time']:.2f} (conserveMemory)")


if __name__ == "__main__":
    main()
