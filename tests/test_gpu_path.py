"""The GPU code paths, run without a GPU through ``fakecupy``.

``fakecupy`` (tests/fakecupy.py) is an array module that wraps NumPy and
behaves like CuPy where code usually breaks: its arrays refuse implicit
conversion to NumPy, NumPy arrays are refused as operands of device
operations, and only ``.get()`` / ``asnumpy`` and ``asarray`` move data.
Registered as a device module of ``vlnn._backend`` (and as the module that
``'gpu'`` moves use), it takes CuPy's place: every block forward and
backward, ``vl_simplenn``, ``vl_simplenn_move`` and a ``cnn_train`` epoch
run on it here, and must give the CPU's results as device arrays.  A stray
``np.`` call on a device array fails here as it would on a GPU.
"""

import sys

import numpy as np
import pytest
import scipy.io

import fakecupy
from simplenn import Struct, cnn_train, vl_simplenn, vl_simplenn_move, vl_simplenn_tidy
from simplenn.matfile import host
from test_generic import SAMPLES
from vlnn import (_backend, vl_nnbilinearsampler, vl_nnbnorm, vl_nnconcat, vl_nncrop,
                  vl_nndropout, vl_nnloss, vl_nnnoffset, vl_nnnormalize, vl_nnnormalizelp,
                  vl_nnpdist, vl_nnroipool, vl_nnsigmoid, vl_nnsoftmax, vl_nnspnorm, vl_taccum)

CUPY_WAS_IMPORTED = "cupy" in sys.modules


@pytest.fixture
def gpu(monkeypatch):
    """fakecupy in CuPy's place, for this test only."""
    monkeypatch.setitem(_backend.DEVICE_MODULES, "fakecupy", "fakecupy")
    monkeypatch.setattr(_backend, "GPU_MODULE", "fakecupy")
    yield fakecupy
    assert ("cupy" in sys.modules) == CUPY_WAS_IMPORTED, "the GPU path imported CuPy"


def to_device(value):
    """Every NumPy array inside ``value`` on the device."""
    if isinstance(value, np.ndarray):
        return fakecupy.asarray(value)
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v) for v in value)
    return value


