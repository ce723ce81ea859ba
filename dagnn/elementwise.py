"""Blocks that work at each spatial location: :class:`ElementWise` (the
base) and ``ReLU``, ``Sigmoid``, ``SoftMax``, ``LRN``, ``NormOffset``,
``SpatialNorm``, ``DropOut`` and ``Scale`` (MatConvNet's
``matlab/+dagnn/*.m`` of the same names)."""

import numpy as np

from vlnn import (vl_nndropout, vl_nnnoffset, vl_nnnormalize, vl_nnrelu, vl_nnsigmoid,
                  vl_nnsoftmax, vl_nnspnorm)
from vlnn._backend import is_empty

from ._common import block_options, net_mode, receptive_field, to_device, vector_value
from .layer import Layer

__all__ = ["ElementWise", "ReLU", "Sigmoid", "SoftMax", "LRN", "NormOffset", "SpatialNorm",
           "DropOut", "Scale"]


class ElementWise(Layer):
    """Base of the blocks that operate at individual spatial locations
    (MatConvNet's ``dagnn.ElementWise``).

    Each output has the size of the matching input, and a pixel of an
    output depends only on the same pixel of the input (receptive field of
    size 1, stride 1, offset 1).
    """

    def getOutputSizes(self, inputSizes):
        """``outputSizes = getOutputSizes(inputSizes)``: the input sizes."""
        return [list(size) for size in inputSizes]

    def getReceptiveFields(self):
        """One field of size ``[1 1]``, stride ``[1 1]``, offset ``[1 1]``."""
        return [[receptive_field([1, 1], [1, 1], [1, 1])]]


class ReLU(ElementWise):
    """Rectified linear unit, ``vl_nnrelu``.

    ``dagnn.ReLU()``, ``dagnn.ReLU('leak', 0.1)`` or ``dagnn.ReLU(leak=0.1)``.

    Properties
    ----------
    useShortCircuit : bool, default True
        With the net's ``conserveMemory``, evaluate without the generic
        driver: the input is released as soon as every layer reading it has
        run (the derivative is computed from the output, which MatConvNet
        keeps), as MatConvNet's ``ReLU.forwardAdvanced`` does.
    leak : float, default 0
        Slope for negative inputs (leaky ReLU).
    opts : list, default []
        More options for ``vl_nnrelu``, as MATLAB ``'Name', value`` pairs.
    """

    PROPERTIES = {"useShortCircuit": True, "leak": 0, "opts": []}

    def _set_leak(self, value):
        return vector_value(value)

    def forward(self, inputs, params):
        return [vl_nnrelu(inputs[0], **block_options(self.opts, leak=self.leak))]

    def backward(self, inputs, params, derOutputs):
        return [vl_nnrelu(inputs[0], dzdy=derOutputs[0],
                          **block_options(self.opts, leak=self.leak))], []

    def forwardAdvanced(self, layer):
        """MatConvNet's short circuit: with ``useShortCircuit`` and the
        net's ``conserveMemory``, compute the output and release the input
        once its last reader has run.

        MatConvNet releases it even while derivatives are computed (its
        backward needs only the output); here that happens only when this
        layer is the input's sole reader, since another reader's backward
        may still need the value (MatConvNet would fail there)."""
        net = self.net
        if not self.useShortCircuit or not net.conserveMemory:
            return super().forwardAdvanced(layer)
        (v,), (out,) = layer.inputIndexes, layer.outputIndexes
        x = net.vars[v].value
        net.vars[out].value = None if is_empty(x) else vl_nnrelu(
            x, **block_options(self.opts, leak=self.leak))
        net.numPendingVarRefs[v] -= 1
        var = net.vars[v]
        if not var.precious and net.numPendingVarRefs[v] == 0 and (
                not net.computingDerivative or var.fanout == 1):
            var.value = None

    def backwardAdvanced(self, layer):
        """MatConvNet's short circuit: the derivative from the output value
        (``y > 0`` exactly where ``x > 0``), the output released unless
        precious, the input derivative stored or added."""
        net = self.net
        if not self.useShortCircuit or not net.conserveMemory:
            return super().backwardAdvanced(layer)
        (v,), (out,) = layer.inputIndexes, layer.outputIndexes
        output = net.vars[out]
        if is_empty(output.der):
            return
        der = vl_nnrelu(output.value, dzdy=output.der,
                        **block_options(self.opts, leak=self.leak))
        if not output.precious:
            output.der = None
            output.value = None
        var = net.vars[v]
        if net.numPendingVarRefs[v] == 0 or is_empty(var.der):
            var.der = der
        else:
            var.der = var.der + der
        net.numPendingVarRefs[v] += 1


