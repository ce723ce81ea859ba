"""vl_simplenn: each layer type against its block, network derivatives,
conserveMemory's exact clearing rules, accumulate, backPropDepth,
skipForward, test mode, custom layers, the parameter server, options and
errors (MatConvNet's nnsimplenn.m expectations included)."""

import numpy as np
import pytest

import simplenn.layers as layers_module
from _checks import check_derivative, randn
from simplenn.simplenn import vl_simplenn
from simplenn.struct import Struct, struct
from vlnn.activations import vl_nnrelu, vl_nnsigmoid, vl_nnsoftmax
from vlnn.conv import vl_nnconv, vl_nnconvt
from vlnn.distance import vl_nnpdist
from vlnn.dropout import vl_nndropout
from vlnn.loss import vl_nnloss, vl_nnsoftmaxloss
from vlnn.normalization import vl_nnbnorm, vl_nnnoffset, vl_nnnormalize, vl_nnspnorm
from vlnn.pool import vl_nnpool


def copy_res(res):
    """A copy of the records (the arrays are shared: vl_simplenn never
    writes into an array)."""
    return [Struct({k: list(v) if isinstance(v, list) else v for k, v in r.items()})
            for r in res]


def assert_same(a, b):
    """Same shape, dtype and values, up to the order of summation: two calls
    of one block may differ in the last bits (vl_nnconv adds per-thread
    partial filter derivatives in thread order)."""
    if a is None or b is None:
        assert a is None and b is None
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    tol = 1e-12 if a.dtype == np.float64 else 1e-5
    scale = float(np.abs(b).max(initial=0))
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale)


# ---------------------------------------------------------------------------
# every layer type through vl_simplenn equals its block called directly

def _case_conv():
    x, w, b = randn((7, 6, 3, 2), seed=1), randn((3, 2, 3, 4), seed=2), randn((4,), seed=3)
    opts = dict(pad=[1, 0, 2, 1], stride=[2, 1], dilate=[1, 2])
    layer = {"type": "conv", "weights": [w, b], **opts}
    return layer, x, (lambda x: vl_nnconv(x, w, b, **opts)), \
        (lambda x, d: (lambda dx, dw, db: (dx, [dw, db]))(*vl_nnconv(x, w, b, d, **opts)))


def _case_convt():
    x, w, b = randn((4, 5, 4, 2), seed=1), randn((3, 3, 3, 4), seed=2), randn((1, 6), seed=3)
    opts = dict(upsample=[2, 1], crop=[1, 0, 0, 1], numGroups=2)
    layer = {"type": "convt", "weights": [w, b], **opts}
    return layer, x, (lambda x: vl_nnconvt(x, w, b, **opts)), \
        (lambda x, d: (lambda dx, dw, db: (dx, [dw, db]))(*vl_nnconvt(x, w, b, d, **opts)))


def _case_pool(method):
    def case():
        x = randn((7, 8, 3, 2), seed=1)
        opts = dict(pad=[1, 0, 0, 1], stride=[2, 1], method=method)
        layer = {"type": "pool", "pool": [3, 2], **opts}
        return layer, x, (lambda x: vl_nnpool(x, [3, 2], **opts)), \
            (lambda x, d: (vl_nnpool(x, [3, 2], d, **opts), []))
    return case


def _case_param(kind, block, param):
    def case():
        x = randn((5, 6, 4, 2), seed=1)
        layer = {"type": kind, "param": param}
        return layer, x, (lambda x: block(x, param)), (lambda x, d: (block(x, param, d), []))
    return case


def _case_bnorm():
    x = randn((4, 5, 3, 3), seed=1)
    g, b, m = randn((3,), seed=2), randn((3,), seed=3), randn((3, 2), seed=4)
    layer = {"type": "bnorm", "weights": [g, b, m], "epsilon": 1e-3}

    def backward(x, d):
        dx, dg, db, moments = vl_nnbnorm(x, g, b, d, epsilon=1e-3, return_moments=True)
        return dx, [dg, db, moments]
    return layer, x, (lambda x: vl_nnbnorm(x, g, b, epsilon=1e-3)), backward


def _case_relu(leak):
    def case():
        x = randn((4, 5, 3, 2), seed=1)
        layer = {"type": "relu", "leak": leak}
        # MatConvNet passes the leak only when it is positive
        opts = {"leak": leak} if leak > 0 else {}
        return layer, x, (lambda x: vl_nnrelu(x, **opts)), \
            (lambda x, d: (vl_nnrelu(x, d, **opts), []))
    return case


def _case_plain(kind, block):
    def case():
        x = randn((3, 4, 5, 2), seed=1)
        return {"type": kind}, x, (lambda x: block(x)), (lambda x, d: (block(x, d), []))
    return case


def _case_loss(kind, block):
    def case():
        x = randn((2, 3, 5, 4), seed=1)
        labels = np.array([1, 5, 2, 3])
        return ({"type": kind, "class": labels}, x, (lambda x: block(x, labels)),
                (lambda x, d: (block(x, labels, d), [])))
    return case


