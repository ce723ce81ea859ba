"""load_net / save_net: MatConvNet's .mat layouts (v5/v7 and v7.3), round
trips, malformed files, and the ``python -m simplenn`` command line."""

import copy
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io

from simplenn.io import load_net, save_net
from simplenn.struct import Struct
from simplenn.tidy import vl_simplenn_tidy
from test_tidy import assert_same

CIFAR = os.path.join(os.path.dirname(__file__), "data", "matconvnet_cifar_net.mat")


# --------------------------------------------------------------------------
# MATLAB values as scipy.io.savemat writes them

def mstruct(**fields):
    """A 1 x 1 MATLAB struct."""
    if not fields:
        return {}  # scipy writes an empty dict as a struct without fields
    out = np.empty((1, 1), dtype=[(k, object) for k in fields])
    for key, value in fields.items():
        out[key][0, 0] = value
    return out


def mcell(*items, shape=None):
    """A MATLAB cell (1 x N unless ``shape`` is given), column-major."""
    shape = shape or ((1, len(items)) if items else (0, 0))
    out = np.empty(shape, dtype=object)
    for i, item in enumerate(items):
        out[np.unravel_index(i, shape, order="F")] = item
    return out


def double(*values):
    return np.array([values], dtype=np.float64)


def single(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def write_v5(path, **variables):
    scipy.io.savemat(path, variables, do_compression=True)
    return path


# --------------------------------------------------------------------------
# The real MatConvNet file

def test_matconvnet_cifar_file():
    net = load_net(CIFAR)
    assert list(net) == ["layers", "meta"]
    types = [layer.type for layer in net.layers]
    assert types == ["conv", "pool", "relu", "conv", "relu", "pool", "conv", "relu", "pool",
                     "conv", "relu", "conv", "softmaxloss"]
    conv1 = net.layers[0]
    assert conv1.weights[0].shape == (5, 5, 3, 32) and conv1.weights[0].dtype == np.float32
    assert conv1.weights[1].shape == (1, 32) and conv1.weights[1].dtype == np.float32
    assert np.all(np.isfinite(conv1.weights[0])) and np.any(conv1.weights[0] != 0)
    assert net.layers[11].weights[0].shape == (1, 1, 64, 10)
    assert net.layers[11].weights[1].shape == (1, 10)
    assert conv1.pad == 2 and conv1.stride == 1 and conv1.dilate == 1
    assert conv1.name == "layer1" and conv1.precious is False and conv1.opts == []
    assert_same(conv1.learningRate, np.array([[0.1, 2.0]]))
    pool = net.layers[1]
    assert pool.method == "max" and net.layers[5].method == "avg"
    assert_same(pool.pad, np.array([[0.0, 1.0, 0.0, 1.0]]))
    assert_same(pool.pool, np.array([[3.0, 3.0]]))
    assert pool.stride == 2 and pool.weights == []
    assert net.layers[2].leak == 0 and net.layers[12].name == "layer13"
    assert_same(net.meta.inputSize, np.array([[32.0, 32.0, 3.0]]))
    assert net.meta.trainOpts.batchSize == 100 and net.meta.trainOpts.numEpochs == 45
    assert net.meta.trainOpts.weightDecay == 1e-4
    assert isinstance(net.meta, Struct) and isinstance(net.layers[0], Struct)


# --------------------------------------------------------------------------
# Hand-built files in MatConvNet's layouts (v5, written by scipy)

def test_dropped_singleton_dimensions(tmp_path):
    fc = single((1, 1, 500, 10))
    k1 = single((3, 3, 64))          # 3x3x64x1 as MATLAB stores it
    tiny = single((5, 5))            # 5x5x1x1 as MATLAB stores it
    convt = single((4, 4, 2))        # convt 4x4x2x1
    layers = mcell(
        mstruct(type="conv", weights=mcell(fc, single((1, 10))), stride=double(1),
                pad=double(0)),
        mstruct(type="conv", weights=mcell(k1, np.ones((1, 1), np.float32))),
        mstruct(type="conv", weights=mcell(tiny, np.ones((1, 1), np.float32))),
        mstruct(type="convt", weights=mcell(convt, np.ones((1, 1), np.float32))))
    net = load_net(write_v5(tmp_path / "m.mat", layers=layers, meta=mstruct()))
    w = [layer.weights for layer in net.layers]
    assert w[0][0].shape == (1, 1, 500, 10) and np.array_equal(w[0][0], fc)
    assert w[1][0].shape == (3, 3, 64, 1) and np.array_equal(w[1][0][..., 0], k1)
    assert w[2][0].shape == (5, 5, 1, 1) and np.array_equal(w[2][0][:, :, 0, 0], tiny)
    assert w[3][0].shape == (4, 4, 2, 1)
    # a K = 1 bias stays a 1 x 1 float32 array, not a Python number
    assert_same(w[1][1], np.ones((1, 1), np.float32))
    assert all(x.dtype == np.float32 for layer in w for x in layer)


def test_checkpoint_layout(tmp_path):
    layers = mcell(mstruct(type="conv", weights=mcell(single((3, 3, 1, 2)), single((1, 2))),
                           name="c"),
                   mstruct(type="softmaxloss", name="loss", precious=np.array([[True]])))
    state = mstruct(solverState=mcell(mcell(double(0), double(0)), mcell()))
    stats = mstruct(train=np.ones((1, 2), dtype=[("num", object), ("objective", object)]))
    path = write_v5(tmp_path / "net-epoch-3.mat",
                    net=mstruct(layers=layers, meta=mstruct(inputSize=double(8, 8, 1)),
                                extra=double(1)),
                    state=state, stats=stats)
    net = load_net(path)
    assert list(net) == ["layers", "meta"]
    assert [layer.name for layer in net.layers] == ["c", "loss"]
    assert net.layers[1].precious is True and net.layers[0].precious is False
    assert_same(net.meta.inputSize, np.array([[8.0, 8.0, 1.0]]))


def test_legacy_layout(tmp_path):
    layers = mcell(
        mstruct(type="conv", filters=single((5, 5, 3)), biases=double(0.5),
                filtersLearningRate=double(1), biasesLearningRate=double(2),
                stride=double(1), pad=double(2, 2, 2, 2)),
        mstruct(type="bnorm", filters=np.ones((1, 1), np.float32),
                biases=np.zeros((1, 1), np.float32)),
        mstruct(type="relu", leak=np.array([[0.25]], np.float32), precious=double(1)),
        mstruct(type="pool", pool=double(3, 3), method="avg", opts=np.zeros((0, 0))),
        mstruct(type="dropout", rate=double(0.3), weights=np.zeros((0, 0))),
        mstruct(type="softmax"))
    classes = mstruct(name=mcell("n01", "n02"), description=mcell("cat", "dog"))
    normalization = mstruct(imageSize=double(224, 224, 3), border=double(32, 32),
                            averageImage=np.zeros((1, 1, 3), np.float32),
                            interpolation="bilinear", keepAspect=np.array([[True]]))
    path = write_v5(tmp_path / "legacy.mat", layers=layers, classes=classes,
                    normalization=normalization)
    net = load_net(path)
    conv, bnorm, relu, pool, dropout, softmax = net.layers
    assert "filters" not in conv and conv.weights[0].shape == (5, 5, 3, 1)
    # double weights become single, a 1 x 1 bias stays an array
    assert_same(conv.weights[1], np.array([[0.5]], np.float32))
    assert conv.filtersLearningRate == 1 and conv.dilate == 1 and conv.name == "layer1"
    assert_same(conv.pad, np.array([[2.0, 2.0, 2.0, 2.0]]))
    assert_same(bnorm.weights[2], np.zeros((1, 2), np.float32))
    assert bnorm.epsilon == 1e-5
    assert relu.precious is True and type(relu.leak) is float and relu.leak == pytest.approx(0.25)
    assert pool.method == "avg" and pool.opts == [] and pool.stride == 1
    assert dropout.rate == 0.3 and dropout.weights == []
    assert softmax == {"type": "softmax", "weights": [], "name": "layer6", "precious": False}
    assert net.meta.classes.name == ["n01", "n02"]
    assert net.meta.classes.description == ["cat", "dog"]
    norm = net.meta.normalization
    assert norm.interpolation == "bilinear" and norm.keepAspect is True
    assert_same(norm.averageImage, np.zeros((1, 1, 3), np.float32))
    assert_same(norm.cropSize, np.array([[224 / 256, 224 / 256]]))


def test_matlab_value_conversions(tmp_path):
    entries = np.ones((1, 2), dtype=[("epoch", object)])
    entries[0, 0]["epoch"], entries[0, 1]["epoch"] = double(1), double(2)
    meta = mstruct(
        labels=mcell("a", double(1.5), mcell(), shape=None),
        grid=mcell("a", "b", "c", "d", shape=(2, 2)),
        history=entries,
        empty=np.zeros((0, 0)), text="", flags=np.array([[True, False]]),
        count=np.array([[3]], np.int32), nothing=mstruct())
    net = load_net(write_v5(tmp_path / "v.mat", layers=mcell(), meta=meta))
    m = net.meta
    assert m.labels == ["a", 1.5, []]
    assert m.grid.shape == (2, 2) and m.grid[1, 0] == "b" and m.grid[0, 1] == "c"
    assert m.history == [{"epoch": 1}, {"epoch": 2}]
    assert m.empty is None and m.text == ""
    assert_same(m.flags, np.array([[True, False]]))
    assert_same(m.count, np.array([[3]], np.int32))
    assert m.nothing == {} and isinstance(m.nothing, Struct)
    assert net.layers == []


# --------------------------------------------------------------------------
# Files that are not SimpleNN networks

def test_dagnn_files_are_rejected(tmp_path):
    dag_layers = np.ones((1, 1), dtype=[("name", object), ("type", object)])
    dag_layers[0, 0]["name"], dag_layers[0, 0]["type"] = "conv1", "dagnn.Conv"
    params = np.ones((1, 1), dtype=[("name", object), ("value", object)])
    params[0, 0]["name"], params[0, 0]["value"] = "conv1f", single((3, 3, 1, 1))
    path = write_v5(tmp_path / "dag.mat", vars=mcell(), params=params, layers=dag_layers,
                    meta=mstruct())
    with pytest.raises(ValueError, match=r"dag\.mat.*DagNN"):
        load_net(path)
    path = write_v5(tmp_path / "dagckpt.mat",
                    net=mstruct(vars=mcell(), params=params, layers=dag_layers))
    with pytest.raises(ValueError, match=r"dagckpt\.mat.*DagNN"):
        load_net(path)


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (np.random.default_rng(0).bytes(3000), "not a MATLAB MAT file"),
    (bytes(2000), "not a MATLAB MAT file"),
    (b"MATLAB 5.0 MAT-file".ljust(116) + bytes(8) + b"\x00\x01IM" + b"\xff" * 300,
     "malformed small data element"),
])
def test_malformed_files(tmp_path, content, message):
    path = tmp_path / "bad.mat"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        load_net(path)
    assert "bad.mat" in str(info.value)


