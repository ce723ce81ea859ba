"""Batch normalisation: :class:`BatchNorm` (MatConvNet's
``matlab/+dagnn/BatchNorm.m``)."""

import numpy as np

from vlnn import vl_nnbnorm

from ._common import block_options, net_mode, to_device, vector_value
from .elementwise import ElementWise

__all__ = ["BatchNorm"]


class BatchNorm(ElementWise):
    """Batch normalisation, ``vl_nnbnorm``.

    ``dagnn.BatchNorm('numChannels', 64, 'epsilon', 1e-5)``.  Parameters:
    the multipliers (``C``), the biases (``C``) and the moments
    (``C x 2``, ``[MU, SIGMA]``).  Attaching the block to a net sets the
    moments parameter's ``trainMethod`` to ``'average'`` and its
    ``learningRate`` to 0.1: ``cnn_train_dag`` keeps a moving average of
    the batch moments, which the backward returns as that parameter's
    "derivative".

    In the net's ``'normal'`` mode the forward normalises with the moments
    of the batch (kept in the transient ``moments`` for the backward); in
    ``'test'`` mode with the moments parameter.

    Properties
    ----------
    numChannels : int, default None
        ``C``; used by :meth:`initParams` and :meth:`getParamSizes`.
    epsilon : float, default 1e-5
    opts : list, default ['NoCuDNN']
        More options for ``vl_nnbnorm``.
    """

    PROPERTIES = {"numChannels": None, "epsilon": 1e-5, "opts": ["NoCuDNN"]}
    TRANSIENT = {"moments": None}

    def _set_numChannels(self, value):
        return vector_value(value)

    def _set_epsilon(self, value):
        return vector_value(value)

    def forward(self, inputs, params):
        if net_mode(self) == "test":
            return [vl_nnbnorm(inputs[0], params[0], params[1],
                               **block_options(self.opts, moments=params[2],
                                               epsilon=self.epsilon))]
        y, self.moments = vl_nnbnorm(inputs[0], params[0], params[1], return_moments=True,
                                     **block_options(self.opts, epsilon=self.epsilon))
        return [y]

    def backward(self, inputs, params, derOutputs):
        dx, dg, db, moments = vl_nnbnorm(
            inputs[0], params[0], params[1], dzdy=derOutputs[0], return_moments=True,
            **block_options(self.opts, epsilon=self.epsilon, moments=self.moments))
        self.moments = None
        return [dx], [dg, db, moments]

    def reset(self):
        """Forget the moments of the last forward."""
        self.moments = None

    def move(self, device):
        """Move the kept moments to ``'cpu'`` or ``'gpu'``."""
        self.moments = to_device(self.moments, device)

    def getParamSizes(self):
        """``[[C, 1], [C, 1], [C, 2]]``."""
        c = self.numChannels
        return [[c, 1], [c, 1], [c, 2]]

    def initParams(self):
        """Multipliers ones ``C x 1``, biases zeros ``C x 1``, moments zeros
        ``C x 2``, single precision."""
        c = int(self.numChannels)
        return [np.ones((c, 1), np.float32), np.zeros((c, 1), np.float32),
                np.zeros((c, 2), np.float32)]

    def attach(self, net, index):
        """Attach, then make the moments an ``'average'`` parameter with
        learning rate 0.1."""
        super().attach(net, index)
        p = net.getParamIndex(net.layers[index].params[2])
        net.params[p].trainMethod = "average"
        net.params[p].learningRate = 0.1