def _case_pdist():
    x, x0 = randn((3, 4, 5, 2), seed=1), randn((1, 1, 5, 2), seed=2)
    weights = np.abs(randn((3, 4, 1, 2), seed=3))
    opts = dict(noRoot=True, epsilon=1e-2, aggregate=False, instanceWeights=weights)
    layer = {"type": "pdist", "class": x0, "p": 1.5, **opts}
    return layer, x, (lambda x: vl_nnpdist(x, x0, 1.5, **opts)), \
        (lambda x, d: (vl_nnpdist(x, x0, 1.5, d, **opts)[0], []))


def _case_custom():
    def forward(layer, res_i, res_next):
        res_next.x = layer["scale"] * res_i.x + 1
        return res_next

    def backward(layer, res_i, res_next):
        res_i.dzdx = layer["scale"] * res_next.dzdx
        return res_i
    x = randn((3, 4, 2, 2), seed=1)
    layer = {"type": "custom", "forward": forward, "backward": backward, "scale": 3.0}
    return layer, x, (lambda x: 3.0 * x + 1), (lambda x, d: (3.0 * d, []))


LAYER_CASES = {
    "conv": _case_conv,
    "convt": _case_convt,
    "pool-max": _case_pool("max"),
    "pool-avg": _case_pool("avg"),
    "normalize": _case_param("normalize", vl_nnnormalize, [3, 2, 0.1, 0.75]),
    "lrn": _case_param("lrn", vl_nnnormalize, [4, 1, 0.2, 0.5]),
    "spnorm": _case_param("spnorm", vl_nnspnorm, [3, 3, 0.1, 0.75]),
    "noffset": _case_param("noffset", vl_nnnoffset, [0.34, 0.5]),
    "bnorm": _case_bnorm,
    "relu": _case_relu(0),
    "relu-leak": _case_relu(0.1),
    "relu-negative-leak": _case_relu(-0.5),
    "sigmoid": _case_plain("sigmoid", vl_nnsigmoid),
    "softmax": _case_plain("softmax", vl_nnsoftmax),
    "loss": _case_loss("loss", vl_nnloss),
    "softmaxloss": _case_loss("softmaxloss", vl_nnsoftmaxloss),
    "pdist": _case_pdist,
    "custom": _case_custom,
}


@pytest.mark.parametrize("name", list(LAYER_CASES))
def test_layer_equals_block(name):
    layer, x, forward, backward = LAYER_CASES[name]()
    net = {"layers": [layer]}
    y = forward(x)
    res = vl_simplenn(net, x)
    assert len(res) == 2 and res[0].x is x
    assert_same(res[1].x, y)
    assert res[1].dzdx is None and res[0].dzdx is None

    dzdy = 0.7 if np.ndim(y) == 0 else randn(np.shape(y), seed=9)
    dx, dzdw = backward(x, dzdy)
    res = vl_simplenn(net, x, dzdy)
    assert_same(res[1].x, y)
    assert res[1].dzdx is dzdy
    assert_same(res[0].dzdx, dx)
    assert len(res[0].dzdw) == len(dzdw)
    for got, want in zip(res[0].dzdw, dzdw):
        assert_same(got, want)


def test_dropout_layer_uses_and_stores_its_mask():
    x = randn((4, 5, 6, 3), seed=1)
    net = {"layers": [{"type": "dropout", "rate": 0.25}]}
    dzdy = randn(x.shape, seed=2)
    res = vl_simplenn(net, x, dzdy)
    mask = res[1].aux
    assert mask.shape == x.shape and mask.dtype == x.dtype
    assert set(np.unique(mask)) <= {0.0, 1 / 0.75}
    assert 0 < np.count_nonzero(mask) < mask.size
    assert_same(res[1].x, vl_nndropout(x, mask=mask)[0])
    assert_same(res[0].dzdx, vl_nndropout(x, dzdy, mask=mask))


def test_loss_layer_uses_default_options():
    """A 'loss' layer is vl_nnloss's softmax log-loss, normalised: no layer
    field selects another loss (MatConvNet's behaviour)."""
    x = randn((1, 1, 4, 5), seed=1)
    labels = np.array([1, 2, 3, 4, 2])
    net = {"layers": [{"type": "loss", "class": labels, "loss": "hinge"}]}
    res = vl_simplenn(net, x, 1.0)
    assert_same(res[1].x, vl_nnloss(x, labels, loss="softmaxlog", normalise=True))
    assert_same(res[0].dzdx, vl_nnloss(x, labels, 1.0))


def test_layer_opts_follow_the_layer_fields():
    """``l.opts{:}`` comes after 'pad', 'stride', 'dilate', so an option in
    it wins, as in MATLAB; a dict of keyword options works too."""
    x, w, b = randn((6, 6, 2, 1), seed=1), randn((3, 3, 2, 3), seed=2), randn((3,), seed=3)
    want = vl_nnconv(x, w, b, pad=1, stride=2)
    for opts in (["pad", 1, "NoCudnn"], ("Pad", 1), {"pad": 1}, {"pad": 1, "nocudnn": True},
                 np.array(["pad", 1], dtype=object)):
        net = {"layers": [{"type": "conv", "weights": [w, b], "pad": 0, "stride": 2,
                           "opts": opts}]}
        assert_same(vl_simplenn(net, x)[1].x, want)


