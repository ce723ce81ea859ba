#!/usr/bin/env python
"""Benchmark vlnn's convolution, convolution-transpose, pooling and other blocks.

Times the forward call and forward + backward (the forward call followed by
the backward call with a random ``dzdy``), float32, on a fixed set of layers
(the shapes of /work/shared/PERFORMANCE.md where it gives them), and, when
``import torch`` works, ``torch.nn.functional`` on the same data with
``torch.set_num_threads(2)`` (forward under ``no_grad``; forward + backward
with autograd).  ``ratio = torch_time / our_time``: above 1 we are faster.

Three groups: ``conv`` (vl_nnconv, vl_nnconvt), ``pool`` (vl_nnpool) and
``blocks``: LRN (vl_nnnormalize vs F.local_response_norm), batch norm
(vl_nnbnorm vs F.batch_norm), softmax loss (vl_nnsoftmaxloss vs
F.cross_entropy) and the bilinear sampler (vl_nnbilinearsampler vs
F.grid_sample).  For the blocks the forward is also compared with a plain
numpy expression of its formula (``ours/np = our forward time / the
expression's``; the target is at most 2).

Usage::

    python benchmarks/bench_vlnn.py [--repeat R] [--only SUBSTRING] [--no-torch]
                                    [--layout c|nhwc] [--json PATH]

Measuring (see PERFORMANCE.md): torch's and OpenBLAS's idle threads spin for
about 0.13 s after each call, so each side of each layer is timed in its own
block (one warm-up call, then back-to-back calls), with a pause between
blocks; the reported time is the minimum over the repeats.  Calls shorter
than ``--min-time / repeat`` are repeated more often (up to 50x ``--repeat``)
so that tiny layers get a stable minimum.

Input layout (``--layout``): ``c`` (default) gives our blocks plain
C-contiguous ``H x W x C x N`` arrays, as a user makes them with
``np.random.randn(h, w, c, n).astype(np.float32)``; ``nhwc`` gives them an
``N,H,W,C``-contiguous buffer seen as ``H x W x C x N``, which is what every
vlnn block returns, i.e. what a layer inside a network receives (x and dzdy
alike).  Filters (and bnorm's g and b, the labels, the sampler's grid) are
plain C-contiguous arrays in both.  torch always gets contiguous NCHW
tensors (its native layout); conversions are not timed.
"""

import argparse
import gc
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field

import numpy as np

try:
    import vlnn
    from vlnn import (vl_nnbilinearsampler, vl_nnbnorm, vl_nnconv, vl_nnconvt,
                      vl_nnnormalize, vl_nnpool, vl_nnrelu, vl_nnsoftmaxloss)
except ImportError:  # running from a checkout without the editable install
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import vlnn
    from vlnn import (vl_nnbilinearsampler, vl_nnbnorm, vl_nnconv, vl_nnconvt,
                      vl_nnnormalize, vl_nnpool, vl_nnrelu, vl_nnsoftmaxloss)

PAUSE_S = 0.25  # idle time between timing blocks (thread spin ~0.13 s)


# --------------------------------------------------------------------------
# the layer set
# --------------------------------------------------------------------------

@dataclass
class Layer:
    name: str
    kind: str                 # "conv" | "convt" | "pool" | one of BLOCK_KINDS
    x: tuple                  # H, W, C, N
    w: tuple = None           # conv: FH FW C/G K; convt: FH FW K D; pool: (PH, PW)
    stride: tuple = (1, 1)    # conv stride / convt upsample / pool stride
    pad: tuple = (0, 0, 0, 0)  # conv / pool pad, convt crop: TOP BOTTOM LEFT RIGHT
    dilate: tuple = (1, 1)
    groups: int = 1           # convt NumGroups (conv groups follow from C / FC)
    method: str = "max"
    anchor: tuple = None      # PERFORMANCE.md torch (fwd ms, fwd+bwd ms)
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def group(self):
        if self.kind in BLOCK_KINDS:
            return "blocks"
        return "pool" if self.kind == "pool" else "conv"


# the "blocks" group: kinds with their own data, calls, torch oracle and
# plain numpy expression of the forward formula
BLOCK_KINDS = ("relu", "lrn", "bnorm", "softmaxloss", "bilinear")


def _p4(p):
    return (p,) * 4 if isinstance(p, int) else tuple(p)


def _p2(s):
    return (s, s) if isinstance(s, int) else tuple(s)


def conv(name, x, w, stride=1, pad=0, dilate=1, anchor=None, note=""):
    return Layer(name, "conv", x, w, _p2(stride), _p4(pad), _p2(dilate), anchor=anchor, note=note)


def convt(name, x, w, upsample=1, crop=0, groups=1, anchor=None, note=""):
    return Layer(name, "convt", x, w, _p2(upsample), _p4(crop), groups=groups,
                 anchor=anchor, note=note)


def pool(name, x, size, stride=1, pad=0, method="max", anchor=None, note=""):
    return Layer(name, "pool", x, _p2(size), _p2(stride), _p4(pad), method=method,
                 anchor=anchor, note=note)


def block(name, kind, x, anchor=None, note="", **extra):
    return Layer(name, kind, x, anchor=anchor, note=note, extra=extra)


