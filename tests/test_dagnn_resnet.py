"""examples/cnn_imagenet_init_resnet.py builds MatConvNet's ResNet-50.

(Its forward and backward pass, several seconds on two cores, is run by the
script itself and by benchmarks/bench_dagnn.py, not here.)"""

import importlib.util
import os

import numpy as np
import pytest

import dagnn

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.fixture(scope="module")
def resnet():
    path = os.path.join(EXAMPLES, "cnn_imagenet_init_resnet.py")
    spec = importlib.util.spec_from_file_location("cnn_imagenet_init_resnet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.cnn_imagenet_init_resnet(seed=0)


def resnet50_parameter_counts():
    """(learnable, batch-norm channels) of ResNet-50 from its architecture
    table: conv1 7x7x3x64 + BN; sections of 3, 4, 6, 3 bottlenecks
    (1x1 -> m, 3x3 m -> m, 1x1 m -> 4m, each + BN; a 1x1 + BN projection on
    the first shortcut); a 2048 -> 1000 classifier with biases.  Learnable
    counts the convolutions, the classifier and BN's gains and biases."""
    weights, bn_channels = 7 * 7 * 3 * 64, 64
    channels = 64
    for units, mid in ((3, 64), (4, 128), (6, 256), (3, 512)):
        for unit in range(units):
            if unit == 0:
                weights += channels * 4 * mid
                bn_channels += 4 * mid
            weights += channels * mid + 9 * mid * mid + mid * 4 * mid
            bn_channels += mid + mid + 4 * mid
            channels = 4 * mid
    weights += 2048 * 1000 + 1000
    return weights + 2 * bn_channels, bn_channels


def test_resnet50_has_the_known_parameter_count(resnet):
    module, net = resnet
    learnable, bn_channels = resnet50_parameter_counts()
    assert learnable == 25_557_032          # ResNet-50's published figure
    # and the DagNN also holds the BatchNorm moments (C x 2 each)
    assert module.count_parameters(net) == learnable + 2 * bn_channels
    by_gradient = sum(p.value.size for p in net.params if p.trainMethod == "gradient")
    assert by_gradient == learnable
    assert all(p.value.dtype == np.float32 for p in net.params)


def test_resnet50_layers_and_sizes(resnet):
    _, net = resnet
    kinds = [type(layer.block).__name__ for layer in net.layers]
    assert kinds.count("Conv") == 54 and kinds.count("BatchNorm") == 53  # + the classifier
    assert kinds.count("Sum") == 16 and kinds.count("ReLU") == 49
    assert kinds.count("Loss") == 3 and kinds.count("Pooling") == 2
    sizes = net.getVarSizes(["input", [224, 224, 3, 2]])
    size_of = {var.name: sizes[i] for i, var in enumerate(net.vars)}
    assert size_of["conv1"] == [56, 56, 64, 2]
    assert size_of["conv2_3"] == [56, 56, 256, 2]
    assert size_of["conv3_4"] == [28, 28, 512, 2]
    assert size_of["conv4_6"] == [14, 14, 1024, 2]
    assert size_of["conv5_3"] == [7, 7, 2048, 2]
    assert size_of["prediction_avg"] == [1, 1, 2048, 2]
    assert size_of["prediction"] == [1, 1, 1000, 2]
    assert size_of["objective"] == [1, 1, 1, 2]
    assert net.getInputs() == ["input", "label"]
    assert sorted(net.getOutputs()) == ["objective", "top1error", "top5error"]


def test_resnet50_initialisation_follows_matconvnet(resnet):
    _, net = resnet
    f = net.params[net.getParamIndex("conv1_f")]
    # randn * sqrt(2 / (7 * 7 * 3)), then / 100; learning rate / 100^2
    np.testing.assert_allclose(f.value.std(), np.sqrt(2 / 147) / 100, rtol=0.05)
    assert f.learningRate == pytest.approx(1e-4)
    for layer in net.layers:
        if isinstance(layer.block, dagnn.BatchNorm):
            moments = net.params[net.getParamIndex(layer.params[2])]
            assert moments.trainMethod == "average" and moments.learningRate == 0.3
            assert moments.value.shape == (layer.block.numChannels, 2)
    assert net.params[net.getParamIndex("prediction_b")].value.shape == (1000, 1)