def test_truncated_file(tmp_path):
    data = open(CIFAR, "rb").read()
    path = tmp_path / "truncated.mat"
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="truncated.mat"):
        load_net(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_net(tmp_path / "nope.mat")


def test_mat_without_layers(tmp_path):
    path = write_v5(tmp_path / "data.mat", images=np.zeros((2, 2)), labels=double(1, 2))
    with pytest.raises(ValueError, match=r"data\.mat: not a SimpleNN network.*images, labels"):
        load_net(path)


def test_bad_layers_in_file(tmp_path):
    with pytest.raises(ValueError, match=r"x\.mat: 'layers'.*not a cell"):
        load_net(write_v5(tmp_path / "x.mat", layers=double(1, 2)))
    path = write_v5(tmp_path / "y.mat", layers=mcell(mstruct(type="relu"), mstruct(name="fc")))
    with pytest.raises(ValueError, match=r"y\.mat: .*layer 2 'fc'.*no 'type'"):
        load_net(path)


# --------------------------------------------------------------------------
# save_net

def every_layer_net():
    rng = np.random.default_rng(3)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    return {
        "layers": [
            {"type": "conv", "weights": [f32(3, 3, 2, 1), f32(1, 1)], "name": "conv1",
             "pad": 1, "learningRate": np.array([[1.0, 2.0]]), "opts": ["NoCudnn"]},
            {"type": "conv", "filters": f32(5, 5), "biases": f32(1, 1),
             "stride": np.array([[2.0, 1.0]]), "dilate": 2},
            {"type": "convt", "weights": [f32(4, 4, 3, 1), f32(1, 3)], "upsample": 2,
             "crop": np.array([[1.0, 1.0, 1.0, 1.0]])},
            {"type": "conv", "weights": [f32(1, 1, 500, 10), f32(1, 10)]},
            {"type": "bnorm", "weights": [f32(10, 1), f32(10, 1)]},
            {"type": "bnorm", "weights": [f32(4, 1), f32(4, 1), f32(4, 2)], "epsilon": 1e-4},
            {"type": "pool", "pool": np.array([[3.0, 3.0]]), "method": "avg",
             "pad": np.array([[0.0, 1.0, 0.0, 1.0]]), "stride": 2},
            {"type": "pool", "pool": 2},
            {"type": "relu", "leak": 0.1},
            {"type": "relu", "precious": True},
            {"type": "normalize"},
            {"type": "lrn", "param": np.array([[5.0, 1.0, 1e-4, 0.75]])},
            {"type": "spnorm", "param": np.array([[2.0, 2.0, 1.0, 0.5]])},
            {"type": "noffset", "param": np.array([[1.0, 0.5]])},
            {"type": "sigmoid"},
            {"type": "softmax"},
            {"type": "dropout", "rate": 0.25},
            {"type": "dropout"},
            {"type": "pdist", "class": f32(1, 1, 10), "p": 1, "noRoot": True},
            {"type": "loss", "class": np.array([[1.0, 2.0, 3.0]])},
            {"type": "softmaxloss"},
            {"type": "mystery", "k": 3},
        ],
        "meta": {
            "inputSize": np.array([[32.0, 32.0, 2.0]]),
            "classes": {"name": ["n01", "n02"], "description": ["cat", "dog"]},
            "trainOpts": {"learningRate": 0.001, "numEpochs": 20, "solver": None,
                          "history": []},
            "empty": {},
        },
        "normalization": {"imageSize": np.array([[32.0, 32.0, 2.0]]),
                          "border": np.array([[8.0, 8.0]]),
                          "averageImage": np.zeros((1, 1, 2), np.float32),
                          "interpolation": "bicubic", "keepAspect": True},
    }


def test_round_trip(tmp_path):
    net = every_layer_net()
    before = copy.deepcopy(net)
    path = tmp_path / "net.mat"
    assert save_net(path, net) == path
    assert_same(net, before)                       # input untouched
    loaded = load_net(path)
    expected = vl_simplenn_tidy(net)
    assert_same(loaded, expected)
    assert loaded.layers[0].weights[0].shape == (3, 3, 2, 1)
    assert loaded.layers[1].weights[0].shape == (5, 5, 1, 1)
    assert loaded.layers[4].weights[2].dtype == np.float32
    # saving the loaded net again changes nothing
    assert_same(load_net(save_net(tmp_path / "again.mat", loaded)), expected)


def test_saved_layout_is_matconvnet(tmp_path):
    path = save_net(str(tmp_path / "net.mat"), every_layer_net())
    raw = scipy.io.loadmat(path, mat_dtype=True)
    assert sorted(k for k in raw if not k.startswith("__")) == ["layers", "meta"]
    layers = raw["layers"]
    assert layers.dtype == object and layers.shape == (1, 22)
    conv = layers[0, 0]
    assert conv.shape == (1, 1) and "weights" in conv.dtype.names
    weights = conv["weights"][0, 0]
    assert weights.dtype == object and weights.shape == (1, 2)
    assert weights[0, 0].dtype == np.float32 and weights[0, 0].shape == (3, 3, 2, 1)
    assert conv["type"][0, 0][0] == "conv"
    assert conv["precious"][0, 0].dtype == np.bool_      # logical
    assert conv["pad"][0, 0].dtype == np.float64          # options are double
    assert conv["opts"][0, 0].dtype == object             # a cell
    assert layers[0, 1]["opts"][0, 0].shape == (0, 0)     # empty cell {}
    assert raw["meta"]["classes"][0, 0]["name"][0, 0].dtype == object


def test_weights_keep_their_precision(tmp_path):
    # MATLAB's save keeps double weights double: a float64 network trains
    # and resumes in float64; a layer mixing single and double becomes single
    net = {"layers": [{"type": "conv", "weights": [np.ones((2, 2, 1, 3)), np.zeros((1, 3))]},
                      {"type": "conv", "weights": [np.ones((1, 1, 3, 2), np.float32),
                                                   np.zeros((1, 2), np.float32)]},
                      {"type": "conv", "weights": [np.ones((1, 1, 2, 2), np.float32),
                                                   np.zeros((1, 2))]}]}
    loaded = load_net(save_net(tmp_path / "n.mat", net))
    assert [[w.dtype for w in layer.weights] for layer in loaded.layers] == [
        [np.float64, np.float64], [np.float32, np.float32], [np.float32, np.float32]]


def test_save_rejects_custom_layers(tmp_path):
    net = {"layers": [{"type": "relu"},
                      {"type": "custom", "name": "mine", "forward": lambda l, a, b: b,
                       "backward": lambda l, a, b: a}]}
    path = tmp_path / "custom.mat"
    with pytest.raises(ValueError, match=r"layer 2 'mine'.*custom.*'forward'"):
        save_net(path, net)
    assert not path.exists()


@pytest.mark.parametrize("meta, message", [
    ({"_private": 1}, "not a valid MATLAB field name"),
    ({"x" * 64: 1}, "not a valid MATLAB field name"),
    ({"thing": object()}, r"meta\.thing .*type object"),
    ({"fn": print}, r"meta\.fn holds a Python callable"),
])
def test_save_rejects_unstorable_values(tmp_path, meta, message):
    path = tmp_path / "bad.mat"
    with pytest.raises(ValueError, match=message):
        save_net(path, {"layers": [], "meta": meta})
    assert not path.exists()


# --------------------------------------------------------------------------
# MAT v7.3 (HDF5), written here in MATLAB's layout

class StructArray(list):
    """Marks a list of dicts to be written as a MATLAB struct array."""


def _h5_class(h5, dataset, name):
    dataset.attrs["MATLAB_class"] = np.bytes_(name)


def _h5_empty(h5, parent, name, cls):
    ds = parent.create_dataset(name, data=np.array([0, 0], np.uint64))
    _h5_class(h5, ds, cls)
    ds.attrs["MATLAB_empty"] = np.uint8(1)
    return ds


def _h5_fields(h5, group, names):
    vlen = h5.vlen_dtype(np.dtype("S1"))
    fields = np.empty(len(names), dtype=vlen)
    for i, name in enumerate(names):
        fields[i] = np.array([c.encode() for c in name], dtype="S1")
    group.attrs.create("MATLAB_fields", fields, dtype=vlen)


def _h5_put(h5, parent, name, value, refs, counter):
    """Write ``value`` as MATLAB -v7.3 does: reversed dimensions, MATLAB_class
    attributes, cell items in /#refs#."""
    def ref_to(item):
        key = f"r{next(counter)}"
        _h5_put(h5, refs, key, item, refs, counter)
        return refs[key].ref

    if isinstance(value, StructArray):
        group = parent.create_group(name)
        _h5_class(h5, group, "struct")
        names = list(value[0])
        _h5_fields(h5, group, names)
        for field in names:
            data = np.array([ref_to(rec[field]) for rec in value], dtype=h5.ref_dtype)
            group.create_dataset(field, data=data.reshape(len(value), 1))  # 1 x N reversed
    elif isinstance(value, dict):
        group = parent.create_group(name)
        _h5_class(h5, group, "struct")
        _h5_fields(h5, group, list(value))
        for key, item in value.items():
            _h5_put(h5, group, key, item, refs, counter)
    elif isinstance(value, list):
        if not value:
            return _h5_empty(h5, parent, name, "cell")
        data = np.array([ref_to(item) for item in value], dtype=h5.ref_dtype)
        _h5_class(h5, parent.create_dataset(name, data=data.reshape(len(value), 1)), "cell")
    elif isinstance(value, str):
        if not value:
            return _h5_empty(h5, parent, name, "char")
        codes = np.array([[ord(c) for c in value]], np.uint16)
        ds = parent.create_dataset(name, data=codes.T)
        _h5_class(h5, ds, "char")
        ds.attrs["MATLAB_int_decode"] = np.int32(2)
    elif value is None:
        _h5_empty(h5, parent, name, "double")
    elif isinstance(value, bool):
        _h5_class(h5, parent.create_dataset(name, data=np.array([[value]], np.uint8)), "logical")
    elif isinstance(value, (int, float)):
        _h5_class(h5, parent.create_dataset(name, data=np.array([[float(value)]])), "double")
    else:
        cls = {np.dtype(np.float32): "single", np.dtype(np.float64): "double",
               np.dtype(np.uint8): "uint8", np.dtype(np.int32): "int32"}[value.dtype]
        _h5_class(h5, parent.create_dataset(name, data=np.ascontiguousarray(value.T)), cls)


def write_v73(path, userblock=True, **variables):
    h5 = pytest.importorskip("h5py")
    with h5.File(path, "w", userblock_size=512 if userblock else 0) as f:
        refs = f.create_group("#refs#")
        counter = itertools.count()
        for name, value in variables.items():
            _h5_put(h5, f, name, value, refs, counter)
    if userblock:
        text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 " \
               b"HDF5 schema 1.00 ."
        with open(path, "r+b") as stream:
            stream.write(text.ljust(116) + bytes(8) + b"\x00\x02IM")
    return path


@pytest.mark.parametrize("userblock", [True, False])
def test_v73_model_file(tmp_path, userblock):
    k1 = single((3, 3, 2))
    tiny = single((5, 5), seed=1)
    layers = [
        {"type": "conv", "name": "conv1", "weights": [k1, np.ones((1, 1), np.float32)],
         "stride": 1.0, "pad": np.array([[1.0, 1.0, 0.0, 0.0]]), "precious": False,
         "opts": []},
        {"type": "conv", "weights": [tiny, np.ones((1, 1), np.float32)]},
        {"type": "pool", "method": "avg", "pool": np.array([[2.0, 2.0]]), "stride": 2.0},
        {"type": "relu", "leak": 0.0, "weights": []},
        {"type": "pdist", "p": 1.0, "instanceWeights": None},
        {"type": "softmaxloss", "precious": True},
    ]
    meta = {"inputSize": np.array([[8.0, 8.0, 2.0]]),
            "classes": {"name": ["n01", "n\u00e9"]},
            "history": StructArray([{"epoch": 1.0, "note": "a"}, {"epoch": 2.0, "note": ""}]),
            "counts": np.array([[1, 2], [3, 4]], np.int32)}
    path = write_v73(str(tmp_path / "v73.mat"), userblock=userblock, layers=layers, meta=meta)
    net = load_net(path)
    conv, conv2, pool, relu, pdist, loss = net.layers
    assert conv.name == "conv1" and conv.stride == 1 and conv.precious is False
    assert conv.weights[0].shape == (3, 3, 2, 1) and conv.weights[0].dtype == np.float32
    assert np.array_equal(conv.weights[0][..., 0], k1)
    assert conv2.weights[0].shape == (5, 5, 1, 1)
    assert np.array_equal(conv2.weights[0][:, :, 0, 0], tiny)
    assert_same(conv.weights[1], np.ones((1, 1), np.float32))
    assert_same(conv.pad, np.array([[1.0, 1.0, 0.0, 0.0]]))
    assert conv.opts == [] and conv.dilate == 1
    assert pool.method == "avg" and pool.stride == 2
    assert_same(pool.pool, np.array([[2.0, 2.0]]))
    assert relu.leak == 0 and relu.weights == []
    assert pdist.p == 1 and pdist.instanceWeights is None and pdist.epsilon == 1e-3
    assert loss.precious is True
    assert_same(net.meta.inputSize, np.array([[8.0, 8.0, 2.0]]))
    assert net.meta.classes.name == ["n01", "n\u00e9"]
    assert net.meta.history == [{"epoch": 1, "note": "a"}, {"epoch": 2, "note": ""}]
    assert_same(net.meta.counts, np.array([[1, 2], [3, 4]], np.int32))


def test_v73_checkpoint_and_dagnn(tmp_path):
    layer = {"type": "relu"}
    path = write_v73(str(tmp_path / "ckpt.mat"), net={"layers": [layer], "meta": {}},
                     state={"solverState": []})
    net = load_net(path)
    assert net.layers[0].name == "layer1" and net.meta == {}
    path = write_v73(str(tmp_path / "dag.mat"), vars=[], params=[], layers=[])
    with pytest.raises(ValueError, match="DagNN"):
        load_net(path)


def test_v73_corrupt(tmp_path):
    pytest.importorskip("h5py")
    path = tmp_path / "corrupt.mat"
    path.write_bytes(b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + b"\x00\x02IM"
                     + bytes(384) + b"\x89HDF\r\n\x1a\n" + b"\x00" * 200)
    with pytest.raises(ValueError, match=r"corrupt\.mat.*HDF5"):
        load_net(path)


def test_v73_without_h5py(tmp_path, monkeypatch):
    path = tmp_path / "big.mat"
    path.write_bytes(b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + b"\x00\x02IM"
                     + bytes(384) + b"\x89HDF\r\n\x1a\n" + b"\x00" * 200)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"big\.mat is a MAT v7\.3 .*pip install h5py"):
        load_net(path)