LAYERS = [
    conv("lenet-conv1", (28, 28, 1, 100), (5, 5, 1, 20), anchor=(1.39, 16.0)),
    conv("lenet-conv2", (12, 12, 20, 100), (5, 5, 20, 50), anchor=(3.77, 14.3)),
    conv("lenet-fc3", (4, 4, 50, 100), (4, 4, 50, 500), anchor=(3.90, 12.0)),
    conv("lenet-fc4", (1, 1, 500, 100), (1, 1, 500, 10)),
    conv("cifar-conv1", (32, 32, 3, 100), (5, 5, 3, 32), pad=2, anchor=(3.47, 23.5)),
    conv("cifar-conv2", (16, 16, 32, 100), (5, 5, 32, 32), pad=2, anchor=(8.14, 24.0)),
    conv("alexnet-conv2", (27, 27, 96, 16), (5, 5, 96, 256), pad=2, anchor=(88.3, 255)),
    conv("alexnet-conv3", (13, 13, 256, 16), (3, 3, 256, 384), pad=1, anchor=(25.8, 66.2)),
    conv("vgg-conv", (56, 56, 128, 8), (3, 3, 128, 128), pad=1, anchor=(45.1, 159)),
    conv("stride2", (32, 32, 64, 16), (3, 3, 64, 128), stride=2, pad=1, anchor=(4.36, 16.9)),
    # PERFORMANCE.md's dilate row (3.98 / 13.8 ms) counts 0.604 GFLOP, half of
    # this layer's 1.208: it was a smaller layer, so it is no anchor here.
    conv("dilate2", (32, 32, 64, 16), (3, 3, 64, 64), pad=2, dilate=2),
    conv("groups2", (13, 13, 384, 16), (3, 3, 192, 384), pad=1, anchor=(17.8, 62.5)),
    # PERFORMANCE.md's "convt up 2, 32x32x64" row (0.537 GFLOP) is a 16x16x64
    # input upsampled to a 32x32x64 output; the 32x32x64-input layer is 4x that.
    convt("convt-up2", (16, 16, 64, 16), (4, 4, 64, 64), upsample=2, crop=1,
          anchor=(6.16, 16.3), note="16x16x64 -> 32x32x64"),
    convt("convt-up2-32in", (32, 32, 64, 16), (4, 4, 64, 64), upsample=2, crop=1,
          note="32x32x64 -> 64x64x64"),
    pool("maxpool3s2", (55, 55, 96, 16), 3, stride=2, method="max", anchor=(33.1, 38.7)),
    pool("avgpool3s2", (55, 55, 96, 16), 3, stride=2, method="avg"),
    pool("maxpool2s2", (56, 56, 64, 16), 2, stride=2, method="max"),
    pool("avgpool2s2", (56, 56, 64, 16), 2, stride=2, method="avg"),
    # torch: F.relu; AlexNet's first activation (conv1's output)
    block("relu", "relu", (55, 55, 96, 16)),
    # torch: F.local_response_norm(size=5, alpha=5 * 1e-4, beta=0.75, k=1):
    # torch divides its alpha by the size; odd size, so the same window.
    block("lrn5", "lrn", (27, 27, 96, 16), param=[5.0, 1.0, 1e-4, 0.75]),
    # torch: F.batch_norm(training=True, eps=1e-4), eps inside the sqrt in both
    block("bnorm", "bnorm", (27, 27, 96, 16), epsilon=1e-4),
    # torch: F.cross_entropy (mean over the batch = HEAD's 1/N); dzdy = 1.0
    block("softmaxloss", "softmaxloss", (1, 1, 1000, 128)),
    # torch: F.grid_sample(align_corners=True, padding_mode="zeros"), grid
    # converted to N x Ho x Wo x 2 (x, y); affine grids (rotation by up to 15
    # degrees, scale 0.75) keep every sample inside the image
    block("bilinear", "bilinear", (64, 64, 32, 8), grid=(2, 64, 64, 8),
          max_angle_deg=15.0, scale=0.75),
]


# --------------------------------------------------------------------------
# shapes and FLOPs
# --------------------------------------------------------------------------

def out_shape(L):
    h, w, c, n = L.x
    if L.kind == "softmaxloss":
        return ()
    if L.kind == "bilinear":
        _, ho, wo, no = L.extra["grid"]
        return (ho, wo, c, no)
    if L.kind in BLOCK_KINDS:
        return L.x
    if L.kind == "conv":
        fh, fw, _, k = L.w
        eh, ew = (fh - 1) * L.dilate[0] + 1, (fw - 1) * L.dilate[1] + 1
        ho = (h + L.pad[0] + L.pad[1] - eh) // L.stride[0] + 1
        wo = (w + L.pad[2] + L.pad[3] - ew) // L.stride[1] + 1
        return (ho, wo, k, n)
    if L.kind == "convt":
        fh, fw, k, _ = L.w
        yh = (h - 1) * L.stride[0] + fh - L.pad[0] - L.pad[1]
        yw = (w - 1) * L.stride[1] + fw - L.pad[2] - L.pad[3]
        return (yh, yw, k * L.groups, n)
    ph, pw = L.w
    ho = (h + L.pad[0] + L.pad[1] - ph) // L.stride[0] + 1
    wo = (w + L.pad[2] + L.pad[3] - pw) // L.stride[1] + 1
    return (ho, wo, c, n)


def forward_gflop(L):
    """2 x multiply-adds of the forward pass (None for pooling and the blocks)."""
    if L.kind == "conv":
        ho, wo, k, n = out_shape(L)
        fh, fw, fc, _ = L.w
        return 2.0 * ho * wo * k * n * fh * fw * fc / 1e9
    if L.kind == "convt":
        h, w, d, n = L.x
        fh, fw, k, _ = L.w
        return 2.0 * h * w * d * n * fh * fw * k / 1e9
    return None


def describe(L):
    h, w, c, n = L.x
    if L.kind == "relu":
        return f"relu on {h}x{w}x{c}x{n}"
    if L.kind == "lrn":
        nn, kappa, alpha, beta = L.extra["param"]
        return f"LRN [{nn:g} {kappa:g} {alpha:g} {beta:g}] on {h}x{w}x{c}x{n}"
    if L.kind == "bnorm":
        return f"bnorm eps {L.extra['epsilon']:g} on {h}x{w}x{c}x{n}"
    if L.kind == "softmaxloss":
        return f"softmaxloss {h}x{w}x{c}x{n}, {n} labels"
    if L.kind == "bilinear":
        return f"bilinear {h}x{w}x{c}x{n}, grid {'x'.join(map(str, L.extra['grid']))}"
    if L.kind == "pool":
        s = f"{L.method} {L.w[0]}x{L.w[1]}/{L.stride[0]} on {h}x{w}x{c}x{n}"
    else:
        fh, fw, a, b = L.w
        s = f"{h}x{w}x{c}x{n} * {fh}x{fw}x{a}x{b}"
        if L.stride != (1, 1):
            s += f" {'up' if L.kind == 'convt' else 's'}{L.stride[0]}"
        if any(L.pad):
            s += f" {'crop' if L.kind == 'convt' else 'p'}" \
                 f"{L.pad[0] if len(set(L.pad)) == 1 else list(L.pad)}"
        if L.dilate != (1, 1):
            s += f" d{L.dilate[0]}"
        if L.kind == "conv" and c // L.w[2] > 1:
            s += f" g{c // L.w[2]}"
    return s


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------

