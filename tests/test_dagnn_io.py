"""DagNN files (dagnn/io.py, DagNN.saveobj/loadobj): MatConvNet's saved
layout (saveobj.m), files MATLAB would write (built here with
scipy.io.savemat), exact round trips, v7.3, and the errors."""

import importlib.util
import os

import numpy as np
import pytest
import scipy.io

import dagnn
import simplenn
from dagnn import DagNN, load_net, save_net
from simplenn.struct import Struct
from vlnn import vl_nnconv, vl_nnloss, vl_nnpool, vl_nnrelu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR = os.path.join(ROOT, "tests", "data", "matconvnet_cifar_net.mat")


@pytest.fixture(scope="module")
def lenet_bnorm():
    spec = importlib.util.spec_from_file_location(
        "cnn_mnist", os.path.join(ROOT, "examples", "cnn_mnist.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cnn_mnist_init(batch_normalization=True)


def mixed_net():
    """A DAG using blocks of several kinds, its parameters in both precisions."""
    rng = np.random.default_rng(0)
    net = DagNN()
    net.addLayer("conv1", dagnn.Conv("size", [3, 3, 3, 4], "pad", 1), "input", "x1",
                 ["conv1f", "conv1b"])
    net.addLayer("relu1", dagnn.ReLU("leak", 0.1), "x1", "x2")
    net.addLayer("conv2", dagnn.Conv("size", [1, 1, 3, 4], "hasBias", False), "input", "x3",
                 "conv2f")
    net.addLayer("sum", dagnn.Sum(), ["x2", "x3"], "x4")
    net.addLayer("pool", dagnn.Pooling("poolSize", [2, 2], "stride", 2, "method", "avg"),
                 "x4", "x5")
    net.addLayer("concat", dagnn.Concat("dim", 3), ["x5", "x5"], "x6")
    net.addLayer("drop", dagnn.DropOut("rate", 0.25), "x6", "x7")
    net.addLayer("conv3", dagnn.Conv("size", [2, 2, 8, 5]), "x7", "pred", ["conv3f", "conv3b"])
    net.addLayer("loss", dagnn.Loss("loss", "softmaxlog"), ["pred", "label"], "objective")
    net.params[0].value = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    net.params[1].value = rng.standard_normal((4, 1)).astype(np.float32)
    net.params[2].value = rng.standard_normal((1, 1, 3, 4)).astype(np.float32)
    net.params[3].value = rng.standard_normal((2, 2, 8, 5)).astype(np.float32)
    net.params[4].value = np.zeros((1, 5), np.float32)
    net.params[1].learningRate, net.params[1].weightDecay = 2, 0
    net.params[3].learningRate = 0.25
    net.vars[net.getVarIndex("pred")].precious = True
    net.meta = Struct(inputs=Struct(name="input", size=np.array([[4.0, 4, 3, 1]])),
                      classes=Struct(name=["a", "b", "c", "d", "e"]), note="mixed")
    return net


def assert_same_value(a, b, where, loose=False):
    """Equal values, types, dtypes and shapes; ``loose`` (for meta, a free
    MATLAB struct) accepts a list of numbers read back as a 1 x N array, as
    simplenn.save_net documents."""
    if loose and isinstance(a, list) and isinstance(b, np.ndarray):
        assert b.shape == (1, len(a)), where
        np.testing.assert_array_equal(b.ravel(), a, err_msg=where)
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, (where, a.dtype, b.dtype, a.shape,
                                                           b.shape)
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), (where, a, b)
        for key in a:
            assert_same_value(a[key], b[key], f"{where}.{key}", loose)
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_value(x, y, f"{where}[{i}]", loose)
    else:
        assert type(a) is type(b) and a == b, (where, a, b)


def assert_same_net(a, b):
    assert [l.name for l in a.layers] == [l.name for l in b.layers]
    for la, lb in zip(a.layers, b.layers):
        assert type(la.block) is type(lb.block)
        assert (la.inputs, la.outputs, la.params) == (lb.inputs, lb.outputs, lb.params)
        assert_same_value(la.block.save(), lb.block.save(), la.name)
        assert lb.block.net is b
    for pa, pb in zip(a.params, b.params):
        assert (pa.name, pa.trainMethod, pa.fanout) == (pb.name, pb.trainMethod, pb.fanout)
        assert_same_value(pa.learningRate, pb.learningRate, pa.name)
        assert_same_value(pa.weightDecay, pb.weightDecay, pa.name)
        assert_same_value(pa.value, pb.value, pa.name)
    assert [(v.name, v.precious, v.fanin, v.fanout) for v in a.vars] == \
        [(v.name, v.precious, v.fanin, v.fanout) for v in b.vars]
    assert a.executionOrder == b.executionOrder
    assert_same_value(dict(a.meta), dict(b.meta), "meta", loose=True)


def test_saveobj_is_matconvnets_layout():
    net = mixed_net()
    net.params[0].trainMethod = "notrain"
    s = net.saveobj()
    assert list(s) == ["vars", "params", "layers", "meta"]
    assert [list(v) for v in s.vars] == [["name", "precious"]] * len(net.vars)
    assert list(s.params[0]) == ["name", "value", "learningRate", "weightDecay"]
    assert list(s.layers[0]) == ["name", "type", "inputs", "outputs", "params", "block"]
    assert s.layers[0].type == "dagnn.Conv" and s.layers[3].type == "dagnn.Sum"
    assert s.layers[2].params == ["conv2f"] and s.layers[1].params == []
    assert s.layers[0].block == net.layers[0].block.save()
    assert s.vars[net.getVarIndex("pred")].precious is True
    # as saveobj.m: trainMethod is not saved, so it is the default again after loadobj
    assert DagNN.loadobj(s).params[0].trainMethod == "gradient"


def test_save_load_round_trip_is_exact(tmp_path, lenet_bnorm):
    for net in (mixed_net(), DagNN.fromSimpleNN(lenet_bnorm)):
        path = save_net(tmp_path / "net.mat", net)
        back = load_net(path)
        assert_same_net(net, back)
        assert_same_net(net, DagNN.loadobj(net.saveobj()))
        assert_same_net(net, DagNN.loadobj(str(path)))
    moments = back.params[back.getParamIndex("layer2x")]
    assert (moments.trainMethod, moments.learningRate, moments.weightDecay) == \
        ("average", 0.05, 0)
    # and it computes the same
    net = mixed_net()
    back = load_net(save_net(tmp_path / "mixed.mat", net))
    x = np.random.default_rng(1).standard_normal((4, 4, 3, 2)).astype(np.float32)
    for n in (net, back):
        n.mode = "test"
        n.eval(["input", x, "label", np.array([1, 5])], ["objective", 1])
    assert_same_value(net.vars[net.getVarIndex("pred")].value,
                      back.vars[back.getVarIndex("pred")].value, "pred")
    for pa, pb in zip(net.params, back.params):
        assert_same_value(pa.der, pb.der, pa.name)


def test_the_file_holds_struct_arrays_and_cells(tmp_path):
    net = mixed_net()
    path = save_net(tmp_path / "net.mat", net)
    raw = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)
    assert {k for k in raw if not k.startswith("__")} == {"vars", "params", "layers", "meta"}
    layers = raw["layers"]
    assert layers.shape == (1, len(net.layers))
    assert layers.dtype.names == ("name", "type", "inputs", "outputs", "params", "block")
    conv2 = layers[0, 2]
    assert conv2["type"][0] == "dagnn.Conv"
    assert conv2["inputs"].dtype == object and conv2["inputs"].shape == (1, 1)
    assert conv2["inputs"][0, 0][0] == "input"
    assert layers[0, 3]["inputs"].shape == (1, 2) and layers[0, 1]["params"].size == 0
    block = conv2["block"]
    assert set(block.dtype.names) == {"size", "hasBias", "opts", "pad", "stride", "dilate"}
    np.testing.assert_array_equal(block["size"][0, 0], [[1, 1, 3, 4]])
    assert block["hasBias"][0, 0].shape == (1, 1) and not block["hasBias"][0, 0][0, 0]
    assert raw["params"].dtype.names == ("name", "value", "learningRate", "weightDecay")
    assert raw["params"][0, 0]["value"].dtype == np.float32
    assert raw["vars"].dtype.names == ("name", "precious")
    assert raw["meta"]["note"][0, 0][0] == "mixed"


