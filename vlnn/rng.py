"""The random state the blocks draw from (MATLAB's ``rng``).

MatConvNet's random draws (dropout masks, ``vl_imreadjpeg``'s random crops,
flips and colour shifts) come from MATLAB's global generator, seeded with
``rng(seed)``.  Here they come from one NumPy ``Generator`` held by this
module:

=====================================  ============================================
MATLAB                                 Python
=====================================  ============================================
``rng(0) ;``                           ``vlnn.set_random_seed(0)``
``s = rng ; ... ; rng(s) ;``           ``g = vlnn.set_random_generator(mine)`` ...
                                       ``vlnn.set_random_generator(g)``
=====================================  ============================================

Nobody needs to touch a module global: :func:`set_random_seed` and
:func:`set_random_generator` install a generator and return the previous
one, so a trainer can seed each epoch (or each worker) and restore the
caller's state afterwards.  Data on the GPU (CuPy) draw from a CuPy
``RandomState`` that is itself seeded from the installed generator the first
time it is needed, so a seed reproduces GPU draws too (CPU and GPU draws of
one seed differ, as in MATLAB).
"""

import numpy as np

from ._options import int_vector

__all__ = ["set_random_seed", "get_random_generator", "set_random_generator",
           "random_generator_for"]

_generator = np.random.default_rng()
# the CuPy RandomState derived from _generator, made on first use
_device_state = None


def _check_seed(seed):
    """A seed as ``numpy.random.default_rng`` takes it: a non-negative
    integer (any integral number) or a sequence of them."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return int(seed)  # exact, also beyond float64's integers
    if isinstance(seed, (list, tuple)) or (hasattr(seed, "size") and np.size(seed) > 1):
        count = int(np.size(seed))
        if count == 0:
            raise ValueError("set_random_seed: seed must not be empty")
        return list(int_vector(seed, "set_random_seed", "seed", (count,), minimum=0))
    return int_vector(seed, "set_random_seed", "seed", (1,), minimum=0)[0]


def set_random_seed(seed):
    """Seed the random draws of the blocks, as MATLAB's ``rng(seed)``.

    Parameters
    ----------
    seed : int or sequence of int
        Non-negative integers (``3``, ``3.0``, ``[seed, epoch, rank]``).
        Installs ``numpy.random.default_rng(seed)``.

    Returns
    -------
    previous : numpy.random.Generator
        The generator that was installed, for :func:`set_random_generator`.

    Examples
    --------
    >>> import numpy as np, vlnn
    >>> x = np.ones((4, 4), np.float32)
    >>> _ = vlnn.set_random_seed(7); y1, mask1 = vlnn.vl_nndropout(x)
    >>> _ = vlnn.set_random_seed(7); y2, mask2 = vlnn.vl_nndropout(x)
    >>> bool((mask1 == mask2).all())
    True
    """
    return set_random_generator(np.random.default_rng(_check_seed(seed)))


def get_random_generator():
    """The ``numpy.random.Generator`` the blocks draw from now."""
    return _generator


def set_random_generator(generator):
    """Install ``generator`` as the source of the blocks' random draws.

    Parameters
    ----------
    generator : numpy.random.Generator
        Used from now on (not copied: it advances as the blocks draw).

    Returns
    -------
    previous : numpy.random.Generator
        The generator that was installed; give it back to this function to
        restore the earlier state.
    """
    global _generator, _device_state
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"set_random_generator: generator must be a numpy.random.Generator, "
                        f"got {type(generator).__name__}")
    previous, _generator, _device_state = _generator, generator, None
    return previous


def random_generator_for(xp):
    """The generator a block uses for data of the array module ``xp``.

    ``numpy``: the installed ``numpy.random.Generator``.  ``cupy``: a
    ``cupy.random.RandomState`` seeded from it on first use (and again after
    every :func:`set_random_seed` or :func:`set_random_generator`).
    """
    global _device_state
    if xp is np:
        return _generator
    if _device_state is None:
        _device_state = xp.random.RandomState(int(_generator.integers(2 ** 63 - 1)))
    return _device_state