def _cpu_busy_s():
    """(busy seconds of all CPUs since boot, CPU seconds of this process), or
    None where /proc/stat is missing."""
    try:
        with open("/proc/stat") as fh:
            f = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    t = os.times()
    return (sum(f[:8]) - idle) / os.sysconf("SC_CLK_TCK"), t.user + t.system


def time_block(fn, repeat, min_time, max_warm=6):
    """Time ``fn`` in one block of back-to-back calls.

    Warm-up calls run until two consecutive ones agree within 30% (at most
    ``max_warm`` calls or about 0.25 s: one call for slow layers), then at least ``repeat`` timed calls
    (more for fast calls, see ``--min-time``).  Returns ``(min seconds,
    number of timed calls, foreign load, result of the last call)``; the
    foreign load is the average number of cores that other processes kept
    busy during the timed calls (None where unknown)."""
    gc.collect()
    warm, prev, t_warm = 0, None, time.perf_counter()
    while True:
        t0 = time.perf_counter()
        res = fn()
        t = time.perf_counter() - t0
        warm += 1
        if prev is not None and max(t, prev) <= 1.3 * min(t, prev):
            break
        if warm >= max_warm or time.perf_counter() - t_warm > 0.25:
            break
        prev = t
    est = min(t, prev) if prev is not None else t
    n = repeat
    if est * repeat < min_time:
        n = min(50 * repeat, max(repeat, int(math.ceil(min_time / max(est, 1e-6)))))
    best = float("inf")
    was_enabled = gc.isenabled()
    gc.disable()
    c0, w0 = _cpu_busy_s(), time.perf_counter()
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            res = fn()
            best = min(best, time.perf_counter() - t0)
    finally:
        if was_enabled:
            gc.enable()
    c1, wall = _cpu_busy_s(), time.perf_counter() - w0
    load = None
    if c0 is not None and c1 is not None and wall > 0.05:
        load = max(0.0, ((c1[0] - c0[0]) - (c1[1] - c0[1])) / wall)
    return best, n, load, res


_RETRY_BUDGET = {"left_s": 30.0}  # total time all retries of one run may take


def timed(fn, repeat, min_time, retries, busy):
    """:func:`time_block`, redone (after a pause) up to ``retries`` times while
    other processes kept more than ``busy`` cores busy; keeps the minimum.
    Retries stop once the run has spent ``_RETRY_BUDGET`` on them.
    Returns ``(min seconds, calls, least foreign load seen, last result)``."""
    best, n, load, res = time_block(fn, repeat, min_time)
    tries = 0
    while load is not None and load > busy and tries < retries \
            and _RETRY_BUDGET["left_s"] > 0:
        tries += 1
        t0 = time.perf_counter()
        time.sleep(0.5)
        b2, n2, l2, res = time_block(fn, repeat, min_time)
        _RETRY_BUDGET["left_s"] -= time.perf_counter() - t0
        best, n = min(best, b2), n + n2
        load = load if l2 is None else min(load, l2)
    return best, n, load, res


def paired_ratios(ours, theirs, pairs, repeat, min_time):
    """``pairs`` rounds of one block of our forward + backward then one of
    torch's, back to back (pauses between blocks): the ratio torch / ours of
    each round, their median and range.  On a shared machine whose speed
    drifts, the median of paired ratios is steadier than the ratio of each
    side's minimum (PERFORMANCE.md)."""
    ratios = []
    for _ in range(pairs):
        t_o = time_block(ours, repeat, min_time)[0]
        time.sleep(PAUSE_S)
        t_t = time_block(theirs, repeat, min_time)[0]
        time.sleep(PAUSE_S)
        ratios.append(t_t / t_o)
    ratios.sort()
    mid = len(ratios) // 2
    median = ratios[mid] if len(ratios) % 2 else 0.5 * (ratios[mid - 1] + ratios[mid])
    return {"paired_ratios_fwdbwd": ratios, "ratio_fwdbwd_paired": median}


def sgemm_peak(n=2048, repeat=5, retries=2, busy=0.3):
    """Achieved numpy SGEMM rate (GFLOP/s) of ``np.matmul`` on n x n float32."""
    a = np.random.randn(n, n).astype(np.float32)
    b = np.random.randn(n, n).astype(np.float32)
    c = np.empty((n, n), np.float32)
    best, _, load, _ = timed(lambda: np.matmul(a, b, out=c), repeat, 0.0, retries, busy)
    time.sleep(PAUSE_S)
    return 2.0 * n ** 3 / best / 1e9, best, load


def make_input(a, layout):
    """``a`` (C-contiguous H x W x C x N) in the requested memory layout."""
    if layout == "nhwc":
        return np.ascontiguousarray(a.transpose(3, 0, 1, 2)).transpose(1, 2, 3, 0)
    return np.ascontiguousarray(a)


def affine_grids(shape, rng, max_angle_deg, scale):
    """``2 x Ho x Wo x N`` float32 grids (y first), one random rotation by up
    to ``max_angle_deg`` and scaling by ``scale`` per grid, about the image
    centre.  Points stay within ``scale * (|cos| + |sin|)`` of it, inside the
    image when that is below 1."""
    _, ho, wo, no = shape
    u = np.linspace(-1.0, 1.0, ho)[:, None, None]      # output row -> y
    v = np.linspace(-1.0, 1.0, wo)[None, :, None]      # output column -> x
    theta = np.deg2rad(rng.uniform(-max_angle_deg, max_angle_deg, no))
    cos, sin = np.cos(theta), np.sin(theta)
    gy = scale * (cos * u - sin * v)
    gx = scale * (sin * u + cos * v)
    return np.ascontiguousarray(np.stack([gy, gx]), dtype=np.float32)


def make_data(L, rng, layout):
    x0 = rng.standard_normal(L.x, dtype=np.float32)
    if L.kind in BLOCK_KINDS:
        d = {"x0": x0, "x": make_input(x0, layout)}
        if L.kind == "softmaxloss":
            d["dy0"] = d["dy"] = 1.0          # dzdy of the scalar loss
            d["c"] = rng.integers(1, L.x[2] + 1, size=L.x[3]).astype(np.float32)
            return d
        dy0 = rng.standard_normal(out_shape(L), dtype=np.float32)
        d.update(dy0=dy0, dy=make_input(dy0, layout))
        if L.kind == "bnorm":
            d["g"] = rng.uniform(0.5, 1.5, L.x[2]).astype(np.float32)
            d["b"] = rng.standard_normal(L.x[2], dtype=np.float32)
        elif L.kind == "bilinear":
            d["grid"] = affine_grids(L.extra["grid"], rng, L.extra["max_angle_deg"],
                                     L.extra["scale"])
        return d
    dy0 = rng.standard_normal(out_shape(L), dtype=np.float32)
    d = {"x0": x0, "dy0": dy0, "x": make_input(x0, layout), "dy": make_input(dy0, layout)}
    if L.kind != "pool":
        fh, fw, a, b = L.w
        fan_in = fh * fw * (a if L.kind == "conv" else b)
        d["w"] = (rng.standard_normal(L.w, dtype=np.float32) / np.sqrt(fan_in)).astype(np.float32)
        nb = out_shape(L)[2]
        d["b"] = rng.standard_normal(nb, dtype=np.float32)
    return d


