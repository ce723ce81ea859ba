"""Sliding-window blocks: :class:`Filter` (the base with ``pad``,
``stride``, ``dilate``), ``Conv``, ``Pooling`` and ``ConvTranspose``
(MatConvNet's ``matlab/+dagnn/*.m`` of the same names)."""

import math

import numpy as np

from vlnn import dropout as _dropout_module
from vlnn import vl_nnconv, vl_nnconvt, vl_nnpool

from ._common import block_options, expand, receptive_field, row, size_row, vector_value
from .layer import Layer

__all__ = ["Filter", "Conv", "ConvTranspose", "Pooling"]

_QUAD = {1: (0, 0, 0, 0), 2: (0, 0, 1, 1)}   # MATLAB's pad([1 1 2 2])
_PAIR = {1: (0, 0)}


def _randn(shape):
    """``randn(shape, 'single')`` from the blocks' generator,
    ``vlnn.dropout.DEFAULT_RNG`` (MATLAB's one global stream: MatConvNet
    draws initial weights and dropout masks from the same generator)."""
    return _dropout_module.DEFAULT_RNG.standard_normal(shape, dtype=np.float32)


def _fix(value):
    """MATLAB's ``fix`` (round toward zero), NaN kept."""
    return math.trunc(value) if math.isfinite(value) else value


class Filter(Layer):
    """Base of the sliding-window blocks (MatConvNet's ``dagnn.Filter``).

    Properties
    ----------
    pad : [TOP, BOTTOM, LEFT, RIGHT], default [0, 0, 0, 0]
        A scalar ``p`` is stored as ``[p p p p]`` and ``[a b]`` as
        ``[a a b b]`` (MatConvNet's ``set.pad``).
    stride : [SY, SX], default [1, 1]
        A scalar is stored as ``[s s]``.
    dilate : [DY, DX], default [1, 1]
        A scalar is stored as ``[d d]``.
    """

    PROPERTIES = {"pad": [0, 0, 0, 0], "stride": [1, 1], "dilate": [1, 1]}

    def _set_pad(self, value):
        return expand(value, _QUAD)

    def _set_stride(self, value):
        return expand(value, _PAIR)

    def _set_dilate(self, value):
        return expand(value, _PAIR)

    def getKernelSize(self):
        """The window size ``[KH, KW]`` (``[1 1]`` for the base)."""
        return [1, 1]

    def _kernel_extent(self):
        kernel = row(self.getKernelSize())
        if len(kernel) == 1:
            kernel = kernel * 2
        dilate = list(self.dilate) * (2 if len(self.dilate) == 1 else 1)
        return [(k - 1) * d + 1 for k, d in zip(kernel, dilate)]

    def getOutputSizes(self, inputSizes):
        """``[HO, WO, 1, N]`` with ``HO = fix((H + TOP + BOTTOM - KE) / SY) + 1``
        (``KE`` the dilated kernel extent), likewise ``WO``."""
        size = [float(s) for s in inputSizes[0]]
        ke = self._kernel_extent()
        pad, stride = self.pad, self.stride
        ho = _fix((size[0] + pad[0] + pad[1] - ke[0]) / stride[0]) + 1
        wo = _fix((size[1] + pad[2] + pad[3] - ke[1]) / stride[1]) + 1
        return [size_row([ho, wo, 1, size[3]])]

    def getReceptiveFields(self):
        """The window: size ``KE``, stride ``stride``, offset at its centre
        (``1 - pad + (KE - 1) / 2``)."""
        ke = self._kernel_extent()
        y1, x1 = 1 - self.pad[0], 1 - self.pad[2]
        y2, x2 = y1 + ke[0] - 1, x1 + ke[1] - 1
        return [[receptive_field([y2 - y1 + 1, x2 - x1 + 1], self.stride,
                                 [(y1 + y2) / 2, (x1 + x2) / 2])]]


