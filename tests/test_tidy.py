"""vl_simplenn_tidy: MatConvNet's defaults, legacy conversions, a new net."""

import copy

import numpy as np
import pytest

from simplenn.struct import Struct
from simplenn.tidy import vl_simplenn_tidy


def assert_same(a, b, where="net"):
    """Deep equality with types: containers, str/bool/int/float, arrays
    (dtype, shape and values)."""
    if isinstance(a, dict):
        assert isinstance(b, dict), where
        assert list(a) == list(b), f"{where}: fields {list(a)} != {list(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), f"{where}: {type(b)}"
        assert a.dtype == b.dtype and a.shape == b.shape, \
            f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def conv_weights(shape=(3, 3, 2, 4)):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape).astype(np.float32),
            np.zeros((1, shape[-1]), np.float32)]


# The table of MatConvNet's vl_simplenn_tidy (pool's method is the intended
# 'max' that MatConvNet never applies).
DEFAULTS = {
    "conv": {"pad": 0, "stride": 1, "dilate": 1, "opts": []},
    "pool": {"method": "max", "pad": 0, "stride": 1, "opts": []},
    "convt": {"crop": 0, "upsample": 1, "numGroups": 1, "opts": []},
    "relu": {"leak": 0},
    "dropout": {"rate": 0.5},
    "normalize": {"param": np.array([[5, 1, 0.0001 / 5, 0.75]])},
    "lrn": {"param": np.array([[5, 1, 0.0001 / 5, 0.75]])},
    "pdist": {"noRoot": False, "aggregate": False, "p": 2, "epsilon": 1e-3,
              "instanceWeights": None},
    "bnorm": {"epsilon": 1e-5},
    "softmax": {}, "softmaxloss": {}, "loss": {}, "sigmoid": {}, "noffset": {},
    "spnorm": {},
}


def minimal_layer(kind):
    layer = {"type": kind}
    if kind in ("conv", "convt"):
        layer["weights"] = conv_weights()
    elif kind == "bnorm":
        layer["weights"] = [np.ones((4, 1), np.float32), np.zeros((4, 1), np.float32)]
    elif kind == "pool":
        layer["pool"] = [2, 2]
    return layer


@pytest.mark.parametrize("kind", sorted(DEFAULTS))
def test_defaults_per_type(kind):
    net = vl_simplenn_tidy({"layers": [{"type": "relu"}, minimal_layer(kind)]})
    layer = net.layers[1]
    assert layer.name == "layer2"          # 1-based, as MatConvNet's sprintf
    assert layer.precious is False
    for field, value in DEFAULTS[kind].items():
        assert_same(layer[field], value, f"{kind}.{field}")
    extra = {"type", "name", "precious", "weights"} | set(DEFAULTS[kind])
    assert set(layer) == extra | set(minimal_layer(kind))
    if kind not in ("conv", "convt", "bnorm"):
        assert layer.weights == []


def test_existing_values_are_kept():
    pad = np.array([[1.0, 2.0, 3.0, 4.0]])
    layers = [{"type": "conv", "weights": conv_weights(), "pad": pad, "stride": [2, 2],
               "name": "c1", "precious": True, "opts": ["NoCudnn"]},
              {"type": "relu", "leak": 0.1},
              {"type": "pool", "pool": 3, "method": "avg"},
              {"type": "bnorm", "weights": [np.ones(3, np.float32), np.zeros(3, np.float32)],
               "epsilon": 1e-4},
              {"type": "lrn", "param": [3, 2, 1e-4, 0.5]}]
    net = vl_simplenn_tidy({"layers": layers})
    assert net.layers[0].pad is pad
    assert net.layers[0].stride == [2, 2] and net.layers[0].name == "c1"
    assert net.layers[0].precious is True and net.layers[0].opts == ["NoCudnn"]
    assert net.layers[1].leak == 0.1
    assert net.layers[2].method == "avg"
    assert net.layers[3].epsilon == 1e-4
    assert net.layers[4].param == [3, 2, 1e-4, 0.5]


def test_default_objects_are_not_shared():
    net = vl_simplenn_tidy({"layers": [minimal_layer("conv"), minimal_layer("conv"),
                                       {"type": "lrn"}, {"type": "lrn"}]})
    assert net.layers[0].opts is not net.layers[1].opts
    assert net.layers[2].param is not net.layers[3].param
    net.layers[0].opts.append("NoCudnn")
    assert vl_simplenn_tidy({"layers": [minimal_layer("conv")]}).layers[0].opts == []


def test_result_has_exactly_layers_and_meta():
    net = vl_simplenn_tidy({"layers": [], "meta": {"inputSize": [28, 28, 1]},
                            "extra": 1, "vars": []})
    assert isinstance(net, Struct) and list(net) == ["layers", "meta"]
    assert net.layers == [] and net.meta.inputSize == [28, 28, 1]
    assert isinstance(net.meta, Struct)
    assert vl_simplenn_tidy({"layers": []}).meta == {}
    assert vl_simplenn_tidy({"layers": [], "meta": None}).meta == {}


