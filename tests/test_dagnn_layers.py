"""Tests of the DagNN layer classes (``dagnn/layers.py`` and the family
modules; MatConvNet's ``matlab/+dagnn/*.m``, MATCONVNET_SEMANTICS.md 36.3).

One table of sample blocks (PyTorch OpInfo style) drives the generic checks:
forward against the ``vlnn`` block (or a plain numpy expression for what
MatConvNet computes inside the class: Sum, Scale, Crop, the grid
generators), backward against central differences in float64,
``getOutputSizes`` against the real output shape, ``getParamSizes``
against ``initParams``, ``save`` -> ``load`` round trips and the three
constructor forms.  Blocks run standalone; those that read the net's mode
get a stand-in net.
"""

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

import vlnn.dropout
from _checks import check_derivative, rng
from dagnn import layers as L
from dagnn.layer import Layer, layer_class
from simplenn.struct import Struct
from vlnn import (vl_nnbilinearsampler, vl_nnbnorm, vl_nnconcat, vl_nnconv, vl_nnconvt,
                  vl_nndropout, vl_nnloss, vl_nnnoffset, vl_nnnormalize, vl_nnpdist, vl_nnpool,
                  vl_nnrelu, vl_nnroipool, vl_nnsigmoid, vl_nnsoftmax, vl_nnspnorm)


def randn(shape, seed):
    return rng(seed).standard_normal(shape)


def shape4(shape):
    return list(shape) + [1] * (4 - len(shape))


class StandInNet:
    """What a block reads from its net outside the evaluation drivers."""

    def __init__(self, mode="normal"):
        self.mode = mode


@dataclass
class Sample:
    name: str
    make: Callable                 # -> block
    inputs: list
    params: list
    reference: Callable            # (inputs, params) -> list of outputs
    diff_inputs: tuple = (0,)      # inputs whose derivative is checked
    diff_params: tuple = ()        # params whose derivative is checked
    mode: str = "normal"
    constructor: tuple = ()        # MATLAB-style pairs that build the block
    kwargs: dict = field(default_factory=dict)

    def block(self):
        b = self.make()
        object.__setattr__(b, "net", StandInNet(self.mode))
        return b


def _pairs(*pairs):
    """A sample whose block is built from MATLAB pairs ``cls(*pairs)``."""
    return pairs


X = randn((5, 6, 3, 2), 1)
ROIS = np.array([[1, 1, 1, 5, 4], [2, 2, 3, 6, 5], [1, 3, 2, 4, 5]], np.float64).T
MASK = vl_nndropout(X, rate=0.5, rng=3)[1]
LABELS = np.array([1, 3, 4], np.float64).reshape(1, 1, 1, 3)
IWEIGHTS = np.array([1.0, 0.5, 2.0]).reshape(1, 1, 1, 3)
DENSE_LABELS = rng(4).integers(1, 5, (2, 3, 1, 2)).astype(np.float64)


def ref_scale(inputs, params, has_bias=True):
    x, a = inputs[0], (list(inputs) + list(params))[1]
    y = x * a.reshape(1, 1, -1, 1)
    if has_bias:
        y = y + (list(inputs) + list(params))[2].reshape(1, 1, -1, 1)
    return [y]


def ref_crop(inputs, base):
    x, other = inputs
    dv, du = x.shape[0] - other.shape[0], x.shape[1] - other.shape[1]
    top = dv - max(0, dv - base[0])
    left = du - max(0, du - base[1])
    return [x[top:top + other.shape[0], left:left + other.shape[1]]]


def ref_affine(inputs, ho, wo):
    """Each grid point from the six numbers c1..c6 of its image
    (A = reshape(c, 2, 3), column-major), written out point by point."""
    a = inputs[0]
    n = a.shape[3]
    u, v = np.linspace(-1, 1, ho), np.linspace(-1, 1, wo)
    g = np.empty((2, ho, wo, n))
    for b in range(n):
        c = a[0, 0, :, b]
        for i in range(ho):
            for j in range(wo):
                g[0, i, j, b] = u[i] * c[0] + v[j] * c[1] + c[4]
                g[1, i, j, b] = u[i] * c[2] + v[j] * c[3] + c[5]
    return [g]


def ref_uniform(inputs, ho, wo):
    t = inputs[0]
    n = t.shape[3]
    u, v = np.linspace(-1, 1, ho), np.linspace(-1, 1, wo)
    g = np.empty((2, ho, wo, n))
    for b in range(n):
        s, ty, tx = t[0, 0, :, b]
        for i in range(ho):
            for j in range(wo):
                g[:, i, j, b] = [s * u[i] + ty, s * v[j] + tx]
    return [g]


W33 = randn((3, 3, 3, 4), 2)
B4 = randn((4, 1), 3)
BN_G, BN_B = randn((3, 1), 5), randn((3, 1), 6)
BN_M = np.abs(randn((3, 2), 7)) + 0.5