# --------------------------------------------------------------------------
# our side
# --------------------------------------------------------------------------

def ours_calls(L, d):
    x, dy = d["x"], d["dy"]
    if L.kind in BLOCK_KINDS:
        return block_calls(L, d)
    if L.kind == "conv":
        w, b = d["w"], d["b"]
        opts = dict(stride=list(L.stride), pad=list(L.pad), dilate=list(L.dilate))

        def fwd():
            return vl_nnconv(x, w, b, **opts)

        def fwdbwd():
            y = vl_nnconv(x, w, b, **opts)
            return y, vl_nnconv(x, w, b, dy, **opts)
    elif L.kind == "convt":
        w, b = d["w"], d["b"]
        opts = dict(upsample=list(L.stride), crop=list(L.pad), numGroups=L.groups)

        def fwd():
            return vl_nnconvt(x, w, b, **opts)

        def fwdbwd():
            y = vl_nnconvt(x, w, b, **opts)
            return y, vl_nnconvt(x, w, b, dy, **opts)
    else:
        size = list(L.w)
        opts = dict(stride=list(L.stride), pad=list(L.pad), method=L.method)

        def fwd():
            return vl_nnpool(x, size, **opts)

        def fwdbwd():
            y = vl_nnpool(x, size, **opts)
            return y, (vl_nnpool(x, size, dy, **opts),)
    return fwd, fwdbwd


def block_calls(L, d):
    """(forward, forward + backward) of our block; the latter returns
    ``(y, (dx, ...))`` with the derivatives in the block's output order."""
    x, dy = d["x"], d["dy"]
    if L.kind == "relu":
        def fwd():
            return vl_nnrelu(x)

        def fwdbwd():
            y = vl_nnrelu(x)
            return y, (vl_nnrelu(x, dy),)
    elif L.kind == "lrn":
        param = list(L.extra["param"])

        def fwd():
            return vl_nnnormalize(x, param)

        def fwdbwd():
            y = vl_nnnormalize(x, param)
            return y, (vl_nnnormalize(x, param, dy),)
    elif L.kind == "bnorm":
        g, b, eps = d["g"], d["b"], L.extra["epsilon"]

        def fwd():
            return vl_nnbnorm(x, g, b, Epsilon=eps)

        def fwdbwd():
            y = vl_nnbnorm(x, g, b, Epsilon=eps)
            return y, vl_nnbnorm(x, g, b, dy, Epsilon=eps)       # (dx, dg, db)
    elif L.kind == "softmaxloss":
        c = d["c"]

        def fwd():
            return vl_nnsoftmaxloss(x, c)

        def fwdbwd():
            y = vl_nnsoftmaxloss(x, c)
            return y, (vl_nnsoftmaxloss(x, c, dy),)
    elif L.kind == "bilinear":
        grid = d["grid"]

        def fwd():
            return vl_nnbilinearsampler(x, grid)

        def fwdbwd():
            y = vl_nnbilinearsampler(x, grid)
            return y, vl_nnbilinearsampler(x, grid, dy)          # (dx, dgrid)
    else:
        raise ValueError(f"unknown block kind {L.kind!r}")
    return fwd, fwdbwd


# --------------------------------------------------------------------------
# plain numpy expressions of the blocks' forward formulas (the baseline of
# the issue's target "no block slower than 2x a plain numpy expression of its
# forward"): what a numpy user would write, on the same arrays our blocks get
# --------------------------------------------------------------------------

def np_lrn(x, param):
    """LRN: a loop over the window's channel offsets adding shifted x**2."""
    size, kappa, alpha, beta = param
    size = int(size)
    before = (size - 1) // 2
    d = x.shape[2]
    x2 = x * x
    s = x2.copy()
    for o in range(-before, size - before):
        if o > 0:
            s[:, :, :d - o] += x2[:, :, o:]
        elif o < 0:
            s[:, :, -o:] += x2[:, :, :d + o]
    return x * (kappa + alpha * s) ** -beta


def np_bnorm(x, g, b, eps):
    """Batch norm: mean and (biased) variance over axes (0, 1, 3)."""
    mu = x.mean(axis=(0, 1, 3), keepdims=True)
    var = x.var(axis=(0, 1, 3), keepdims=True)
    return (x - mu) * (g.reshape(1, 1, -1, 1) / np.sqrt(var + eps)) + b.reshape(1, 1, -1, 1)


def np_softmaxloss(x, c):
    """Softmax log loss, one label per image, 1/N: max, exp, sum, log, pick."""
    m = x.max(axis=2, keepdims=True)
    lse = m + np.log(np.exp(x - m).sum(axis=2, keepdims=True))
    pick = np.take_along_axis(x, (c.astype(np.intp) - 1).reshape(1, 1, 1, -1), axis=2)
    return (lse - pick).sum() / x.shape[3]