def test_untidied_layers_take_tidy_defaults():
    x, w, b = randn((6, 6, 2, 2), seed=1), randn((3, 3, 2, 3), seed=2), randn((3,), seed=3)
    net = {"layers": [{"type": "conv", "weights": [w, b]},
                      {"type": "pool", "pool": 2},
                      {"type": "normalize"},
                      {"type": "relu"},
                      {"type": "bnorm", "weights": [np.ones(3), np.zeros(3)]}]}
    res = vl_simplenn(net, x)
    y = vl_nnconv(x, w, b)
    y = vl_nnpool(y, 2, method="max")
    y = vl_nnnormalize(y, [5, 1, 0.0001 / 5, 0.75])
    y = vl_nnrelu(y)
    y = vl_nnbnorm(y, np.ones(3), np.zeros(3), epsilon=1e-5)
    assert_same(res[-1].x, y)


def test_pdist_target_float64_is_cast_to_float32_data():
    x = randn((2, 3, 4, 2), np.float32, seed=1)
    x0 = randn((1, 1, 4, 2), np.float64, seed=2)
    net = {"layers": [{"type": "pdist", "class": x0, "p": 2}]}
    res = vl_simplenn(net, x, np.ones((2, 3, 1, 2), np.float32))
    assert res[1].x.dtype == np.float32 and res[0].dzdx.dtype == np.float32
    want = vl_nnpdist(x, x0.astype(np.float32), 2, epsilon=1e-3)
    assert_same(res[1].x, want)


def test_float32_network_with_python_scalar_dzdy():
    net, x = derivative_net(np.float32)
    res = vl_simplenn(net, x, 1.0)
    assert res[-1].x.dtype == np.float32 and res[-1].x.shape == ()
    assert res[0].dzdx.dtype == np.float32
    assert all(d.dtype == np.float32 for r in res for d in r.dzdw)


# ---------------------------------------------------------------------------
# exact argument passing (spies on the blocks simplenn.layers calls)

class Spy:
    def __init__(self, block):
        self.block, self.calls = block, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.block(*args, **kwargs)


def spy(monkeypatch, name):
    s = Spy(getattr(layers_module, name))
    monkeypatch.setattr(layers_module, name, s)
    return s


def test_conv_convt_pool_calls(monkeypatch):
    conv, convt, pool = (spy(monkeypatch, n) for n in ("vl_nnconv", "vl_nnconvt", "vl_nnpool"))
    x, w, b = randn((6, 6, 2, 1), seed=1), randn((3, 3, 2, 2), seed=2), randn((2,), seed=3)
    wt = randn((2, 2, 3, 2), seed=4)
    net = {"layers": [
        {"type": "conv", "weights": [w, b], "pad": 1, "stride": 1, "dilate": 1,
         "opts": ["CudnnWorkspaceLimit", 1024]},
        {"type": "pool", "pool": [2, 2], "pad": 0, "stride": 2, "method": "avg", "opts": []},
        {"type": "convt", "weights": [wt, None], "crop": 0, "upsample": 2, "numGroups": 1,
         "opts": []},
        {"type": "softmaxloss", "class": 1}]}
    res = vl_simplenn(net, x, 1.0, cudnn=False)
    (fwd, fkw), (bwd, bkw) = conv.calls
    assert fwd[:4] == (x, w, b, None) and fkw == {}
    assert fwd[4:] == ("pad", 1, "stride", 1, "dilate", 1, "CudnnWorkspaceLimit", 1024,
                       "NoCudnn")
    assert bwd[3] is res[1].dzdx
    assert bwd[4:] == fwd[4:]
    (fwd, _), (bwd, _) = pool.calls
    assert fwd[1:] == ([2, 2], None, "pad", 0, "stride", 2, "method", "avg", "NoCudnn")
    assert bwd[2] is not None and bwd[3:] == fwd[3:]
    (fwd, _), _ = convt.calls
    assert fwd[1:] == (wt, None, None, "crop", 0, "upsample", 2, "numGroups", 1, "NoCudnn")
    vl_simplenn(net, x)
    assert conv.calls[-1][0][-1] == "Cudnn" and pool.calls[-1][0][-1] == "Cudnn"


