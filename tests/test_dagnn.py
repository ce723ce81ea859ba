"""The DagNN container (dagnn/dagnn.py): graph building and editing, eval's
memory and accumulation rules (MatConvNet's eval.m, Layer.m and the xtest
nndagnn.m), fromSimpleNN, sizes and receptive fields, copy, move."""

import importlib.util
import math
import os
import warnings

import numpy as np
import pytest

import dagnn
from _checks import check_derivative, randn
from dagnn import DagNN
from simplenn import load_net as simplenn_load_net
from simplenn import vl_simplenn, vl_simplenn_tidy
from simplenn.struct import Struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR = os.path.join(ROOT, "tests", "data", "matconvnet_cifar_net.mat")


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples",
                                                                      name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cnn_mnist():
    return load_example("cnn_mnist")


# ----------------------------------------------------------------------------
# small blocks defined here (a user's own layers)

class Mul(dagnn.Layer):
    """y = factor * x (* w when it has a parameter); receptive field 1."""

    PROPERTIES = {"factor": 1.0}

    def forward(self, inputs, params):
        y = self.factor * inputs[0]
        return [y * params[0] if params else y]

    def backward(self, inputs, params, derOutputs):
        d = self.factor * derOutputs[0]
        if params:
            return [d * params[0]], [np.sum(d * inputs[0]).reshape(np.shape(params[0]))]
        return [d], []

    def getOutputSizes(self, inputSizes):
        return [inputSizes[0]]


class Window(dagnn.Layer):
    """No computation, a configurable receptive field (for the geometry tests)."""

    PROPERTIES = {"rf": None, "num": 1}

    def forward(self, inputs, params):
        return [inputs[0]] * self.num

    def getReceptiveFields(self):
        return self.rf


class LossSmoothL1(dagnn.Loss):
    """MatConvNet's examples/fast_rcnn/+dagnn/LossSmoothL1.m, ported: inputs
    the prediction, the target and the instance weights."""

    PROPERTIES = {"sigma": 1.0}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss = "smoothl1"

    def forward(self, inputs, params):
        sigma2 = self.sigma ** 2
        delta = inputs[0] - inputs[1]
        abs_delta = np.abs(delta)
        linear = abs_delta > 1.0 / sigma2
        abs_delta = np.where(linear, abs_delta - 0.5 / sigma2, 0.5 * sigma2 * abs_delta ** 2)
        y = np.vdot(inputs[2].ravel(order="F"), abs_delta.ravel(order="F"))
        y = y / (inputs[0].shape[3] if inputs[0].ndim > 3 else 1)
        if not self.ignoreAverage:
            n = self.numAveraged
            m = n + float(np.sum(inputs[2])) + 1e-9
            self.average = (n * self.average + inputs[0].shape[3] * float(y)) / m
            self.numAveraged = m
        return [np.asarray(y)]

    def backward(self, inputs, params, derOutputs):
        sigma2 = self.sigma ** 2
        delta = inputs[0] - inputs[1]
        linear = np.abs(delta) > 1.0 / sigma2
        delta = np.where(linear, np.sign(delta), sigma2 * delta)
        n = inputs[0].shape[3] if inputs[0].ndim > 3 else 1
        return [inputs[2] * delta * derOutputs[0] / n, None, None], []


def chain(*blocks, params=None):
    """x -> blocks[0] -> y1 -> blocks[1] -> y2 ..."""
    net = DagNN()
    for i, block in enumerate(blocks):
        net.addLayer(f"l{i + 1}", block, "x" if i == 0 else f"y{i}", f"y{i + 1}",
                     (params or {}).get(i, ()))
    return net


def net_function(net, inputs, output, derOutputs=None):
    """f(x) = net's `output` value for the input var `inputs[0]` = x."""
    def f(x):
        net.eval([inputs[0], x] + list(inputs[2:]))
        return net.vars[net.getVarIndex(output)].value
    return f


# ----------------------------------------------------------------------------
# structure

def test_records_have_matconvnets_fields_and_0_based_indexes():
    net = DagNN()
    net.addLayer("conv", dagnn.Conv("size", [3, 3, 2, 4]), "input", "x1", ["f", "b"])
    net.addLayer("relu", dagnn.ReLU(), ["x1"], ["x2"])
    assert [list(v) for v in net.vars] == [
        ["name", "value", "der", "fanin", "fanout", "precious"]] * 3
    assert list(net.params[0]) == ["name", "value", "der", "fanout", "trainMethod",
                                   "learningRate", "weightDecay"]
    assert list(net.layers[0]) == ["name", "inputs", "outputs", "params", "inputIndexes",
                                   "outputIndexes", "paramIndexes", "forwardTime",
                                   "backwardTime", "block"]
    assert [v.name for v in net.vars] == ["input", "x1", "x2"]
    assert (net.params[1].trainMethod, net.params[1].learningRate,
            net.params[1].weightDecay) == ("gradient", 1, 1)
    assert net.layers[1].inputIndexes == [1] and net.layers[1].outputIndexes == [2]
    assert net.layers[0].paramIndexes == [0, 1] and net.layers[1].params == []
    assert [(v.fanin, v.fanout) for v in net.vars] == [(0, 1), (1, 1), (1, 0)]
    assert net.getVarIndex("x2") == 2 and net.getLayerIndex("relu") == 1
    assert net.getParamIndex(["b", "nope"])[0] == 1 and math.isnan(net.getParamIndex(["b", "nope"])[1])
    assert math.isnan(net.getVarIndex("nope")) and math.isnan(net.getLayerIndex("nope"))
    assert net.getInputs() == ["input"] and net.getOutputs() == ["x2"]
    assert net.layers[1].block.net is net and net.layers[1].block.layerIndex == 1
    assert (net.mode, net.conserveMemory, net.accumulateParamDers, net.holdOn,
            net.parameterServer, net.device) == ("normal", True, False, False, None, "cpu")