class Conv(Filter):
    """Convolution, ``vl_nnconv``.

    ``dagnn.Conv('size', [3 3 64 128], 'pad', 1, 'stride', 1)`` or
    ``dagnn.Conv(size=[3, 3, 64, 128], pad=1)``.  Parameters: the filters
    ``FH x FW x C/G x K`` and, with ``hasBias``, the ``K`` biases.

    Properties
    ----------
    size : [FH, FW, C/G, K], default [0, 0, 0, 0]
        Padded with ones to four elements (``set.size``).
    hasBias : bool, default True
        Without it the biases (a second parameter, if any) are ignored and
        their derivative is ``None``.
    opts : list, default ['cuDNN']
        More options for ``vl_nnconv`` (MATLAB pairs and flags).
    pad, stride, dilate :
        See :class:`Filter`.
    """

    PROPERTIES = {"size": [0, 0, 0, 0], "hasBias": True, "opts": ["cuDNN"]}

    def _set_size(self, value):
        return (row(value) + [1, 1, 1, 1])[:4]

    def _bias(self, params):
        return params[1] if self.hasBias else None

    def _options(self):
        return block_options(self.opts, pad=self.pad, stride=self.stride, dilate=self.dilate)

    def forward(self, inputs, params):
        return [vl_nnconv(inputs[0], params[0], self._bias(params), **self._options())]

    def backward(self, inputs, params, derOutputs):
        dx, dw, db = vl_nnconv(inputs[0], params[0], self._bias(params),
                               dzdy=derOutputs[0], **self._options())
        return [dx], [dw, db]

    def getKernelSize(self):
        return self.size[:2]

    def getOutputSizes(self, inputSizes):
        sizes = super().getOutputSizes(inputSizes)
        sizes[0][2] = self.size[3]
        return sizes

    def getParamSizes(self):
        """``[size, [K, 1]]`` (filters and, with ``hasBias``, biases)."""
        sizes = [list(self.size)]
        if self.hasBias:
            sizes.append([self.size[3], 1])
        return sizes

    def initParams(self):
        """Filters ``randn(size, 'single') * sqrt(2 / (FH * FW * C))``
        ("Xavier improved", drawn from ``vlnn.dropout.DEFAULT_RNG``) and
        zero biases ``K x 1``, single precision."""
        shape = tuple(int(s) for s in self.size)
        scale = np.float32(math.sqrt(2 / math.prod(shape[:3])))
        params = [_randn(shape) * scale]
        if self.hasBias:
            params.append(np.zeros((shape[3], 1), np.float32))
        return params


