"""Point-wise activations."""

from ._backend import as_tensor, common_dtype, get_array_module, shape4
from ._options import as_float, parse_options, split_derivative


def vl_nnrelu(x, dzdy=None, *args, **opts):
    """CNN rectified linear unit.

    ``Y = vl_nnrelu(X)`` applies the rectifier to ``X`` (any shape).

    ``DX = vl_nnrelu(X, DZDY)`` computes the derivative; ``vl_nnrelu(X, None,
    ...)`` (MATLAB's ``[]``) is the forward form with options.

    Parameters
    ----------
    x : array, any shape
    dzdy : array shaped like ``x``, optional

    Other Parameters
    ----------------
    Leak : float, default 0
        ``Y = X`` where ``X > 0`` and ``Y = Leak * X`` elsewhere.

    Returns
    -------
    y : array shaped like ``x`` (forward)
    dx : array shaped like ``x`` (backward): ``DZDY * (Leak + (1 - Leak) * [X > 0])``;
        the derivative at 0 is ``Leak``.  Because ``[Y > 0] == [X > 0]`` for
        ``Leak >= 0``, the output ``Y`` may be passed in place of ``X``.
    """
    fname = "vl_nnrelu"
    dzdy, args = split_derivative(dzdy, args)
    o = parse_options(fname, args, opts, {"Leak": 0})
    leak = as_float(o.Leak, fname, "Leak")
    xp = get_array_module(x, dzdy)
    x = as_tensor(x, fname, "x", xp)
    if x is None:
        raise ValueError(f"{fname}: x must not be empty")
    dzdy = as_tensor(dzdy, fname, "dzdy", xp) if dzdy is not None else None
    common_dtype(fname, x=x, dzdy=dzdy)
    if dzdy is None:
        if leak == 0:
            return xp.maximum(x, 0)
        return x * xp.where(x > 0, x.dtype.type(1), x.dtype.type(leak))
    if shape4(dzdy.shape) != shape4(x.shape):
        raise ValueError(
            f"{fname}: dzdy has shape {tuple(dzdy.shape)} but x has shape {tuple(x.shape)}")
    dzdy = dzdy.reshape(x.shape, order="F") if dzdy.shape != x.shape else dzdy
    if leak == 0:
        return dzdy * (x > 0)
    return dzdy * xp.where(x > 0, x.dtype.type(1), x.dtype.type(leak))
