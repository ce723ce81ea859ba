"""MatConvNet's solvers (``examples/+solver``) for :func:`simplenn.train.cnn_train`.

Each solver is called as ``w, state = solver(w, state, grad, opts, lr)``
for one parameter array ``w``, once per training batch:

* ``state`` is the solver's memory for that parameter: ``None`` or ``0`` on
  the first call (what ``cnn_train`` passes), afterwards whatever the
  previous call returned;
* ``grad`` is the gradient, already scaled by ``1/numSubBatches`` and
  including weight decay (``cnn_train`` does both);
* ``opts`` holds the hyper-parameters (a dict or
  :class:`~simplenn.struct.Struct`; missing ones take the defaults,
  ``None`` means all defaults; names are matched case-insensitively and an
  unknown name is a ``TypeError``);
* ``lr`` is the learning rate of this parameter for this epoch (the global
  rate times the layer's multiplier).

Called without arguments, a solver returns its default hyper-parameters,
as MatConvNet's ``solver()`` does::

    >>> from simplenn import solvers
    >>> solvers.adam()
    Struct(
      beta1: 0.9
      beta2: 0.999
        eps: 1e-08
    )

The formulas are MatConvNet's, term for term.  Arrays may be NumPy or CuPy
(the state lives where the parameter lives); the result has the
parameter's dtype, since hyper-parameters are Python floats.  The inputs are
never modified: new arrays and a new state are returned.
"""

from vlnn._backend import get_array_module
from vlnn._options import as_float, parse_options

from .struct import Struct

__all__ = ["adam", "adagrad", "adadelta", "rmsprop"]


def _defaults(values):
    return Struct(values)


def _hyper(fname, opts, defaults):
    """The solver's hyper-parameters as Python floats (defaults filled in)."""
    if opts is None:
        opts = {}
    if not hasattr(opts, "items"):
        raise TypeError(f"{fname}: opts must be a mapping of hyper-parameters "
                        f"(or None for the defaults), got {type(opts).__name__}")
    parsed = parse_options(fname, (), dict(opts), defaults)
    return Struct({name: as_float(parsed[name], fname, name) for name in defaults})


def _is_initial(state):
    """``None``, a zero number or an empty array: the first call for a
    parameter (``cnn_train`` starts every solver state at ``0``)."""
    if state is None:
        return True
    if isinstance(state, dict):
        return False
    size = getattr(state, "size", None)
    if size is not None:  # an array (NumPy or CuPy) or a NumPy scalar
        return size == 0 or (getattr(state, "ndim", 0) == 0 and state == 0)
    return isinstance(state, (int, float)) and not isinstance(state, bool) and state == 0


def _field(state, name, fname):
    try:
        return state[name]
    except (KeyError, TypeError, IndexError):
        raise ValueError(f"{fname}: state must be None, 0 or the state returned by a previous "
                         f"call (a struct with field '{name}'), got {state!r}") from None


def _learning_rate(fname, lr):
    if lr is None:
        raise TypeError(f"{fname}: the learning rate lr is required")
    return as_float(lr, fname, "lr")


def _check_arrays(fname, w, grad):
    if w is None or grad is None:
        raise TypeError(f"{fname}: w and grad are required (call {fname}() without arguments "
                        "for the default options)")
    return get_array_module(w, grad)


ADAM_DEFAULTS = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


