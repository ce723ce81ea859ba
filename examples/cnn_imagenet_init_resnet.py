#!/usr/bin/env python3
"""cnn_imagenet_init_resnet: ResNet-50 for ImageNet as a DagNN.

A port of MatConvNet's ``examples/imagenet/cnn_imagenet_init_resnet.m``.
Run it from the repository root::

    python3 examples/cnn_imagenet_init_resnet.py                # batch of 2
    python3 examples/cnn_imagenet_init_resnet.py --batch-size 8

It builds the network, prints MatConvNet's table of it (``net.print``) for
a 224 x 224 x 3 input, the number of parameters, and the time of one
forward and backward pass on a batch of random images.

The network, as the MATLAB function builds it (every convolution is
followed by batch normalisation; the convolutions have no biases):

- ``conv1``: 7 x 7 convolution, 64 channels, stride 2, + ReLU, then 3 x 3
  max pooling with stride 2 (224 -> 112 -> 56);
- sections 2 to 5 of 3, 4, 6 and 3 bottleneck units.  A unit of section
  ``s`` is ``1x1`` (``2^(s+4)`` channels) + ReLU, ``3x3`` (``2^(s+4)``) +
  ReLU, ``1x1`` (``2^(s+6)``), summed with its input and followed by a
  ReLU.  The first unit of each section has an "adapter" on its shortcut,
  a ``1x1`` convolution to ``2^(s+6)`` channels; from section 3 on the
  adapter and the ``3x3`` convolution have stride 2 (56 -> 28 -> 14 -> 7);
- ``prediction_avg``: 7 x 7 average pooling; ``prediction``: a ``1x1``
  convolution to 1000 classes with biases; the losses ``objective``
  (softmaxlog), ``top1error`` (classerror) and ``top5error`` (topkerror).

Parameters are initialised by each block's ``initParams`` (Conv:
``randn * sqrt(2 / (h w c))`` in single precision; BatchNorm: gains 1,
biases 0, moments 0).  The first convolution's filters are divided by 100
and their learning rate by 100^2 (the input is not scaled to unit
deviation), and the moments of every BatchNorm get learning rate 0.3,
as in MatConvNet.

``rng`` in MATLAB: the random draws come from ``vlnn.dropout.DEFAULT_RNG``
(the generator the blocks share); ``seed=`` installs a seeded one while
the net is initialised.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dagnn  # noqa: E402
import vlnn.dropout  # noqa: E402
from simplenn.struct import Struct  # noqa: E402


def cnn_imagenet_init_resnet(classNames=(), classDescriptions=(), averageImage=None,
                             colorDeviation=None, cudnnWorkspaceLimit=1024 * 1024 * 1204,
                             seed=None):
    """Initialise ResNet-50 for ImageNet classification (a ``dagnn.DagNN``).

    Parameters
    ----------
    classNames, classDescriptions : lists of str, default []
        Stored in ``net.meta.classes``.
    averageImage : array, default zeros(3, 1)
        Stored in ``net.meta.normalization.averageImage``.
    colorDeviation : 3 x 3 array, default zeros(3)
        ``0.1 *`` it is ``net.meta.augmentation.jitterBrightness``.
    cudnnWorkspaceLimit : int, default 1024*1024*1204
        Passed to every convolution (``opts``); no numerical effect here.
    seed : int, optional
        Seed of the initial weights (otherwise the blocks' generator as it
        stands).
    """
    averageImage = np.zeros((3, 1)) if averageImage is None else averageImage
    colorDeviation = np.zeros((3, 3)) if colorDeviation is None else colorDeviation
    net = dagnn.DagNN()
    last = Struct(var="input", depth=3)

    def conv(name, ksize, depth, relu=True, downsample=False, bias=False):
        """Convolution + BatchNorm (+ ReLU), MATLAB's nested ``Conv``."""
        stride = 2 if downsample else 1
        params = [name + "_f", name + "_b"] if bias else [name + "_f"]
        net.addLayer(name + "_conv",
                     dagnn.Conv("size", [ksize, ksize, last.depth, depth],
                                "stride", stride,
                                "pad", (ksize - 1) / 2,
                                "hasBias", bias,
                                "opts", ["cudnnworkspacelimit", cudnnWorkspaceLimit]),
                     last.var, name + "_conv", params)
        net.addLayer(name + "_bn",
                     dagnn.BatchNorm("numChannels", depth, "epsilon", 1e-5),
                     name + "_conv", name + "_bn",
                     [name + "_bn_w", name + "_bn_b", name + "_bn_m"])
        last.depth = depth
        last.var = name + "_bn"
        if relu:
            net.addLayer(name + "_relu", dagnn.ReLU(), last.var, name + "_relu")
            last.var = name + "_relu"

    # input section
    conv("conv1", 7, 64, relu=True, bias=False, downsample=True)
    net.addLayer("conv1_pool",
                 dagnn.Pooling("poolSize", [3, 3], "stride", 2, "pad", 1, "method", "max"),
                 last.var, "conv1")
    last.var = "conv1"

    # intermediate sections
    for s in range(2, 6):
        section_len = {2: 3, 3: 4, 4: 6, 5: 3}[s]
        for l in range(1, section_len + 1):
            section_input = Struct(last)
            name = f"conv{s}_{l}"
            # optional adapter layer on the shortcut
            if l == 1:
                conv(name + "_adapt_conv", 1, 2 ** (s + 6), downsample=s >= 3, relu=False)
            sum_input = Struct(last)
            # ABC: 1x1, 3x3, 1x1; the 3x3 downsamples in the first unit of
            # sections 3 to 5
            last.update(section_input)
            conv(name + "a", 1, 2 ** (s + 4))
            conv(name + "b", 3, 2 ** (s + 4), downsample=s >= 3 and l == 1)
            conv(name + "c", 1, 2 ** (s + 6), relu=False)
            net.addLayer(name + "_sum", dagnn.Sum(), [sum_input.var, last.var], name + "_sum")
            net.addLayer(name + "_relu", dagnn.ReLU(), name + "_sum", name)
            last.var = name

    net.addLayer("prediction_avg", dagnn.Pooling("poolSize", [7, 7], "method", "avg"),
                 last.var, "prediction_avg")
    net.addLayer("prediction", dagnn.Conv("size", [1, 1, 2048, 1000]),
                 "prediction_avg", "prediction", ["prediction_f", "prediction_b"])
    net.addLayer("loss", dagnn.Loss("loss", "softmaxlog"), ["prediction", "label"],
                 "objective")
    net.addLayer("top1error", dagnn.Loss("loss", "classerror"), ["prediction", "label"],
                 "top1error")
    net.addLayer("top5error", dagnn.Loss("loss", "topkerror", "opts", ["topK", 5]),
                 ["prediction", "label"], "top5error")

    # meta parameters
    image_size = [224, 224, 3]
    lr = [0.1] * 30 + [0.01] * 30 + [0.001] * 30
    net.meta = Struct(
        normalization=Struct(imageSize=image_size, cropSize=image_size[0] / 256,
                             averageImage=averageImage),
        classes=Struct(name=list(classNames), description=list(classDescriptions)),
        augmentation=Struct(jitterLocation=True, jitterFlip=True,
                            jitterBrightness=np.asarray(0.1 * np.asarray(colorDeviation),
                                                        np.float64),
                            jitterAspect=[3 / 4, 4 / 3], jitterScale=[0.4, 1.1]),
        inputSize=["input", image_size + [32]],
        trainOpts=Struct(learningRate=lr, numEpochs=len(lr), momentum=0.9, batchSize=256,
                         numSubBatches=4, weightDecay=0.0001))

    # init parameters randomly
    previous = vlnn.dropout.DEFAULT_RNG
    if seed is not None:
        vlnn.dropout.DEFAULT_RNG = np.random.default_rng(seed)
    try:
        net.initParams()
    finally:
        vlnn.dropout.DEFAULT_RNG = previous

    # The input is not normalised to unit deviation (ImageNet's is about
    # 60): scale the first filters and their learning rate accordingly.
    p = net.getParamIndex("conv1_f")
    net.params[p].value = net.params[p].value / np.float32(100)
    net.params[p].learningRate = net.params[p].learningRate / 100 ** 2

    for layer in net.layers:
        if isinstance(layer.block, dagnn.BatchNorm):
            k = net.getParamIndex(layer.params[2])
            net.params[k].learningRate = 0.3
    return net