def test_relu_bnorm_loss_calls(monkeypatch):
    relu, bnorm, loss = (spy(monkeypatch, n) for n in ("vl_nnrelu", "vl_nnbnorm", "vl_nnloss"))
    x = randn((3, 3, 2, 4), seed=1)
    g, b, m = np.ones(2), np.zeros(2), np.array([[0.1, 1.5], [0.2, 2.0]])
    labels = np.array([1, 2, 1, 2])
    net = {"layers": [{"type": "relu", "leak": 0},
                      {"type": "relu", "leak": 0.2},
                      {"type": "bnorm", "weights": [g, b, m], "epsilon": 1e-3},
                      {"type": "loss", "class": labels}]}
    for mode in ("normal", "test"):
        relu.calls.clear(), bnorm.calls.clear(), loss.calls.clear()
        vl_simplenn(net, x, 1.0, mode=mode)
        assert [c[0][1:] for c in relu.calls[:2]] == [(None,), (None, "leak", 0.2)]
        assert relu.calls[3][0][2:] == ()  # backward of the plain relu
        assert relu.calls[2][0][2:] == ("leak", 0.2)
        (fwd, fkw), (bwd, bkw) = bnorm.calls
        if mode == "test":
            assert fwd[3:] == ("moments", m, "epsilon", 1e-3, "NoCudnn")
        else:
            assert fwd[3:] == ("epsilon", 1e-3, "NoCudnn")
        assert bwd[4:] == ("epsilon", 1e-3, "NoCudnn") and bkw == {"return_moments": True}
        assert [len(c[0]) for c in loss.calls] == [2, 3]
        assert all(c[1] == {} for c in loss.calls)


# ---------------------------------------------------------------------------
# network derivatives against central differences (float64)

def derivative_net(dtype=np.float64):
    """conv -> bnorm -> relu -> pool -> conv -> softmaxloss."""
    layers = [
        {"type": "conv", "weights": [randn((3, 3, 2, 4), dtype, seed=1),
                                     0.1 * randn((1, 4), dtype, seed=2)], "pad": 1},
        {"type": "bnorm", "weights": [1 + 0.1 * randn((4,), dtype, seed=3),
                                      0.1 * randn((4,), dtype, seed=4),
                                      np.zeros((4, 2), dtype)], "epsilon": 1e-4},
        {"type": "relu"},
        {"type": "pool", "pool": 2, "stride": 2, "method": "max"},
        {"type": "conv", "weights": [randn((3, 3, 4, 5), dtype, seed=5),
                                     0.1 * randn((5,), dtype, seed=6)]},
        {"type": "softmaxloss", "class": np.array([1, 5, 3])},
    ]
    return {"layers": layers}, randn((8, 8, 2, 3), dtype, seed=7)


def test_network_derivatives_match_numerical():
    net, x = derivative_net()
    res = vl_simplenn(net, x, 1.0)
    one = np.array(1.0)
    check_derivative(lambda v: vl_simplenn(net, v)[-1].x, x, res[0].dzdx, one, rtol=1e-5)
    checked = 0
    for i, layer in enumerate(net["layers"]):
        for j, w in enumerate(layer.get("weights", [])[:2]):
            def f(v, i=i, j=j):
                layers = [dict(l) for l in net["layers"]]
                layers[i]["weights"] = list(layers[i]["weights"])
                layers[i]["weights"][j] = v
                return vl_simplenn({"layers": layers}, x)[-1].x
            check_derivative(f, w, res[i].dzdw[j], one, rtol=1e-5)
            checked += 1
    assert checked == 6
    # bnorm's third "derivative" is the batch moments (HEAD: not scaled by N)
    _, moments = vl_nnbnorm(res[1].x, *net["layers"][1]["weights"][:2], epsilon=1e-4,
                            return_moments=True)
    np.testing.assert_allclose(res[1].dzdw[2], moments, rtol=1e-12)


# ---------------------------------------------------------------------------
# MatConvNet's nnsimplenn.m network and expectations

@pytest.fixture(scope="module")
def mnist_net():
    def w(*shape, seed):
        return randn(shape, np.float32, seed=seed) / 128
    layers = [
        {"type": "conv", "weights": [w(5, 5, 1, 20, seed=1), np.zeros((1, 20), np.float32)],
         "stride": 1, "pad": 0},
        {"type": "pool", "method": "max", "pool": [2, 2], "stride": 2, "pad": 0},
        {"type": "conv", "weights": [w(5, 5, 20, 50, seed=2), np.zeros((1, 50), np.float32)],
         "stride": 1, "pad": 0},
        {"type": "pool", "method": "max", "pool": [2, 2], "stride": 2, "pad": 0},
        {"type": "conv", "weights": [w(4, 4, 50, 500, seed=3), np.zeros((1, 500), np.float32)],
         "stride": 1, "pad": 0},
        {"type": "relu"},
        {"type": "conv", "weights": [w(1, 1, 500, 10, seed=4), np.zeros((1, 10), np.float32)],
         "stride": 1, "pad": 0},
        {"type": "softmaxloss", "class": np.array([3, 7, 1, 10])},
    ]
    return {"layers": layers}, randn((32, 32, 1, 4), np.float32, seed=5) / 128


def kept(res, name):
    return {i for i, r in enumerate(res) if r[name] is not None}


def test_nnsimplenn_simple_run(mnist_net):
    net, x = mnist_net
    n = len(net["layers"])
    res = vl_simplenn(net, x, None, None, "conserveMemory", True)
    assert kept(res, "x") == {n}
    res = vl_simplenn(net, x, 1, None, "conserveMemory", True)
    assert kept(res, "x") == kept(res, "dzdx") == {0, n}
    for i, layer in enumerate(net["layers"]):
        assert (len(res[i].dzdw) == 2) == (layer["type"] == "conv")


