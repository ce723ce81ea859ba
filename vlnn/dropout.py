"""Dropout."""

import numpy as np

from ._backend import block_tensors, like_shape, shape4
from ._options import as_float, as_int, parse_options, split_derivative
from .rng import random_generator_for


def _seed(value, fname):
    """An integer seed (any integral number), with an error naming ``rng``."""
    try:
        return as_int(value, fname, "rng", minimum=0)
    except ValueError:
        raise ValueError(
            f"{fname}: rng must be a numpy.random.Generator or a non-negative integer "
            f"seed, got {value!r}") from None


def _device_generators(xp):
    """The generator classes of CuPy that ``rng`` may be (none for NumPy)."""
    if xp is np:
        return ()
    return (xp.random.RandomState,) + ((xp.random.Generator,) if hasattr(xp.random, "Generator")
                                       else ())


def _check_rng(rng, xp, fname):
    if rng is not None and not isinstance(rng, (np.random.Generator,) + _device_generators(xp)):
        _seed(rng, fname)


def _uniform(rng, shape, xp, fname):
    """Uniform ``[0, 1)`` samples of ``shape`` in single precision (as
    MatConvNet's ``rand(size(x), 'single')``), drawn by the array module of
    the data."""
    if rng is None:
        rng = random_generator_for(xp)
    if xp is np:
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(_seed(rng, fname))
        return rng.random(shape, dtype=np.float32)
    # CuPy: draw on the device.  A NumPy Generator only draws the seed of a
    # CuPy RandomState, so a seeded one still gives reproducible masks there
    # (not the masks it would give for NumPy data).
    if isinstance(rng, np.random.Generator):
        rng = xp.random.RandomState(int(rng.integers(2 ** 63 - 1)))
    elif not isinstance(rng, _device_generators(xp)):
        rng = xp.random.RandomState(_seed(rng, fname))
    if isinstance(rng, xp.random.RandomState):
        return rng.random_sample(shape, dtype=np.float32)
    return rng.random(shape, dtype=np.float32)


def vl_nndropout(x, *args, dzdy=None, **opts):
    """CNN dropout (inverted: no test-time rescaling is needed).

    ``Y, MASK = vl_nndropout(X)`` zeroes each element of ``X`` with
    probability ``rate`` and scales the kept ones by ``1 / (1 - rate)``;
    ``MASK`` is the mask that was applied (``Y = MASK * X``).

    ``DX = vl_nndropout(X, DZDY, mask=MASK)`` computes the derivative with
    the mask of the forward pass: ``DX = MASK * DZDY``.

    Parameters
    ----------
    x : array, any shape
        The data.  In backward mode ``x`` may be ``None`` (MATLAB's ``[]``):
        only the mask and ``dzdy`` are needed, and ``dx`` then has
        ``dzdy``'s shape.
    dzdy : array shaped like ``x``, optional
        Passing it selects backward mode; ``None`` (or an empty array) is
        the forward form.

    Other Parameters
    ----------------
    rate : float in [0, 1), default 0.5
        Probability that an element is zeroed.
    mask : array shaped like ``x``, default None
        Required in backward mode (``ValueError`` otherwise; MatConvNet only
        warns and draws a fresh mask).  In forward mode a given mask is used
        as is and no random numbers are drawn.  Same dtype as ``x``.
    rng : numpy.random.Generator or int, default None
        Source of the random mask (an extension of MatConvNet, which uses
        MATLAB's global generator).  An integer is a seed: the same seed
        gives the same mask.  ``None`` draws from the blocks' random state,
        seeded with ``vlnn.set_random_seed(seed)`` (MATLAB's ``rng(seed)``)
        and exchanged with ``vlnn.set_random_generator`` (see
        :mod:`vlnn.rng`).  For CuPy data the mask is drawn on the device
        with ``cupy.random``: an integer seeds a ``cupy.random.RandomState``,
        a NumPy Generator draws the seed of one, a CuPy ``RandomState`` or
        ``Generator`` is used directly, and ``None`` uses the CuPy state that
        ``vlnn.rng`` seeds from its generator.  A seed reproduces a mask on
        the same kind of device; CPU and GPU masks of one seed differ.

    Returns
    -------
    y, mask : arrays shaped like ``x``, of ``x``'s dtype (forward)::

        U ~ uniform [0, 1) in single precision, one sample per element
        scale = 1 / (1 - rate)
        MASK = scale * [U >= rate]      (values 0 or scale)
        Y = MASK * X

    dx : array shaped like ``x`` (backward)::

        DX = MASK * DZDY
    """
    fname = "vl_nndropout"
    dzdy, args = split_derivative(fname, args, dzdy)
    o = parse_options(fname, args, opts, {"rate": 0.5, "mask": None, "rng": None})
    rate = as_float(o.rate, fname, "rate")
    if not 0 <= rate < 1:
        raise ValueError(f"{fname}: rate must be in [0, 1), got {rate!r}")
    # x may be empty in backward mode (the mask gives the shape)
    xp, dtype, (x, dzdy, mask) = block_tensors(fname, required=(), x=x, dzdy=dzdy, mask=o.mask)
    _check_rng(o.rng, xp, fname)

    if dzdy is not None:
        if mask is None:
            raise ValueError(
                f"{fname}: backward mode needs the mask of the forward pass: "
                f"vl_nndropout(x, dzdy, mask=mask)")
        shape = x.shape if x is not None else dzdy.shape
        for name, t in (("dzdy", dzdy), ("mask", mask)):
            if shape4(t.shape) != shape4(shape):
                raise ValueError(
                    f"{fname}: {name} has shape {tuple(t.shape)} but x has shape {tuple(shape)}")
        return like_shape(mask, shape) * like_shape(dzdy, shape)

    if x is None:
        raise ValueError(f"{fname}: x must not be empty")
    if mask is None:
        scale = dtype.type(1 / (1 - rate))
        keep = _uniform(o.rng, x.shape, xp, fname) >= np.float32(rate)
        mask = scale * keep.astype(dtype)
    elif shape4(mask.shape) != shape4(x.shape):
        raise ValueError(
            f"{fname}: mask has shape {tuple(mask.shape)} but x has shape {tuple(x.shape)}")
    mask = like_shape(mask, x.shape)
    return mask * x, mask