def count_parameters(net):
    """The number of parameter elements (the moments of BatchNorm included)."""
    return sum(int(np.size(p.value)) for p in net.params)


def forward_backward(net, batch_size, seed=0):
    """One ``eval`` with derivatives on random images; returns seconds."""
    r = np.random.default_rng(seed)
    images = r.standard_normal((224, 224, 3, batch_size), dtype=np.float32) * 50
    labels = r.integers(1, 1001, (1, 1, 1, batch_size)).astype(np.float32)
    start = time.perf_counter()
    net.eval({"input": images, "label": labels}, {"objective": 1})
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=2,
                        help="images in the timed forward+backward pass (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    args = parser.parse_args(argv)

    net = cnn_imagenet_init_resnet(seed=args.seed)
    net.print(["input", [224, 224, 3, 1]])
    print(f"parameters: {count_parameters(net):,} "
          f"({sum(int(np.size(p.value)) for p in net.params if p.trainMethod != 'average'):,}"
          " learnt by gradient, the rest BatchNorm moments)")
    seconds = forward_backward(net, args.batch_size)
    print(f"forward+backward on a batch of {args.batch_size} (224x224x3): {seconds:.2f} s; "
          f"objective {float(net.layers[net.getLayerIndex('loss')].block.average):.4f}")


if __name__ == "__main__":
    main()