SAMPLES = [
    Sample("Conv", lambda: L.Conv("size", [3, 3, 3, 4], "pad", 1, "stride", 2),
           [X], [W33, B4],
           lambda i, p: [vl_nnconv(i[0], p[0], p[1], pad=1, stride=2)],
           diff_params=(0, 1), constructor=("size", [3, 3, 3, 4], "pad", 1, "stride", 2)),
    Sample("Conv-dilate-nobias", lambda: L.Conv(size=[3, 3, 3, 4], dilate=2, pad=[2, 1],
                                                hasBias=False),
           [X], [W33],
           lambda i, p: [vl_nnconv(i[0], p[0], None, pad=[2, 2, 1, 1], dilate=2)],
           diff_params=(0,), constructor=("size", [3, 3, 3, 4], "dilate", 2, "pad", [2, 1],
                                          "hasBias", False)),
    Sample("ConvTranspose", lambda: L.ConvTranspose("size", [3, 3, 2, 3], "upsample", 2,
                                                    "crop", [1, 0, 1, 0]),
           [X], [randn((3, 3, 2, 3), 8), randn((2, 1), 9)],
           lambda i, p: [vl_nnconvt(i[0], p[0], p[1], upsample=2, crop=[1, 0, 1, 0])],
           diff_params=(0, 1), constructor=("size", [3, 3, 2, 3], "upsample", 2,
                                            "crop", [1, 0, 1, 0])),
    Sample("ConvTranspose-groups", lambda: L.ConvTranspose(size=[2, 2, 2, 3], upsample=[2, 1],
                                                           numGroups=3),
           [X], [randn((2, 2, 2, 3), 10), randn((6, 1), 11)],
           lambda i, p: [vl_nnconvt(i[0], p[0], p[1], upsample=[2, 1], numGroups=3)],
           diff_params=(0, 1), constructor=("size", [2, 2, 2, 3], "upsample", [2, 1],
                                            "numGroups", 3)),
    Sample("Pooling-max", lambda: L.Pooling("poolSize", [3, 2], "stride", 2, "pad", [1, 1, 0, 1]),
           [X], [], lambda i, p: [vl_nnpool(i[0], [3, 2], stride=2, pad=[1, 1, 0, 1])],
           constructor=("poolSize", [3, 2], "stride", 2, "pad", [1, 1, 0, 1])),
    Sample("Pooling-avg", lambda: L.Pooling(poolSize=3, method="avg", pad=1),
           [X], [], lambda i, p: [vl_nnpool(i[0], 3, method="avg", pad=1)],
           constructor=("poolSize", 3, "method", "avg", "pad", 1)),
    Sample("ReLU", lambda: L.ReLU("leak", 0.1), [X], [],
           lambda i, p: [vl_nnrelu(i[0], leak=0.1)], constructor=("leak", 0.1)),
    Sample("Sigmoid", L.Sigmoid, [X], [], lambda i, p: [vl_nnsigmoid(i[0])]),
    Sample("SoftMax", L.SoftMax, [X], [], lambda i, p: [vl_nnsoftmax(i[0])]),
    Sample("LRN", lambda: L.LRN("param", [3, 2, 0.5, 0.75]), [X], [],
           lambda i, p: [vl_nnnormalize(i[0], [3, 2, 0.5, 0.75])],
           constructor=("param", [3, 2, 0.5, 0.75])),
    Sample("NormOffset", L.NormOffset, [X], [], lambda i, p: [vl_nnnoffset(i[0], [1, 0.5])]),
    Sample("SpatialNorm", L.SpatialNorm, [X], [],
           lambda i, p: [vl_nnspnorm(i[0], [2, 2, 10, 2])]),
    Sample("DropOut-frozen", lambda: L.DropOut("rate", 0.5, "frozen", True, "mask", MASK),
           [X], [], lambda i, p: [MASK * i[0]]),
    Sample("DropOut-test", lambda: L.DropOut("rate", 0.3), [X], [], lambda i, p: [i[0]],
           mode="test", constructor=("rate", 0.3)),
    Sample("BatchNorm", lambda: L.BatchNorm("numChannels", 3), [X], [BN_G, BN_B, BN_M],
           lambda i, p: [vl_nnbnorm(i[0], p[0], p[1], epsilon=1e-5)],
           diff_params=(0, 1), constructor=("numChannels", 3)),
    Sample("BatchNorm-test", lambda: L.BatchNorm(numChannels=3, epsilon=1e-3),
           [X], [BN_G, BN_B, BN_M],
           lambda i, p: [vl_nnbnorm(i[0], p[0], p[1], moments=p[2])],
           diff_inputs=(), mode="test", constructor=("numChannels", 3, "epsilon", 1e-3)),
    Sample("Loss-softmaxlog", L.Loss, [randn((1, 1, 4, 3), 12), LABELS], [],
           lambda i, p: [vl_nnloss(i[0], i[1])]),
    Sample("Loss-dense-log", lambda: L.Loss("loss", "log"),
           [np.abs(randn((2, 3, 4, 2), 13)) + 0.1, DENSE_LABELS], [],
           lambda i, p: [vl_nnloss(i[0], i[1], loss="log")], constructor=("loss", "log")),
    Sample("Loss-opts", lambda: L.Loss(loss="mshinge", opts=["instanceWeights",
                                                             IWEIGHTS]),
           [randn((1, 1, 4, 3), 14), LABELS], [],
           lambda i, p: [vl_nnloss(i[0], i[1], loss="mshinge",
                                   instanceWeights=IWEIGHTS)],
           constructor=("loss", "mshinge", "opts", ["instanceWeights", IWEIGHTS])),
    Sample("PDist", lambda: L.PDist("p", 1.5, "noRoot", True),
           [X, randn(X.shape, 15)], [],
           lambda i, p: [vl_nnpdist(i[0], i[1], 1.5, noRoot=True, aggregate=True)],
           diff_inputs=(0, 1), constructor=("p", 1.5, "noRoot", True)),
    Sample("PDist-weights", lambda: L.PDist(aggregate=False),
           [X, randn(X.shape, 16), np.abs(randn((5, 6, 1, 2), 17))], [],
           lambda i, p: [vl_nnpdist(i[0], i[1], 2, instanceWeights=i[2])],
           diff_inputs=(0, 1), constructor=("aggregate", False)),
    Sample("Concat", L.Concat, [X, randn((5, 6, 2, 2), 18)], [],
           lambda i, p: [np.concatenate(i, axis=2)], diff_inputs=(0, 1)),
    Sample("Concat-dim1", lambda: L.Concat("dim", 1), [X, randn((2, 6, 3, 2), 19)], [],
           lambda i, p: [np.concatenate(i, axis=0)], diff_inputs=(0, 1),
           constructor=("dim", 1)),
    Sample("Sum", L.Sum, [X, randn(X.shape, 20), randn(X.shape, 21)], [],
           lambda i, p: [i[0] + i[1] + i[2]], diff_inputs=(0, 1, 2)),
    Sample("Crop", lambda: L.Crop("crop", [1, 2]), [randn((7, 8, 3, 2), 22), X], [],
           lambda i, p: ref_crop(i, [1, 2]), constructor=("crop", [1, 2])),
    Sample("Crop-base-too-large", lambda: L.Crop(crop=[5, 0]), [randn((7, 8, 3, 2), 23), X], [],
           lambda i, p: ref_crop(i, [5, 0]), constructor=("crop", [5, 0])),
    Sample("Scale", lambda: L.Scale("size", [1, 1, 3]), [X], [randn((1, 1, 3), 24),
                                                                randn((1, 1, 3), 25)],
           lambda i, p: ref_scale(i, p), diff_params=(0, 1), constructor=("size", [1, 1, 3])),
    Sample("Scale-input-scale-nobias", lambda: L.Scale(size=[1, 1, 3], hasBias=False),
           [X, randn((1, 1, 3), 26)], [], lambda i, p: ref_scale(i, p, has_bias=False),
           diff_inputs=(0, 1), constructor=("size", [1, 1, 3], "hasBias", False)),
    Sample("BilinearSampler", L.BilinearSampler,
           [X, np.clip(randn((2, 3, 4, 2), 27) * 0.6, -0.95, 0.95)], [],
           lambda i, p: [vl_nnbilinearsampler(i[0], i[1])], diff_inputs=(0, 1)),
    Sample("ROIPooling", lambda: L.ROIPooling("subdivisions", [2, 3], "method", "avg"),
           [X, ROIS], [],
           lambda i, p: [vl_nnroipool(i[0], i[1], subdivisions=[2, 3], method="avg")],
           constructor=("subdivisions", [2, 3], "method", "avg")),
    Sample("ROIPooling-flatten", lambda: L.ROIPooling(subdivisions=[2, 2], flatten=True,
                                                      transform=0.5),
           [X, ROIS * np.array([[1], [2], [2], [2], [2]])], [],
           lambda i, p: [vl_nnroipool(i[0], i[1], subdivisions=2, transform=0.5)
                         .reshape((1, 1, -1, 3), order="F")],
           constructor=("subdivisions", [2, 2], "flatten", True, "transform", 0.5)),
    Sample("AffineGridGenerator", lambda: L.AffineGridGenerator("Ho", 3, "Wo", 4),
           [randn((1, 1, 6, 2), 28)], [], lambda i, p: ref_affine(i, 3, 4),
           constructor=("Ho", 3, "Wo", 4)),
    Sample("UniformScalingGridGenerator",
           lambda: L.UniformScalingGridGenerator("Ho", 4, "Wo", 3),
           [randn((1, 1, 3, 2), 29)], [], lambda i, p: ref_uniform(i, 4, 3),
           constructor=("Ho", 4, "Wo", 3)),
]