def test_nnsimplenn_conserve_memory_off(mnist_net):
    net, x = mnist_net
    n = len(net["layers"])
    res = vl_simplenn(net, x, None, None, "conserveMemory", False)
    assert kept(res, "x") == set(range(n + 1))
    res = vl_simplenn(net, x, 1, None, "conserveMemory", False)
    assert kept(res, "x") == kept(res, "dzdx") == set(range(n + 1))


def test_nnsimplenn_precious(mnist_net):
    net, x = mnist_net
    n = len(net["layers"])
    layers = [dict(l) for l in net["layers"]]
    layers[2]["precious"] = True           # MatConvNet's selLayer = 3 (1-based)
    net = {"layers": layers}
    res = vl_simplenn(net, x, None, None, "conserveMemory", True)
    assert kept(res, "x") == {3, n}
    res = vl_simplenn(net, x, 1, None, "conserveMemory", True)
    assert kept(res, "x") == kept(res, "dzdx") == {0, 3, n}


def test_nnsimplenn_back_prop_depth(mnist_net):
    net, x = mnist_net
    n = len(net["layers"])
    res = vl_simplenn(net, x, 1, None, conserveMemory=True, backPropDepth=3)
    assert kept(res, "x") == kept(res, "dzdx") == {n}
    assert [i for i, r in enumerate(res) if r.dzdw] == [6]   # the last conv only
    res = vl_simplenn(net, x, 1, None, backPropDepth=3)
    assert kept(res, "x") == set(range(n + 1))
    assert kept(res, "dzdx") == {5, 6, 7, 8}
    full = vl_simplenn(net, x, 1)
    for i in (5, 6, 7):
        assert_same(res[i].dzdx, full[i].dzdx)
    for got, want in zip(res[6].dzdw, full[6].dzdw):
        assert_same(got, want)


def test_nnsimplenn_skip_forward(mnist_net):
    net, x = mnist_net
    res = vl_simplenn(net, x, 1)
    res_ = vl_simplenn(net, x, 1, copy_res(res), "skipForward", True)
    for r, r_ in zip(res, res_):
        assert_same(r.x, r_.x)
        np.testing.assert_allclose(np.asarray(r_.dzdx), np.asarray(r.dzdx), rtol=1e-6,
                                   atol=1e-12)
    with pytest.raises(ValueError, match="skipForwardNoBackwPass"):
        vl_simplenn(net, x, None, None, "skipForward", True)
    with pytest.raises(ValueError, match="skipForwardEmptyRes"):
        vl_simplenn(net, x, 1, None, "skipForward", True)
    with pytest.raises(ValueError, match="skipForwardEmptyRes"):
        vl_simplenn(net, x, 1, [], skipForward=True)


def test_conserve_memory_gives_the_same_results(mnist_net):
    net, x = mnist_net
    full = vl_simplenn(net, x, 1.0)
    lean = vl_simplenn(net, x, 1.0, conserveMemory=True)
    assert_same(lean[0].dzdx, full[0].dzdx)
    assert_same(lean[-1].x, full[-1].x)
    for r, r_ in zip(full, lean):
        assert len(r.dzdw) == len(r_.dzdw)
        for a, b in zip(r.dzdw, r_.dzdw):
            assert_same(a, b)


# ---------------------------------------------------------------------------
# conserveMemory's exact rules on a net with a loss in the middle

def middle_loss_net(precious=()):
    """conv -> relu -> softmaxloss -> relu: the loss output feeds a layer."""
    layers = [{"type": "conv", "weights": [randn((3, 3, 2, 4), seed=1), randn((4,), seed=2)]},
              {"type": "relu"},
              {"type": "softmaxloss", "class": np.array([1, 4])},
              {"type": "relu"}]
    for i in precious:
        layers[i]["precious"] = True
    return {"layers": layers}, randn((5, 5, 2, 2), seed=3)


@pytest.mark.parametrize("precious, dzdy, depth, want_x, want_dzdx", [
    # forward only: every x cleared but the loss output and the net output
    ((), None, np.inf, {3, 4}, set()),
    # a precious layer keeps its output
    ((0,), None, np.inf, {1, 3, 4}, set()),
    # backward: loss outputs are protected only in the forward pass
    ((), 1.0, np.inf, {0, 4}, {0, 4}),
    ((1,), 1.0, np.inf, {0, 2, 4}, {0, 2, 4}),
    # limited depth: inputs below the first back-propagated layer are
    # cleared in the forward pass, and that layer's own input afterwards
    ((), 1.0, 2, {4}, {4}),
    # ...checking that layer's own `precious`, not its producer's (MatConvNet)
    ((1,), 1.0, 2, {4}, {4}),
    ((2,), 1.0, 2, {2, 3, 4}, {2, 3, 4}),
    ((), 1.0, 1, {4}, {4}),
])
def test_conserve_memory_rules(precious, dzdy, depth, want_x, want_dzdx):
    net, x = middle_loss_net(precious)
    dzdy = None if dzdy is None else np.array(dzdy)
    res = vl_simplenn(net, x, dzdy, conserveMemory=True, backPropDepth=depth)
    assert kept(res, "x") == want_x
    assert kept(res, "dzdx") == want_dzdx
    full = vl_simplenn(net, x, dzdy, backPropDepth=depth)
    for i in want_x:
        assert_same(res[i].x, full[i].x)
    for i in want_dzdx:
        assert_same(res[i].dzdx, full[i].dzdx)
    for r, r_ in zip(res, full):
        assert len(r.dzdw) == len(r_.dzdw)


