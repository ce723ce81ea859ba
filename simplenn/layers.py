"""One table: SimpleNN layer type -> (forward, backward).

Each row calls its vlnn block exactly as MatConvNet's ``vl_simplenn.m``
does (same arguments, same order, ``layer.opts`` forwarded, the CuDNN flag
appended), so :func:`simplenn.simplenn.vl_simplenn` is one loop over this
table.  Indices ``i`` are Python's: layer ``i`` reads ``res[i].x`` and
writes ``res[i + 1].x``; its backward reads ``res[i + 1].dzdx`` and writes
``res[i].dzdx``.

``forward(layer, res, i, mode)`` fills ``res[i + 1]``;
``backward(layer, res, i, mode)`` fills ``res[i].dzdx`` and returns the
list of parameter derivatives for the layers that have parameters
(``conv``, ``convt``, ``bnorm``), ``None`` for the others.  ``mode`` is a
:class:`Mode`.

A layer need not be tidied: a field that ``vl_simplenn_tidy`` would fill in
takes tidy's default (:func:`simplenn.tidy.layer_default`); a field tidy cannot invent
(``weights``, ``pool``, ``class``, ``param`` of ``spnorm``/``noffset``,
the custom ``forward``/``backward``) is required, and its absence is a
``ValueError`` naming the layer.
"""

from collections import namedtuple
from collections.abc import Mapping

import numpy as np

from vlnn._backend import get_array_module, is_empty
from vlnn._options import as_float
from vlnn.activations import vl_nnrelu, vl_nnsigmoid, vl_nnsoftmax
from vlnn.conv import vl_nnconv, vl_nnconvt
from vlnn.distance import vl_nnpdist
from vlnn.dropout import vl_nndropout
from vlnn.loss import vl_nnloss, vl_nnsoftmaxloss
from vlnn.normalization import vl_nnbnorm, vl_nnnoffset, vl_nnnormalize, vl_nnspnorm
from vlnn.pool import vl_nnpool

from .naming import layer_label
from .struct import Struct
from .tidy import layer_default

Mode = namedtuple("Mode", ["test", "cudnn"])
Mode.__doc__ = """How a call runs its layers.

test : bool
    ``mode='test'``: dropout is the identity, bnorm uses its stored moments.
cudnn : str
    ``'Cudnn'`` or ``'NoCudnn'``, appended to the conv, convt and pool calls.
"""

LOSS_TYPES = ("loss", "softmaxloss")


def describe(layer, i):
    """``"layer 3 'pool1' (net.layers[2]) of type 'pool'"`` for messages
    (:func:`simplenn.naming.layer_label`, then the type)."""
    if not isinstance(layer, Mapping) or "type" not in layer:
        return layer_label(i, layer)
    return f"{layer_label(i, layer)} of type {layer['type']!r}"


def field(layer, name, i):
    """``layer[name]``, else tidy's default, else a ``ValueError``."""
    if name in layer:
        return layer[name]
    try:
        return layer_default(layer.get("type"), name)
    except KeyError:
        pass
    hint = ""
    if name == "weights" and ("filters" in layer or "biases" in layer):
        hint = " (it has the legacy 'filters'/'biases' fields: run vl_simplenn_tidy)"
    raise ValueError(f"vl_simplenn: {describe(layer, i)} has no field '{name}'{hint}")


def weight(layer, j, i, what):
    """``layer.weights[j]`` with a clear error when there are too few."""
    weights = field(layer, "weights", i)
    if isinstance(weights, np.ndarray) and weights.dtype == object:  # a .mat cell array
        weights = weights.ravel(order="F")
    if weights is None or len(weights) <= j:
        count = 0 if weights is None else len(weights)
        raise ValueError(
            f"vl_simplenn: {describe(layer, i)} has {count} weights; weights[{j}] "
            f"({what}) is needed")
    return weights[j]


def flag(value):
    """MATLAB truth of a logical field (``True``, ``1``, a ``1 x 1`` array)."""
    if value is None:
        return False
    a = np.asarray(value)
    return bool(a.ravel()[0]) if a.size else False


def is_precious(layer):
    """``layer.precious``; a missing field (custom layers are never tidied)
    is false."""
    return isinstance(layer, Mapping) and flag(layer.get("precious", False))