def adam(w=None, state=None, grad=None, opts=None, lr=None):
    """Adam solver (Kingma and Ba, 2014), MatConvNet's ``solver.adam``.

    ``w, state = adam(w, state, grad, opts, lr)`` performs one update of the
    parameter ``w``; ``adam()`` returns the default options.  The
    implementation follows torch's ``optim.adam``, as MatConvNet's does::

        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        t = t + 1
        lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
        w = w - lr_t * m / (sqrt(v) + eps)

    Parameters
    ----------
    w : array
        The parameter (NumPy or CuPy, float32 or float64).
    state : Struct, 0 or None
        ``None`` or ``0`` on the first call: the state then starts as
        ``m = 0``, ``v = 0``, ``t = 0``.  Afterwards the state returned by the
        previous call: a :class:`~simplenn.struct.Struct` with ``m`` (first
        moment), ``v`` (second moment) and ``t`` (the number of updates so
        far, counted across epochs).
    grad : array
        The gradient, shaped like ``w``.
    opts : mapping or None
        Hyper-parameters; ``None`` for all defaults:

        beta1 : float, default 0.9
            Decay of the first moment vector.
        beta2 : float, default 0.999
            Decay of the second moment vector.
        eps : float, default 1e-8
            Added to ``sqrt(v)`` before dividing.
    lr : float
        The learning rate (``alpha`` in Algorithm 1 of the paper).

    Returns
    -------
    w : array
        The updated parameter.
    state : Struct
        The new state (``m``, ``v``, ``t``).
    """
    fname = "adam"
    if w is None and state is None and grad is None and opts is None and lr is None:
        return _defaults(ADAM_DEFAULTS)
    xp = _check_arrays(fname, w, grad)
    o = _hyper(fname, opts, ADAM_DEFAULTS)
    lr = _learning_rate(fname, lr)
    if _is_initial(state):
        m, v, t = 0, 0, 0
    else:
        m, v, t = (_field(state, name, fname) for name in ("m", "v", "t"))
    m = o.beta1 * m + (1 - o.beta1) * grad
    v = o.beta2 * v + (1 - o.beta2) * grad ** 2
    t = int(t) + 1
    # this implicitly corrects for the biased estimates of the two moments
    lr_t = lr * ((1 - o.beta2 ** t) ** 0.5 / (1 - o.beta1 ** t))
    w = w - lr_t * m / (xp.sqrt(v) + o.eps)
    return w, Struct(m=m, v=v, t=t)


ADAGRAD_DEFAULTS = {"epsilon": 1e-10, "rho": 1.0}


def adagrad(w=None, state=None, grad=None, opts=None, lr=None):
    """AdaGrad solver, MatConvNet's ``solver.adagrad``.

    ``w, g_sqr = adagrad(w, g_sqr, grad, opts, lr)`` performs one update;
    ``adagrad()`` returns the default options::

        g_sqr = rho * g_sqr + grad**2
        w = w - lr * grad / (sqrt(g_sqr) + epsilon)

    With ``rho = 1`` (the default) this is standard AdaGrad: the squared
    gradients are summed over all updates, so the steps shrink
    monotonically.  With ``rho < 1`` the sum decays (note: unlike RMSProp,
    there is no ``(1 - rho)`` factor on the new term).  Learning rates that
    suit SGD may not suit AdaGrad.

    Parameters
    ----------
    w : array
        The parameter (NumPy or CuPy, float32 or float64).
    state : array, 0 or None
        The running sum of squared gradients ``g_sqr``; ``None`` or ``0`` on
        the first call.
    grad : array
        The gradient, shaped like ``w``.
    opts : mapping or None
        Hyper-parameters; ``None`` for all defaults:

        epsilon : float, default 1e-10
            Added to ``sqrt(g_sqr)`` to regularise the variance estimate.
        rho : float, default 1
            Decay of the sum of squared gradients (1: plain sum).
    lr : float
        The learning rate.

    Returns
    -------
    w : array
        The updated parameter.
    state : array
        The new ``g_sqr``.
    """
    fname = "adagrad"
    if w is None and state is None and grad is None and opts is None and lr is None:
        return _defaults(ADAGRAD_DEFAULTS)
    xp = _check_arrays(fname, w, grad)
    o = _hyper(fname, opts, ADAGRAD_DEFAULTS)
    lr = _learning_rate(fname, lr)
    g_sqr = 0 if _is_initial(state) else state
    g_sqr = g_sqr * o.rho + grad ** 2
    w = w - lr * grad / (xp.sqrt(g_sqr) + o.epsilon)
    return w, g_sqr


ADADELTA_DEFAULTS = {"epsilon": 1e-6, "rho": 0.9}