IDS = [s.name for s in SAMPLES]


# ---------------------------------------------------------------------------
# the generic checks


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_forward_matches_reference(sample):
    outputs = sample.block().forward(sample.inputs, sample.params)
    expected = sample.reference(sample.inputs, sample.params)
    assert len(outputs) == len(expected)
    for y, e in zip(outputs, expected):
        np.testing.assert_allclose(np.asarray(y), np.asarray(e).reshape(np.shape(y)),
                                   rtol=1e-12, atol=1e-12)
        assert np.shape(y) == np.shape(e) or shape4(np.shape(y)) == shape4(np.shape(e))


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_backward_matches_numerical_derivatives(sample):
    block = sample.block()
    outputs = block.forward(sample.inputs, sample.params)
    projections = [randn(np.shape(y), 40 + k) for k, y in enumerate(outputs)]
    der_inputs, der_params = block.backward(sample.inputs, sample.params, projections)
    assert len(der_inputs) == len(sample.inputs)

    def through(replace_input, index):
        def f(z):
            inputs, params = list(sample.inputs), list(sample.params)
            if replace_input:
                inputs[index] = z
            else:
                params[index] = z
            return sample.block().forward(inputs, params)[0]
        return f

    for i in sample.diff_inputs:
        check_derivative(through(True, i), sample.inputs[i], der_inputs[i], projections[0])
    for i in sample.diff_params:
        check_derivative(through(False, i), sample.params[i], der_params[i], projections[0])
    # the inputs that MatConvNet gives no derivative get None (MATLAB's [])
    for i in set(range(len(sample.inputs))) - set(sample.diff_inputs):
        if sample.mode != "test" and not sample.name.startswith("BatchNorm"):
            assert der_inputs[i] is None, (sample.name, i)


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_output_sizes_match_the_real_output(sample):
    block = sample.block()
    outputs = block.forward(sample.inputs, sample.params)
    sizes = block.getOutputSizes([shape4(np.shape(a)) for a in sample.inputs])
    if isinstance(block, L.Loss):
        # MatConvNet's Loss (and PDist) report 1 x 1 x 1 x N whatever the
        # output is (a scalar, or PDist's per-element distances)
        assert sizes == [[1, 1, 1, shape4(np.shape(sample.inputs[0]))[3]]]
        return
    assert sizes[0] == shape4(np.shape(outputs[0]))
    assert all(isinstance(v, int) for v in sizes[0])


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_save_load_round_trip(sample):
    block = sample.make()
    saved = block.save()
    assert set(saved) == set(type(block).properties())
    again = type(block)().load(saved)
    assert _same(again.save(), saved)
    # transient properties are never saved
    assert not set(saved) & set(type(block).transient_properties())
    # the loader finds the class by MatConvNet's name
    assert layer_class(block.type_name()) is type(block)


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.constructor], ids=lambda s: s.name)
def test_constructor_forms_agree(sample):
    cls = type(sample.make())
    pairs = sample.constructor
    from_pairs = cls(*pairs)
    from_list = cls(list(pairs))
    from_keywords = cls(**dict(zip(pairs[0::2], pairs[1::2])))
    from_mapping = cls(dict(zip(pairs[0::2], pairs[1::2])))
    for other in (from_list, from_keywords, from_mapping):
        assert _same(other.save(), from_pairs.save())
    # and the values were applied (not just defaults everywhere)
    assert not _same(from_pairs.save(), cls().save())