def test_relu_backward_from_its_output_when_input_was_cleared():
    net, x = derivative_net()
    res = vl_simplenn(net, x, 1.0)
    pruned = copy_res(res)
    pruned[2].x = None                     # the relu's input
    res_ = vl_simplenn(net, x, 1.0, pruned, skipForward=True)
    assert res_[2].x is None
    assert_same(res_[0].dzdx, res[0].dzdx)
    for r, r_ in zip(res, res_):
        for a, b in zip(r.dzdw, r_.dzdw):
            assert_same(a, b)


def test_cleared_input_is_a_clear_error():
    net, x = derivative_net()
    res = vl_simplenn(net, x, 1.0)
    res[4].x = None
    with pytest.raises(ValueError, match=r"res\[4\]\.x of layer 5 \(net\.layers\[4\]\) of type 'conv'"):
        vl_simplenn(net, x, 1.0, res, skipForward=True)


# ---------------------------------------------------------------------------
# accumulate, backPropDepth, test mode

def test_accumulate_adds_parameter_derivatives():
    net, x = derivative_net()
    res = vl_simplenn(net, x, 1.0)
    first = [list(r.dzdw) for r in res]
    held = res[0].dzdw[0]
    held_copy = held.copy()
    res2 = vl_simplenn(net, x, 1.0, res, accumulate=True)
    assert res2 is res
    for r, before in zip(res2, first):
        assert len(r.dzdw) == len(before)
        for got, want in zip(r.dzdw, before):   # bnorm moments are summed too
            assert_same(got, 2 * want)
    np.testing.assert_array_equal(held, held_copy)   # arrays the caller holds are untouched
    # without accumulate, derivatives are replaced
    res3 = vl_simplenn(net, x, 1.0, res2)
    for r, before in zip(res3, first):
        for got, want in zip(r.dzdw, before):
            assert_same(got, want)
    # into a fresh res, accumulate is a plain run
    res4 = vl_simplenn(net, x, 1.0, None, accumulate=True)
    for r, before in zip(res4, first):
        for got, want in zip(r.dzdw, before):
            assert_same(got, want)


def test_back_prop_depth_limits_the_backward_pass():
    net, x = derivative_net()
    n = len(net["layers"])
    full = vl_simplenn(net, x, 1.0)
    res = vl_simplenn(net, x, 1.0, backPropDepth=2)
    assert kept(res, "dzdx") == {n - 2, n - 1, n}
    assert [i for i, r in enumerate(res) if r.dzdw] == [n - 2]
    assert res[n - 2].backwardTime > 0 and res[n - 3].backwardTime == 0
    for i in (n - 2, n - 1):
        assert_same(res[i].dzdx, full[i].dzdx)
    for depth in (n, n + 5, np.inf, float("inf"), np.array([[np.inf]])):
        res = vl_simplenn(net, x, 1.0, backPropDepth=depth)
        assert_same(res[0].dzdx, full[0].dzdx)
    res = vl_simplenn(net, x, 1.0, backPropDepth=np.array([[3.0]]))
    assert kept(res, "dzdx") == {3, 4, 5, 6}


@pytest.mark.parametrize("depth", [0, -1, -np.inf, 1.5, "all", None])
def test_back_prop_depth_must_be_positive(depth):
    net, x = derivative_net()
    with pytest.raises(ValueError, match="backPropDepth"):
        vl_simplenn(net, x, 1.0, backPropDepth=depth)


def test_test_mode_dropout_identity_and_bnorm_moments():
    net, x = derivative_net()
    layers = [dict(l) for l in net["layers"]]
    g, b, _ = layers[1]["weights"]
    moments = np.stack([0.1 * np.arange(4), 1 + np.arange(4.0)], axis=1)
    layers[1]["weights"] = [g, b, moments]
    layers.insert(3, {"type": "dropout", "rate": 0.5})
    net = {"layers": layers}
    res = vl_simplenn(net, x, 1.0, mode="TEST")
    assert_same(res[2].x, vl_nnbnorm(res[1].x, g, b, moments=moments))
    assert res[4].x is res[3].x and res[4].aux is None
    assert res[3].dzdx is res[4].dzdx
    dx, dg, db, batch_moments = vl_nnbnorm(res[1].x, g, b, res[2].dzdx, epsilon=1e-4,
                                           return_moments=True)
    assert_same(res[1].dzdx, dx)
    for got, want in zip(res[1].dzdw, (dg, db, batch_moments)):
        assert_same(got, want)
    # normal mode: dropout draws a mask, bnorm uses the batch
    res = vl_simplenn(net, x, 1.0, mode="normal")
    assert res[4].aux is not None
    assert_same(res[2].x, vl_nnbnorm(res[1].x, g, b, epsilon=1e-4))