def _block_options(layer, i):
    """``layer.opts`` as ``(args, kwargs)``: a list of MATLAB-style
    ``'Name', value`` pairs and flags (MatConvNet's cell ``l.opts{:}``), or a
    mapping of keyword options."""
    opts = field(layer, "opts", i)
    if opts is None:
        return (), {}
    if isinstance(opts, Mapping):
        return (), dict(opts)
    if isinstance(opts, str):
        return (opts,), {}
    if isinstance(opts, np.ndarray):  # a cell array read from a .mat file
        return tuple(opts.ravel(order="F")), {}
    return tuple(opts), {}


def _input(res, i, layer):
    """``res[i].x``, which a layer cannot do without."""
    x = res[i].x
    if is_empty(x):
        raise ValueError(
            f"vl_simplenn: the input res[{i}].x of {describe(layer, i)} is empty "
            f"(cleared by conserveMemory, or not computed)")
    return x


def _target(layer, i, x):
    """``layer.class`` as pdist's ``x0``.  MATLAB subtracts a double target
    from single data in single precision, and a CPU target from GPU data on
    the GPU: a float64 target with float32 data is cast to float32, and a
    NumPy target with CuPy data is moved to the GPU."""
    target = field(layer, "class", i)
    if not hasattr(target, "dtype"):
        target = np.asarray(target, dtype=np.float64)
    xp = get_array_module(x)
    if xp is not np and get_array_module(target) is np:
        target = xp.asarray(target)
    if target.dtype == np.float64 and x.dtype == np.float32:
        target = target.astype(np.float32)
    return target


# --------------------------------------------------------------------------
# conv, convt, pool: layer.opts forwarded, then the CuDNN flag

def _conv(layer, res, i, mode, dzdy=None):
    args, kwargs = _block_options(layer, i)
    return vl_nnconv(_input(res, i, layer), weight(layer, 0, i, "filters"),
                     weight(layer, 1, i, "biases"), dzdy,
                     "pad", field(layer, "pad", i), "stride", field(layer, "stride", i),
                     "dilate", field(layer, "dilate", i), *args, mode.cudnn, **kwargs)


def conv_forward(layer, res, i, mode):
    res[i + 1].x = _conv(layer, res, i, mode)


def conv_backward(layer, res, i, mode):
    res[i].dzdx, dw, db = _conv(layer, res, i, mode, res[i + 1].dzdx)
    return [dw, db]


def _convt(layer, res, i, mode, dzdy=None):
    args, kwargs = _block_options(layer, i)
    return vl_nnconvt(_input(res, i, layer), weight(layer, 0, i, "filters"),
                      weight(layer, 1, i, "biases"), dzdy,
                      "crop", field(layer, "crop", i), "upsample", field(layer, "upsample", i),
                      "numGroups", field(layer, "numGroups", i), *args, mode.cudnn, **kwargs)


def convt_forward(layer, res, i, mode):
    res[i + 1].x = _convt(layer, res, i, mode)


def convt_backward(layer, res, i, mode):
    res[i].dzdx, dw, db = _convt(layer, res, i, mode, res[i + 1].dzdx)
    return [dw, db]


def _pool(layer, res, i, mode, dzdy=None):
    args, kwargs = _block_options(layer, i)
    return vl_nnpool(_input(res, i, layer), field(layer, "pool", i), dzdy,
                     "pad", field(layer, "pad", i), "stride", field(layer, "stride", i),
                     "method", field(layer, "method", i), *args, mode.cudnn, **kwargs)


def pool_forward(layer, res, i, mode):
    res[i + 1].x = _pool(layer, res, i, mode)


def pool_backward(layer, res, i, mode):
    res[i].dzdx = _pool(layer, res, i, mode, res[i + 1].dzdx)


# --------------------------------------------------------------------------
# blocks with a `param` vector: normalize/lrn, spnorm, noffset

def normalize_forward(layer, res, i, mode):
    res[i + 1].x = vl_nnnormalize(_input(res, i, layer), field(layer, "param", i))


def normalize_backward(layer, res, i, mode):
    res[i].dzdx = vl_nnnormalize(_input(res, i, layer), field(layer, "param", i),
                                 res[i + 1].dzdx)