@pytest.mark.parametrize("cls", [getattr(L, name) for name in L.__all__], ids=L.__all__)
def test_unknown_property_is_an_error_naming_it_and_the_class(cls):
    with pytest.raises(ValueError, match=r"No property `bogus` for a layer of type "
                                         rf"`dagnn\.{cls.__name__}`"):
        cls("bogus", 1)
    with pytest.raises(ValueError, match="No property `bogus`"):
        cls(bogus=1)


def _same(a, b):
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and not isinstance(b, np.ndarray):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and \
            all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return type(a) is type(b) and a == b


def test_every_matconvnet_class_is_exported():
    names = {"Layer", "ElementWise", "Filter", "Conv", "ConvTranspose", "Pooling", "ReLU",
             "Sigmoid", "SoftMax", "LRN", "BatchNorm", "NormOffset", "SpatialNorm", "DropOut",
             "Loss", "Concat", "Sum", "Crop", "Scale", "BilinearSampler", "ROIPooling", "PDist",
             "AffineGridGenerator", "UniformScalingGridGenerator"}
    assert set(L.__all__) == names
    for name in names - {"Layer", "ElementWise", "Filter"}:
        assert issubclass(getattr(L, name), Layer)
    assert issubclass(L.Conv, L.Filter) and issubclass(L.Pooling, L.Filter)
    assert issubclass(L.PDist, L.Loss) and issubclass(L.BatchNorm, L.ElementWise)


# ---------------------------------------------------------------------------
# properties: MatConvNet's defaults and setters


def test_defaults_are_matconvnets():
    assert L.Conv().save() == Struct(pad=[0, 0, 0, 0], stride=[1, 1], dilate=[1, 1],
                                     size=[0, 0, 0, 0], hasBias=True, opts=["cuDNN"])
    assert L.ConvTranspose().save() == Struct(size=[0, 0, 0, 0], hasBias=True, upsample=[1, 1],
                                              crop=[0, 0, 0, 0], numGroups=1, opts=["cuDNN"])
    assert L.Pooling().save() == Struct(pad=[0, 0, 0, 0], stride=[1, 1], dilate=[1, 1],
                                        method="max", poolSize=[1, 1], opts=["cuDNN"])
    assert L.ReLU().save() == Struct(useShortCircuit=True, leak=0, opts=[])
    assert L.LRN().param == [5, 1, 0.0001 / 5, 0.75]
    assert L.BatchNorm().save() == Struct(numChannels=None, epsilon=1e-5, opts=["NoCuDNN"])
    assert L.DropOut().save() == Struct(rate=0.5, frozen=False)
    assert L.Loss().save() == Struct(loss="softmaxlog", ignoreAverage=False, normalise=True,
                                     opts=[])
    assert (L.Loss().average, L.Loss().numAveraged) == (0, 0)
    assert L.PDist().save() == Struct(loss="pdist", ignoreAverage=False, normalise=True, opts=[],
                                      p=2, aggregate=True, noRoot=False, epsilon=1e-6)
    assert L.Concat().save() == Struct(dim=3)
    assert L.Crop().save() == Struct(crop=[0, 0])
    assert L.Scale().save() == Struct(size=None, hasBias=True)
    assert L.ROIPooling().save() == Struct(method="max", subdivisions=[6, 6], transform=1,
                                           flatten=False)
    assert L.AffineGridGenerator().save() == Struct(Ho=0, Wo=0)
    assert L.Sum().save() == Struct() and L.SoftMax().save() == Struct()