# ----------------------------------------------------------------------------
# a file laid out as MatConvNet's saveobj.m + save() writes it

def struct_array(records):
    names = list(records[0])
    out = np.empty((1, len(records)), dtype=[(n, object) for n in names])
    for i, record in enumerate(records):
        for n in names:
            out[n][0, i] = record[n]
    return out


def cell(*items):
    out = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        out[0, i] = item
    return out


def struct(**fields):
    return struct_array([fields]) if fields else {}


def row(*values):
    return np.array([values], dtype=np.float64)


def matlab_layout(rng):
    f1 = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    b1 = rng.standard_normal((1, 4)).astype(np.float32)
    f2 = rng.standard_normal((1, 1, 2, 4)).astype(np.float32)
    f3 = rng.standard_normal((2, 2, 4, 3)).astype(np.float32)
    b3 = rng.standard_normal((3, 1)).astype(np.float32)
    conv = dict(pad=row(1, 1, 1, 1), stride=row(1, 1), dilate=row(1, 1), opts=cell("cuDNN"))
    layers = struct_array([
        dict(name="conv1", type="dagnn.Conv", inputs=cell("data"), outputs=cell("x1"),
             params=cell("conv1f", "conv1b"),
             block=struct(size=row(3, 3, 2, 4), hasBias=np.array([[True]]), **conv)),
        dict(name="relu1", type="dagnn.ReLU", inputs=cell("x1"), outputs=cell("x2"),
             params=cell(), block=struct(useShortCircuit=np.array([[True]]), leak=row(0),
                                         opts=cell())),
        dict(name="conv2", type="dagnn.Conv", inputs=cell("data"), outputs=cell("x3"),
             params=cell("conv2f"),
             block=struct(size=row(1, 1, 2, 4), hasBias=np.array([[False]]),
                          pad=row(0, 0, 0, 0), stride=row(1, 1), dilate=row(1, 1),
                          opts=cell("cuDNN"))),
        dict(name="sum", type="dagnn.Sum", inputs=cell("x2", "x3"), outputs=cell("x4"),
             params=cell(), block=struct()),
        dict(name="pool", type="dagnn.Pooling", inputs=cell("x4"), outputs=cell("x5"),
             params=cell(),
             block=struct(method="max", poolSize=row(2, 2), opts=cell("cuDNN"),
                          pad=row(0, 0, 0, 0), stride=row(2, 2), dilate=row(1, 1))),
        dict(name="conv3", type="dagnn.Conv", inputs=cell("x5"), outputs=cell("prediction"),
             params=cell("conv3f", "conv3b"),
             block=struct(size=row(2, 2, 4, 3), hasBias=np.array([[True]]),
                          pad=row(0, 0, 0, 0), stride=row(1, 1), dilate=row(1, 1),
                          opts=cell("cuDNN"))),
        dict(name="loss", type="dagnn.Loss", inputs=cell("prediction", "label"),
             outputs=cell("objective"), params=cell(),
             block=struct(loss="softmaxlog", ignoreAverage=np.array([[False]]),
                          normalise=np.array([[True]]), opts=cell())),
    ])
    params = struct_array([
        dict(name="conv1f", value=f1, learningRate=row(1), weightDecay=row(1)),
        dict(name="conv1b", value=b1, learningRate=row(2), weightDecay=row(0)),
        dict(name="conv2f", value=f2, learningRate=row(1), weightDecay=row(1)),
        dict(name="conv3f", value=f3, learningRate=row(1), weightDecay=row(1)),
        dict(name="conv3b", value=b3, learningRate=row(1), weightDecay=row(1)),
    ])
    names = ["data", "x1", "x2", "x3", "x4", "x5", "prediction", "label", "objective"]
    variables = struct_array([dict(name=n, precious=np.array([[n == "x5"]])) for n in names])
    meta = struct(inputs=struct(name="data", size=row(6, 6, 2, 1)),
                  normalization=struct(imageSize=row(6, 6, 2)))
    return dict(vars=variables, params=params, layers=layers, meta=meta), (f1, b1, f2, f3, b3)