def test_flags_mode_and_device():
    net = DagNN()
    net.mode = "train"
    assert net.mode == "normal"
    net.mode = "TEST"
    assert net.mode == "test"
    with pytest.raises(ValueError, match="mode must be 'normal', 'train' or 'test', got 'eval'"):
        net.mode = "eval"
    with pytest.raises(AttributeError):
        net.device = "gpu"


def test_duplicate_layer_name_is_an_error():
    net = chain(Mul())
    with pytest.raises(ValueError, match="There is already a layer with name 'l1'"):
        net.addLayer("l1", Mul(), "y1", "z")
    with pytest.raises(TypeError, match="must be an instance of dagnn.Layer"):
        net.addLayer("l2", object(), "y1", "z")
    assert len(net.layers) == 1


def test_cycle_is_an_error_naming_its_layers_and_the_net_is_left_as_it_was():
    net = chain(Mul(), Mul(), Mul())                      # x -> y1 -> y2 -> y3
    with pytest.raises(ValueError, match=r"cycle through the layers 'l2' -> 'l3' -> 'back' "
                                         r"-> 'l2'"):
        net.addLayer("back", Mul(), "y3", "y1")
    assert [l.name for l in net.layers] == ["l1", "l2", "l3"]
    net.eval({"x": np.ones(2)})
    np.testing.assert_array_equal(net.vars[net.getVarIndex("y3")].value, np.ones(2))
    with pytest.raises(ValueError, match=r"cycle through the layers 'l1' -> 'l1'"):
        net.setLayerInputs("l1", ["y1"])
    assert net.layers[0].inputs == ["x"]
    with pytest.raises(ValueError, match="cycle"):
        net.addLayer("self", Mul(), "z", "z")


def test_execution_order_is_matconvnets_height_order():
    # added out of order; MatConvNet sorts by the longest path to a sink, ties in
    # layer order: c (height 3) before a (2) before b and d (1)
    net = DagNN()
    net.addLayer("b", Mul(), "y", "out1", skipRebuild=True)
    net.addLayer("a", Mul(), "u", "y", skipRebuild=True)
    net.addLayer("c", Mul(), "x", "u", skipRebuild=True)
    net.addLayer("d", Mul(), "u", "out2", skipRebuild=True)
    net.rebuild()
    assert net.getLayerExecutionOrder() == [2, 1, 0, 3]
    net.eval(["x", np.float64(2.0)])
    assert net.vars[net.getVarIndex("out1")].value == 2.0


def test_addlayer_pairs_and_single_names():
    net = DagNN()
    net.addLayer("conv1", dagnn.Conv("size", [5, 5, 1, 20]), "input", "x1",
                 ["conv1f", "conv1b"], "skipRebuild", True)
    assert net.layers[0].inputs == ["input"] and net.executionOrder == []
    net.rebuild()
    assert net.executionOrder == [0]


def test_get_layer_var_param_copies_and_errors():
    net = chain(Mul(), Mul(), params={0: ["w"]})
    layer = net.getLayer("l2")
    layer.name = "changed"
    assert net.layers[1].name == "l2"
    assert [l.name for l in net.getLayer(["l2", "l1"])] == ["l2", "l1"]
    assert net.getLayer(0).name == "l1" and net.getVar("y1").fanin == 1
    assert net.getParam("w").fanout == 1
    with pytest.raises(ValueError, match="Invalid layer name `nope, zip`"):
        net.getLayer(["l1", "nope", "zip"])
    with pytest.raises(ValueError, match="Invalid variable name `q`"):
        net.getVar("q")
    with pytest.raises(IndexError, match="Invalid param indexes"):
        net.getParam(3)


