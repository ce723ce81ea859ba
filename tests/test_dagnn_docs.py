"""MatConvNet's documented DagNN (and SimpleNN) snippets, ported line by line.

Each test is one snippet of MatConvNet's documentation at commit 1e5ae7b7
(doc/site/docs/wrappers.md, quick.md, examples/fast_rcnn/fast_rcnn_init.m and
fast_rcnn_demo.m), written as a new user would port it with README.md's
"Porting from MatConvNet" table: the MATLAB line sits in a comment above its
Python port. Each checks the wrapper's numbers (forward and derivatives)
against the vlnn blocks composed by hand. Shapes are small where the
documentation's own shapes would be slow; the documentation's shapes are
kept where they are cheap.

Where a line cannot port as written, the test says why next to the line
(``# PORT:``).
"""

import sys

import numpy as np
import pytest

import dagnn
from simplenn import load_net, save_net, struct, vl_simplenn, vl_simplenn_tidy
from test_dagnn import LossSmoothL1  # examples/fast_rcnn/+dagnn/LossSmoothL1.m, ported
from vlnn import (vl_argparse, vl_nnconv, vl_nnloss, vl_nnpool, vl_nnrelu, vl_nnroipool,
                  vl_nnsoftmax)

RNG = np.random.default_rng(20261203)


def randn(*shape):
    """MATLAB's ``randn(shape..., 'single')``."""
    return RNG.standard_normal(shape).astype(np.float32)