def np_bilinear(x, grid):
    """Bilinear sampler: four corner gathers (np.take on the N*H*W x C rows
    of x) weighted and summed; corners outside the image dropped."""
    h, w, c, n = x.shape
    no = grid.shape[3]
    py = (grid[0] + 1) * 0.5 * (h - 1)
    px = (grid[1] + 1) * 0.5 * (w - 1)
    fy, fx = np.floor(py), np.floor(px)
    wy, wx = py - fy, px - fx
    sy, sx = fy.astype(np.intp), fx.astype(np.intp)
    inside = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
    base = (np.arange(no) // (no // n)) * (h * w)         # first row of each grid's image
    rows = x.transpose(3, 0, 1, 2).reshape(n * h * w, c)
    y = 0
    for a, wa in ((0, 1 - wy), (1, wy)):
        for b, wb in ((0, 1 - wx), (1, wx)):
            valid = inside & (sy + a < h) & (sx + b < w)
            idx = np.where(valid, base + (sy + a) * w + (sx + b), 0)
            y = y + np.take(rows, idx, axis=0) * np.where(valid, wa * wb, 0)[..., None]
    return y.transpose(0, 1, 3, 2)                        # Ho x Wo x C x No


def numpy_expr_call(L, d):
    """The plain numpy expression of the block's forward, on our inputs."""
    x = d["x"]
    if L.kind == "relu":
        return lambda: np.maximum(x, 0)
    if L.kind == "lrn":
        param = L.extra["param"]
        return lambda: np_lrn(x, param)
    if L.kind == "bnorm":
        g, b, eps = d["g"], d["b"], L.extra["epsilon"]
        return lambda: np_bnorm(x, g, b, eps)
    if L.kind == "softmaxloss":
        c = d["c"]
        return lambda: np_softmaxloss(x, c)
    if L.kind == "bilinear":
        grid = d["grid"]
        return lambda: np_bilinear(x, grid)
    return None


# --------------------------------------------------------------------------
# torch side
# --------------------------------------------------------------------------

def _nchw(a):
    """H x W x C x N -> contiguous N x C x H x W (also filters: FH FW A B -> B A FH FW)."""
    return np.ascontiguousarray(a.transpose(3, 2, 0, 1))


def torch_block_op(L, d, torch):
    """``(params, op, dzdy)`` of torch's equivalent of a block (semantics
    section 33 of MATCONVNET_SEMANTICS.md)."""
    F = torch.nn.functional
    x = torch.from_numpy(_nchw(d["x0"]))
    if L.kind == "relu":
        return [x], F.relu, torch.from_numpy(_nchw(d["dy0"]))
    if L.kind == "lrn":
        size, kappa, alpha, beta = L.extra["param"]
        if int(size) % 2 == 0:
            return None   # torch mirrors even windows: no oracle
        # torch divides its alpha by the size
        return [x], (lambda x_: F.local_response_norm(x_, int(size), alpha=size * alpha,
                                                      beta=beta, k=kappa)), \
            torch.from_numpy(_nchw(d["dy0"]))
    if L.kind == "bnorm":
        g, b = torch.from_numpy(d["g"].copy()), torch.from_numpy(d["b"].copy())
        eps = L.extra["epsilon"]
        return [x, g, b], (lambda x_, g_, b_: F.batch_norm(x_, None, None, g_, b_,
                                                           training=True, eps=eps)), \
            torch.from_numpy(_nchw(d["dy0"]))
    if L.kind == "softmaxloss":
        h, w, _, n = L.x
        if (h, w) != (1, 1):
            return None   # torch's mean would also divide by H * W
        target = torch.from_numpy(d["c"].astype(np.int64) - 1)
        return [x], (lambda x_: F.cross_entropy(x_.reshape(n, -1), target)), \
            torch.tensor(float(d["dy0"]), dtype=torch.float32)
    if L.kind == "bilinear":
        if L.extra["grid"][3] != L.x[3]:
            return None   # grid_sample takes one grid per image
        # 2 x Ho x Wo x N (y, x) -> N x Ho x Wo x 2 (x, y)
        grid = torch.from_numpy(np.ascontiguousarray(d["grid"].transpose(3, 1, 2, 0)[..., ::-1]))
        return [x, grid], (lambda x_, g_: F.grid_sample(x_, g_, mode="bilinear",
                                                        padding_mode="zeros",
                                                        align_corners=True)), \
            torch.from_numpy(_nchw(d["dy0"]))
    raise ValueError(f"unknown block kind {L.kind!r}")


def torch_calls(L, d, torch):
    if L.kind in BLOCK_KINDS:
        spec = torch_block_op(L, d, torch)
        if spec is None:
            return None
        params, op, g = spec
        return _torch_fwd_fwdbwd(torch, params, op, g)
    F = torch.nn.functional
    x = torch.from_numpy(_nchw(d["x0"]))
    g = torch.from_numpy(_nchw(d["dy0"]))
    params = [x]
    pt, pb, pl, pr = L.pad
    sym = pt == pb and pl == pr
    if L.kind == "conv":
        w = torch.from_numpy(_nchw(d["w"]))  # K x FC x FH x FW
        b = torch.from_numpy(d["b"].copy())
        params += [w, b]
        groups = L.x[2] // L.w[2]

        def op(x_, w_, b_):
            if not sym:
                x_ = F.pad(x_, (pl, pr, pt, pb))
            return F.conv2d(x_, w_, b_, stride=L.stride, padding=(pt, pl) if sym else 0,
                            dilation=L.dilate, groups=groups)
    elif L.kind == "convt":
        w = torch.from_numpy(_nchw(d["w"]))  # D x K x FH x FW = (in, out/groups, kH, kW)
        b = torch.from_numpy(d["b"].copy())
        params += [w, b]

        def op(x_, w_, b_):
            y = F.conv_transpose2d(x_, w_, b_, stride=L.stride,
                                   padding=(pt, pl) if sym else 0, groups=L.groups)
            if not sym:
                y = y[:, :, pt:y.shape[2] - pb, pl:y.shape[3] - pr]
            return y
    else:
        ph, pw = L.w
        if not sym or pt > ph // 2 or pl > pw // 2:
            return None  # torch pooling takes only symmetric pads up to half the window
        if L.method == "max":
            def op(x_):
                return F.max_pool2d(x_, (ph, pw), stride=L.stride, padding=(pt, pl))
        else:
            def op(x_):
                return F.avg_pool2d(x_, (ph, pw), stride=L.stride, padding=(pt, pl),
                                    count_include_pad=False)
    return _torch_fwd_fwdbwd(torch, params, op, g)


def _torch_fwd_fwdbwd(torch, params, op, g):
    """Forward under ``no_grad``; forward + backward with autograd on leaf
    copies of all ``params``, returning ``(y, (grad of each param))``."""
    def fwd():
        with torch.no_grad():
            return op(*params)

    leaves = [p.detach().clone().requires_grad_(True) for p in params]

    def fwdbwd():
        for p in leaves:
            p.grad = None
        y = op(*leaves)
        y.backward(g)
        return y.detach(), tuple(p.grad for p in leaves)

    return fwd, fwdbwd


# --------------------------------------------------------------------------
# checks: our results against torch's (from the last timed calls)
# --------------------------------------------------------------------------

def _rel_err(ours, ref):
    ref = np.asarray(ref, np.float64)
    ours = np.asarray(ours, np.float64)
    if ours.shape != ref.shape:
        return float("inf")
    scale = max(np.abs(ref).max(), 1e-30)
    return float(np.abs(ours - ref).max() / scale)


def compare(L, ours_res, torch_res):
    """Max relative error over y, dx (and dw, db) vs torch (layouts converted)."""
    if L.kind in BLOCK_KINDS:
        return compare_block(L, ours_res, torch_res)
    y_o, grads_o = ours_res
    y_t, grads_t = torch_res
    errs = [_rel_err(_nchw(np.asarray(y_o)), y_t.numpy())]
    errs.append(_rel_err(_nchw(np.asarray(grads_o[0])), grads_t[0].numpy()))
    if L.kind != "pool":
        errs.append(_rel_err(_nchw(np.asarray(grads_o[1])), grads_t[1].numpy()))
        errs.append(_rel_err(np.asarray(grads_o[2]).reshape(-1), grads_t[2].numpy()))
    return max(errs)


def compare_block(L, ours_res, torch_res):
    """Max relative error over y and every derivative of a block vs torch."""
    y_o, grads_o = ours_res
    y_t, grads_t = torch_res
    if L.kind == "softmaxloss":
        errs = [_rel_err(np.asarray(y_o), y_t.numpy())]
    else:
        errs = [_rel_err(_nchw(np.asarray(y_o)), y_t.numpy())]
    errs.append(_rel_err(_nchw(np.asarray(grads_o[0])), grads_t[0].numpy()))
    if L.kind == "bnorm":     # dg, db
        errs.append(_rel_err(np.asarray(grads_o[1]).reshape(-1), grads_t[1].numpy()))
        errs.append(_rel_err(np.asarray(grads_o[2]).reshape(-1), grads_t[2].numpy()))
    elif L.kind == "bilinear":  # dgrid: 2 x Ho x Wo x N (y, x) -> N x Ho x Wo x 2 (x, y)
        dgrid = np.asarray(grads_o[1]).transpose(3, 1, 2, 0)[..., ::-1]
        errs.append(_rel_err(dgrid, grads_t[1].numpy()))
    return max(errs)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def _fmt(v, spec, width):
    if v is None:
        return "-".rjust(width)
    return format(v, spec).rjust(width)


def geomean(vals):
    vals = [v for v in vals if v is not None and v > 0 and math.isfinite(v)]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5,
                    help="timed calls per block (minimum taken; default 5)")
    ap.add_argument("--min-time", type=float, default=0.1,
                    help="fast calls are repeated until a block lasts about this long "
                         "(seconds, at most 50x --repeat; default 0.1)")
    ap.add_argument("--only", default=None,
                    help="run only the layers whose name contains this substring "
                         "(comma-separated alternatives allowed)")
    ap.add_argument("--no-torch", action="store_true", help="do not time torch")
    ap.add_argument("--layout", choices=("c", "nhwc"), default="c",
                    help="memory order of our inputs x and dzdy (default c)")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    ap.add_argument("--retries", type=int, default=2,
                    help="redo a timing block up to this many times when other processes "
                         "kept the CPUs busy (default 2)")
    ap.add_argument("--busy", type=float, default=0.3,
                    help="foreign load (cores busy with other processes) above which a "
                         "block counts as contended (default 0.3)")
    ap.add_argument("--retry-budget", type=float, default=30.0,
                    help="seconds all retries of a run may take together (default 30)")
    ap.add_argument("--pairs", type=int, default=0,
                    help="also time PAIRS back-to-back rounds of (our f+b block, torch's "
                         "f+b block) per layer and report the median of the per-round "
                         "ratios (column 'pair fb'; default 0: off)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    repeat = max(1, args.repeat)

    layers = LAYERS
    if args.only:
        keys = [k.strip().lower() for k in args.only.split(",") if k.strip()]
        layers = [L for L in LAYERS if any(k in L.name.lower() for k in keys)]
        if not layers:
            ap.error(f"--only {args.only!r} matches none of: {', '.join(L.name for L in LAYERS)}")

    torch = None
    torch_note = "disabled (--no-torch)"
    if not args.no_torch:
        try:
            import torch as _torch
            torch = _torch
            torch.set_num_threads(2)
            torch_note = f"{torch.__version__}, {torch.get_num_threads()} threads"
        except Exception as e:  # torch is an optional oracle
            torch_note = f"unavailable ({type(e).__name__}: {e})"

    _RETRY_BUDGET["left_s"] = args.retry_budget
    peak, peak_t, peak_load = sgemm_peak(retries=args.retries, busy=args.busy)
    layout_desc = {"c": "c (plain C-contiguous H x W x C x N arrays)",
                   "nhwc": "nhwc (N,H,W,C-contiguous buffers seen as H x W x C x N, "
                           "as vlnn blocks return them)"}[args.layout]
    print(f"vlnn benchmark: float32, repeat {repeat} (min), min block time {args.min_time} s")
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"cpus {os.cpu_count()}, {platform.processor() or platform.machine()}")
    print(f"torch: {torch_note}")
    print(f"input layout: {layout_desc}")
    print(f"numpy SGEMM peak (np.matmul 2048x2048 float32): {peak:.1f} GFLOP/s "
          f"({peak_t * 1e3:.1f} ms" + (f"; other processes busy {peak_load:.1f} cores"
                                        if peak_load is not None else "") + ")")
    print(flush=True)

    rng = np.random.default_rng(args.seed)
    rows = []
    t_start = time.perf_counter()
    for L in layers:
        d = make_data(L, rng, args.layout)
        f_o, fb_o = ours_calls(L, d)
        t_f, n_f, l_f, res_f = timed(f_o, repeat, args.min_time, args.retries, args.busy)
        t_fb, n_fb, l_fb, res_o = timed(fb_o, repeat, args.min_time, args.retries, args.busy)
        loads = [l_f, l_fb]
        time.sleep(PAUSE_S)
        is_block = L.kind in BLOCK_KINDS
        row = {"name": L.name, "group": L.group, "kind": L.kind, "desc": describe(L),
               "note": L.note, "x_shape": list(L.x), "w": list(L.w) if L.w else None,
               "out_shape": list(out_shape(L)),
               "stride": None if is_block else list(L.stride),
               "pad": None if is_block else list(L.pad),
               "dilate": None if is_block else list(L.dilate),
               "method": L.method if L.kind == "pool" else None,
               "params": dict(L.extra) if L.extra else None,
               "gflop_fwd": forward_gflop(L), "ours_fwd_ms": t_f * 1e3,
               "ours_fwdbwd_ms": t_fb * 1e3, "ours_calls": [n_f, n_fb],
               "anchor_torch_ms": list(L.anchor) if L.anchor else None,
               "numpy_expr_fwd_ms": None, "ratio_ours_numpy_fwd": None,
               "numpy_expr_rel_err": None,
               "torch_fwd_ms": None, "torch_fwdbwd_ms": None, "ratio_fwd": None,
               "ratio_fwdbwd": None, "max_rel_err": None}
        np_call = numpy_expr_call(L, d)
        if np_call is not None:
            # the plain numpy expression of the forward, in its own block
            t_np, n_np, l_np, res_np = timed(np_call, repeat, args.min_time, args.retries,
                                             args.busy)
            loads.append(l_np)
            time.sleep(PAUSE_S)
            row.update(numpy_expr_fwd_ms=t_np * 1e3, numpy_expr_calls=n_np,
                       ratio_ours_numpy_fwd=t_f / t_np)
            try:   # the baseline must compute the same thing as our forward
                row["numpy_expr_rel_err"] = _rel_err(res_f, res_np)
            except Exception as e:
                row["numpy_expr_rel_err"] = float("nan")
                row["numpy_expr_check_error"] = f"{type(e).__name__}: {e}"
        gf = row["gflop_fwd"]
        if gf is not None:
            row["gflops_fwd"] = gf / t_f
            row["gflops_fwdbwd"] = 3 * gf / t_fb
        if torch is not None:
            calls = torch_calls(L, d, torch)
            if calls is not None:
                tf_t, n_tf, l_tf, _ = timed(calls[0], repeat, args.min_time, args.retries,
                                            args.busy)
                tfb_t, n_tfb, l_tfb, res_t = timed(calls[1], repeat, args.min_time,
                                                   args.retries, args.busy)
                loads += [l_tf, l_tfb]
                time.sleep(PAUSE_S)
                row.update(torch_fwd_ms=tf_t * 1e3, torch_fwdbwd_ms=tfb_t * 1e3,
                           torch_calls=[n_tf, n_tfb], ratio_fwd=tf_t / t_f,
                           ratio_fwdbwd=tfb_t / t_fb)
                try:
                    row["max_rel_err"] = compare(L, res_o, res_t)
                except Exception as e:  # a check failure must not stop the benchmark
                    row["max_rel_err"] = float("nan")
                    row["check_error"] = f"{type(e).__name__}: {e}"
                if args.pairs > 0:
                    row.update(paired_ratios(fb_o, calls[1], args.pairs, repeat,
                                             args.min_time))
        known = [v for v in loads if v is not None]
        row["foreign_load"] = max(known) if known else None
        row["contended"] = bool(known) and max(known) > args.busy
        rows.append(row)
        print(f"  {L.name:15s} ours {t_f * 1e3:8.2f} / {t_fb * 1e3:8.2f} ms"
              + (f"   torch {row['torch_fwd_ms']:8.2f} / {row['torch_fwdbwd_ms']:8.2f} ms"
                 if row["torch_fwd_ms"] is not None else "")
              + (f"   numpy expr fwd {row['numpy_expr_fwd_ms']:8.2f} ms"
                 if row["numpy_expr_fwd_ms"] is not None else ""), file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - t_start

    # the peak again: the better of the two measurements is the one less
    # disturbed by other processes
    peak2, _, peak2_load = sgemm_peak(retries=args.retries, busy=args.busy)
    print(f"numpy SGEMM peak measured again after the layers: {peak2:.1f} GFLOP/s"
          + (f" (other processes busy {peak2_load:.1f} cores)" if peak2_load is not None else "")
          + f"; using {max(peak, peak2):.1f} GFLOP/s for %pk\n")
    peak_first = peak
    if peak2 > peak:
        peak, peak_load = peak2, peak2_load
    for row in rows:
        if row["gflop_fwd"] is not None:
            row["pct_peak_fwd"] = 100 * row["gflops_fwd"] / peak
            row["pct_peak_fwdbwd"] = 100 * row["gflops_fwdbwd"] / peak

    # ---- table ----
    hdr = ("layer", "shape", "GFLOP", "fwd ms", "f+b ms", "GF/s f", "GF/s fb", "%pk fb",
           "t fwd", "t f+b", "anch fb", "ratio f", "ratio fb", "pair fb", "np f", "ours/np",
           "rel err", "busy")
    widths = (15, 36, 7, 8, 8, 7, 7, 6, 8, 8, 7, 7, 8, 7, 7, 7, 8, 5)
    line = " ".join(h.rjust(wd) if i > 1 else h.ljust(wd) for i, (h, wd) in enumerate(zip(hdr, widths)))
    print(line)
    print("-" * len(line))
    for r in rows:
        cells = [r["name"].ljust(widths[0]), r["desc"][:widths[1]].ljust(widths[1]),
                 _fmt(r["gflop_fwd"], ".3f", widths[2]), _fmt(r["ours_fwd_ms"], ".2f", widths[3]),
                 _fmt(r["ours_fwdbwd_ms"], ".2f", widths[4]),
                 _fmt(r.get("gflops_fwd"), ".1f", widths[5]),
                 _fmt(r.get("gflops_fwdbwd"), ".1f", widths[6]),
                 _fmt(r.get("pct_peak_fwdbwd"), ".0f", widths[7]),
                 _fmt(r["torch_fwd_ms"], ".2f", widths[8]),
                 _fmt(r["torch_fwdbwd_ms"], ".2f", widths[9]),
                 _fmt(r["anchor_torch_ms"][1] if r["anchor_torch_ms"] else None, ".1f", widths[10]),
                 _fmt(r["ratio_fwd"], ".2f", widths[11]), _fmt(r["ratio_fwdbwd"], ".2f", widths[12]),
                 _fmt(r.get("ratio_fwdbwd_paired"), ".2f", widths[13]),
                 _fmt(r["numpy_expr_fwd_ms"], ".2f", widths[14]),
                 _fmt(r["ratio_ours_numpy_fwd"], ".2f", widths[15]),
                 _fmt(r["max_rel_err"], ".1e", widths[16]),
                 _fmt(r["foreign_load"], ".1f", widths[17]) + ("!" if r["contended"] else "")]
        print(" ".join(cells))
    print("-" * len(line))
    print("ms: minimum over repeats; f+b = forward call + backward call; GF/s fb counts 3x the "
          "forward FLOPs;\n%pk fb = GF/s fb as % of the numpy SGEMM peak; t = torch; "
          "anch fb = PERFORMANCE.md's torch fwd+bwd ms;\nratio = torch time / our time "
          "(>1: we are faster); pair fb = median over --pairs back-to-back rounds of the "
          "f+b ratio;\nnp f = a plain numpy expression of the block's forward "
          "formula, ms;\nours/np = our fwd time / np f (target <= 2); "
          "rel err = max |ours - torch| / max |torch| over y, dx, dw, db\n(blocks: y and "
          "every derivative: dx, dg, db, dgrid);\n"
          "busy = most cores other processes kept busy during this layer's least disturbed "
          "attempt at a block (! = over --busy even after retries: treat as noisy).")

    summary = {}
    for grp in ("conv", "pool", "blocks"):
        sel = [r for r in rows if r["group"] == grp]
        gm_fb = geomean([r["ratio_fwdbwd"] for r in sel])
        gm_f = geomean([r["ratio_fwd"] for r in sel])
        summary[grp] = {"geomean_ratio_fwdbwd": gm_fb, "geomean_ratio_fwd": gm_f,
                        "layers": len(sel)}
        if sel and gm_fb is not None:
            n_bad = sum(r["contended"] for r in sel)
            print(f"geometric mean torch/ours over {len(sel)} {grp}"
                  f"{'' if grp == 'blocks' else ' layers'}: "
                  f"fwd+bwd {gm_fb:.2f}x, fwd {gm_f:.2f}x"
                  + (f"   (UNRELIABLE: {n_bad} of {len(sel)} layers timed while other "
                     f"processes were busy)" if n_bad else ""))
        paired = [r.get("ratio_fwdbwd_paired") for r in sel]
        if sel and all(v is not None for v in paired):
            gm_p = geomean(paired)
            summary[grp]["geomean_ratio_fwdbwd_paired"] = gm_p
            print(f"  ... fwd+bwd as the median of paired rounds: {gm_p:.2f}x "
                  f"(lowest {min(paired):.2f}x, "
                  f"{[r['name'] for r in sel][paired.index(min(paired))]})")
        clean = [r for r in sel if not r["contended"]]
        if clean and len(clean) < len(sel):
            gc_fb = geomean([r["ratio_fwdbwd"] for r in clean])
            gc_f = geomean([r["ratio_fwd"] for r in clean])
            summary[grp].update(geomean_ratio_fwdbwd_uncontended=gc_fb,
                                geomean_ratio_fwd_uncontended=gc_f,
                                layers_uncontended=len(clean))
            if gc_fb is not None:
                print(f"  ... over the {len(clean)} uncontended {grp}"
                      f"{'' if grp == 'blocks' else ' layers'} only: "
                      f"fwd+bwd {gc_fb:.2f}x, fwd {gc_f:.2f}x")
    blk = [r for r in rows if r["group"] == "blocks"]
    gm_np = geomean([r["ratio_ours_numpy_fwd"] for r in blk])
    if gm_np is not None:
        summary["blocks"]["geomean_ours_over_numpy_fwd"] = gm_np
        print(f"geometric mean ours fwd / plain numpy expression over {len(blk)} blocks: "
              f"{gm_np:.2f}x (target: every block <= 2x)")
    # the targets for the blocks: fwd <= 2x the numpy expression and
    # torch / ours >= 0.5 (forward and forward + backward)
    missed = []
    for r in blk:
        why = []
        if r["ratio_ours_numpy_fwd"] is not None and r["ratio_ours_numpy_fwd"] > 2:
            why.append(f"fwd {r['ratio_ours_numpy_fwd']:.2f}x the numpy expression")
        for key, what in (("ratio_fwd", "fwd"), ("ratio_fwdbwd", "fwd+bwd")):
            if r[key] is not None and r[key] < 0.5:
                why.append(f"torch/ours {what} {r[key]:.2f}")
        if why:
            missed.append(f"{r['name']} ({', '.join(why)}"
                          + (", contended" if r["contended"] else "") + ")")
    if blk:
        summary["blocks"]["missed_targets"] = missed
        print("blocks missing the targets (fwd <= 2x numpy expression, torch/ours >= 0.5): "
              + ("; ".join(missed) if missed else "none"))
    bad_np = [r["name"] for r in blk if r["numpy_expr_rel_err"] is not None
              and not (r["numpy_expr_rel_err"] < 1e-3)]
    if bad_np:
        print(f"WARNING: the numpy expression differs from our forward on: {', '.join(bad_np)}")
    errs = [r["max_rel_err"] for r in rows if r["max_rel_err"] is not None]
    bad = [r["name"] for r in rows if r["max_rel_err"] is not None
           and not (r["max_rel_err"] < 1e-3)]
    if bad:
        print(f"WARNING: results differ from torch (rel err >= 1e-3) on: {', '.join(bad)}")
    elif errs:
        print(f"all results agree with torch (max rel err {max(errs):.1e})")
    noisy = [r["name"] for r in rows if r["contended"]]
    if noisy:
        print(f"WARNING: other processes kept the CPUs busy while timing: {', '.join(noisy)}.\n"
              "  Contention slows torch's 2-thread kernels far more than ours (ratios then "
              "flatter us):\n  rerun those layers with --only on a quiet machine.")
    print(f"layout: {args.layout}; elapsed {elapsed:.1f} s")

    if args.json:
        out = {"meta": {"numpy": np.__version__, "python": platform.python_version(),
                        "torch": torch.__version__ if torch is not None else None,
                        "torch_note": torch_note, "cpus": os.cpu_count(),
                        "machine": platform.processor() or platform.machine(),
                        "layout": args.layout, "repeat": repeat, "min_time": args.min_time,
                        "retries": args.retries, "busy": args.busy,
                        "sgemm_peak_gflops": peak, "sgemm_foreign_load": peak_load,
                        "sgemm_peak_first_gflops": peak_first,
                        "sgemm_peak_last_gflops": peak2,
                        "dtype": "float32",
                        "elapsed_s": elapsed, "argv": sys.argv[1:] if argv is None else argv},
               "summary": summary, "layers": rows}
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