def by_hand(x, label, weights):
    f1, b1, f2, f3, b3 = weights
    x2 = vl_nnrelu(vl_nnconv(x, f1, b1, pad=1))
    x4 = x2 + vl_nnconv(x, f2, None)
    x5 = vl_nnpool(x4, [2, 2], stride=2)
    prediction = vl_nnconv(x5, f3, b3)
    return x5, prediction, vl_nnloss(prediction, label)


@pytest.mark.parametrize("as_checkpoint", [False, True])
def test_a_matconvnet_file_loads_and_evaluates_as_the_blocks_by_hand(tmp_path, as_checkpoint):
    rng = np.random.default_rng(7)
    variables, weights = matlab_layout(rng)
    if as_checkpoint:   # cnn_train_dag: save(file, 'net', 'state', 'stats')
        variables = {"net": struct(**variables), "state": struct(solverState=cell()),
                     "stats": struct(train=struct(objective=row(1.5)))}
    path = str(tmp_path / "imagenet-dag.mat")
    scipy.io.savemat(path, variables, long_field_names=True)
    net = load_net(path)
    assert [l.block.type_name() for l in net.layers] == [
        "dagnn.Conv", "dagnn.ReLU", "dagnn.Conv", "dagnn.Sum", "dagnn.Pooling", "dagnn.Conv",
        "dagnn.Loss"]
    assert net.layers[0].inputs == ["data"] and net.layers[3].inputs == ["x2", "x3"]
    assert net.layers[1].params == [] and not net.layers[2].block.hasBias
    assert net.layers[0].block.size == [3, 3, 2, 4] and net.layers[0].block.opts == ["cuDNN"]
    assert net.layers[4].block.poolSize == [2, 2] and net.layers[4].block.stride == [2, 2]
    assert net.params[1].learningRate == 2 and net.params[1].weightDecay == 0
    assert net.params[0].value.dtype == np.float32 and net.params[4].value.shape == (3, 1)
    assert [v.name for v in net.vars if v.precious] == ["x5"]
    assert net.meta.inputs.name == "data" and net.meta.normalization.imageSize.shape == (1, 3)
    assert net.getInputs() == ["data", "label"] and net.getOutputs() == ["objective"]

    x = rng.standard_normal((6, 6, 2, 3)).astype(np.float32)
    label = np.array([1, 3, 2])
    net.eval(["data", x, "label", label])
    x5, prediction, objective = by_hand(x, label, weights)
    np.testing.assert_allclose(net.vars[net.getVarIndex("objective")].value, objective,
                               rtol=1e-5)
    np.testing.assert_allclose(net.vars[net.getVarIndex("x5")].value, x5, rtol=1e-5,
                               atol=1e-6)