def test_remove_and_rename():
    net = chain(Mul(), Mul(factor=2.0), Mul(), params={1: ["w"]})
    net.removeLayer("l2")
    assert [v.name for v in net.vars] == ["x", "y1", "y2", "y3"] or \
        [v.name for v in net.vars] == ["x", "y1", "y3", "y2"]
    assert net.params == [] and net.getInputs() == ["x", "y2"]
    with pytest.raises(ValueError, match="Invalid layer name `zz`"):
        net.removeLayer(["l1", "zz"])

    net = chain(Mul(), Mul(), params={0: ["w"]})
    with pytest.warns(UserWarning, match="There is no layer 'nope'"):
        net.renameLayer("nope", "x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.renameLayer("nope", "x", quiet=True)
        net.renameVar("nope", "x", "quiet", True)
    with pytest.raises(ValueError, match="There is already a layer 'l2'"):
        net.renameLayer("l1", "l2")
    net.renameLayer("l1", "first")
    assert net.getLayerIndex("first") == 0 and math.isnan(net.getLayerIndex("l1"))
    net.renameParam("w", "weight")
    assert net.layers[0].params == ["weight"] and net.getParamIndex("weight") == 0
    net.addLayer("l3", Mul(), "y2", "y3", "w2")
    with pytest.raises(ValueError, match="There is already a parameter 'weight'"):
        net.renameParam("w2", "weight")
    # renaming a var keeps its slot; renaming onto an existing var merges them
    net.vars[1].precious = True
    net.renameVar("y1", "hidden")
    assert net.vars[1].name == "hidden" and net.vars[1].precious
    assert net.layers[0].outputs == ["hidden"] and net.layers[1].inputs == ["hidden"]
    net.addLayer("l4", Mul(), "extra", "out")
    count = len(net.vars)
    net.renameVar("extra", "y2")   # l4 now reads y2: the slot of 'extra' goes
    assert len(net.vars) == count - 1 and net.layers[3].inputs == ["y2"]
    assert math.isnan(net.getVarIndex("extra")) and net.getVar("y2").fanout == 2


def test_set_layer_inputs_outputs_params():
    net = chain(Mul(), Mul())
    assert net.setLayerInputs("l2", ["x"]) == [0]
    assert net.layers[1].inputs == ["x"] and net.getVar("x").fanout == 2
    assert "y1" in net.getOutputs()
    idx = net.setLayerOutputs(1, "out")
    assert net.vars[idx[0]].name == "out" and math.isnan(net.getVarIndex("y2"))
    net.setLayerParams("l1", ["w"])
    assert net.params[0].name == "w" and net.params[0].fanout == 1
    with pytest.raises(ValueError, match="Invalid layer name `nope`"):
        net.setLayerParams("nope", ["w"])


# ----------------------------------------------------------------------------
# eval: derivatives and accumulation

def test_fanout_2_var_gets_the_sum_of_both_ders():
    net = DagNN()
    net.addLayer("a", Mul(factor=2.0), "x", "ya")
    net.addLayer("b", Mul(factor=-3.5), "x", "yb")
    net.addLayer("sum", dagnn.Sum(), ["ya", "yb"], "z")
    x = randn((3, 4, 2, 1))
    p = randn((3, 4, 2, 1), seed=5)
    net.eval(["x", x], ["z", p])
    dx = net.vars[net.getVarIndex("x")].der
    np.testing.assert_allclose(dx, (2.0 - 3.5) * p)
    check_derivative(net_function(net, ["x"], "z"), x, dx, p)


def test_shared_param_gets_the_sum_over_its_layers():
    net = DagNN()
    conv = dict(size=[3, 3, 2, 2], pad=1)
    net.addLayer("c1", dagnn.Conv(**conv), "x", "y1", ["w", "b"])
    net.addLayer("relu", dagnn.ReLU(), "y1", "y2")
    net.addLayer("c2", dagnn.Conv(**conv), "y2", "y3", ["w", "b"])
    assert net.params[0].fanout == 2
    w, b = 0.5 * randn((3, 3, 2, 2), seed=1), randn((2, 1), seed=2)
    net.params[0].value, net.params[1].value = w, b
    x, p = randn((5, 4, 2, 2), seed=3), randn((5, 4, 2, 2), seed=4)
    net.eval(["x", x], ["y3", p])
    dw = net.params[0].der

    def f(w_):
        net.params[0].value = w_
        net.eval(["x", x])
        return net.vars[net.getVarIndex("y3")].value
    check_derivative(f, w, dw, p)
    # the sum of the two layers' contributions, each as a separate net computes it
    single = DagNN()
    single.addLayer("c1", dagnn.Conv(**conv), "x", "y1", ["w1", "b"])
    single.addLayer("relu", dagnn.ReLU(), "y1", "y2")
    single.addLayer("c2", dagnn.Conv(**conv), "y2", "y3", ["w2", "b"])
    single.params[0].value, single.params[1].value, single.params[2].value = w, b, w
    single.eval(["x", x], ["y3", p])
    np.testing.assert_allclose(dw, single.params[0].der + single.params[2].der, rtol=1e-12)


def test_accumulate_param_ders_adds_across_evals():
    net = chain(Mul(), params={0: ["w"]})
    net.params[0].value = np.array([[2.0]])
    x = np.arange(3.0)
    net.eval(["x", x], ["y1", 1.0])
    assert net.params[0].der == pytest.approx(3.0)
    net.eval(["x", x], ["y1", 1.0])
    assert net.params[0].der == pytest.approx(3.0)     # overwritten
    net.accumulateParamDers = True
    net.eval(["x", x], ["y1", 1.0])
    net.eval(["x", x], ["y1", np.full(3, 2.0)])
    assert net.params[0].der == pytest.approx(3.0 + 3.0 + 6.0)


def test_layer_with_an_empty_input_is_skipped():
    # a loss without labels at test time: the prediction is still computed
    net = DagNN()
    net.addLayer("pred", Mul(factor=2.0), "x", "prediction")
    net.addLayer("loss", dagnn.Loss("loss", "softmaxlog"), ["prediction", "label"], "objective")
    x = randn((1, 1, 4, 3))
    net.eval(["x", x])
    assert net.vars[net.getVarIndex("objective")].value is None
    np.testing.assert_allclose(net.vars[net.getVarIndex("prediction")].value, 2 * x)
    # and backward: a layer whose output has no derivative is skipped
    net.eval(["x", x, "label", np.array([1, 2, 3])], ["prediction", np.ones_like(x)])
    np.testing.assert_allclose(net.vars[0].der, 2 * np.ones_like(x))
    assert net.layers[1].block.numAveraged == 3


def test_eval_takes_pairs_or_a_dict_and_rejects_unknown_names():
    net = chain(Mul(factor=3.0))
    net.eval({"x": np.ones(2)})
    np.testing.assert_array_equal(net.vars[1].value, 3 * np.ones(2))
    with pytest.raises(ValueError, match=r"no variable of name 'input', 'data' could be found "
                                         r"in the DAG \(variables: x, y1\)"):
        net.eval(["input", 1, "x", np.ones(2), "data", 2])
    with pytest.raises(ValueError, match=r"Invalid `derOutputs`, variables \{loss\} do not "
                                         "exist"):
        net.eval(["x", np.ones(2)], ["loss", 1])
    with pytest.raises(ValueError, match="odd number"):
        net.eval(["x"])
    with pytest.raises(TypeError, match="flat list"):
        net.eval(np.ones(2))


class Recorder:
    def __init__(self):
        self.pushed, self.calls = {}, []

    def register(self, name, shape, dtype, device):
        self.calls.append(("register", name, shape, str(dtype), device))

    def start(self):
        self.calls.append("start")

    def stop(self):
        self.calls.append("stop")

    def pushWithIndex(self, p, der):
        self.pushed[p] = der


def test_parameter_server_receives_complete_ders_unless_hold_on():
    net = DagNN()
    net.addLayer("a", Mul(), "x", "y", "w")
    net.addLayer("b", Mul(), "y", "z", "w")
    net.params[0].value = np.array([[2.0]])
    server = Recorder()
    net.setParameterServer(server)
    assert server.calls == [("register", "w", (1, 1), "float64", "cpu"), "start"]
    x = np.ones(2)
    net.eval(["x", x], ["z", 1.0])
    # z = w^2 x: dz/dw = 2 w sum(x) = 8, pushed once, when both layers are in
    assert list(server.pushed) == [0] and server.pushed[0] == pytest.approx(8.0)
    assert net.params[0].der is None
    server.pushed.clear()
    net.eval(["x", x], ["z", 1.0], holdOn=True)
    assert server.pushed == {} and net.params[0].der == pytest.approx(8.0)
    net.clearParameterServer()
    assert server.calls[-1] == "stop" and net.parameterServer is None


# ----------------------------------------------------------------------------
# MatConvNet's xtest nndagnn: conserveMemory and precious

@pytest.fixture()
def nndagnn_net():
    rng = np.random.default_rng(0)

    def conv(h, w, c, k):
        return {"type": "conv", "weights": [rng.standard_normal((h, w, c, k)).astype(np.float32),
                                            np.zeros((1, k), np.float32)],
                "stride": 1, "pad": 0}

    pool = {"type": "pool", "method": "max", "pool": [2, 2], "stride": 2, "pad": 0}
    snet = {"layers": [conv(5, 5, 1, 20), pool, conv(5, 5, 20, 50), dict(pool),
                       conv(4, 4, 50, 500), {"type": "relu"}, conv(1, 1, 500, 10),
                       {"type": "softmaxloss"}]}
    net = DagNN.fromSimpleNN(vl_simplenn_tidy(snet))
    x = rng.standard_normal((28, 28, 1, 4)).astype(np.float32)
    label = rng.integers(1, 11, size=4)
    return net, x, label


def _forward(net, x, label):
    net.reset()
    net.eval(["x0", x, "label", label])


def _backward(net, x, label):
    net.reset()
    net.eval(["x0", x, "label", label], ["x8", 1])


def test_nndagnn_simple_run(nndagnn_net):
    net, x, label = nndagnn_net
    inputs, outputs = net.getInputs(), net.getOutputs()
    assert inputs == ["x0", "label"] and outputs == ["x8"]
    net.conserveMemory = True
    _forward(net, x, label)
    for var in net.vars:
        assert (var.value is not None) == (var.name in outputs), var.name
    _backward(net, x, label)
    for var in net.vars:
        assert (var.value is not None) == (var.name in inputs), var.name
    assert all(param.der is not None for param in net.params)


def test_nndagnn_conserve_memory_off(nndagnn_net):
    net, x, label = nndagnn_net
    net.conserveMemory = False
    _forward(net, x, label)
    assert all(var.value is not None for var in net.vars)
    _backward(net, x, label)
    for var in net.vars:
        assert var.value is not None
        if var.name not in net.getInputs():
            assert var.der is not None, var.name


def test_nndagnn_precious(nndagnn_net):
    net, x, label = nndagnn_net
    kept = net.layers[2].outputIndexes[0]      # MATLAB's selLayer = 3
    net.vars[kept].precious = True
    net.conserveMemory = True
    _forward(net, x, label)
    for v, var in enumerate(net.vars):
        assert (var.value is not None) == (var.name in net.getOutputs() or v == kept)
    # after backward a precious var keeps its value and derivative
    _backward(net, x, label)
    assert net.vars[kept].value is not None and net.vars[kept].der is not None
    assert net.vars[kept + 1].value is None


def test_nndagnn_receptive_fields_of_every_var(nndagnn_net):
    net = nndagnn_net[0]
    for var in net.vars:
        rfs = net.getVarReceptiveFields(var.name)
        assert len(rfs) == len(net.vars)


# ----------------------------------------------------------------------------
# modes

def test_test_mode_dropout_is_identity_and_batchnorm_uses_its_moments():
    net = DagNN()
    net.addLayer("bn", dagnn.BatchNorm("numChannels", 3), "x", "y", ["g", "b", "m"])
    net.addLayer("drop", dagnn.DropOut("rate", 0.5), "y", "z")
    assert net.params[2].trainMethod == "average"
    g, b = randn((3, 1), seed=1) + 2, randn((3, 1), seed=2)
    moments = np.concatenate([randn((3, 1), seed=3), np.abs(randn((3, 1), seed=4)) + 1], 1)
    net.params[0].value, net.params[1].value, net.params[2].value = g, b, moments
    x = randn((4, 5, 3, 6), seed=5)
    net.mode = "test"
    net.conserveMemory = False
    net.eval({"x": x})
    mu, sigma = moments[:, 0].reshape(1, 1, 3, 1), moments[:, 1].reshape(1, 1, 3, 1)
    expected = g.reshape(1, 1, 3, 1) * (x - mu) / sigma + b.reshape(1, 1, 3, 1)
    np.testing.assert_allclose(net.vars[1].value, expected, rtol=1e-10)
    np.testing.assert_array_equal(net.vars[2].value, net.vars[1].value)
    net.eval({"x": x}, {"z": np.ones_like(x)})
    np.testing.assert_array_equal(net.vars[1].der, np.ones_like(x))
    # normal mode: the batch's moments, and dropout zeroes about half
    net.mode = "normal"
    net.eval({"x": x})
    y = net.vars[1].value
    np.testing.assert_allclose(y.mean(axis=(0, 1, 3)), b.ravel(), atol=1e-10)
    z = net.vars[2].value
    zeros = np.mean(z == 0)
    assert 0.3 < zeros < 0.7
    np.testing.assert_allclose(z[z != 0], 2 * y[z != 0])


# ----------------------------------------------------------------------------
# a user's own layer: LossSmoothL1 (MatConvNet's Fast R-CNN example)

def test_user_layer_loss_smooth_l1():
    net = DagNN()
    net.addLayer("pred", dagnn.Conv("size", [1, 1, 3, 4], "hasBias", False), "x", "bbox", "w")
    net.addLayer("loss", LossSmoothL1("sigma", 1.5), ["bbox", "target", "weights"], "objective")
    assert net.layers[1].block.loss == "smoothl1" and net.layers[1].block.type_name() == \
        "dagnn.LossSmoothL1"
    w = randn((1, 1, 3, 4), seed=1)
    net.params[0].value = w
    x, target = randn((2, 3, 3, 5), seed=2), randn((2, 3, 4, 5), seed=3)
    weights = np.abs(randn((2, 3, 4, 5), seed=4))
    net.eval(["x", x, "target", target, "weights", weights], ["objective", 1.0])
    # forward against a plain expression
    pred = np.einsum("hwcn,ck->hwkn", x, w[0, 0])
    d = np.abs(pred - target)
    s2 = 1.5 ** 2
    expected = np.sum(weights * np.where(d > 1 / s2, d - 0.5 / s2, 0.5 * s2 * d ** 2)) / 5
    net.conserveMemory = False
    net.eval(["x", x, "target", target, "weights", weights], ["objective", 1.0])
    assert float(net.vars[net.getVarIndex("objective")].value) == pytest.approx(expected)
    dw = net.params[0].der

    def f(w_):
        net.params[0].value = w_
        net.eval(["x", x, "target", target, "weights", weights])
        return net.vars[net.getVarIndex("objective")].value
    check_derivative(f, w, dw, np.array(1.0))
    assert net.layers[1].block.numAveraged > 0


# ----------------------------------------------------------------------------
# fromSimpleNN

def _compare_with_simplenn(snet, net, x, label, input_name="x0", output_name=None,
                           rtol=1e-5):
    snet = vl_simplenn_tidy(snet)
    snet.layers[-1]["class"] = label
    res = vl_simplenn(snet, x, np.float32(1))
    net.conserveMemory = False
    output_name = output_name or net.getOutputs()[0]
    net.eval([input_name, x, "label", label], [output_name, 1])
    assert float(net.vars[net.getVarIndex(output_name)].value) == pytest.approx(
        float(res[-1].x), rel=rtol)
    for i, layer in enumerate(snet.layers):
        assert net.vars[net.layers[i].outputIndexes[0]].value.shape == res[i + 1].x.shape
        np.testing.assert_allclose(net.vars[net.layers[i].outputIndexes[0]].value,
                                   res[i + 1].x, rtol=rtol, atol=1e-6)
        for j, p in enumerate(net.layers[i].paramIndexes):
            np.testing.assert_allclose(net.params[p].der, res[i].dzdw[j], rtol=rtol,
                                       atol=1e-6, err_msg=net.params[p].name)
    np.testing.assert_allclose(net.vars[net.getVarIndex(input_name)].der, res[0].dzdx,
                               rtol=rtol, atol=1e-7)


def test_from_simplenn_lenet_names_and_numbers(cnn_mnist):
    snet = cnn_mnist.cnn_mnist_init()
    net = DagNN.fromSimpleNN(snet)
    assert [l.name for l in net.layers] == [f"layer{i}" for i in range(1, 9)]
    assert [v.name for v in net.vars] == [f"x{i}" for i in range(8)] + ["label", "x8"]
    assert [p.name for p in net.params] == ["layer1f", "layer1b", "layer3f", "layer3b",
                                            "layer5f", "layer5b", "layer7f", "layer7b"]
    types = [l.block.type_name() for l in net.layers]
    assert types == ["dagnn.Conv", "dagnn.Pooling", "dagnn.Conv", "dagnn.Pooling",
                     "dagnn.Conv", "dagnn.ReLU", "dagnn.Conv", "dagnn.Loss"]
    assert net.layers[7].inputs == ["x7", "label"] and net.layers[7].block.loss == "softmaxlog"
    assert net.layers[1].block.poolSize == [2, 2] and net.layers[1].block.stride == [2, 2]
    assert net.layers[0].block.size == [5, 5, 1, 20] and net.layers[0].block.hasBias
    assert net.meta.inputSize == [28, 28, 1]
    # the values are copies
    assert net.params[0].value is not snet.layers[0].weights[0]
    np.testing.assert_array_equal(net.params[0].value, snet.layers[0].weights[0])
    rng = np.random.default_rng(1)
    x = rng.standard_normal((28, 28, 1, 5)).astype(np.float32)
    _compare_with_simplenn(snet, net, x, rng.integers(1, 11, 5))


def test_from_simplenn_lenet_with_batch_norm(cnn_mnist):
    snet = cnn_mnist.cnn_mnist_init(batch_normalization=True)
    net = DagNN.fromSimpleNN(snet)
    bn = net.getLayerIndex("layer2")
    assert net.layers[bn].block.type_name() == "dagnn.BatchNorm"
    assert net.layers[bn].params == ["layer2m", "layer2b", "layer2x"]
    assert net.layers[0].params == ["layer1f"] and not net.layers[0].block.hasBias
    moments = net.params[net.getParamIndex("layer2x")]
    assert (moments.trainMethod, moments.learningRate, moments.weightDecay) == \
        ("average", 0.05, 0)
    mult = net.params[net.getParamIndex("layer2m")]
    assert (mult.trainMethod, mult.learningRate, mult.weightDecay) == ("gradient", 1, 0)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((28, 28, 1, 6)).astype(np.float32)
    _compare_with_simplenn(snet, net, x, rng.integers(1, 11, 6), rtol=2e-4)


def test_from_simplenn_cifar_file():
    snet = simplenn_load_net(CIFAR)
    net = DagNN.fromSimpleNN(snet)
    assert len(net.layers) == 13 and net.getInputs() == ["x0", "label"]
    first = net.params[net.getParamIndex("layer1f")]
    bias = net.params[net.getParamIndex("layer1b")]
    assert (first.learningRate, bias.learningRate) == (0.1, 2)
    assert net.layers[1].block.pad == [0, 1, 0, 1] and net.layers[1].block.method == "max"
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 32, 3, 2)).astype(np.float32) * 50
    _compare_with_simplenn(snet, net, x, rng.integers(1, 11, 2), rtol=1e-4)