# --------------------------------------------------------------------------
# python -m simplenn display

def test_cli_display(capsys):
    pytest.importorskip("simplenn.display")
    from simplenn.__main__ import main

    assert main(["display", CIFAR]) == 0
    out = capsys.readouterr().out
    assert "layer13" in out and "conv" in out
    assert main(["display", CIFAR, "--input-size", "32", "32", "3", "256"]) == 0
    assert "256" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    pytest.importorskip("simplenn.display")
    from simplenn.__main__ import main

    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file at all" * 20)
    assert main(["display", str(bad)]) == 1
    assert "bad.mat" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["display", CIFAR, "--input-size", "1", "2", "3", "4", "5"])


def test_cli_module_entry_point():
    pytest.importorskip("simplenn.display")
    done = subprocess.run([sys.executable, "-m", "simplenn", "display", CIFAR],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "layer13" in done.stdout


def test_matlab_function_handle_cannot_be_called():
    # a function handle read from a .mat file keeps its place in the net, but
    # MATLAB code cannot run in Python: calling it is a clear TypeError
    from simplenn.matfile import MatlabFunctionHandle
    handle = MatlabFunctionHandle("@myForward")
    assert "myForward" in repr(handle)
    with pytest.raises(TypeError, match=r"MATLAB function handle @myForward .*cannot run "
                                        r"in Python"):
        handle(None, None, None)