class Sigmoid(ElementWise):
    """Sigmoid, ``vl_nnsigmoid``: ``dagnn.Sigmoid()`` (no properties)."""

    def forward(self, inputs, params):
        return [vl_nnsigmoid(inputs[0])]

    def backward(self, inputs, params, derOutputs):
        return [vl_nnsigmoid(inputs[0], dzdy=derOutputs[0])], []


class SoftMax(ElementWise):
    """Softmax over the channels, ``vl_nnsoftmax``: ``dagnn.SoftMax()``."""

    def forward(self, inputs, params):
        return [vl_nnsoftmax(inputs[0])]

    def backward(self, inputs, params, derOutputs):
        return [vl_nnsoftmax(inputs[0], dzdy=derOutputs[0])], []


class LRN(ElementWise):
    """Local response normalisation across channels, ``vl_nnnormalize``.

    ``dagnn.LRN('param', [5 1 0.0001/5 0.75])``.

    Properties
    ----------
    param : [N, KAPPA, ALPHA, BETA], default [5, 1, 0.0001/5, 0.75]
    """

    PROPERTIES = {"param": [5, 1, 0.0001 / 5, 0.75]}

    def _set_param(self, value):
        return vector_value(value)

    def forward(self, inputs, params):
        return [vl_nnnormalize(inputs[0], self.param)]

    def backward(self, inputs, params, derOutputs):
        return [vl_nnnormalize(inputs[0], self.param, dzdy=derOutputs[0])], []


class NormOffset(ElementWise):
    """Norm offset, ``vl_nnnoffset``: ``dagnn.NormOffset('param', [1 0.5])``.

    Properties
    ----------
    param : [KAPPA, ALPHA], default [1, 0.5]
    """

    PROPERTIES = {"param": [1, 0.5]}

    def _set_param(self, value):
        return vector_value(value)

    def forward(self, inputs, params):
        return [vl_nnnoffset(inputs[0], self.param)]

    def backward(self, inputs, params, derOutputs):
        return [vl_nnnoffset(inputs[0], self.param, dzdy=derOutputs[0])], []


class SpatialNorm(ElementWise):
    """Spatial normalisation, ``vl_nnspnorm``:
    ``dagnn.SpatialNorm('param', [2 2 10 2])``.

    Properties
    ----------
    param : [PH, PW, ALPHA, BETA], default [2, 2, 10, 2]
    """

    PROPERTIES = {"param": [2, 2, 10, 2]}

    def _set_param(self, value):
        return vector_value(value)

    def forward(self, inputs, params):
        return [vl_nnspnorm(inputs[0], self.param)]

    def backward(self, inputs, params, derOutputs):
        return [vl_nnspnorm(inputs[0], self.param, dzdy=derOutputs[0])], []