def test_test_mode_bnorm_without_moments_is_an_error():
    x = randn((3, 3, 2, 2), seed=1)
    net = {"layers": [{"type": "bnorm", "name": "bn1", "weights": [np.ones(2), np.zeros(2)]}]}
    vl_simplenn(net, x)
    with pytest.raises(ValueError, match=r"layer 1 'bn1' \(net\.layers\[0\]\) of type 'bnorm'.*"
                                         r"weights\[2\]"):
        vl_simplenn(net, x, mode="test")


# ---------------------------------------------------------------------------
# custom layers, parameter server, holdOn

def test_custom_layer_receives_and_returns_records():
    seen = []

    def forward(layer, res_i, res_next):
        seen.append(("forward", layer, res_i, res_next))
        return {"x": 2 * res_i.x, "dzdx": None, "dzdw": [], "aux": "mine", "stats": None,
                "time": 0.0, "backwardTime": 0.0}

    def backward(layer, res_i, res_next):
        seen.append(("backward", layer, res_i, res_next))
        res_i.dzdx = 2 * res_next.dzdx
        return res_i
    layer = {"type": "custom", "forward": forward, "backward": backward}
    net, x = derivative_net()
    net = {"layers": net["layers"][:3] + [layer] + net["layers"][3:]}
    res = vl_simplenn(net, x, 1.0, conserveMemory=True)   # no `precious` field needed
    assert isinstance(res[4], Struct) and res[4].aux == "mine"
    kind, l, res_i, res_next = seen[0]
    assert kind == "forward" and l is layer
    kind, l, res_i, res_next = seen[1]
    assert kind == "backward" and res_i is res[3]
    # the same net with the custom layer as a 1 x 1 conv by 2 I
    double = {"type": "conv", "weights": [2 * np.eye(4).reshape(1, 1, 4, 4), np.zeros(4)]}
    same = vl_simplenn({"layers": net["layers"][:3] + [double] + net["layers"][4:]}, x, 1.0)
    np.testing.assert_allclose(res[-1].x, same[-1].x, rtol=1e-12)
    np.testing.assert_allclose(res[0].dzdx, same[0].dzdx, rtol=1e-10, atol=1e-14)


def test_custom_layer_must_return_a_record():
    x = randn((2, 2, 1, 1))
    net = {"layers": [{"type": "custom", "forward": lambda l, a, b: None,
                       "backward": lambda l, a, b: a}]}
    with pytest.raises(TypeError, match="must return the updated res record"):
        vl_simplenn(net, x)
    net = {"layers": [{"type": "custom", "forward": lambda l, a, b: b}]}
    with pytest.raises(ValueError, match="has no field 'backward'"):
        vl_simplenn(net, x, np.ones_like(x))


class ParameterServer:
    def __init__(self):
        self.pushed = []

    def push(self, name, value):
        self.pushed.append((name, value))


def test_parameter_server_receives_derivatives_and_they_are_cleared():
    net, x = derivative_net()
    plain = vl_simplenn(net, x, 1.0)
    server = ParameterServer()
    res = vl_simplenn(net, x, 1.0, parameterServer=server)
    assert [name for name, _ in server.pushed] == \
        ["l5_1", "l5_2", "l2_1", "l2_2", "l2_3", "l1_1", "l1_2"]
    want = {f"l{i + 1}_{j + 1}": d for i, r in enumerate(plain) for j, d in enumerate(r.dzdw)}
    for name, value in server.pushed:
        assert_same(value, want[name])
    assert [r.dzdw for r in res] == [[None] * 2, [None] * 3, [], [], [None] * 2, [], []]

    server = ParameterServer()
    res = vl_simplenn(net, x, 1.0, parameterServer=server, holdOn=True)
    assert server.pushed == []
    for r, r_ in zip(res, plain):
        for a, b in zip(r.dzdw, r_.dzdw):
            assert_same(a, b)
    with pytest.raises(TypeError, match="push"):
        vl_simplenn(net, x, 1.0, parameterServer=object())


# ---------------------------------------------------------------------------
# options, res records, times

def test_matlab_style_and_keyword_options_agree():
    net, x = derivative_net()
    want = vl_simplenn(net, x, 1.0, conserveMemory=True)
    for res in (vl_simplenn(net, x, 1.0, None, "conserveMemory", True),
                vl_simplenn(net, x, 1.0, None, "ConserveMemory", 1, "mode", "Normal"),
                vl_simplenn(net, x, 1.0, conserve_memory=np.array([[True]])),
                vl_simplenn(net, x, 1.0, "conservememory", True)):
        assert kept(res, "x") == kept(want, "x")
        assert_same(res[0].dzdx, want[0].dzdx)
    res = vl_simplenn(net, x, "conserveMemory", True, "sync", True, "cudnn", False)
    assert kept(res, "x") == {len(net["layers"])}
    with pytest.raises(TypeError, match="unknown option 'conserve'"):
        vl_simplenn(net, x, conserve=True)
    with pytest.raises(ValueError, match="conserveMemory"):
        vl_simplenn(net, x, conserveMemory="yes")


