"""Tests of vl_simplenn_move (MATCONVNET_SEMANTICS.md section 25).

Without a GPU the 'gpu' code path runs against a fake ``cupy`` module put in
``sys.modules``: its arrays are a wrapper class whose module name starts
with ``cupy`` and whose ``.get()`` returns the numpy array, which is all the
port relies on.  The real CuPy round trip runs only where CuPy is installed.
"""

import sys
import types

import numpy as np
import pytest

from simplenn.move import vl_simplenn_move
from simplenn.struct import Struct, struct

F32 = np.float32


class FakeCupyArray:
    """Stands for ``cupy.ndarray``: remembers the host array it was made of."""

    def __init__(self, host):
        self.host = np.asarray(host)
        self.shape = self.host.shape
        self.dtype = self.host.dtype
        self.size = self.host.size

    def get(self):
        return self.host.copy()


FakeCupyArray.__module__ = "cupy._core.core"


@pytest.fixture
def fake_cupy(monkeypatch):
    module = types.ModuleType("cupy")
    module.calls = []

    def asarray(a):
        module.calls.append(a)
        return a if isinstance(a, FakeCupyArray) else FakeCupyArray(a)

    module.asarray = asarray
    monkeypatch.setitem(sys.modules, "cupy", module)
    return module


def sample_net():
    r = np.random.default_rng(0)

    def arr(*shape):
        return r.standard_normal(shape).astype(F32)

    return {
        "layers": [
            {"type": "conv", "weights": [arr(3, 3, 2, 4), arr(1, 4)],
             "momentum": [arr(3, 3, 2, 4), arr(1, 4)], "stride": 1, "pad": 0},
            {"type": "relu", "leak": 0},
            {"type": "bnorm", "weights": [arr(4), arr(4), arr(4, 2)], "epsilon": 1e-5},
            {"type": "convt", "weights": [arr(2, 2, 3, 4), None], "upsample": 2},
            # a legacy layer: filters/biases and their momenta
            {"type": "conv", "filters": arr(1, 1, 3, 5), "biases": arr(5),
             "filtersMomentum": arr(1, 1, 3, 5), "biasesMomentum": arr(5)},
            # arrays of other layers never move
            {"type": "custom", "weights": [arr(2)], "extra": arr(3)},
            {"type": "pdist", "class": arr(1, 1, 5, 2)},
            {"type": "softmaxloss", "class": np.arange(1, 3)},
        ],
        "meta": {"normalization": {"averageImage": arr(1, 1, 2)}},
    }


MOVED = {0: ("weights", "momentum"), 2: ("weights",), 3: ("weights",),
         4: ("filters", "biases", "filtersMomentum", "biasesMomentum")}


def moved_arrays(net):
    """(layer index, field, position) -> value for every field that moves."""
    out = {}
    for i, fields in MOVED.items():
        layer = net["layers"][i]
        for name in fields:
            value = layer[name]
            if isinstance(value, (list, tuple)):
                for j, v in enumerate(value):
                    out[i, name, j] = v
            else:
                out[i, name, None] = value
    return out


class TestCpu:
    def test_numpy_net_stays_as_it_is(self):
        net = sample_net()
        out = vl_simplenn_move(net, "cpu")
        assert out is not net and out["layers"] is not net["layers"]
        assert type(out) is dict
        for i, (a, b) in enumerate(zip(net["layers"], out["layers"])):
            assert a is not b and a.keys() == b.keys()
            for key in a:
                if key in ("weights", "momentum") and i in MOVED:
                    assert b[key] is not a[key]  # a new list, the same arrays
                    assert all(x is y for x, y in zip(a[key], b[key]))
                else:
                    assert b[key] is a[key]
        assert out["meta"] is net["meta"]

    def test_struct_net_stays_a_struct(self):
        net = struct(sample_net())
        out = vl_simplenn_move(net, "cpu")
        assert isinstance(out, Struct) and isinstance(out.layers[0], Struct)
        assert out.layers[0].weights[0] is net.layers[0].weights[0]

    def test_destination_is_case_insensitive(self):
        out = vl_simplenn_move(sample_net(), "CPU")
        assert isinstance(out["layers"][0]["weights"][0], np.ndarray)

    def test_tuple_weights_stay_tuples(self):
        w = np.ones((1, 1, 1, 1), F32)
        out = vl_simplenn_move({"layers": [{"type": "conv", "weights": (w, None)}]}, "cpu")
        assert out["layers"][0]["weights"] == (w, None)

    def test_object_array_weights_from_loadmat(self):
        cell = np.empty((1, 2), dtype=object)
        cell[0, 0], cell[0, 1] = np.ones((2, 2, 1, 1)), np.zeros((1, 1))
        out = vl_simplenn_move({"layers": [{"type": "conv", "weights": cell}]}, "cpu")
        moved = out["layers"][0]["weights"]
        assert moved is not cell and moved.shape == (1, 2) and moved[0, 0] is cell[0, 0]