def test_a_single_layer_file_with_one_name_cells(tmp_path):
    # MATLAB's 1 x 1 struct arrays read back as one struct, cells of one string as a list
    layers = struct_array([dict(name="relu", type="dagnn.ReLU", inputs=cell("in"),
                                outputs="out", params=np.zeros((0, 0)),
                                block=struct(leak=row(0.5)))])
    path = str(tmp_path / "one.mat")
    scipy.io.savemat(path, dict(layers=layers, vars=struct_array(
        [dict(name="in", precious=np.array([[True]]))]), meta=np.zeros((0, 0))))
    net = load_net(path)
    assert net.layers[0].outputs == ["out"] and net.layers[0].params == []
    assert net.layers[0].block.leak == 0.5 and net.layers[0].block.useShortCircuit is True
    assert net.vars[0].precious is True and net.meta == {}
    net.eval(["in", np.array([-2.0, 4.0])])
    np.testing.assert_array_equal(net.vars[1].value, [-1.0, 4.0])


def test_v73_file(tmp_path):
    pytest.importorskip("h5py")
    from test_io import StructArray, write_v73

    f = np.random.default_rng(0).standard_normal((2, 2, 1, 3)).astype(np.float32)
    layers = StructArray([
        dict(name="conv", type="dagnn.Conv", inputs=["x"], outputs=["y"], params=["f"],
             block=dict(size=row(2, 2, 1, 3), hasBias=False, opts=[], pad=0.0)),
        dict(name="relu", type="dagnn.ReLU", inputs=["y"], outputs=["z"], params=[],
             block=dict(leak=0.0))])
    path = write_v73(str(tmp_path / "v73.mat"), layers=layers,
                     params=StructArray([dict(name="f", value=f, learningRate=1.0,
                                              weightDecay=0.5)]),
                     vars=StructArray([dict(name="x", precious=False)]), meta={"a": 1.0})
    net = load_net(path)
    assert net.layers[0].block.pad == [0, 0, 0, 0] and net.params[0].weightDecay == 0.5
    np.testing.assert_array_equal(net.params[0].value, f)
    x = np.ones((3, 3, 1, 1), np.float32)
    net.eval(["x", x])
    np.testing.assert_allclose(net.vars[2].value, vl_nnrelu(vl_nnconv(x, f, None)))