def test_res_records_and_times():
    net, x = derivative_net()
    n = len(net["layers"])
    res = vl_simplenn(net, x)
    assert len(res) == n + 1 and all(isinstance(r, Struct) for r in res)
    for r in res:
        assert set(r) == {"x", "dzdx", "dzdw", "aux", "stats", "time", "backwardTime"}
    assert all(r.time > 0 for r in res[:n]) and res[n].time == 0
    assert all(r.backwardTime == 0 for r in res)
    assert res[0]["x"] is x and res[1].dzdw == []
    res = vl_simplenn(net, x, 1.0, res, sync=True)
    assert all(r.backwardTime > 0 for r in res[:n]) and res[n].backwardTime == 0
    # an empty derivative is MATLAB's [] (forward only)
    res = vl_simplenn(net, x, np.zeros((0,)))
    assert kept(res, "dzdx") == set()
    # a res of plain dicts (or None entries) is accepted and completed
    given = [{"x": None} for _ in range(n)] + [None]
    res = vl_simplenn(net, x, 1.0, given)
    assert res is given and all(isinstance(r, Struct) and "backwardTime" in r for r in res)
    with pytest.raises(ValueError, match="res has 3 entries but the network has 6 layers"):
        vl_simplenn(net, x, None, [{}, {}, {}])


def test_struct_net_and_cell_weights():
    net, x = derivative_net()
    want = vl_simplenn(net, x, 1.0)
    tidy_like = struct(net)
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = net["layers"][0]["weights"]
    tidy_like.layers[0].weights = cell
    tidy_like.layers[2].precious = np.array([[0]], np.uint8)
    res = vl_simplenn(tidy_like, x, 1.0, conserveMemory=np.array([[1.0]]))
    assert_same(res[-1].x, want[-1].x)
    assert_same(res[0].dzdx, want[0].dzdx)
    assert_same(res[0].dzdw[0], want[0].dzdw[0])


def test_empty_network():
    x = randn((2, 2, 1, 1))
    res = vl_simplenn({"layers": []}, x, 1.0)
    assert len(res) == 1 and res[0].x is x and res[0].dzdx == 1.0


# ---------------------------------------------------------------------------
# errors

def test_unknown_layer_type():
    net, x = derivative_net()
    layers = [dict(l) for l in net["layers"]]
    layers[2] = {"type": "mystery", "name": "what"}
    with pytest.raises(ValueError, match=r"unknown layer type 'mystery' of layer 3 'what' "
                                         r"\(net\.layers\[2\]\); known types"):
        vl_simplenn({"layers": layers}, x)


def test_unknown_layer_type_is_skipped_in_backward():
    net, x = derivative_net()
    res = vl_simplenn(net, x, 1.0)
    stale = res[2].dzdx
    layers = [dict(l) for l in net["layers"]]
    layers[2] = {"type": "mystery"}
    res_ = vl_simplenn({"layers": layers}, x, 1.0, copy_res(res), skipForward=True)
    assert res_[2].dzdx is stale
    assert_same(res_[0].dzdx, res[0].dzdx)


@pytest.mark.parametrize("layer, message", [
    ({"type": "pool", "name": "p1", "stride": 2},
     r"layer 1 'p1' \(net\.layers\[0\]\) of type 'pool' has no field 'pool'"),
    ({"type": "conv"}, r"layer 1 \(net\.layers\[0\]\) of type 'conv' has no field 'weights'"),
    ({"type": "conv", "filters": np.ones((1, 1, 1, 1)), "biases": np.ones(1)},
     "legacy 'filters'/'biases' fields: run vl_simplenn_tidy"),
    ({"type": "conv", "weights": [np.ones((1, 1, 1, 1))]},
     r"has 1 weights; weights\[1\] \(biases\) is needed"),
    ({"type": "softmaxloss"}, "has no field 'class'"),
    ({"type": "spnorm"}, "has no field 'param'"),
    ({"name": "untyped"}, r"layer 1 'untyped' \(net\.layers\[0\]\) has no field 'type'"),
])
def test_missing_field(layer, message):
    with pytest.raises(ValueError, match=message):
        vl_simplenn({"layers": [layer]}, randn((3, 3, 1, 2)))


def test_bad_mode_and_bad_net():
    net, x = derivative_net()
    with pytest.raises(ValueError, match="unknown mode 'train'"):
        vl_simplenn(net, x, mode="train")
    with pytest.raises(TypeError, match="'layers'"):
        vl_simplenn(net["layers"], x)
    with pytest.raises(TypeError, match=r"layer 2 \(net\.layers\[1\]\) must be a mapping"):
        vl_simplenn({"layers": [net["layers"][0], "relu"]}, x)