class TestFakeGpu:
    def test_gpu_moves_exactly_the_parameter_fields(self, fake_cupy):
        net = sample_net()
        before = moved_arrays(net)
        gpu = vl_simplenn_move(net, "gpu")
        after = moved_arrays(gpu)
        for key, host in before.items():
            if host is None:
                assert after[key] is None  # MATLAB's [] stays empty
            else:
                assert isinstance(after[key], FakeCupyArray), key
                assert after[key].host is host
        # every non-None moved value went through cupy.asarray, nothing else did
        assert len(fake_cupy.calls) == sum(v is not None for v in before.values())
        for i in (1, 5, 6, 7):
            for key, value in net["layers"][i].items():
                assert gpu["layers"][i][key] is value
        assert gpu["meta"] is net["meta"]
        # the input net is untouched
        assert all(moved_arrays(net)[key] is value for key, value in before.items())

    def test_round_trip(self, fake_cupy):
        net = sample_net()
        back = vl_simplenn_move(vl_simplenn_move(net, "gpu"), "cpu")
        for key, host in moved_arrays(net).items():
            got = moved_arrays(back)[key]
            if host is None:
                assert got is None
            else:
                assert type(got) is np.ndarray and got.dtype == host.dtype
                np.testing.assert_array_equal(got, host)

    def test_cpu_mixed_net(self, fake_cupy):
        w = np.ones((1, 1, 2, 2), F32)
        net = {"layers": [{"type": "conv", "weights": [FakeCupyArray(w), np.zeros(2, F32)]}]}
        out = vl_simplenn_move(net, "cpu")
        np.testing.assert_array_equal(out["layers"][0]["weights"][0], w)
        assert out["layers"][0]["weights"][1] is net["layers"][0]["weights"][1]

    def test_moving_to_gpu_twice_is_harmless(self, fake_cupy):
        gpu = vl_simplenn_move(sample_net(), "gpu")
        again = vl_simplenn_move(gpu, "gpu")
        assert again["layers"][0]["weights"][0] is gpu["layers"][0]["weights"][0]


class TestErrors:
    def test_gpu_without_cupy(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "cupy", None)  # makes 'import cupy' fail
        with pytest.raises(ImportError, match="needs CuPy"):
            vl_simplenn_move(sample_net(), "gpu")

    @pytest.mark.parametrize("destination", ["tpu", "", "gpu0", None, 1, b"cpu"])
    def test_unknown_destination(self, destination):
        with pytest.raises(ValueError, match="destination"):
            vl_simplenn_move(sample_net(), destination)

    def test_net_without_layers(self):
        with pytest.raises(ValueError, match="layers"):
            vl_simplenn_move({"meta": {}}, "cpu")


def test_real_cupy_round_trip():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as err:  # CUDA driver missing
        pytest.skip(f"CUDA unavailable: {err}")
    net = sample_net()
    gpu = vl_simplenn_move(net, "gpu")
    assert isinstance(gpu["layers"][0]["weights"][0], cupy.ndarray)
    assert isinstance(gpu["layers"][5]["weights"][0], np.ndarray)  # custom: not moved
    back = vl_simplenn_move(gpu, "cpu")
    for key, host in moved_arrays(net).items():
        got = moved_arrays(back)[key]
        if host is None:
            assert got is None
        else:
            assert type(got) is np.ndarray
            np.testing.assert_array_equal(got, host)