def test_filter_setters_expand_scalars_and_pairs():
    conv = L.Conv("pad", 2, "stride", 3, "dilate", 2)
    assert (conv.pad, conv.stride, conv.dilate) == ([2, 2, 2, 2], [3, 3], [2, 2])
    conv.pad = [1, 2]                 # MATLAB's pad([1 1 2 2])
    assert conv.pad == [1, 1, 2, 2]
    conv.pad = np.array([[1.0, 2.0, 3.0, 4.0]])   # as read from a .mat file
    assert conv.pad == [1, 2, 3, 4] and all(type(v) is int for v in conv.pad)
    conv.size = [3, 3]                # padded with ones to four elements
    assert conv.size == [3, 3, 1, 1]
    convt = L.ConvTranspose("crop", [1, 2], "upsample", 2, "size", [4, 4, 3])
    assert (convt.crop, convt.upsample, convt.size) == ([1, 1, 2, 2], [2, 2], [4, 4, 3, 1])


def test_pdist_constructor_forces_its_loss():
    assert L.PDist("loss", "softmaxlog").loss == "pdist"


def test_concat_accepts_the_old_numInputs_field():
    assert L.Concat("dim", 4, "numInputs", 3).save() == Struct(dim=4)
    assert L.Concat().load(Struct(dim=2, numInputs=2)).dim == 2


# ---------------------------------------------------------------------------
# parameters


INIT_CASES = [
    (lambda: L.Conv("size", [3, 2, 4, 5]), [(3, 2, 4, 5), (5, 1)]),
    (lambda: L.Conv("size", [1, 1, 6, 2], "hasBias", False), [(1, 1, 6, 2)]),
    (lambda: L.ConvTranspose("size", [4, 4, 3, 2]), [(4, 4, 3, 2), (3, 1)]),
    (lambda: L.ConvTranspose("size", [4, 4, 3, 2], "numGroups", 2), [(4, 4, 3, 2), (6, 1)]),
    (lambda: L.BatchNorm("numChannels", 7), [(7, 1), (7, 1), (7, 2)]),
    (lambda: L.Scale("size", [1, 1, 4]), [(1, 1, 4), (1, 1, 4)]),
]


@pytest.mark.parametrize("make, shapes", INIT_CASES)
def test_init_params_shapes_match_getParamSizes(make, shapes):
    block = make()
    params = block.initParams()
    assert [p.shape for p in params] == shapes
    assert all(p.dtype == np.float32 for p in params)
    assert [tuple(s) for s in block.getParamSizes()] == shapes


def test_conv_init_is_scaled_randn_from_the_blocks_generator(monkeypatch):
    monkeypatch.setattr(vlnn.dropout, "DEFAULT_RNG", np.random.default_rng(5))
    w, b = L.Conv("size", [3, 2, 4, 5]).initParams()
    expected = np.random.default_rng(5).standard_normal((3, 2, 4, 5), dtype=np.float32) \
        * np.float32(np.sqrt(2 / (3 * 2 * 4)))
    np.testing.assert_array_equal(w, expected)
    np.testing.assert_array_equal(b, np.zeros((5, 1), np.float32))
    monkeypatch.setattr(vlnn.dropout, "DEFAULT_RNG", np.random.default_rng(6))
    w, b = L.ConvTranspose("size", [3, 2, 4, 5]).initParams()
    expected = np.random.default_rng(6).standard_normal((3, 2, 4, 5), dtype=np.float32) \
        * np.float32(np.sqrt(2 / (3 * 2 * 5)))
    np.testing.assert_array_equal(w, expected)


def test_batchnorm_and_scale_init_are_identity_maps():
    g, b, m = L.BatchNorm("numChannels", 3).initParams()
    assert np.all(g == 1) and np.all(b == 0) and np.all(m == 0)
    a, c = L.Scale("size", [1, 1, 3]).initParams()
    assert np.all(a == 1) and np.all(c == 0)


# ---------------------------------------------------------------------------
# modes and internal state


def test_dropout_draws_a_mask_keeps_it_for_backward_and_reset_clears_it():
    block = L.DropOut("rate", 0.25)
    y = block.forward([X], [])[0]
    mask = block.mask
    assert mask.shape == X.shape and set(np.unique(mask)) <= {0.0, 1 / 0.75}
    np.testing.assert_array_equal(y, mask * X)
    dy = randn(X.shape, 50)
    np.testing.assert_array_equal(block.backward([X], [], [dy])[0][0], mask * dy)
    block.frozen = True
    np.testing.assert_array_equal(block.forward([2 * X], [])[0], mask * 2 * X)
    block.reset()
    assert block.mask is None and block.frozen is False
    assert "mask" not in block.save()


def test_dropout_is_the_identity_in_test_mode():
    block = L.DropOut()
    object.__setattr__(block, "net", StandInNet("test"))
    assert block.forward([X], [])[0] is X
    dy = randn(X.shape, 51)
    assert block.backward([X], [], [dy])[0][0] is dy
    assert block.mask is None


def test_batchnorm_normal_mode_keeps_batch_moments_and_returns_them_as_param_der():
    block = L.BatchNorm("numChannels", 3)
    y, moments = vl_nnbnorm(X, BN_G, BN_B, epsilon=1e-5, return_moments=True)
    np.testing.assert_allclose(block.forward([X], [BN_G, BN_B, BN_M])[0], y, rtol=1e-12)
    np.testing.assert_array_equal(block.moments, moments)
    dy = randn(X.shape, 52)
    _, der_params = block.backward([X], [BN_G, BN_B, BN_M], [dy])
    np.testing.assert_array_equal(der_params[2], moments)
    assert block.moments is None        # released after the backward