class ConvTranspose(Layer):
    """Transposed convolution, ``vl_nnconvt``.

    ``dagnn.ConvTranspose('size', [4 4 21 21], 'upsample', 2, 'crop', 1)``.
    Parameters: the filters ``FH x FW x K x C`` and, with ``hasBias``, the
    ``K * numGroups`` biases.  The output has ``K * numGroups`` channels:
    ``getOutputSizes``, ``getParamSizes`` and ``initParams`` count them so
    (MatConvNet's use ``K``, which is the same for one group).

    Properties
    ----------
    size : [FH, FW, K, C], default [0, 0, 0, 0]
        Padded with ones to four elements.
    hasBias : bool, default True
    upsample : [UY, UX], default [1, 1]
        A scalar is stored as ``[u u]``.
    crop : [TOP, BOTTOM, LEFT, RIGHT], default [0, 0, 0, 0]
        A scalar ``c`` is stored as ``[c c c c]``, ``[a b]`` as ``[a a b b]``.
    numGroups : int, default 1
    opts : list, default ['cuDNN']
        More options for ``vl_nnconvt``.
    """

    PROPERTIES = {"size": [0, 0, 0, 0], "hasBias": True, "upsample": [1, 1],
                  "crop": [0, 0, 0, 0], "numGroups": 1, "opts": ["cuDNN"]}

    def _set_size(self, value):
        return (row(value) + [1, 1, 1, 1])[:4]

    def _set_upsample(self, value):
        return expand(value, _PAIR)

    def _set_crop(self, value):
        return expand(value, _QUAD)

    def _set_numGroups(self, value):
        return vector_value(value)

    def _options(self):
        return block_options(self.opts, upsample=self.upsample, crop=self.crop,
                             numGroups=self.numGroups)

    def forward(self, inputs, params):
        bias = params[1] if self.hasBias else None
        return [vl_nnconvt(inputs[0], params[0], bias, **self._options())]

    def backward(self, inputs, params, derOutputs):
        bias = params[1] if self.hasBias else None
        dx, dw, db = vl_nnconvt(inputs[0], params[0], bias, dzdy=derOutputs[0],
                                **self._options())
        return [dx], [dw, db]

    def getOutputSizes(self, inputSizes):
        """``[UY (H - 1) + FH - TOP - BOTTOM, UX (W - 1) + FW - LEFT - RIGHT,
        K * numGroups, N]``."""
        size = [float(s) for s in inputSizes[0]]
        up, crop, ks = self.upsample, self.crop, self.size
        return [size_row([up[0] * (size[0] - 1) + ks[0] - crop[0] - crop[1],
                          up[1] * (size[1] - 1) + ks[1] - crop[2] - crop[3],
                          ks[2] * self.numGroups, size[3]])]

    def getReceptiveFields(self):
        """Fractional fields: size ``(F - 1) / U + 1``, stride ``1 / U``,
        offset ``(2 crop - F + 1) / (2 U) + 1``."""
        up, crop, ks = self.upsample, self.crop, self.size
        return [[receptive_field(
            [(ks[i] - 1) / up[i] + 1 for i in range(2)],
            [1 / up[i] for i in range(2)],
            [(2 * crop[2 * i] - ks[i] + 1) / (2 * up[i]) + 1 for i in range(2)])]]

    def getParamSizes(self):
        """``[size, [K * numGroups, 1]]`` (filters and, with ``hasBias``,
        biases)."""
        sizes = [list(self.size)]
        if self.hasBias:
            sizes.append([self.size[2] * self.numGroups, 1])
        return sizes

    def initParams(self):
        """Filters ``randn(size, 'single') * sqrt(2 / (FH * FW * C))``
        (from ``vlnn.dropout.DEFAULT_RNG``) and zero biases
        ``K * numGroups x 1``, single precision."""
        shape = tuple(int(s) for s in self.size)
        scale = np.float32(math.sqrt(2 / (shape[0] * shape[1] * shape[3])))
        params = [_randn(shape) * scale]
        if self.hasBias:
            params.append(np.zeros((shape[2] * int(self.numGroups), 1), np.float32))
        return params


class Pooling(Filter):
    """Max or average pooling, ``vl_nnpool``.

    ``dagnn.Pooling('poolSize', [2 2], 'stride', 2, 'method', 'max')``.

    Properties
    ----------
    method : 'max' or 'avg', default 'max'
    poolSize : [PH, PW] or a scalar, default [1, 1]
    opts : list, default ['cuDNN']
        More options for ``vl_nnpool``.
    pad, stride :
        See :class:`Filter` (``dilate`` is not used by pooling).
    """

    PROPERTIES = {"method": "max", "poolSize": [1, 1], "opts": ["cuDNN"]}

    def _set_poolSize(self, value):
        return vector_value(value)

    def _options(self):
        return block_options(self.opts, pad=self.pad, stride=self.stride, method=self.method)

    def forward(self, inputs, params):
        return [vl_nnpool(inputs[0], self.poolSize, **self._options())]

    def backward(self, inputs, params, derOutputs):
        return [vl_nnpool(inputs[0], self.poolSize, dzdy=derOutputs[0], **self._options())], []

    def getKernelSize(self):
        return self.poolSize

    def getOutputSizes(self, inputSizes):
        sizes = super().getOutputSizes(inputSizes)
        sizes[0][2] = size_row([inputSizes[0][2]])[0]
        return sizes