def assert_same_on_device(got, want, rtol=1e-5, atol=1e-6, where="result"):
    """``got`` (from device inputs) has ``want``'s structure, with a device
    array wherever ``want`` has a NumPy array, equal up to rounding."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, fakecupy.ndarray), f"{where}: {type(got).__name__} on the host"
        assert got.shape == want.shape and got.dtype == want.dtype, where
        assert np.all(np.isfinite(want)), f"{where}: the reference is not finite"
        np.testing.assert_allclose(got.get(), want, rtol=rtol, atol=atol, err_msg=where)
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_on_device(g, w, rtol, atol, f"{where}[{i}]")
    else:
        assert got == want, where


# --------------------------------------------------------------------------
# the stand-in itself: CuPy's manners

def test_fakecupy_refuses_implicit_transfers():
    a = fakecupy.asarray(np.arange(6.0).reshape(2, 3))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(a)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.array([a, a])
    for mixed in (lambda: a * np.ones(3), lambda: np.ones(3) + a,
                  lambda: fakecupy.maximum(a, np.zeros(3)), lambda: a.__setitem__(0, np.ones(3))):
        with pytest.raises(TypeError, match="Unsupported type"):
            mixed()
    # what CuPy allows: explicit transfers, scalars, NumPy functions on device arrays
    np.testing.assert_array_equal(a.get(), np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(fakecupy.asnumpy(2 * a + np.float32(1)),
                                  2 * np.arange(6.0).reshape(2, 3) + 1)
    assert isinstance(np.exp(a), fakecupy.ndarray) and isinstance(a.sum(), fakecupy.ndarray)
    assert isinstance(a[0, 0], fakecupy.ndarray) and float(a[1, 2]) == 5.0
    b = fakecupy.zeros((2, 3))
    b[:] = np.ones((2, 3))
    assert float(b.sum()) == 6.0


def test_the_backend_recognises_a_registered_device_module(gpu):
    a = gpu.asarray(np.ones(3, np.float32))
    assert _backend.get_array_module(a) is gpu
    assert _backend.get_array_module(None, a, a) is gpu
    assert _backend.is_device_array(a) and not _backend.is_device_array(np.ones(3))
    with pytest.raises(ValueError, match="cannot mix NumPy and CuPy arrays"):
        _backend.get_array_module(a, np.ones(3))
    np.testing.assert_array_equal(_backend.to_host(a), np.ones(3))
    assert _backend.gpu_module("test") is gpu


def test_an_unregistered_array_module_is_not_a_device():
    assert not _backend.is_device_array(fakecupy.zeros(2))
    assert _backend.get_array_module(fakecupy.zeros(2)) is np


def test_gpu_module_names_what_needs_cupy(monkeypatch):
    monkeypatch.setattr(_backend, "GPU_MODULE", "no_such_module_here")
    with pytest.raises(ImportError, match="vl_simplenn_move: moving a network to the GPU "
                                          "needs CuPy, which is not installed"):
        vl_simplenn_move({"layers": []}, "gpu")


# --------------------------------------------------------------------------
# every block, forward and backward

def _rand(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _labels(shape, classes, seed):
    return np.random.default_rng(seed).integers(1, classes + 1, size=shape).astype(np.float32)


def _rois():
    # image index (1-based), then x1 y1 x2 y2 (1-based, inclusive)
    return np.array([[1, 1, 1, 4, 5], [2, 2, 1, 6, 3], [1, 3, 2, 5, 6]], np.float32).T


def _grid(seed):
    # 2 x Ho x Wo x N, coordinates in [-1, 1] (a little outside, too)
    return np.random.default_rng(seed).uniform(-1.1, 1.1, (2, 4, 3, 2)).astype(np.float32)


X = _rand((5, 6, 4, 2), 1)
DY = _rand((5, 6, 4, 2), 2)
MASK = (np.random.default_rng(3).random((5, 6, 4, 2)) > 0.3).astype(np.float32) / 0.7
SCORES = _rand((1, 1, 5, 3), 4)
LABELS = _labels((1, 1, 1, 3), 5, 5)
BINARY = np.sign(_rand((1, 1, 1, 3), 6)) 
LOSSES = ["classerror", "topkerror", "log", "softmaxlog", "mhinge", "mshinge"]

# name -> (block, arguments): the call is block(*arguments); arrays move to
# the device, everything else is passed as is
CALLS = {
    "sigmoid": (vl_nnsigmoid, (X,)),
    "sigmoid-backward": (vl_nnsigmoid, (X, DY)),
    "softmax": (vl_nnsoftmax, (X,)),
    "softmax-backward": (vl_nnsoftmax, (X, DY)),
    "normalize": (vl_nnnormalize, (X, [3, 1.0, 1e-2, 0.75])),
    "normalize-backward": (vl_nnnormalize, (X, [3, 1.0, 1e-2, 0.75], DY)),
    "normalizelp": (vl_nnnormalizelp, (X, None, "p", 4, "epsilon", 1e-2)),
    "normalizelp-backward": (vl_nnnormalizelp, (X, DY, "p", 4)),
    "normalizelp-spatial-norms": (lambda x: vl_nnnormalizelp(x, spatial=True, return_norms=True),
                                  (X,)),
    "bnorm": (vl_nnbnorm, (X, _rand((4,), 7) + 1, _rand((4,), 8))),
    "bnorm-moments": (lambda x, g, b: vl_nnbnorm(x, g, b, return_moments=True),
                      (X, _rand((4,), 7) + 1, _rand((4,), 8))),
    "bnorm-given-moments": (lambda x, g, b, m: vl_nnbnorm(x, g, b, moments=m),
                            (X, _rand((4,), 7) + 1, _rand((4,), 8),
                             np.abs(_rand((4, 2), 9)) + 0.5)),
    "bnorm-backward": (lambda x, g, b, dy: vl_nnbnorm(x, g, b, dy, return_moments=True),
                       (X, _rand((4,), 7) + 1, _rand((4,), 8), DY)),
    "dropout-given-mask": (lambda x, m: vl_nndropout(x, mask=m), (X, MASK)),
    "dropout-backward": (lambda x, dy, m: vl_nndropout(x, dy, mask=m), (X, DY, MASK)),
    "noffset": (vl_nnnoffset, (X, [0.5, 0.25])),
    "noffset-backward": (vl_nnnoffset, (X, [0.5, 0.25], DY)),
    "spnorm": (vl_nnspnorm, (X, [3, 3, 0.5, 2])),
    "spnorm-backward": (vl_nnspnorm, (X, [3, 3, 0.5, 2], DY)),
    "pdist": (vl_nnpdist, (X, _rand((5, 6, 4, 2), 10), 2)),
    "pdist-backward": (vl_nnpdist, (X, _rand((5, 6, 4, 2), 10), 1.5, _rand((5, 6, 1, 2), 11),
                                    "epsilon", 1e-3)),
    "pdist-noroot-aggregate": (lambda x, x0, dy: vl_nnpdist(x, x0, 2, dy, noRoot=True,
                                                            aggregate=True),
                               (X, _rand((5, 6, 4, 2), 10), np.float32(0.7))),
    "concat": (lambda a, b: vl_nnconcat([a, b], 3), (X, _rand((5, 6, 2, 2), 12))),
    "concat-backward": (lambda a, b, dy: vl_nnconcat([a, b], 4, dy),
                        (X, _rand((5, 6, 4, 1), 12), _rand((5, 6, 4, 3), 13))),
    "crop": (vl_nncrop, (X, [1, 0, 2, 1])),
    "crop-backward": (vl_nncrop, (X, [1, 0, 2, 1], _rand((4, 3, 4, 2), 14))),
    "crop-backward-without-x": (lambda dy: vl_nncrop(None, [1, 0, 2, 1], dy, [5, 6, 4, 2]),
                                (_rand((4, 3, 4, 2), 14),)),
    "bilinearsampler": (vl_nnbilinearsampler, (X, _grid(15))),
    "bilinearsampler-backward": (vl_nnbilinearsampler, (X, _grid(15), _rand((4, 3, 4, 2), 16))),
    "roipool-max": (vl_nnroipool, (X, _rois(), "subdivisions", [2, 2])),
    "roipool-avg-backward": (vl_nnroipool, (X, _rois(), _rand((2, 2, 4, 3), 17),
                                            "method", "avg", "subdivisions", [2, 2])),
    "roipool-max-backward": (vl_nnroipool, (X, _rois(), _rand((1, 3, 4, 3), 18),
                                            "subdivisions", [1, 3], "transform", 0.5)),
    "taccum": (vl_taccum, (0.5, X, 2.0, DY)),
    "taccum-scalar": (vl_taccum, (0.5, 2.0, 2.0, DY)),
    "loss-weights": (lambda x, c, w, dy: vl_nnloss(x, c, dy, loss="log", instanceWeights=w),
                     (np.abs(SCORES) + 0.1, LABELS, _rand((1, 1, 1, 3), 19), np.float32(1))),
    "loss-binary": (lambda x, c: vl_nnloss(x, c, loss="binaryerror"),
                    (_rand((1, 1, 1, 3), 20), BINARY)),
    "loss-logistic-backward": (lambda x, c: vl_nnloss(x, c, np.float32(1), loss="logistic"),
                               (_rand((1, 1, 1, 3), 20), BINARY)),
    "loss-hinge-backward": (lambda x, c: vl_nnloss(x, c, np.float32(1), loss="hinge"),
                            (_rand((1, 1, 1, 3), 20), BINARY)),
}
for _loss in LOSSES:
    _x = np.abs(SCORES) + 0.1 if _loss == "log" else SCORES
    CALLS[f"loss-{_loss}"] = ((lambda l: lambda x, c: vl_nnloss(x, c, loss=l))(_loss),
                              (_x, LABELS))
    CALLS[f"loss-{_loss}-backward"] = (
        (lambda l: lambda x, c, dy: vl_nnloss(x, c, dy, loss=l))(_loss),
        (_x, LABELS, np.float32(2)))


@pytest.mark.parametrize("name", sorted(CALLS))
def test_block_on_the_device(gpu, name):
    block, args = CALLS[name]
    want = block(*args)
    got = block(*to_device(args))
    assert_same_on_device(got, want, where=name)


CONV_ENGINE_CASES = [
    # x, w, options: stride 1 (every engine), and strided with filters of
    # whole strides (folded into channels for the stride-1 engines)
    ((6, 7, 4, 2), (3, 2, 4, 5), {"pad": [1, 0, 2, 1], "dilate": [1, 2]}),
    ((7, 6, 4, 2), (3, 3, 2, 4), {"pad": 1}),                             # 2 groups
    ((9, 8, 3, 2), (4, 2, 3, 5), {"stride": 2, "pad": [1, 2, 0, 1]}),
]


@pytest.mark.parametrize("engine", ["im2col", "shifted", "rows"])
@pytest.mark.parametrize("case", CONV_ENGINE_CASES)
def test_each_conv_engine_on_the_device(gpu, engine, case, monkeypatch):
    import vlnn.conv as conv_module
    from vlnn import vl_nnconv, vl_nnconvt
    xs, ws, opts = case
    x, w, b = _rand(xs, 21), _rand(ws, 22), _rand((ws[3],), 23)
    monkeypatch.setattr(conv_module, "_FORCE_STRATEGY", engine)
    y = vl_nnconv(x, w, b, **opts)
    dy = _rand(y.shape, 24)
    assert_same_on_device(vl_nnconv(*to_device((x, w, b)), **opts), y, where="conv")
    assert_same_on_device(vl_nnconv(*to_device((x, w, b, dy)), **opts),
                          vl_nnconv(x, w, b, dy, **opts), where="conv backward")
    if "stride" in opts:
        xt, bt = _rand((3, 4, ws[3], 2), 25), _rand((ws[2],), 26)
        topts = {"upsample": opts["stride"], "crop": opts["pad"]}
        yt = vl_nnconvt(xt, w, bt, **topts)
        assert_same_on_device(vl_nnconvt(*to_device((xt, w, bt)), **topts), yt, where="convt")
        dyt = _rand(yt.shape, 27)
        assert_same_on_device(vl_nnconvt(*to_device((xt, w, bt, dyt)), **topts),
                              vl_nnconvt(xt, w, bt, dyt, **topts), where="convt backward")


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_sample_of_the_generic_table_on_the_device(gpu, sample):
    args = sample.cast(np.float32)
    y = sample.forward(*args)
    dzdy = sample.dzdy(y, np.float32)
    ders = sample.backward(*args, dzdy)
    assert_same_on_device(sample.forward(*to_device(args)), y, where="forward")
    assert_same_on_device(sample.backward(*to_device(args), to_device(dzdy)), ders,
                          where="backward")


def test_dropout_draws_its_mask_on_the_device(gpu):
    x = gpu.asarray(X)
    y, mask = vl_nndropout(x, rate=0.25, rng=7)
    assert isinstance(y, gpu.ndarray) and isinstance(mask, gpu.ndarray)
    m = mask.get()
    assert set(np.unique(m)) <= {0, np.float32(1 / 0.75)} and 0 < np.mean(m == 0) < 0.6
    np.testing.assert_allclose(y.get(), m * X, rtol=1e-6)
    again, _ = vl_nndropout(x, rate=0.25, rng=7)
    np.testing.assert_array_equal(again.get(), y.get())
    generator_mask = vl_nndropout(x, rng=np.random.default_rng(1))[1]
    global_mask = vl_nndropout(x)[1]
    assert isinstance(generator_mask, gpu.ndarray) and isinstance(global_mask, gpu.ndarray)


# --------------------------------------------------------------------------
# vl_simplenn, vl_simplenn_move, cnn_train

def every_layer_net():
    """A net with a layer of (nearly) every type, 8 x 8 x 3 inputs, 4 classes."""
    r = np.random.default_rng(21)

    def w(*shape):
        return (0.3 * r.standard_normal(shape)).astype(np.float32)

    return vl_simplenn_tidy({"layers": [
        {"type": "conv", "weights": [w(3, 3, 3, 6), w(1, 6)], "pad": 1, "name": "conv1"},
        {"type": "bnorm", "weights": [w(6) + 1, w(6), np.c_[w(6), np.abs(w(6)) + 1]]},
        {"type": "relu", "leak": 0.1},
        {"type": "lrn", "param": [3, 1, 1e-2, 0.75]},
        {"type": "pool", "pool": [2, 2], "stride": 2},
        {"type": "noffset", "param": [0.5, 0.5]},
        {"type": "spnorm", "param": [2, 2, 0.5, 2]},
        {"type": "convt", "weights": [w(2, 2, 4, 6), w(1, 4)], "upsample": 2, "crop": [0, 0, 0, 0]},
        {"type": "sigmoid"},
        {"type": "pool", "pool": [3, 3], "stride": 2, "method": "avg"},
        {"type": "dropout", "rate": 0.5},
        {"type": "conv", "weights": [w(3, 3, 4, 4), w(1, 4)]},
        {"type": "softmaxloss"},
    ]})


def test_vl_simplenn_move_and_run_on_the_device(gpu):
    net = every_layer_net()
    x = _rand((8, 8, 3, 2), 22)
    labels = np.array([1, 3], np.float32)
    net.layers[-1]["class"] = labels
    cpu = vl_simplenn(net, x, np.float32(1), mode="test")

    moved = vl_simplenn_move(net, "gpu")
    for layer in moved.layers:
        for weight in layer.get("weights", []):
            assert isinstance(weight, gpu.ndarray)
    moved.layers[-1]["class"] = gpu.asarray(labels)
    res = vl_simplenn(moved, gpu.asarray(x), np.float32(1), mode="test", sync=True)
    for i, (r_gpu, r_cpu) in enumerate(zip(res, cpu)):
        assert_same_on_device(r_gpu.x, r_cpu.x, rtol=1e-4, atol=1e-5, where=f"res[{i}].x")
        assert_same_on_device(r_gpu.dzdx, r_cpu.dzdx, rtol=1e-4, atol=1e-5,
                              where=f"res[{i}].dzdx")
        assert_same_on_device(r_gpu.dzdw, r_cpu.dzdw, rtol=1e-4, atol=1e-5,
                              where=f"res[{i}].dzdw")
    # training mode: dropout masks and bnorm moments drawn on the device
    res = vl_simplenn(moved, gpu.asarray(x), np.float32(1), conserveMemory=True)
    assert isinstance(res[-1].x, gpu.ndarray) and np.isfinite(float(res[-1].x))
    assert all(isinstance(d, gpu.ndarray) for d in res[1].dzdw)

    back = vl_simplenn_move(moved, "cpu")
    for a, b in zip(back.layers, net.layers):
        for wa, wb in zip(a.get("weights", []), b.get("weights", [])):
            assert isinstance(wa, np.ndarray)
            np.testing.assert_array_equal(wa, wb)


def test_a_custom_layer_sees_device_arrays(gpu):
    seen = []

    def forward(layer, res_i, res_next):
        seen.append(type(res_i.x))
        res_next.x = 2 * res_i.x
        return res_next

    def backward(layer, res_i, res_next):
        res_i.dzdx = 2 * res_next.dzdx
        return res_i

    net = {"layers": [{"type": "custom", "forward": forward, "backward": backward},
                      {"type": "relu"}]}
    x = _rand((3, 3, 2, 1), 23)
    res = vl_simplenn(net, gpu.asarray(x), gpu.asarray(np.ones((3, 3, 2, 1), np.float32)))
    assert seen == [gpu.ndarray]
    np.testing.assert_allclose(res[0].dzdx.get(), 2 * (x > 0))


def _imdb():
    r = np.random.default_rng(24)
    return {"images": {"data": r.standard_normal((8, 8, 1, 12)).astype(np.float32),
                       "labels": r.integers(1, 4, 12),
                       "set": np.r_[np.ones(8), 2 * np.ones(4)]}}


def _train_net():
    # relu before bnorm: a bias right before batch normalisation has a
    # derivative that is zero up to rounding, which Adam's normalised step
    # would turn into noise-sized updates of either sign (CPU and device
    # may round differently)
    r = np.random.default_rng(25)
    return {"layers": [
        {"type": "conv", "weights": [0.3 * r.standard_normal((3, 3, 1, 4)).astype(np.float32),
                                     np.zeros((1, 4), np.float32)]},
        {"type": "relu"},
        {"type": "bnorm", "weights": [np.ones(4, np.float32), np.zeros(4, np.float32),
                                      np.zeros((4, 2), np.float32)]},
        {"type": "pool", "pool": 2, "stride": 2},
        {"type": "conv", "weights": [0.3 * r.standard_normal((3, 3, 4, 3)).astype(np.float32),
                                     np.zeros((1, 3), np.float32)]},
        {"type": "softmaxloss"}]}


def _get_batch(imdb, batch):
    return imdb["images"]["data"][:, :, :, batch], imdb["images"]["labels"][batch]


@pytest.mark.parametrize("solver", [None, "adam"])
def test_a_cnn_train_epoch_on_the_device(gpu, tmp_path, solver):
    from simplenn import solvers

    opts = dict(numEpochs=1, batchSize=4, verbose=False, plotStatistics=False,
                solver=getattr(solvers, solver) if solver else None)
    cpu, cpu_info = cnn_train(_train_net(), _imdb(), _get_batch, expDir=str(tmp_path / "cpu"),
                              **opts)
    dev, dev_info = cnn_train(_train_net(), _imdb(), _get_batch, expDir=str(tmp_path / "gpu"),
                              gpus=[1], **opts)
    for a, b in zip(cpu.layers, dev.layers):
        for wa, wb in zip(a.get("weights", []), b.get("weights", [])):
            assert isinstance(wb, np.ndarray)   # the trained net comes back to the host
            np.testing.assert_allclose(wb, wa, rtol=1e-4, atol=1e-5)
    for part in ("train", "val"):
        for key in ("objective", "top1err", "top5err"):
            np.testing.assert_allclose(dev_info[part][key], cpu_info[part][key], rtol=1e-4)
    assert sorted(p.name for p in (tmp_path / "gpu").iterdir()) == ["net-epoch-1.mat"]


def test_host_of_a_device_array_for_saving(gpu):
    np.testing.assert_array_equal(host(gpu.asarray(np.arange(3.0))), np.arange(3.0))


@pytest.mark.parametrize("solver", ["adagrad", "adadelta", "rmsprop"])
def test_cnn_train_with_sub_batches_dropout_and_other_solvers_on_the_device(gpu, tmp_path,
                                                                              solver):
    from simplenn import solvers

    net = _train_net()
    net["layers"].insert(3, {"type": "dropout", "rate": 0.25})
    opts = dict(numEpochs=1, batchSize=4, numSubBatches=2, weightDecay=0.01, verbose=False,
                plotStatistics=False, solver=getattr(solvers, solver), randomSeed=3)
    dev, info = cnn_train(net, _imdb(), _get_batch, expDir=str(tmp_path), gpus=[1], **opts)
    assert all(isinstance(w, np.ndarray) for layer in dev.layers
               for w in layer.get("weights", []))
    assert np.isfinite(info.train.objective[0]) and np.isfinite(info.val.objective[0])
    # the checkpoint written from the device holds host arrays MATLAB can read
    stored = scipy.io.loadmat(str(tmp_path / "net-epoch-1.mat"))["net"]
    assert stored.dtype.names and "layers" in stored.dtype.names


def test_display_and_diagnose_take_device_arrays(gpu, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from simplenn import vl_simplenn_diagnose, vl_simplenn_display

    net = vl_simplenn_move(every_layer_net(), "gpu")
    net.layers[-1]["class"] = gpu.asarray(np.array([1, 2], np.float32))
    res = vl_simplenn(net, gpu.asarray(_rand((8, 8, 3, 2), 26)), np.float32(1), mode="test")
    info = vl_simplenn_display(net, res)
    assert info is not None
    vl_simplenn_diagnose(net, res, path=str(tmp_path / "diagnose.png"))
    assert (tmp_path / "diagnose.png").stat().st_size > 0


def test_save_net_of_a_net_on_the_device(gpu, tmp_path):
    from simplenn import load_net, save_net

    net = vl_simplenn_move(every_layer_net(), "gpu")
    loaded = load_net(save_net(tmp_path / "net.mat", net))
    for a, b in zip(loaded.layers, every_layer_net().layers):
        for wa, wb in zip(a.get("weights", []), b.get("weights", [])):
            # 1-D arrays come back as 1 x N rows (save_net's round-trip caveat)
            assert isinstance(wa, np.ndarray) and wa.dtype == wb.dtype
            np.testing.assert_array_equal(wa.reshape(wb.shape), wb)


# --------------------------------------------------------------------------
# DagNN: eval and move('gpu')

def _dag_results(net):
    return ([None if v.value is None else v.value for v in net.vars],
            [None if v.der is None else v.der for v in net.vars],
            [p.der for p in net.params])


def _assert_dag_same(dev, cpu):
    for kind, got, want in zip(("value", "der", "param der"), _dag_results(dev),
                               _dag_results(cpu)):
        for i, (g, w) in enumerate(zip(got, want)):
            if w is None:
                assert g is None, (kind, i)
            else:
                assert_same_on_device(g, w, rtol=1e-4, atol=1e-5, where=f"{kind} {i}")


def test_dagnn_from_simplenn_eval_and_move_on_the_device(gpu, tmp_path):
    import dagnn

    simple = every_layer_net()
    simple.layers = [layer for layer in simple.layers   # no DagNN blocks for these two
                     if layer.type not in ("noffset", "spnorm")]
    net = dagnn.DagNN.fromSimpleNN(simple)
    net.mode = "test"
    net.conserveMemory = False
    x = _rand((8, 8, 3, 2), 27)
    label = np.array([1, 3], np.float32)
    output = net.getOutputs()[0]
    net.eval({"x0": x, "label": label}, [output, 1])
    dev = net.copy()
    dev.mode, dev.conserveMemory = "test", False
    dev.move("gpu")
    assert dev.device == "gpu"
    assert all(isinstance(p.value, gpu.ndarray) for p in dev.params if p.value is not None)
    dev.eval({"x0": gpu.asarray(x), "label": gpu.asarray(label)}, [output, 1])
    _assert_dag_same(dev, net)
    # training mode on the device: dropout masks and batch-norm moments there
    dev.mode = "normal"
    dev.eval({"x0": gpu.asarray(x), "label": gpu.asarray(label)}, [output, 1])
    assert np.isfinite(float(dev.vars[dev.getVarIndex(output)].value))
    # saving a net on the device writes host arrays
    saved = dagnn.load_net(dagnn.save_net(str(tmp_path / "dag.mat"), dev))
    for a, b in zip(saved.params, dev.params):
        assert isinstance(a.value, np.ndarray)
        np.testing.assert_array_equal(a.value.ravel(), b.value.get().ravel())
    dev.move("cpu")
    assert all(isinstance(p.value, np.ndarray) for p in dev.params if p.value is not None)


def test_dagnn_graph_blocks_on_the_device(gpu):
    import dagnn

    r = np.random.default_rng(28)
    net = dagnn.DagNN()
    net.conserveMemory = False
    net.addLayer("conv", dagnn.Conv("size", [3, 3, 2, 4], "pad", 1), "x", "a", ["f", "b"])
    net.addLayer("bn", dagnn.BatchNorm("numChannels", 4), "a", "bn", ["g", "h", "m"])
    net.addLayer("relu", dagnn.ReLU(), "bn", "r")
    net.addLayer("cat", dagnn.Concat("dim", 3), ["r", "x"], "c")
    net.addLayer("scale", dagnn.Scale("size", [1, 1, 6]), "c", "s", ["sw", "sb"])
    net.addLayer("sum", dagnn.Sum(), ["s", "c"], "t")
    net.addLayer("crop", dagnn.Crop("crop", [1, 1]), ["t", "y"], "u")
    net.addLayer("pool", dagnn.Pooling("poolSize", [2, 2], "stride", 2), "u", "p")
    net.addLayer("fc", dagnn.Conv("size", [2, 2, 6, 3]), "p", "z", ["ff", "fb"])
    net.addLayer("loss", dagnn.Loss("loss", "softmaxlog"), ["z", "label"], "objective")
    net.addLayer("err", dagnn.Loss("loss", "classerror"), ["z", "label"], "error")
    net.initParams()
    for param in net.params:
        param.value = (param.value + 0.1 * r.standard_normal(param.value.shape)).astype(
            np.float32)
    inputs = {"x": _rand((6, 6, 2, 3), 29), "y": _rand((4, 4, 1, 3), 30),
              "label": np.array([1, 2, 3], np.float32)}
    cpu = net.copy()
    cpu.conserveMemory = False
    cpu.eval(inputs, ["objective", 1])
    net.move("gpu")
    net.eval({k: gpu.asarray(v) for k, v in inputs.items()}, ["objective", 1])
    _assert_dag_same(net, cpu)
    for name in ("objective", "error"):
        block = net.layers[net.getLayerIndex("loss" if name == "objective" else "err")].block
        assert np.isfinite(float(np.asarray(block.average)))


@pytest.mark.parametrize("solver", [None, "adam"])
def test_a_cnn_train_dag_epoch_on_the_device(gpu, tmp_path, solver):
    import dagnn
    from simplenn import solvers

    def make():
        net = dagnn.DagNN.fromSimpleNN(vl_simplenn_tidy(_train_net()))
        return net

    def get_inputs(imdb, batch):
        images = imdb["images"]
        return {"x0": images["data"][:, :, :, batch],
                "label": images["labels"][batch].astype(np.float32)}

    opts = dict(numEpochs=1, batchSize=4, numSubBatches=2, verbose=False, plotStatistics=False,
                solver=getattr(solvers, solver) if solver else None,
                derOutputs=[make().getOutputs()[0], 1])
    cpu, cpu_stats = dagnn.cnn_train_dag(make(), _imdb(), get_inputs,
                                         expDir=str(tmp_path / "cpu"), **opts)
    dev, dev_stats = dagnn.cnn_train_dag(make(), _imdb(), get_inputs,
                                         expDir=str(tmp_path / "gpu"), gpus=[1], **opts)
    for a, b in zip(cpu.params, dev.params):
        assert isinstance(b.value, np.ndarray), b.name   # back on the host
        np.testing.assert_allclose(b.value, a.value, rtol=1e-4, atol=1e-5, err_msg=a.name)
    for part in ("train", "val"):
        for key in set(cpu_stats[part]) - {"time"}:
            np.testing.assert_allclose(dev_stats[part][key], cpu_stats[part][key], rtol=1e-4,
                                       err_msg=f"{part}.{key}")