def test_struct_access_on_result():
    net = vl_simplenn_tidy({"layers": [minimal_layer("conv")],
                            "meta": {"normalization": {"imageSize": [32, 32, 3]}}})
    assert net.layers[0].weights[0] is net["layers"][0]["weights"][0]
    assert isinstance(net.layers[0], Struct)
    assert isinstance(net.meta.normalization, Struct)
    assert net.meta.normalization.imageSize == [32, 32, 3]


def test_legacy_filters_biases():
    f, b = conv_weights()
    layers = [{"type": "conv", "filters": f, "biases": b, "filtersLearningRate": 1,
               "biasesLearningRate": 2},
              {"type": "convt", "filters": f, "biases": b},
              {"type": "bnorm", "filters": np.ones(4, np.float32),
               "biases": np.zeros(4, np.float32)},
              {"type": "relu", "filters": f}]
    net = vl_simplenn_tidy({"layers": layers})
    for layer in net.layers[:2]:
        assert "filters" not in layer and "biases" not in layer
        assert layer.weights[0] is f and layer.weights[1] is b
    assert net.layers[0].filtersLearningRate == 1     # legacy fields stay, unused
    bn = net.layers[2]
    assert len(bn.weights) == 3 and "filters" not in bn
    assert_same(bn.weights[2], np.zeros((4, 2), np.float32))
    # only conv, convt and bnorm are converted
    assert net.layers[3].filters is f and net.layers[3].weights == []


def test_legacy_without_filters_is_an_error():
    with pytest.raises(ValueError, match=r"layer 1 .*neither 'weights' nor 'biases'"):
        vl_simplenn_tidy({"layers": [{"type": "conv", "filters": np.zeros((1, 1, 1, 1))}]})


def test_bnorm_moments():
    g = np.ones((5, 1), np.float32)
    moments = np.ones((5, 2), np.float32)
    net = vl_simplenn_tidy({"layers": [
        {"type": "bnorm", "weights": [g, np.zeros((5, 1), np.float32)]},
        {"type": "bnorm", "weights": [g, np.zeros((5, 1), np.float32), moments]},
        {"type": "bnorm", "weights": [np.ones((1, 1, 3), np.float32)]}]})
    assert_same(net.layers[0].weights[2], np.zeros((5, 2), np.float32))
    assert net.layers[1].weights[2] is moments
    # one weight: MATLAB's weights{3} = ... leaves weights{2} empty
    assert net.layers[2].weights[1] is None
    assert_same(net.layers[2].weights[2], np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"layer 1 .*bnorm.*no weights"):
        vl_simplenn_tidy({"layers": [{"type": "bnorm", "weights": []}]})


def test_legacy_classes_and_normalization_move_to_meta():
    classes = {"name": ["a", "b"], "description": ["A", "B"]}
    net = vl_simplenn_tidy({"layers": [], "meta": {"classes": {"name": ["old"]}, "x": 1},
                            "classes": classes,
                            "normalization": {"imageSize": [224, 224, 3], "border": [32, 32],
                                              "averageImage": np.zeros((1, 1, 3), np.float32)}})
    assert net.meta.classes == classes and net.meta.x == 1
    assert "classes" not in net and "normalization" not in net
    crop = net.meta.normalization.cropSize
    assert_same(crop, np.array([[224 / 256, 224 / 256]]))


def test_crop_size():
    def tidy_norm(norm):
        return vl_simplenn_tidy({"layers": [], "meta": {"normalization": norm}}).meta.normalization

    assert_same(tidy_norm({"imageSize": np.array([[227.0, 200.0, 3.0]]),
                           "border": np.array([[29.0, 56.0]])}).cropSize,
                np.array([[227 / 256, 200 / 256]]))
    assert "cropSize" not in tidy_norm({"imageSize": [224, 224, 3]})
    assert tidy_norm({"imageSize": [224, 224, 3], "border": [32, 32],
                      "cropSize": 0.5}).cropSize == 0.5
    with pytest.raises(ValueError, match="imageSize"):
        tidy_norm({"imageSize": [224], "border": [32, 32]})