def spnorm_forward(layer, res, i, mode):
    res[i + 1].x = vl_nnspnorm(_input(res, i, layer), field(layer, "param", i))


def spnorm_backward(layer, res, i, mode):
    res[i].dzdx = vl_nnspnorm(_input(res, i, layer), field(layer, "param", i), res[i + 1].dzdx)


def noffset_forward(layer, res, i, mode):
    res[i + 1].x = vl_nnnoffset(_input(res, i, layer), field(layer, "param", i))


def noffset_backward(layer, res, i, mode):
    res[i].dzdx = vl_nnnoffset(_input(res, i, layer), field(layer, "param", i), res[i + 1].dzdx)


# --------------------------------------------------------------------------
# blocks without options: sigmoid, softmax

def sigmoid_forward(layer, res, i, mode):
    res[i + 1].x = vl_nnsigmoid(_input(res, i, layer))


def sigmoid_backward(layer, res, i, mode):
    res[i].dzdx = vl_nnsigmoid(_input(res, i, layer), res[i + 1].dzdx)


def softmax_forward(layer, res, i, mode):
    res[i + 1].x = vl_nnsoftmax(_input(res, i, layer))


def softmax_backward(layer, res, i, mode):
    res[i].dzdx = vl_nnsoftmax(_input(res, i, layer), res[i + 1].dzdx)


# --------------------------------------------------------------------------
# losses against layer.class; 'loss' always with vl_nnloss's default options
# (MatConvNet has no layer field that selects another loss)

def loss_forward(layer, res, i, mode):
    res[i + 1].x = vl_nnloss(_input(res, i, layer), field(layer, "class", i))


def loss_backward(layer, res, i, mode):
    res[i].dzdx = vl_nnloss(_input(res, i, layer), field(layer, "class", i), res[i + 1].dzdx)


def softmaxloss_forward(layer, res, i, mode):
    res[i + 1].x = vl_nnsoftmaxloss(_input(res, i, layer), field(layer, "class", i))


def softmaxloss_backward(layer, res, i, mode):
    res[i].dzdx = vl_nnsoftmaxloss(_input(res, i, layer), field(layer, "class", i),
                                   res[i + 1].dzdx)


# --------------------------------------------------------------------------
# relu: the leak is passed only when positive; the backward falls back on
# the output when the input was cleared ([Y > 0] == [X > 0] for leak >= 0)

def _leak(layer, i):
    leak = field(layer, "leak", i)
    positive = as_float(leak, "vl_simplenn", f"the leak of {describe(layer, i)}") > 0
    return ("leak", leak) if positive else ()


def relu_forward(layer, res, i, mode):
    res[i + 1].x = vl_nnrelu(_input(res, i, layer), None, *_leak(layer, i))


def relu_backward(layer, res, i, mode):
    x = res[i].x
    if is_empty(x):
        x = res[i + 1].x
        if is_empty(x):
            raise ValueError(
                f"vl_simplenn: both the input res[{i}].x and the output res[{i + 1}].x "
                f"of {describe(layer, i)} are empty")
    res[i].dzdx = vl_nnrelu(x, res[i + 1].dzdx, *_leak(layer, i))


# --------------------------------------------------------------------------
# dropout: the identity in test mode; the mask goes to res[i + 1].aux

def dropout_forward(layer, res, i, mode):
    if mode.test:
        res[i + 1].x = res[i].x
    else:
        res[i + 1].x, res[i + 1].aux = vl_nndropout(
            _input(res, i, layer), None, "rate", field(layer, "rate", i))


def dropout_backward(layer, res, i, mode):
    if mode.test:
        res[i].dzdx = res[i + 1].dzdx
    else:
        # the mask and dzdy suffice, so a cleared input is no obstacle
        res[i].dzdx = vl_nndropout(res[i].x, res[i + 1].dzdx, mask=res[i + 1].aux)


# --------------------------------------------------------------------------
# bnorm: the stored moments only in test-mode forward; the backward always
# uses the batch statistics and returns the batch moments as its third
# "derivative" (HEAD: not multiplied by the number of images)