# ----------------------------------------------------------------------------
# errors and the other wrapper's files

def test_unknown_property_type_and_unused_records(tmp_path):
    variables, _ = matlab_layout(np.random.default_rng(0))
    variables["layers"][0, 1]["block"] = struct(leak=row(0), slope=row(2))
    path = str(tmp_path / "bad.mat")
    scipy.io.savemat(path, variables, long_field_names=True)
    with pytest.raises(ValueError, match=r"bad\.mat: No property `slope` for a layer of type "
                                         r"`dagnn.ReLU`"):
        load_net(path)
    variables, _ = matlab_layout(np.random.default_rng(0))
    variables["layers"][0, 1]["type"] = "dagnn.Mystery"
    scipy.io.savemat(path, variables, long_field_names=True)
    with pytest.raises(ValueError, match="unknown layer type 'dagnn.Mystery'"):
        load_net(path)
    s = mixed_net().saveobj()
    s.params.append(Struct(name="ghost", value=None, learningRate=1, weightDecay=1))
    with pytest.raises(ValueError, match=r"params\[5\] 'ghost' is not used by any layer"):
        DagNN.loadobj(s)
    with pytest.raises(ValueError, match="Invalid model: no 'layers'"):
        DagNN.loadobj({"vars": []})
    with pytest.raises(TypeError, match="unknown data type int"):
        DagNN.loadobj(3)


def test_missing_properties_take_the_class_defaults():
    s = mixed_net().saveobj()
    del s.layers[4].block["method"]
    del s.layers[0].block["pad"]
    net = DagNN.loadobj(s)
    assert net.layers[4].block.method == "max" and net.layers[0].block.pad == [0, 0, 0, 0]


def test_simplenn_files_name_the_other_loader(tmp_path):
    with pytest.raises(ValueError, match=r"SimpleNN network .*simplenn\.load_net"):
        load_net(CIFAR)
    with pytest.warns(UserWarning, match="SimpleNN model; using fromSimpleNN"):
        net = DagNN.loadobj(CIFAR)
    assert len(net.layers) == 13 and net.layers[0].block.type_name() == "dagnn.Conv"
    with pytest.warns(UserWarning, match="fromSimpleNN"):
        DagNN.loadobj(dict(simplenn.load_net(CIFAR)))
    path = save_net(tmp_path / "dag.mat", mixed_net())
    with pytest.raises(ValueError, match=r"DagNN model .*dagnn\.load_net"):
        simplenn.load_net(path)
    with pytest.raises(ValueError, match="not a DagNN model: no 'layers'"):
        scipy.io.savemat(tmp_path / "other.mat", {"a": 1.0})
        load_net(tmp_path / "other.mat")


def test_unstorable_values_are_named_and_nothing_is_written(tmp_path):
    net = mixed_net()
    net.meta.callback = print
    path = tmp_path / "no.mat"
    with pytest.raises(ValueError, match="meta.callback holds a Python callable"):
        save_net(path, net)
    assert not path.exists()


def test_loadobj_takes_the_variables_of_a_file(tmp_path):
    from simplenn.matfile import read_mat

    net = mixed_net()
    path = save_net(tmp_path / "net.mat", net)
    assert_same_net(net, DagNN.loadobj(read_mat(path)))
    simple = simplenn.save_net(tmp_path / "simple.mat", simplenn.load_net(CIFAR))
    with pytest.warns(UserWarning, match="fromSimpleNN"):
        assert len(DagNN.loadobj(read_mat(simple)).layers) == 13
    # scipy.io.loadmat's output, as MATLAB's loadobj(load(file))
    assert_same_net(net, DagNN.loadobj(scipy.io.loadmat(path)))
    with pytest.warns(UserWarning, match="fromSimpleNN"):
        assert len(DagNN.loadobj(scipy.io.loadmat(simple)).layers) == 13
    with pytest.raises(TypeError, match=r"'layers' is a numeric array"):
        DagNN.loadobj({"layers": np.zeros((2, 2))})