def test_from_simplenn_canonical_names_and_meta_inputs():
    rng = np.random.default_rng(0)
    snet = {"layers": [{"type": "conv", "name": "fc",
                        "weights": [rng.standard_normal((1, 1, 3, 4)).astype(np.float32),
                                    np.zeros((1, 4), np.float32)]},
                       {"type": "softmax", "name": "sm"},
                       {"type": "conv", "name": "fc2",
                        "weights": [rng.standard_normal((1, 1, 4, 4)).astype(np.float32),
                                    None]},
                       {"type": "softmaxloss"}],
            "meta": {"inputs": [{"name": "data", "size": [1, 1, 3]}]}}
    plain = DagNN.fromSimpleNN(snet)
    assert [v.name for v in plain.vars] == ["x0", "x1", "x2", "x3", "label", "x4"]
    assert plain.meta.inputs[0].name == "x0"
    assert plain.layers[3].name == "layer4"
    net = DagNN.fromSimpleNN(snet, canonicalNames=True)
    assert [v.name for v in net.vars] == ["input", "prediction", "prob", "prediction1",
                                          "label", "objective"]
    assert net.meta.inputs[0].name == "input"
    assert net.layers[2].params == ["fc2f"]
    net = DagNN.fromSimpleNN(snet, "canonicalNames", True)
    assert net.getInputs() == ["input", "label"]


