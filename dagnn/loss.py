"""Losses: :class:`Loss` (``vl_nnloss``) and :class:`PDist`
(``vl_nnpdist``), MatConvNet's ``matlab/+dagnn/Loss.m`` and ``PDist.m``."""

import numpy as np

from vlnn import vl_nnloss, vl_nnpdist

from ._common import block_options, host, nan_field, size4, size_row, vector_value
from .elementwise import ElementWise

__all__ = ["Loss", "PDist"]


class Loss(ElementWise):
    """A loss, ``vl_nnloss``: inputs the predictions ``X`` and the labels
    ``C`` (1-based), output the loss.

    ``dagnn.Loss('loss', 'softmaxlog')``, ``dagnn.Loss(loss='classerror')``,
    ``dagnn.Loss('loss', 'topkerror', 'opts', {'topK', 5})``.

    Besides computing the loss, each forward updates a running average that
    ``cnn_train_dag`` reports: after ``numAveraged`` values (the count of
    locations ``H * W * N`` seen so far)::

        m = numAveraged + H * W * N
        average = (numAveraged * average + N * loss) / m     (normalise)
        average = (numAveraged * average + loss) / m         (otherwise)
        numAveraged = m

    (``vl_nnloss`` divides the summed loss by ``N``; ``N * loss`` undoes
    that.)  :meth:`reset` sets both back to 0.  The average is kept on the
    host in the loss's precision.

    Properties
    ----------
    loss : str, default 'softmaxlog'
        Any loss of ``vl_nnloss`` (``softmaxlog``, ``log``, ``classerror``,
        ``topkerror``, ``mhinge``, ``mshinge``, ``binaryerror``,
        ``binarylog``, ``logistic``, ``hinge``).
    ignoreAverage : bool, default False
        Do not update the running average.
    normalise : bool, default True
        How the average is formed (above); not passed to ``vl_nnloss``.
    opts : list, default []
        More options for ``vl_nnloss`` (``'instanceWeights'``, ``'topK'``,
        ``'threshold'``, ...), as MATLAB pairs.

    Transient: ``average`` (0), ``numAveraged`` (0).
    """

    PROPERTIES = {"loss": "softmaxlog", "ignoreAverage": False, "normalise": True, "opts": []}
    TRANSIENT = {"average": 0, "numAveraged": 0}

    def forward(self, inputs, params):
        outputs = [vl_nnloss(inputs[0], inputs[1], **block_options(self.opts, loss=self.loss))]
        self.accumulateAverage(inputs, outputs)
        return outputs

    def accumulateAverage(self, inputs, outputs):
        """Fold ``outputs[0]`` into ``average`` and ``numAveraged`` (see
        the class help)."""
        if self.ignoreAverage:
            return
        h, w, _, n = size4(inputs[0].shape)
        count = self.numAveraged
        total = count + h * w * n
        value = np.asarray(host(outputs[0]))
        if self.normalise:
            value = n * value
        # in the loss's precision, as MATLAB's double-times-single arithmetic
        self.average = (count * np.asarray(self.average, value.dtype) + value) / total
        self.numAveraged = total

    def backward(self, inputs, params, derOutputs):
        return [vl_nnloss(inputs[0], inputs[1], dzdy=derOutputs[0],
                          **block_options(self.opts, loss=self.loss)), None], []

    def reset(self):
        """Clear the running average."""
        self.average = 0
        self.numAveraged = 0

    def getOutputSizes(self, inputSizes, paramSizes=None):
        """``[1, 1, 1, N]``."""
        return [size_row([1, 1, 1, inputSizes[0][3]])]

    def getReceptiveFields(self):
        """Undefined (NaN) for both inputs: the loss depends on every
        location, whose number is known only at run time."""
        return [[nan_field()], [nan_field()]]


class PDist(Loss):
    """The p-distance between two inputs, ``vl_nnpdist``, as a loss.

    ``dagnn.PDist('p', 2, 'aggregate', True)``; inputs ``X``, ``X0`` and
    optionally a third, the ``instanceWeights`` (whose derivative is not
    computed: ``None``).  The running average is that of :class:`Loss`.
    ``loss`` is always ``'pdist'`` (set by the constructor).

    Properties
    ----------
    p : float, default 2
    aggregate : bool, default True
        Sum the distances into one number.
    noRoot : bool, default False
        ``sum |x - x0|^p`` without the ``1/p`` root.
    epsilon : float, default 1e-6
        Smoothing of the derivative near zero.
    loss, ignoreAverage, normalise, opts :
        See :class:`Loss` (``opts`` go to ``vl_nnpdist``).
    """

    PROPERTIES = {"p": 2, "aggregate": True, "noRoot": False, "epsilon": 1e-6}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss = "pdist"

    def _set_p(self, value):
        return vector_value(value)

    def _set_epsilon(self, value):
        return vector_value(value)

    def _options(self, inputs):
        if len(inputs) not in (2, 3):
            raise ValueError(f"PDist: invalid number of inputs ({len(inputs)}); expected 2 "
                             "(x, x0) or 3 (x, x0, instanceWeights)")
        explicit = {"aggregate": self.aggregate, "noRoot": self.noRoot, "epsilon": self.epsilon}
        if len(inputs) == 3:
            explicit["instanceWeights"] = inputs[2]
        return block_options(self.opts, **explicit)

    def forward(self, inputs, params):
        outputs = [vl_nnpdist(inputs[0], inputs[1], self.p, **self._options(inputs))]
        self.accumulateAverage(inputs, outputs)
        return outputs

    def backward(self, inputs, params, derOutputs):
        options = self._options(inputs)
        dx, dx0 = vl_nnpdist(inputs[0], inputs[1], self.p, dzdy=derOutputs[0], **options)
        return [dx, dx0] + [None] * (len(inputs) - 2), []