def test_batchnorm_test_mode_uses_the_moments_param():
    block = L.BatchNorm("numChannels", 3)
    object.__setattr__(block, "net", StandInNet("test"))
    y = block.forward([X], [BN_G, BN_B, BN_M])[0]
    mu, sigma = BN_M[:, 0].reshape(1, 1, 3, 1), BN_M[:, 1].reshape(1, 1, 3, 1)
    expected = BN_G.reshape(1, 1, 3, 1) * (X - mu) / sigma + BN_B.reshape(1, 1, 3, 1)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    assert block.moments is None


def test_loss_keeps_a_running_average_weighted_by_locations():
    block = L.Loss()
    x1, x2 = randn((1, 1, 4, 3), 53), randn((1, 1, 4, 2), 54)
    c1, c2 = LABELS, np.array([2, 1], np.float64).reshape(1, 1, 1, 2)
    l1 = float(block.forward([x1, c1], [])[0])
    l2 = float(block.forward([x2, c2], [])[0])
    # vl_nnloss divides by N: the average is the mean over all 5 images
    assert block.numAveraged == 5
    np.testing.assert_allclose(block.average, (3 * l1 + 2 * l2) / 5, rtol=1e-12)
    block.reset()
    assert (block.average, block.numAveraged) == (0, 0)
    # over H x W locations: the count grows by H * W * N
    dense = L.Loss("loss", "log")
    xd = np.abs(randn((2, 3, 4, 2), 55)) + 0.1
    ld = float(dense.forward([xd, DENSE_LABELS], [])[0])
    assert dense.numAveraged == 12
    np.testing.assert_allclose(dense.average, 2 * ld / 12, rtol=1e-12)
    # without normalise the output itself is summed
    plain = L.Loss("normalise", False)
    lp = float(plain.forward([x1, c1], [])[0])
    np.testing.assert_allclose(plain.average, lp / 3, rtol=1e-12)
    # ignoreAverage leaves it alone
    ignored = L.Loss("ignoreAverage", True)
    ignored.forward([x1, c1], [])
    assert (ignored.average, ignored.numAveraged) == (0, 0)


def test_loss_average_keeps_single_precision():
    block = L.Loss()
    block.forward([randn((1, 1, 4, 3), 56).astype(np.float32), LABELS], [])
    assert np.asarray(block.average).dtype == np.float32


def test_concat_and_crop_keep_input_sizes_until_reset():
    concat = L.Concat()
    concat.forward([X, X], [])
    assert concat.inputSizes == [list(X.shape)] * 2
    concat.reset()
    assert concat.inputSizes == []
    crop = L.Crop()
    crop.forward([randn((7, 8, 3, 2), 57), X], [])
    # base crop [0 0]: the 2 extra rows and columns all go from the bottom/right
    assert crop.getAdaptedCrops() == [0, 2, 0, 2]
    crop.reset()
    assert crop.inputSizes == []


def test_grid_generator_cache_follows_the_grid_size():
    block = L.AffineGridGenerator("Ho", 3, "Wo", 4)
    a = randn((1, 1, 6, 2), 58)
    block.forward([a], [])
    assert block.xxyy.shape == (12, 2)
    block.Ho = 5
    np.testing.assert_allclose(block.forward([a], [])[0], ref_affine([a], 5, 4)[0], rtol=1e-12)
    block.reset()
    assert block.xxyy is None


def test_uniform_grid_checks_the_transform_shape():
    with pytest.raises(ValueError, match="transforms have incorrect shape"):
        L.UniformScalingGridGenerator("Ho", 2, "Wo", 2).forward([randn((1, 1, 6, 2), 59)], [])


def test_pdist_rejects_a_fourth_input():
    with pytest.raises(ValueError, match="invalid number of inputs"):
        L.PDist().forward([X, X, X, X], [])


def test_sum_warns_on_different_input_sizes():
    with pytest.warns(UserWarning, match="Sum layer"):
        L.Sum().getOutputSizes([[2, 3, 4, 1], [2, 3, 5, 1]])
    nan = float("nan")
    assert L.Sum().getOutputSizes([[2, 3, 4, 1], [nan] * 4]) == [[2, 3, 4, 1]]


def test_float32_data_stay_float32():
    x = X.astype(np.float32)
    y = L.Conv("size", [3, 3, 3, 4]).forward([x], [W33.astype(np.float32),
                                                    B4.astype(np.float32)])[0]
    assert y.dtype == np.float32
    y = L.AffineGridGenerator("Ho", 2, "Wo", 2).forward([np.ones((1, 1, 6, 1), np.float32)],
                                                        [])[0]
    assert y.dtype == np.float32


# ---------------------------------------------------------------------------
# receptive fields: checked against the pixels a derivative actually reaches


def _reached_rows_and_cols(block, x, params, out_y, out_x):
    y = block.forward([x], params)[0]
    dy = np.zeros_like(y)
    dy[out_y, out_x, 0, 0] = 1
    dx = block.backward([x], params, [dy])[0][0]
    rows = np.flatnonzero(np.abs(dx).sum(axis=(1, 2, 3)))
    cols = np.flatnonzero(np.abs(dx).sum(axis=(0, 2, 3)))
    return rows + 1, cols + 1          # 1-based, as MatConvNet's fields