def test_from_simplenn_two_losses_get_label_and_label1():
    snet = {"layers": [{"type": "softmaxloss"}, {"type": "relu"}, {"type": "softmaxloss"}]}
    net = DagNN.fromSimpleNN(snet)
    assert net.layers[0].inputs == ["x0", "label"] and net.layers[2].inputs == ["x2", "label1"]


def test_from_simplenn_unsupported_type_names_the_layer():
    snet = {"layers": [{"type": "relu"}, {"type": "relu"}, {"type": "relu"},
                       {"type": "loss", "name": "conv2"}]}
    with pytest.raises(ValueError, match=r"layer 4 'conv2' \(net.layers\[3\]\): type 'loss' "
                                         "is unsupported"):
        DagNN.fromSimpleNN(snet)


# ----------------------------------------------------------------------------
# sizes and receptive fields

def test_var_sizes_match_the_real_shapes(cnn_mnist):
    net = DagNN.fromSimpleNN(cnn_mnist.cnn_mnist_init())
    sizes = net.getVarSizes(["x0", [28, 28, 1, 7], "label", [1, 7]])
    net.conserveMemory = False
    x = np.zeros((28, 28, 1, 7), np.float32)
    net.eval({"x0": x, "label": np.ones(7)})
    for var, size in zip(net.vars, sizes):
        shape = list(np.shape(var.value)) + [1] * (4 - np.ndim(var.value))
        if var.name == "label":
            assert size == [1, 7, 1, 1]
        elif var.name == "x8":     # MatConvNet's Loss.getOutputSizes; the value is a scalar
            assert size == [1, 1, 1, 7] and np.ndim(var.value) == 0
        else:
            assert size == shape, var.name
    assert net.getVarSizes({"x0": [28, 28, 1]})[-1] == [1, 1, 1, 1]
    unknown = net.getVarSizes([])
    # without input sizes only what the blocks know: conv's channels (MatConvNet's too)
    assert [math.isnan(s) for s in unknown[3]] == [True, True, False, True]
    assert unknown[3][2] == 50 and all(math.isnan(s) for s in unknown[0])
    assert net.getVarSizes(["x0", None])[0] == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="Variable `data` not found in the network"):
        net.getVarSizes(["data", [28, 28, 1]])


