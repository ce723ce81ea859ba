"""simplenn.naming.layer_label: one way to name a layer in every error."""

import doctest

import numpy as np
import pytest

import simplenn.naming
from simplenn import vl_simplenn, vl_simplenn_display, vl_simplenn_tidy
from simplenn.naming import layer_label
from simplenn.struct import Struct


@pytest.mark.parametrize("index, layer, expected", [
    (3, {"type": "conv", "name": "conv2"}, "layer 4 'conv2' (net.layers[3])"),
    (0, {"type": "relu"}, "layer 1 (net.layers[0])"),
    (0, {"name": ""}, "layer 1 (net.layers[0])"),
    (2, {"name": None}, "layer 3 (net.layers[2])"),
    (2, {"name": np.ones(1)}, "layer 3 (net.layers[2])"),
    (9, Struct(name="fc8"), "layer 10 'fc8' (net.layers[9])"),
    (1, type("Rec", (), {"name": "x1"})(), "layer 2 'x1' (net.layers[1])"),
    (4, None, "layer 5 (net.layers[4])"),
    (4, "relu", "layer 5 (net.layers[4])"),
])
def test_layer_label(index, layer, expected):
    assert layer_label(index, layer) == expected


def _net(bad):
    conv = {"type": "conv", "name": "conv1",
            "weights": [np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)]}
    return {"layers": [conv, {"type": "relu", "name": "relu1"}, {"type": "relu"}, bad]}


@pytest.mark.parametrize("call, bad", [
    (lambda net: vl_simplenn(net, np.ones((4, 4, 1, 1), np.float32)),
     {"type": "pool", "name": "conv2", "method": "max"}),                # no 'pool'
    (vl_simplenn_tidy, {"name": "conv2"}),                                # no 'type'
    (lambda net: vl_simplenn_display(net, print=False),
     {"type": "pool", "name": "conv2", "pool": [1, 2, 3]}),              # a bad pool size
])
def test_every_simplenn_function_names_the_layer_the_same_way(call, bad):
    with pytest.raises(ValueError, match=r"layer 4 'conv2' \(net\.layers\[3\]\)"):
        call(_net(bad))


def test_docstring_examples():
    result = doctest.testmod(simplenn.naming)
    assert result.attempted > 0 and result.failed == 0