@pytest.mark.parametrize("make", [
    lambda: L.Conv("size", [3, 2, 2, 1], "pad", [1, 0, 0, 1], "stride", [2, 1]),
    lambda: L.Conv("size", [2, 3, 2, 1], "dilate", [2, 1], "stride", 2, "pad", 1),
    lambda: L.Pooling("poolSize", [3, 2], "stride", 2, "pad", [1, 1, 1, 0], "method", "avg"),
])
def test_filter_receptive_fields_are_the_pixels_that_matter(make):
    block = make()
    x = np.abs(randn((9, 8, 2, 1), 60)) + 1
    params = [np.ones(block.size, np.float64)] if isinstance(block, L.Conv) else []
    if params:
        params.append(np.zeros((block.size[3], 1)))
    (rf,), = block.getReceptiveFields()
    out = block.forward([x], params)[0]
    for oy in range(out.shape[0]):
        for ox in range(out.shape[1]):
            rows, cols = _reached_rows_and_cols(block, x, params, oy, ox)
            for pixels, axis, o, limit in ((rows, 0, oy, 9), (cols, 1, ox, 8)):
                centre = rf.stride[axis] * o + rf.offset[axis]
                first = int(centre - (rf.size[axis] - 1) / 2)
                last = int(centre + (rf.size[axis] - 1) / 2)
                window = np.arange(first, last + 1)
                if isinstance(block, L.Conv) and block.dilate[axis] > 1:
                    window = window[(window - first) % block.dilate[axis] == 0]
                window = window[(window >= 1) & (window <= limit)]
                np.testing.assert_array_equal(pixels, window)


def test_elementwise_and_special_receptive_fields():
    (rf,), = L.ReLU().getReceptiveFields()
    assert (rf.size, rf.stride, rf.offset) == ([1, 1], [1, 1], [1, 1])
    loss = L.Loss().getReceptiveFields()
    assert len(loss) == 2 and all(np.isnan(r[0].size).all() for r in loss)
    crop = L.Crop("crop", [2, 3]).getReceptiveFields()
    assert crop[0][0].offset == [3, 4] and crop[1][0].size == []
    (rf,), = L.ConvTranspose("size", [4, 4, 1, 1], "upsample", 2, "crop", 1) \
        .getReceptiveFields()
    # an output pixel y of a 4-tap, x2 upsampling reads input pixels
    # (y + crop + 1) / 2 - ... : size (4 - 1) / 2 + 1, stride 1/2
    assert rf.size == [2.5, 2.5] and rf.stride == [0.5, 0.5] and rf.offset == [0.75, 0.75]


def test_sum_and_concat_receptive_fields_have_one_row_per_input():
    class Net(StandInNet):
        layers = [Struct(inputs=["a", "b", "c"])]

    for block, finite in ((L.Sum(), True), (L.Concat("dim", 3), True),
                          (L.Concat("dim", 2), False)):
        object.__setattr__(block, "net", Net())
        object.__setattr__(block, "layerIndex", 0)
        rfs = block.getReceptiveFields()
        assert len(rfs) == 3
        assert all(np.isfinite(r[0].size).all() == finite for r in rfs)


# ---------------------------------------------------------------------------
# the short-circuit ReLU inside a (stand-in) net


class TinyNet:
    """The fields that ``forwardAdvanced``/``backwardAdvanced`` use."""

    def __init__(self, values, fanouts, conserve=True, computing=False):
        self.mode = "normal"
        self.conserveMemory = conserve
        self.computingDerivative = computing
        self.vars = [Struct(value=v, der=None, precious=False, fanout=f)
                     for v, f in zip(values, fanouts)]
        self.numPendingVarRefs = list(fanouts)


def _relu_in(net):
    block = L.ReLU("leak", 0.2)
    object.__setattr__(block, "net", net)
    return block, Struct(name="relu", inputIndexes=[0], outputIndexes=[1], paramIndexes=[])


@pytest.mark.parametrize("computing, fanout, cleared", [
    (False, 1, True), (True, 1, True), (True, 2, False), (False, 2, False)])
def test_relu_short_circuit_forward_releases_its_input(computing, fanout, cleared):
    net = TinyNet([X, None], [fanout, 0], computing=computing)
    block, layer = _relu_in(net)
    block.forwardAdvanced(layer)
    np.testing.assert_array_equal(net.vars[1].value, vl_nnrelu(X, leak=0.2))
    assert (net.vars[0].value is None) == cleared
    assert net.numPendingVarRefs[0] == fanout - 1


def test_relu_short_circuit_backward_uses_the_output_and_accumulates():
    y = vl_nnrelu(X, leak=0.2)
    dy = randn(X.shape, 61)
    net = TinyNet([None, y], [1, 0], computing=True)
    block, layer = _relu_in(net)
    net.vars[1].der = dy
    net.numPendingVarRefs = [0, 0]
    block.backwardAdvanced(layer)
    expected = vl_nnrelu(X, dzdy=dy, leak=0.2)
    np.testing.assert_array_equal(net.vars[0].der, expected)
    assert net.vars[1].value is None and net.vars[1].der is None
    # a second contribution (fanout 2) is added
    net.vars[1].value, net.vars[1].der = y, dy
    block.backwardAdvanced(layer)
    np.testing.assert_allclose(net.vars[0].der, 2 * expected)
    assert net.numPendingVarRefs[0] == 2


def test_relu_without_short_circuit_keeps_its_input_while_computing_derivatives():
    net = TinyNet([X, None], [1, 0], computing=True)
    block, layer = _relu_in(net)
    block.useShortCircuit = False
    block.forwardAdvanced(layer)
    assert net.vars[0].value is X


# ---------------------------------------------------------------------------
# a user's own layer: MatConvNet's examples/fast_rcnn/+dagnn/LossSmoothL1.m