def _rf(size, stride, offset):
    return Struct(size=size, stride=stride, offset=offset)


def test_receptive_fields_compose_and_resolve():
    # a chain: conv 5 (offset 3) then pool 2 stride 2 (offset 1.5)
    net = chain(Window(rf=[[_rf([5, 5], [1, 1], [3, 3])]]),
                Window(rf=[[_rf([2, 2], [2, 2], [1.5, 1.5])]]))
    rfs = net.getVarReceptiveFields("x")
    assert [r.size for r in rfs] == [[1, 1], [5, 5], [6, 6]]
    assert rfs[2].stride == [2, 2] and rfs[2].offset == [3.5, 3.5]
    assert net.getVarReceptiveFields("y2")[0].size is None      # x does not depend on y2
    assert net.getVarReceptiveFields(1)[2].size == [2, 2]
    both = net.getVarReceptiveFields(["x", "y1"])
    assert both[1][2].offset == [1.5, 1.5]
    # two branches with the same stride merge into the smallest window holding both
    net = DagNN()
    net.addLayer("a", Window(rf=[[_rf([3, 3], [1, 1], [2, 2])]]), "x", "u")
    net.addLayer("b", Window(rf=[[_rf([5, 1], [1, 1], [1, 1])]]), "x", "v")
    net.addLayer("join", Window(rf=[[_rf([1, 1], [1, 1], [1, 1])],
                                    [_rf([1, 1], [1, 1], [1, 1])]]), ["u", "v"], "w")
    rf = net.getVarReceptiveFields("x")[net.getVarIndex("w")]
    # [1, 3] and [-1, 3] vertically -> [-1, 3]: size 5, offset 1; [1,3] and [1,1] -> [1,3]
    assert rf.size == [5, 3] and rf.offset == [1, 2] and rf.stride == [1, 1]
    # different strides cannot be a sliding window
    net.layers[1].block.rf = [[_rf([1, 1], [2, 2], [1, 1])]]
    assert all(math.isnan(s) for s in net.getVarReceptiveFields("x")[3].size)
    # a block without receptive fields (None) makes them undefined
    net.layers[1].block.rf = None
    assert all(math.isnan(s) for s in net.getVarReceptiveFields("x")[3].stride)
    with pytest.raises(ValueError, match="Variable zz not found"):
        net.getVarReceptiveFields("zz")