def close(a, b, rtol=1e-4, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------
# wrappers.md, "SimpleNN wrapper"

def test_wrappers_simplenn_conv_relu_forward_and_backward():
    net = struct({"layers": []})
    # net.layers{1} = struct('name', 'conv1', 'type', 'conv', ...
    #     'weights', {{randn(10,10,3,2,'single'), randn(2,1,'single')}}, 'pad', 0, 'stride', 1) ;
    net.layers.append(struct({"name": "conv1", "type": "conv",
                              "weights": [randn(10, 10, 3, 2), randn(2, 1)],
                              "pad": 0, "stride": 1}))
    # net.layers{2} = struct('name', 'relu1', 'type', 'relu') ;
    net.layers.append(struct({"name": "relu1", "type": "relu"}))

    # data = randn(300, 500, 3, 5, 'single') ;   (smaller here: the suite stays fast)
    data = randn(30, 50, 3, 5)
    # res = vl_simplenn(net, data) ;
    res = vl_simplenn(net, data)
    # res: 1x3 struct array with fields x dzdx dzdw aux time backwardTime
    assert len(res) == 3
    for field in ("x", "dzdx", "dzdw", "aux", "time", "backwardTime"):
        assert hasattr(res[0], field), field
    # res(1).x is the input of the CNN and res(3).x its output
    w, b = net.layers[0].weights
    y = vl_nnrelu(vl_nnconv(data, w, b, pad=0, stride=1))
    assert res[0].x is data or np.array_equal(res[0].x, data)
    close(res[2].x, y)

    # res = vl_simplenn(res, data, dzdy)     (the documentation's typo: net, not res)
    dzdy = randn(*res[2].x.shape)
    res = vl_simplenn(net, data, dzdy)
    dconv = vl_nnrelu(vl_nnconv(data, w, b), dzdy)
    dx, dw, db = vl_nnconv(data, w, b, dconv)
    close(res[2].x, y)
    close(res[0].dzdx, dx)
    close(res[0].dzdw[0], dw)
    close(res[0].dzdw[1], db)
    assert res[0].dzdw[1].shape == b.shape


# ---------------------------------------------------------------------------
# wrappers.md, "DagNN wrapper"

def _wrappers_net():
    # net = dagnn.DagNN() ;
    net = dagnn.DagNN()
    # convBlock = dagnn.Conv('size', [3 3 256 16], 'hasBias', true) ;
    convBlock = dagnn.Conv("size", [3, 3, 256, 16], "hasBias", True)
    # net.addLayer('conv1', convBlock, {'x1'}, {'x2'}, {'filters', 'biases'}) ;
    net.addLayer("conv1", convBlock, ["x1"], ["x2"], ["filters", "biases"])
    # reluBlock = dagnn.ReLU() ;
    reluBlock = dagnn.ReLU()
    # net.addLayer('relu1', reluBlock, {'x2'}, {'x3'}, {}) ;
    net.addLayer("relu1", reluBlock, ["x2"], ["x3"], [])
    return net


def test_wrappers_dagnn_is_a_handle():
    net = dagnn.DagNN()
    # net2 = net ; % both net and net2 refer to the same object
    net2 = net
    net2.addLayer("relu1", dagnn.ReLU(), ["x2"], ["x3"], [])
    assert len(net.layers) == 1 and net.layers[0].name == "relu1"


def test_wrappers_dagnn_records_as_documented():
    net = _wrappers_net()
    # >> net.layers(1)
    layer = net.layers[0]
    assert layer.name == "conv1"
    assert list(layer.inputs) == ["x1"] and list(layer.outputs) == ["x2"]
    assert list(layer.params) == ["filters", "biases"]
    # inputIndexes: 1, outputIndexes: 2, paramIndexes: [1 2]   (0-based here)
    assert list(layer.inputIndexes) == [0] and list(layer.outputIndexes) == [1]
    assert list(layer.paramIndexes) == [0, 1]
    assert isinstance(layer.block, dagnn.Conv)
    assert layer.block is net.layers[0].block  # the block object itself
    # >> net.vars(1)
    v = net.vars[0]
    assert (v.name, v.value, v.der, v.fanin, v.fanout, bool(v.precious)) == \
        ("x1", None, None, 0, 1, False)
    # >> net.params(1)
    p = net.params[0]
    assert (p.name, p.value, p.der, p.fanout, p.learningRate, p.weightDecay) == \
        ("filters", None, None, 1, 1, 1)
    # outputs are the variables with null fanout
    assert [v.name for v in net.vars if v.fanout == 0] == ["x3"] == list(net.getOutputs())
    assert list(net.getInputs()) == ["x1"]


def test_wrappers_dagnn_eval_and_derivatives():
    net = _wrappers_net()
    # net.initParams() ;
    net.initParams()
    # net.params(1).value should now contain a 3x3x256x16 array
    assert net.params[0].value.shape == (3, 3, 256, 16)
    assert net.params[0].value.dtype == np.float32
    assert net.params[1].value.size == 16

    # input = randn(10,15,256,1,'single') ;
    input = randn(10, 15, 256, 1)
    # net.eval({'x1', input}) ;
    net.eval(["x1", input])
    # i = net.getVarIndex('x3') ;
    i = net.getVarIndex("x3")
    # output = net.vars(i).value ;
    output = net.vars[i].value
    filters, biases = net.params[0].value, net.params[1].value
    expected = vl_nnrelu(vl_nnconv(input, filters, biases))
    assert output.shape == (8, 13, 16, 1) and output.dtype == np.float32
    close(output, expected)

    # dzdy = randn(size(output), 'single') ; % projection vector
    dzdy = randn(*output.shape)
    # net.eval({'x1',input},{'x3',dzdy}) ;
    net.eval(["x1", input], ["x3", dzdy])
    # p = net.getParamIndex('filters') ;
    p = net.getParamIndex("filters")
    # dzdfilters = net.vars(p).der ;
    # PORT: the documentation reads net.vars(p).der, which is the derivative of
    # the variable x1 (vars(1)), not of the filters; net.params(p).der is meant.
    dzdfilters = net.params[p].der
    dx, dw, db = vl_nnconv(input, filters, biases, vl_nnrelu(vl_nnconv(input, filters, biases),
                                                             dzdy))
    close(dzdfilters, dw, rtol=1e-3, atol=1e-3)
    close(net.params[net.getParamIndex("biases")].der, db, rtol=1e-3, atol=1e-3)
    assert net.params[1].der.shape == biases.shape
    # as written, net.vars(p).der: the input's derivative, kept by MatConvNet too
    close(net.vars[p].der, dx, rtol=1e-3, atol=1e-3)


def test_wrappers_dagnn_remark_conserve_memory_and_precious():
    net = _wrappers_net()
    net.initParams()
    input = randn(5, 6, 256, 2)
    net.eval(["x1", input])
    # intermediate values are discarded by default ...
    assert net.vars[net.getVarIndex("x2")].value is None
    # net.vars(i).precious = true ;
    i = net.getVarIndex("x2")
    net.vars[i].precious = True
    net.eval(["x1", input])
    conv = vl_nnconv(input, net.params[0].value, net.params[1].value)
    close(net.vars[i].value, conv)
    net.vars[i].precious = False
    # net.conserveMemory = false ;
    net.conserveMemory = False
    dzdy = randn(3, 4, 16, 2)
    net.eval(["x1", input], ["x3", dzdy])
    close(net.vars[i].value, conv)
    close(net.vars[i].der, vl_nnrelu(conv, dzdy))
    close(net.vars[net.getVarIndex("x3")].der, dzdy)


def test_wrappers_dagnn_saveobj_loadobj(tmp_path):
    net = _wrappers_net()
    net.initParams()
    input = randn(5, 6, 256, 1)
    net.eval(["x1", input])
    before = net.vars[net.getVarIndex("x3")].value

    # netStruct = net.saveobj() ;
    netStruct = net.saveobj()
    # save('myfile.mat', '-struct', 'netStruct') ;
    # PORT: MATLAB's save of a struct is dagnn.save_net (it writes saveobj's form)
    path = str(tmp_path / "myfile.mat")
    dagnn.save_net(path, net)
    # clear netStruct ;
    del netStruct
    # netStruct = load('myfile.mat') ;
    # net = dagnn.DagNN.loadobj(netStruct) ;
    # PORT: there is no MATLAB-style load(); loadobj takes the file's path
    net = dagnn.DagNN.loadobj(path)
    # the transient state (the variables' values) is lost, the parameters are not
    assert all(v.value is None for v in net.vars)
    assert net.params[0].value.shape == (3, 3, 256, 16)
    net.eval(["x1", input])
    close(net.vars[net.getVarIndex("x3")].value, before, rtol=1e-6, atol=1e-6)

    # loadobj of the in-memory saveobj form, as MATLAB's loadobj(saveobj) does
    net2 = dagnn.DagNN.loadobj(net.saveobj())
    net2.eval(["x1", input])
    close(net2.vars[net2.getVarIndex("x3")].value, before, rtol=1e-6, atol=1e-6)


def test_wrappers_dagnn_raw_loadmat_output_gets_a_clear_message(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    net = _wrappers_net()
    net.initParams()
    path = str(tmp_path / "myfile.mat")
    dagnn.save_net(path, net)
    # net = dagnn.DagNN.loadobj(load('myfile.mat')) with scipy's loadmat as `load`
    with pytest.raises(TypeError, match="pass the file's path instead"):
        dagnn.DagNN.loadobj(scipy_io.loadmat(path))


def test_eval_errors_name_the_layer():
    """A block's error inside eval says which layer raised it, forward and backward."""
    net = _wrappers_net()
    net.initParams()
    input = randn(5, 6, 256, 1)
    with pytest.raises(ValueError) as info:
        net.eval(["x1", input.astype(np.float64)])
    if sys.version_info >= (3, 11):
        assert info.value.__notes__ == [
            "in DagNN.eval, forward of layer 'conv1' (dagnn.Conv, inputs: x1)"]
    # dzdy = randn(size(output)) of the wrong size
    with pytest.raises(ValueError, match="dzdy") as info:
        net.eval(["x1", input], ["x3", randn(3, 4, 15, 1)])
    if sys.version_info >= (3, 11):
        assert info.value.__notes__ == [
            "in DagNN.eval, backward of layer 'relu1' (dagnn.ReLU, inputs: x2)"]