class DropOut(ElementWise):
    """Dropout, ``vl_nndropout``: ``dagnn.DropOut('rate', 0.5)``.

    In the net's ``'test'`` mode the block is the identity (forward and
    backward).  Otherwise forward draws a new mask (from
    ``vlnn.dropout.DEFAULT_RNG``) and keeps it in the transient property
    ``mask`` for the backward; with ``frozen`` set, a mask already there is
    reused instead of drawing a new one.

    Properties
    ----------
    rate : float, default 0.5
        Probability that an element is zeroed.
    frozen : bool, default False
        Reuse the kept mask.

    Transient: ``mask`` (None until the first forward).  ``reset`` clears
    it and sets ``frozen`` back to False.
    """

    PROPERTIES = {"rate": 0.5, "frozen": False}
    TRANSIENT = {"mask": None}

    def _set_rate(self, value):
        return vector_value(value)

    def forward(self, inputs, params):
        if net_mode(self) == "test":
            return list(inputs)
        if self.frozen and not is_empty(self.mask):
            y, _ = vl_nndropout(inputs[0], mask=self.mask)
        else:
            y, self.mask = vl_nndropout(inputs[0], rate=self.rate)
        return [y]

    def backward(self, inputs, params, derOutputs):
        if net_mode(self) == "test":
            return list(derOutputs), []
        return [vl_nndropout(inputs[0], dzdy=derOutputs[0], mask=self.mask)], []

    def reset(self):
        """Forget the mask and unfreeze."""
        self.mask = None
        self.frozen = False

    def move(self, device):
        """Move the kept mask to ``'cpu'`` or ``'gpu'``."""
        self.mask = to_device(self.mask, device)


class Scale(ElementWise):
    """Multiply by a scale and add a bias, broadcast MATLAB-style
    (``bsxfun``): ``y = x .* a + b``.

    ``dagnn.Scale('size', [1 1 C], 'hasBias', True)``.  The scale and bias
    are the block's parameters (or further inputs: the arguments are the
    inputs followed by the parameters).  Missing trailing dimensions are 1,
    as in MATLAB: a ``1 x 1 x C`` scale multiplies every channel of an
    ``H x W x C x N`` input.

    Properties
    ----------
    size : size vector, default None
        The size of the scale and bias (used by :meth:`getParamSizes` and
        :meth:`initParams`).
    hasBias : bool, default True
    """

    PROPERTIES = {"size": None, "hasBias": True}

    def _set_size(self, value):
        return vector_value(value)

    def forward(self, inputs, params):
        args = list(inputs) + list(params)
        y = _matlab_times(args[0], args[1])
        if self.hasBias:
            y = _matlab_plus(y, args[2])
        return [y]

    def backward(self, inputs, params, derOutputs):
        args = list(inputs) + list(params)
        dy = derOutputs[0]
        ndim = max(4, dy.ndim, args[0].ndim, args[1].ndim)
        # sum over the dimensions (of the first four) where the scale is 1
        scale_size = tuple(args[1].shape) + (1,) * (ndim - args[1].ndim)
        axes = tuple(k for k in range(4) if scale_size[k] == 1)
        dargs = [_matlab_times(dy, args[1]),
                 _collapse(_matlab_times(dy, args[0]), axes, args[1].shape)]
        if self.hasBias:
            dargs.append(_collapse(_padded(dy, ndim), axes, args[2].shape))
        return dargs[:len(inputs)], dargs[len(inputs):len(inputs) + len(params)]

    def getParamSizes(self):
        """The scale and (with ``hasBias``) the bias, both of ``size``."""
        size = list(self.size) if isinstance(self.size, list) else [self.size]
        return [size, size] if self.hasBias else [size]

    def initParams(self):
        """Ones (scale) and zeros (bias) of ``size``, single precision.

        (MatConvNet's ``Scale`` has no initialiser, so ``initParams`` of a
        net holding one fails there; this is the identity map.)"""
        shape = tuple(int(s) for s in (self.size if isinstance(self.size, list)
                                       else [self.size]))
        params = [np.ones(shape, np.float32)]
        if self.hasBias:
            params.append(np.zeros(shape, np.float32))
        return params


# ---------------------------------------------------------------------------
# MATLAB broadcasting (bsxfun): align from the first dimension


def _padded(a, ndim):
    return a.reshape(tuple(a.shape) + (1,) * (ndim - a.ndim)) if a.ndim < ndim else a


def _matlab_times(a, b):
    ndim = max(a.ndim, b.ndim)
    return _padded(a, ndim) * _padded(b, ndim)


def _matlab_plus(a, b):
    ndim = max(a.ndim, b.ndim)
    return _padded(a, ndim) + _padded(b, ndim)


def _collapse(a, axes, shape):
    """Sum ``a`` over ``axes`` (keeping them) and give it ``shape``."""
    if axes:
        a = a.sum(axis=axes, keepdims=True)
    return a.reshape(shape)