def test_filters_restored_to_4d():
    rng = np.random.default_rng(1)
    k1 = np.asfortranarray(rng.standard_normal((3, 3, 64)).astype(np.float32))
    single = rng.standard_normal((5, 5)).astype(np.float32)
    fc = rng.standard_normal((1, 1, 500, 10)).astype(np.float32)
    convt = rng.standard_normal((4, 4, 8)).astype(np.float32)
    net = vl_simplenn_tidy({"layers": [
        {"type": "conv", "weights": [k1, np.zeros((1, 1), np.float32)]},
        {"type": "conv", "weights": [single, np.zeros((1, 1), np.float32)]},
        {"type": "conv", "weights": [fc, np.zeros((1, 10), np.float32)]},
        {"type": "convt", "weights": [convt, np.zeros((1, 1), np.float32)]},
        {"type": "conv", "weights": [None, np.zeros((1, 3), np.float32)]}]})
    w = [layer.weights[0] for layer in net.layers]
    assert w[0].shape == (3, 3, 64, 1) and np.array_equal(w[0][..., 0], k1)
    assert w[1].shape == (5, 5, 1, 1) and np.array_equal(w[1][:, :, 0, 0], single)
    assert w[2] is fc
    assert w[3].shape == (4, 4, 8, 1)
    assert w[4] is None
    assert k1.shape == (3, 3, 64) and single.shape == (5, 5)   # inputs untouched


def test_weights_tuple_becomes_list():
    f, b = conv_weights()
    net = vl_simplenn_tidy({"layers": [{"type": "conv", "weights": (f, b)}]})
    assert isinstance(net.layers[0].weights, list) and net.layers[0].weights[0] is f


def test_custom_layers_are_untouched():
    def forward(layer, res_i, res_next):
        return res_next

    def backward(layer, res_i, res_next):
        return res_i

    custom = {"type": "custom", "forward": forward, "backward": backward,
              "extra": {"a": [1, 2]}}
    net = vl_simplenn_tidy({"layers": [custom]})
    layer = net.layers[0]
    assert list(layer) == ["type", "forward", "backward", "extra"]
    assert layer.forward is forward and layer.backward is backward
    assert layer.extra == {"a": [1, 2]} and isinstance(layer.extra, Struct)
    assert layer is not custom and layer.extra is not custom["extra"]


def test_unknown_type_is_kept():
    net = vl_simplenn_tidy({"layers": [{"type": "mystery", "k": 3}]})
    assert net.layers[0] == {"type": "mystery", "k": 3, "weights": [], "name": "layer1",
                             "precious": False}
    # types are matched exactly, as MATLAB's switch
    assert "pad" not in vl_simplenn_tidy({"layers": [{"type": "Conv"}]}).layers[0]


def full_net():
    rng = np.random.default_rng(2)
    return {
        "layers": [
            {"type": "conv", "filters": rng.standard_normal((3, 3, 2)).astype(np.float32),
             "biases": np.zeros((1, 1), np.float32)},
            {"type": "bnorm", "weights": [np.ones((1, 1), np.float32),
                                          np.zeros((1, 1), np.float32)]},
            {"type": "relu"},
            {"type": "pool", "pool": [2, 2]},
            {"type": "custom", "forward": print, "backward": print},
            {"type": "lrn", "param": [5, 1, 2e-5, 0.75]},
        ],
        "meta": {"classes": {"name": ["x", "y"]}, "inputSize": [8, 8, 2]},
        "normalization": {"imageSize": [8, 8, 2], "border": [0, 0]},
    }


def test_input_is_not_modified():
    net = full_net()
    before = copy.deepcopy(net)
    ids = [id(layer) for layer in net["layers"]]
    tnet = vl_simplenn_tidy(net)
    assert_same(net, before)
    assert [id(layer) for layer in net["layers"]] == ids
    # the result's containers are new: changing it leaves the input alone
    tnet.layers[0].weights.append(None)
    tnet.layers[0].name = "renamed"
    tnet.meta.classes.name.append("z")
    tnet.layers[5].param.append(0)
    assert_same(net, before)


def test_struct_input_not_modified():
    net = Struct(layers=[Struct(type="relu")], meta=Struct(a=Struct(b=[1])))
    tnet = vl_simplenn_tidy(net)
    tnet.meta.a.b.append(2)
    assert net == Struct(layers=[Struct(type="relu")], meta=Struct(a=Struct(b=[1])))


def test_idempotent():
    once = vl_simplenn_tidy(full_net())
    assert_same(vl_simplenn_tidy(once), once)


@pytest.mark.parametrize("net, error, message", [
    ({"meta": {}}, ValueError, "no 'layers' field"),
    ({"layers": {"type": "relu"}}, ValueError, "must be a list"),
    ({"layers": np.empty((1, 2), object)}, ValueError, "must be a list"),
    ({"layers": [{"type": "relu"}, 3]}, ValueError,
     r"layer 2 \(net.layers\[1\]\) must be a mapping"),
    ({"layers": [{"type": "relu"}, {"name": "fc"}]}, ValueError,
     r"layer 2 'fc' \(net.layers\[1\]\) has no 'type' field"),
    ({"layers": [{"type": 3}]}, ValueError, r"layer 1 \(net.layers\[0\]\) has a non-string type"),
    ({"layers": [], "meta": 3}, ValueError, "meta must be a mapping"),
    ([{"type": "relu"}], TypeError, "must be a mapping"),
])
def test_errors(net, error, message):
    with pytest.raises(error, match=message):
        vl_simplenn_tidy(net)