def test_lenet_receptive_fields_from_the_blocks(cnn_mnist):
    net = DagNN.fromSimpleNN(cnn_mnist.cnn_mnist_init())
    rfs = net.getVarReceptiveFields("x0")
    # conv 5: 5, 1, 3; pool 2/2: 6, 2, 3.5; conv 5: 6 + 2*4 = 14, 2, 3.5 + 2*2 = 7.5;
    # pool 2/2: 14 + 2 = 16, 4, 7.5 + 2*0.5 = 8.5; conv 4: 16 + 4*3 = 28, 4, 8.5 + 4*1.5 = 14.5
    assert [rfs[i].size for i in range(1, 6)] == [[5, 5], [6, 6], [14, 14], [16, 16], [28, 28]]
    assert rfs[5].stride == [4, 4] and rfs[5].offset == [14.5, 14.5]


# ----------------------------------------------------------------------------
# reset, initParams, move, copy

def test_reset_and_init_params():
    net = DagNN()
    net.addLayer("conv", dagnn.Conv("size", [3, 3, 2, 5]), "x", "y", ["f", "b"])
    net.addLayer("bn", dagnn.BatchNorm("numChannels", 5), "y", "z", ["m", "g", "mom"])
    net.initParams()
    assert [np.shape(p.value) for p in net.params] == [(3, 3, 2, 5), (5, 1), (5, 1), (5, 1),
                                                       (5, 2)]
    assert net.params[0].value.dtype == np.float32 and np.all(net.params[1].value == 0)
    net.eval(["x", randn((4, 4, 2, 2), dtype=np.float32)], ["z", np.ones((2, 2, 5, 2), np.float32)])
    assert net.params[0].der is not None and net.vars[0].der is not None
    net.reset()
    assert all(v.value is None and v.der is None for v in net.vars)
    assert all(p.der is None for p in net.params) and net.params[0].value is not None

    class Wrong(dagnn.Layer):
        def initParams(self):
            return [np.zeros(1)]
    net.addLayer("wrong", Wrong(), "z", "out", ["p1", "p2"])
    with pytest.raises(ValueError, match=r"layer 3 'wrong' \(net.layers\[2\]\) "
                                         r"\(dagnn.Wrong\) returned 1 initial values for 2"):
        net.initParams()


