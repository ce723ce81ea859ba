"""The parameter update shared by cnn_train and cnn_train_dag.

MatConvNet HEAD's ``accumulateGradients`` (``examples/cnn_train.m`` and
``cnn_train_dag.m``): every trainable parameter is a :class:`ParamSlot`
that says where its value and solver state live, its summed derivative,
how the derivative is normalised and which rule updates it.
"""

__all__ = ["ParamSlot", "update_parameters"]


class ParamSlot:
    """One parameter as the update sees it.

    ``holder[key]`` is the value (a list of weights and an index, or a
    record and ``'value'``), ``state_holder[state_key]`` its solver state
    (``0`` before the first update).  ``der`` is the derivative summed
    over the sub-batches (and workers), ``None`` when nothing was
    computed for it.  ``method`` is ``'gradient'`` (SGD with momentum or a
    solver), ``'average'`` (a moving average with rate ``learning_rate``:
    bnorm moments) or ``'notrain'``.  ``der_scale`` normalises ``der``
    (``1 / numWorkers`` in cnn_train, ``1 / batchSize`` in cnn_train_dag,
    whose losses sum over the batch).
    """

    __slots__ = ("holder", "key", "der", "method", "learning_rate", "weight_decay",
                 "der_scale", "state_holder", "state_key")

    def __init__(self, holder, key, der, method="gradient", learning_rate=1.0,
                 weight_decay=1.0, der_scale=1.0, state_holder=None, state_key=None):
        self.holder, self.key, self.der = holder, key, der
        self.method = method
        self.learning_rate = float(learning_rate)
        self.weight_decay = float(weight_decay)
        self.der_scale = float(der_scale)
        self.state_holder, self.state_key = state_holder, state_key

    @property
    def value(self):
        return self.holder[self.key]

    @value.setter
    def value(self, new):
        self.holder[self.key] = new

    @property
    def state(self):
        return self.state_holder[self.state_key]

    @state.setter
    def state(self, new):
        self.state_holder[self.state_key] = new


def update_parameters(slots, learning_rate, opts):
    """Apply one update to every slot, in order; returns the rates used.

    Parameters
    ----------
    slots : sequence of ParamSlot
    learning_rate : float
        The epoch's global rate.
    opts : mapping
        ``weightDecay``, ``momentum``, ``nesterovUpdate``, ``solver`` (None:
        SGD with momentum) and ``solverOpts``.

    Notes
    -----
    ``'average'``: ``w = (1 - a) * w + (a * der_scale) * der`` with ``a``
    the slot's ``learning_rate`` alone (no global rate, no decay).
    ``'gradient'``: with ``lr = learning_rate * slot.learning_rate`` and
    ``decay = weightDecay * slot.weight_decay``, and only when ``lr > 0 or
    decay > 0``: ``g = der_scale * der + decay * w``; then SGD does
    ``v = momentum * v - g``, ``delta = momentum * v - g`` (Nesterov) or
    ``v``, ``w = w + lr * delta``; a solver does ``w, state = solver(w,
    state, g, solverOpts, lr)``.  A slot whose ``der`` is ``None`` is left
    alone.
    """
    weight_decay = opts["weightDecay"]
    momentum = opts["momentum"]
    nesterov = opts["nesterovUpdate"]
    solver = opts["solver"]
    rates = []
    for slot in slots:
        grad = slot.der
        rate = learning_rate * slot.learning_rate
        rates.append(rate)
        if grad is None or slot.method == "notrain":
            continue
        w = slot.value
        if w is None:
            continue
        if slot.method == "average":
            a = slot.learning_rate
            slot.value = (1 - a) * w + (a * slot.der_scale) * grad
            continue
        decay = weight_decay * slot.weight_decay
        if rate > 0 or decay > 0:
            # g = der_scale * der + decay * w, with no temporaries beyond the
            # first (the same numbers: x * 1.0 and x + 0 * w are x for finite w)
            if slot.der_scale != 1.0:
                grad = slot.der_scale * grad
                if decay != 0:
                    grad += decay * w
            elif decay != 0:
                grad = grad + decay * w
            if solver is None:
                # the rate multiplies the velocity at update time; it is not
                # folded into it (MatConvNet HEAD)
                velocity = momentum * slot.state - grad
                slot.state = velocity
                delta = momentum * velocity - grad if nesterov else velocity
                step = rate * delta
                step += w
                slot.value = step
            else:
                slot.value, slot.state = solver(w, slot.state, grad, opts["solverOpts"], rate)
    return rates