class LossSmoothL1(L.Loss):
    """Smooth L1 loss ``sum_i w_i f(x_i - x0_i) / N`` with
    ``f(d) = 0.5 sigma^2 d^2`` for ``|d| < 1/sigma^2``, ``|d| - 0.5/sigma^2``
    otherwise (Fast R-CNN)."""

    PROPERTIES = {"sigma": 1.0}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss = "smoothl1"

    def forward(self, inputs, params):
        x, x0, w = inputs
        sigma2 = self.sigma ** 2
        delta = np.abs(x - x0)
        linear = delta > 1 / sigma2
        f = np.where(linear, delta - 0.5 / sigma2, 0.5 * sigma2 * delta ** 2)
        n = shape4(x.shape)[3]
        y = np.vdot(w.ravel(order="F"), f.ravel(order="F")) / n
        if not self.ignoreAverage:
            m = self.numAveraged + w.sum() + 1e-9
            self.average = (self.numAveraged * self.average + n * y) / m
            self.numAveraged = m
        return [y]

    def backward(self, inputs, params, derOutputs):
        x, x0, w = inputs
        sigma2 = self.sigma ** 2
        delta = x - x0
        d = np.where(np.abs(delta) > 1 / sigma2, np.sign(delta), sigma2 * delta)
        return [w * d * derOutputs[0] / shape4(x.shape)[3], None, None], []


def test_user_defined_layer_registers_saves_and_differentiates():
    assert layer_class("dagnn.LossSmoothL1") is LossSmoothL1
    block = LossSmoothL1("sigma", 2.0)
    assert block.save() == Struct(loss="smoothl1", ignoreAverage=False, normalise=True, opts=[],
                                  sigma=2.0)
    x, x0 = randn((1, 1, 4, 3), 62), randn((1, 1, 4, 3), 63)
    w = np.abs(randn((1, 1, 4, 3), 64))
    y = block.forward([x, x0, w], [])[0]
    d = np.abs(x - x0)
    expected = np.sum(w * np.where(d > 0.25, d - 0.125, 2 * d ** 2)) / 3
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    dx = block.backward([x, x0, w], [], [1.7])[0][0]
    check_derivative(lambda z: LossSmoothL1("sigma", 2.0).forward([z, x0, w], [])[0], x, dx,
                     np.array(1.7))
    assert block.getOutputSizes([[1, 1, 4, 3]] * 3) == [[1, 1, 1, 3]]
    with pytest.raises(ValueError, match="No property `tau` for a layer of type "
                                         "`dagnn.LossSmoothL1`"):
        LossSmoothL1("tau", 1)


# ---------------------------------------------------------------------------
# inside a real DagNN


def test_batchnorm_attach_makes_the_moments_an_average_param():
    from dagnn import DagNN

    net = DagNN()
    net.addLayer("bn", L.BatchNorm("numChannels", 3), "x", "y", ["g", "b", "m"])
    moments = net.params[net.getParamIndex("m")]
    assert (moments.trainMethod, moments.learningRate) == ("average", 0.1)
    assert net.params[net.getParamIndex("g")].trainMethod == "gradient"
    net.initParams()
    assert [p.value.shape for p in net.params] == [(3, 1), (3, 1), (3, 2)]


def test_relu_short_circuit_gives_the_generic_drivers_results():
    from dagnn import DagNN

    results = []
    for short in (True, False):
        net = DagNN()
        net.addLayer("conv", L.Conv("size", [3, 3, 3, 2], "pad", 1), "x", "a", ["w", "b"])
        # 'a' is read by conv2, then by the ReLU: its last reader, which must
        # not release it, since conv2's backward needs it
        net.addLayer("conv2", L.Conv("size", [1, 1, 2, 2], "hasBias", False), "a", "c", "w2")
        net.addLayer("relu", L.ReLU("useShortCircuit", short, "leak", 0.1), "a", "r")
        net.addLayer("sum", L.Sum(), ["r", "c"], "s")
        net.params[0].value, net.params[1].value = randn((3, 3, 3, 2), 70), randn((2, 1), 71)
        net.params[2].value = randn((1, 1, 2, 2), 73)
        dy = randn((5, 6, 2, 2), 72)
        net.eval({"x": X}, {"s": dy})
        results.append((net.vars[net.getVarIndex("x")].der, net.params[0].der))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12)


def test_modes_of_dropout_and_batchnorm_in_a_net():
    from dagnn import DagNN

    net = DagNN()
    net.addLayer("drop", L.DropOut("rate", 0.5), "x", "d")
    net.addLayer("bn", L.BatchNorm("numChannels", 3), "d", "y", ["g", "b", "m"])
    net.params[0].value, net.params[1].value, net.params[2].value = BN_G, BN_B, BN_M
    net.mode = "test"
    net.eval({"x": X})
    mu, sigma = BN_M[:, 0].reshape(1, 1, 3, 1), BN_M[:, 1].reshape(1, 1, 3, 1)
    expected = BN_G.reshape(1, 1, 3, 1) * (X - mu) / sigma + BN_B.reshape(1, 1, 3, 1)
    np.testing.assert_allclose(net.vars[net.getVarIndex("y")].value, expected, rtol=1e-12)
    net.mode = "normal"
    net.eval({"x": X})
    mask = net.layers[0].block.mask
    np.testing.assert_allclose(net.vars[net.getVarIndex("y")].value,
                               vl_nnbnorm(mask * X, BN_G, BN_B, epsilon=1e-5), rtol=1e-12)
