#!/usr/bin/env python
"""Benchmark the DagNN wrapper: its overhead over vl_simplenn, and ResNet-50.

1. **LeNet overhead.**  MatConvNet's LeNet (``examples/cnn_mnist.py``'s
   ``cnn_mnist_init``) on a batch of 100 28x28x1 float32 images, one
   forward + backward pass through ``vl_simplenn(net, x, 1)`` and through
   ``DagNN.fromSimpleNN(net)``'s ``eval({'x0': x, 'label': c},
   {'x8': 1})`` (after checking that both give the same filter
   derivatives).  The two are timed alternately (``--repeat`` pairs); the
   minimum (the least disturbed by other processes on a shared machine)
   and the median are reported, the overhead from the minima: the target
   is that the wrapper adds at most 5%.  The CPU time of the process
   (``time.process_time``, all threads) is reported beside the wall time:
   on a busy machine it is the steadier of the two.
2. **ResNet-50.**  ``examples/cnn_imagenet_init_resnet.py``'s net, one
   forward + backward pass on a batch of 8 224x224x3 images (minimum over
   ``--repeat`` passes after a warm-up), beside the same network written
   in PyTorch (``torch.nn``, bottlenecks with the stride on the 3x3
   convolution, batch norm in training mode, 2 threads) when ``import
   torch`` works.  Each side runs in its own Python process, one after
   the other (idle BLAS and torch threads keep spinning after a call and
   would slow the other side down).

Usage::

    python benchmarks/bench_dagnn.py [--repeat R] [--resnet-batch N]
                                     [--no-resnet] [--no-torch] [--json PATH]
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dagnn import DagNN  # noqa: E402
from simplenn import vl_simplenn  # noqa: E402


def load_example(name):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(ROOT, "examples", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lenet_overhead(repeat, batch=100):
    """Seconds of one fwd+bwd pass, vl_simplenn and DagNN: (minima,
    medians, minima of the CPU time)."""
    snet = load_example("cnn_mnist").cnn_mnist_init()
    net = DagNN.fromSimpleNN(snet)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((28, 28, 1, batch), dtype=np.float32) * 50
    labels = rng.integers(1, 11, (1, 1, 1, batch)).astype(np.float32)
    snet.layers[-1]["class"] = labels
    output = net.vars[-1].name

    def simple():
        return vl_simplenn(snet, x, np.float32(1))

    def dag():
        net.eval({"x0": x, "label": labels}, {output: np.float32(1)})

    # same numbers first: the comparison is of equal work
    res = simple()
    dag()
    for l, layer in enumerate(snet.layers):
        if layer.type == "conv":
            f = net.params[net.getParamIndex(layer.name + "f")].der
            np.testing.assert_allclose(f, res[l].dzdw[0], rtol=1e-4, atol=1e-6)
    for _ in range(3):
        simple()
        dag()
    times = {"simplenn": [], "dagnn": []}
    cpu = {"simplenn": [], "dagnn": []}
    for _ in range(repeat):
        for name, fn in (("simplenn", simple), ("dagnn", dag)):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return ({name: min(t) for name, t in times.items()},
            {name: statistics.median(t) for name, t in times.items()},
            {name: min(t) for name, t in cpu.items()})


def resnet_dagnn(batch, repeat):
    module = load_example("cnn_imagenet_init_resnet")
    net = module.cnn_imagenet_init_resnet(seed=0)
    module.forward_backward(net, batch)                     # warm-up
    return min(module.forward_backward(net, batch, seed=k) for k in range(repeat))


def resnet_torch(batch, repeat):
    import torch
    from torch import nn

    torch.set_num_threads(2)
    torch.manual_seed(0)

    def conv_bn(c_in, c_out, k, stride=1, relu=True):
        layers = [nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, bias=False),
                  nn.BatchNorm2d(c_out, eps=1e-5)]
        return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)

    class Bottleneck(nn.Module):
        def __init__(self, c_in, mid, stride, adapt):
            super().__init__()
            self.branch = nn.Sequential(conv_bn(c_in, mid, 1), conv_bn(mid, mid, 3, stride),
                                        conv_bn(mid, 4 * mid, 1, relu=False))
            self.adapt = conv_bn(c_in, 4 * mid, 1, stride, relu=False) if adapt else None

        def forward(self, x):
            shortcut = self.adapt(x) if self.adapt is not None else x
            return torch.relu(self.branch(x) + shortcut)

    blocks = [conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
    channels = 64
    for s, units in zip(range(2, 6), (3, 4, 6, 3)):
        mid = 2 ** (s + 4)
        for unit in range(units):
            first = unit == 0
            blocks.append(Bottleneck(channels, mid, 2 if first and s >= 3 else 1, first))
            channels = 4 * mid
    blocks += [nn.AvgPool2d(7), nn.Flatten(), nn.Linear(2048, 1000)]
    model = nn.Sequential(*blocks)
    model.train()
    x = torch.randn(batch, 3, 224, 224) * 50
    labels = torch.randint(0, 1000, (batch,))
    loss_fn = nn.CrossEntropyLoss(reduction="sum")

    def step():
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss_fn(model(x), labels).backward()
        return time.perf_counter() - start

    step()                                                   # warm-up
    params = sum(p.numel() for p in model.parameters())
    return min(step() for _ in range(repeat)), params


def run_part(part, args):
    """Run one part in a fresh Python process; its figures (JSON)."""
    command = [sys.executable, os.path.abspath(__file__), "--part", part,
               "--repeat", str(args.repeat), "--resnet-batch", str(args.resnet_batch)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{part} failed:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20,
                    help="LeNet pairs timed (ResNet: passes, at most 3)")
    ap.add_argument("--resnet-batch", type=int, default=8)
    ap.add_argument("--no-resnet", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--part", choices=("lenet", "resnet-dagnn", "resnet-torch"),
                    help=argparse.SUPPRESS)   # one part, in this process (used internally)
    args = ap.parse_args(argv)
    repeat = min(args.repeat, 3)
    if args.part == "lenet":
        fastest, median, cpu = lenet_overhead(args.repeat)
        print(json.dumps({"min": fastest, "median": median, "cpu_min": cpu}))
        return
    if args.part == "resnet-dagnn":
        print(json.dumps({"dagnn": resnet_dagnn(args.resnet_batch, repeat)}))
        return
    if args.part == "resnet-torch":
        seconds, params = resnet_torch(args.resnet_batch, repeat)
        print(json.dumps({"torch": seconds, "torch_params": params}))
        return

    results = {"lenet": run_part("lenet", args)}
    fastest, median = results["lenet"]["min"], results["lenet"]["median"]
    cpu = results["lenet"]["cpu_min"]
    overhead = fastest["dagnn"] / fastest["simplenn"] - 1
    cpu_overhead = cpu["dagnn"] / cpu["simplenn"] - 1
    results["lenet"].update(overhead=overhead, cpu_overhead=cpu_overhead)
    print(f"LeNet fwd+bwd, batch 100 ({args.repeat} alternated pairs), wall min / median, "
          f"CPU min: vl_simplenn {fastest['simplenn'] * 1e3:.2f} / "
          f"{median['simplenn'] * 1e3:.2f}, {cpu['simplenn'] * 1e3:.2f} ms; "
          f"DagNN.fromSimpleNN {fastest['dagnn'] * 1e3:.2f} / {median['dagnn'] * 1e3:.2f}, "
          f"{cpu['dagnn'] * 1e3:.2f} ms; wrapper overhead {overhead * 100:+.1f}% wall, "
          f"{cpu_overhead * 100:+.1f}% CPU (target <= 5%)")

    if not args.no_resnet:
        results["resnet50"] = {"batch": args.resnet_batch, **run_part("resnet-dagnn", args)}
        ours = results["resnet50"]["dagnn"]
        line = (f"ResNet-50 fwd+bwd, batch {args.resnet_batch} (min of {repeat}): "
                f"DagNN {ours:.2f} s")
        if not args.no_torch:
            if importlib.util.find_spec("torch") is None:
                line += " (torch not installed: no PyTorch comparison)"
            else:
                time.sleep(1)
                results["resnet50"].update(run_part("resnet-torch", args))
                theirs = results["resnet50"]["torch"]
                line += (f", torch {theirs:.2f} s "
                         f"({results['resnet50']['torch_params']:,} parameters), "
                         f"ratio torch / DagNN {theirs / ours:.2f}")
        print(line)

    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