def test_move():
    net = chain(Mul(), params={0: ["w"]})
    net.params[0].value = np.ones((1, 1))
    net.eval(["x", np.ones(2)])
    net.move("cpu")
    assert net.device == "cpu" and net.vars[1].value is None
    assert isinstance(net.params[0].value, np.ndarray)
    with pytest.raises(ValueError, match="DEVICE must be either 'cpu' or 'gpu', got 'tpu'"):
        net.move("tpu")
    if importlib.util.find_spec("cupy") is None:
        with pytest.raises(ImportError, match="needs CuPy"):
            net.move("gpu")
        assert net.device == "cpu"


@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="CuPy not installed")
def test_move_gpu_eval_stays_on_gpu(cnn_mnist):
    import cupy

    net = DagNN.fromSimpleNN(cnn_mnist.cnn_mnist_init())
    net.move("gpu")
    x = np.random.default_rng(0).standard_normal((28, 28, 1, 3)).astype(np.float32)
    net.eval(["x0", cupy.asarray(x), "label", cupy.asarray([1, 2, 3])], ["x8", 1])
    assert isinstance(net.params[0].der, cupy.ndarray)
    net.move("cpu")
    assert isinstance(net.params[0].value, np.ndarray)


def test_copy_is_deep_and_attached(cnn_mnist):
    net = DagNN.fromSimpleNN(cnn_mnist.cnn_mnist_init())
    net.vars[3].precious = True
    net.params[0].learningRate = 0.5
    net.meta.note = ["a"]
    cp = net.copy()
    assert [l.name for l in cp.layers] == [l.name for l in net.layers]
    assert all(a.block is not b.block and b.block.net is cp and b.block.layerIndex == i
               for i, (a, b) in enumerate(zip(net.layers, cp.layers)))
    assert cp.vars[3].precious and cp.params[0].learningRate == 0.5
    assert cp.params[0].value is not net.params[0].value
    cp.params[0].value[...] = 0
    cp.meta.note.append("b")
    assert np.any(net.params[0].value != 0) and net.meta.note == ["a"]
    cp.layers[1].block.stride = [1, 1]
    assert net.layers[1].block.stride == [2, 2]
    x = np.ones((28, 28, 1, 1), np.float32)
    net2 = net.copy()
    net.eval(["x0", x])
    net2.eval(["x0", x])
    np.testing.assert_array_equal(net.vars[net.getVarIndex("x7")].value,
                                  net2.vars[net2.getVarIndex("x7")].value)