def adadelta(w=None, state=None, grad=None, opts=None, lr=None):
    """AdaDelta solver (Zeiler, 2012), MatConvNet's ``solver.adadelta``.

    ``w, state = adadelta(w, state, grad, opts, lr)`` performs one update;
    ``adadelta()`` returns the default options.  AdaDelta sets its own step
    size, so ``lr`` is ignored (it may be ``None``)::

        g_sqr = rho * g_sqr + (1 - rho) * grad**2
        delta = -sqrt((delta_sqr + epsilon) / (g_sqr + epsilon)) * grad
        delta_sqr = rho * delta_sqr + (1 - rho) * delta**2
        w = w + delta

    Parameters
    ----------
    w : array
        The parameter (NumPy or CuPy, float32 or float64).
    state : Struct, 0 or None
        ``None`` or ``0`` on the first call (then ``g_sqr = 0`` and
        ``delta_sqr = 0``); afterwards the state returned by the previous
        call, a :class:`~simplenn.struct.Struct` with ``g_sqr`` and
        ``delta_sqr``.
    grad : array
        The gradient, shaped like ``w``.
    opts : mapping or None
        Hyper-parameters; ``None`` for all defaults:

        epsilon : float, default 1e-6
            Regularises both variance estimates.
        rho : float, default 0.9
            Moving-average factor of the variance updates, between 0 and 1
            (larger values update more slowly and stably).
    lr : float or None
        Ignored.

    Returns
    -------
    w : array
        The updated parameter.
    state : Struct
        The new state (``g_sqr``, ``delta_sqr``).
    """
    fname = "adadelta"
    if w is None and state is None and grad is None and opts is None and lr is None:
        return _defaults(ADADELTA_DEFAULTS)
    xp = _check_arrays(fname, w, grad)
    o = _hyper(fname, opts, ADADELTA_DEFAULTS)
    if _is_initial(state):
        g_sqr, delta_sqr = 0, 0
    else:
        g_sqr, delta_sqr = (_field(state, name, fname) for name in ("g_sqr", "delta_sqr"))
    g_sqr = g_sqr * o.rho + grad ** 2 * (1 - o.rho)
    delta = -xp.sqrt((delta_sqr + o.epsilon) / (g_sqr + o.epsilon)) * grad
    delta_sqr = delta_sqr * o.rho + delta ** 2 * (1 - o.rho)
    w = w + delta
    return w, Struct(g_sqr=g_sqr, delta_sqr=delta_sqr)


RMSPROP_DEFAULTS = {"epsilon": 1e-8, "rho": 0.99}


def rmsprop(w=None, state=None, grad=None, opts=None, lr=None):
    """RMSProp solver, MatConvNet's ``solver.rmsprop``.

    ``w, g_sqr = rmsprop(w, g_sqr, grad, opts, lr)`` performs one update;
    ``rmsprop()`` returns the default options::

        g_sqr = rho * g_sqr + (1 - rho) * grad**2
        w = w - lr * grad / (sqrt(g_sqr) + epsilon)

    Learning rates that suit SGD may not suit RMSProp.

    Parameters
    ----------
    w : array
        The parameter (NumPy or CuPy, float32 or float64).
    state : array, 0 or None
        The moving average of squared gradients ``g_sqr``; ``None`` or ``0``
        on the first call.
    grad : array
        The gradient, shaped like ``w``.
    opts : mapping or None
        Hyper-parameters; ``None`` for all defaults:

        epsilon : float, default 1e-8
            Added to ``sqrt(g_sqr)`` to regularise the variance estimate.
        rho : float, default 0.99
            Moving-average factor, between 0 and 1 (larger values update
            more slowly and stably).
    lr : float
        The learning rate.

    Returns
    -------
    w : array
        The updated parameter.
    state : array
        The new ``g_sqr``.
    """
    fname = "rmsprop"
    if w is None and state is None and grad is None and opts is None and lr is None:
        return _defaults(RMSPROP_DEFAULTS)
    xp = _check_arrays(fname, w, grad)
    o = _hyper(fname, opts, RMSPROP_DEFAULTS)
    lr = _learning_rate(fname, lr)
    g_sqr = 0 if _is_initial(state) else state
    g_sqr = g_sqr * o.rho + grad ** 2 * (1 - o.rho)
    w = w - lr * grad / (xp.sqrt(g_sqr) + o.epsilon)
    return w, g_sqr