def bnorm_forward(layer, res, i, mode):
    x = _input(res, i, layer)
    gains, biases = weight(layer, 0, i, "gains"), weight(layer, 1, i, "biases")
    if mode.test:
        res[i + 1].x = vl_nnbnorm(x, gains, biases,
                                  "moments", weight(layer, 2, i, "moments, needed in test mode"),
                                  "epsilon", field(layer, "epsilon", i), "NoCudnn")
    else:
        res[i + 1].x = vl_nnbnorm(x, gains, biases,
                                  "epsilon", field(layer, "epsilon", i), "NoCudnn")


def bnorm_backward(layer, res, i, mode):
    res[i].dzdx, dgains, dbiases, moments = vl_nnbnorm(
        _input(res, i, layer), weight(layer, 0, i, "gains"), weight(layer, 1, i, "biases"),
        res[i + 1].dzdx, "epsilon", field(layer, "epsilon", i), "NoCudnn",
        return_moments=True)
    return [dgains, dbiases, moments]


# --------------------------------------------------------------------------
# pdist: the distance to the target layer.class

def _pdist(layer, res, i, dzdy=None):
    x = _input(res, i, layer)
    return vl_nnpdist(x, _target(layer, i, x), field(layer, "p", i), dzdy,
                      "noRoot", field(layer, "noRoot", i),
                      "epsilon", field(layer, "epsilon", i),
                      "aggregate", field(layer, "aggregate", i),
                      "instanceWeights", field(layer, "instanceWeights", i))


def pdist_forward(layer, res, i, mode):
    res[i + 1].x = _pdist(layer, res, i)


def pdist_backward(layer, res, i, mode):
    res[i].dzdx, _ = _pdist(layer, res, i, res[i + 1].dzdx)


# --------------------------------------------------------------------------
# custom: res[i + 1] = layer.forward(layer, res[i], res[i + 1]) and
# res[i] = layer.backward(layer, res[i], res[i + 1])

def new_record():
    """An empty ``res`` entry: no data, no derivatives, zero times."""
    return Struct(x=None, dzdx=None, dzdw=[], aux=None, stats=None, time=0.0,
                  backwardTime=0.0)


def as_record(value):
    """A :class:`Struct` record with every ``res`` field (missing ones
    empty); a plain mapping is wrapped (its arrays are not copied)."""
    record = value if isinstance(value, Struct) else Struct(value)
    for name, empty in new_record().items():
        record.setdefault(name, empty)
    return record


def _record(value, layer, i, which):
    if not isinstance(value, Mapping):
        raise TypeError(
            f"vl_simplenn: the custom {which} of {describe(layer, i)} must return the "
            f"updated res record, got {type(value).__name__}")
    return as_record(value)


def _custom_function(layer, i, which):
    """A custom layer's ``forward`` or ``backward``, which must be callable."""
    function = field(layer, which, i)
    if not callable(function):
        value = f" {function!r}" if isinstance(function, str) else ""
        raise TypeError(
            f"vl_simplenn: {layer_label(i, layer)} is a custom layer whose '{which}' must be "
            f"callable, got {type(function).__name__}{value}")
    return function


def custom_forward(layer, res, i, mode):
    res[i + 1] = _record(_custom_function(layer, i, "forward")(layer, res[i], res[i + 1]),
                         layer, i, "forward")


def custom_backward(layer, res, i, mode):
    res[i] = _record(_custom_function(layer, i, "backward")(layer, res[i], res[i + 1]),
                     layer, i, "backward")


LAYERS = {
    "conv": (conv_forward, conv_backward),
    "convt": (convt_forward, convt_backward),
    "pool": (pool_forward, pool_backward),
    "normalize": (normalize_forward, normalize_backward),
    "lrn": (normalize_forward, normalize_backward),
    "spnorm": (spnorm_forward, spnorm_backward),
    "bnorm": (bnorm_forward, bnorm_backward),
    "relu": (relu_forward, relu_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "softmax": (softmax_forward, softmax_backward),
    "loss": (loss_forward, loss_backward),
    "softmaxloss": (softmaxloss_forward, softmaxloss_backward),
    "noffset": (noffset_forward, noffset_backward),
    "dropout": (dropout_forward, dropout_backward),
    "pdist": (pdist_forward, pdist_backward),
    "custom": (custom_forward, custom_backward),
}
"""Layer type -> ``(forward, backward)``; see the module docstring."""
