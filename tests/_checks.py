"""Shared test helpers: numerical derivative checks and array factories.

Derivatives are checked as MatConvNet's suite does, but with central
differences in float64 along random directions (HIPS autograd's
``check_grads``): for a block ``f`` and a random projection ``p`` of its
output, the analytic derivative ``dx = f'(x)^T p`` must satisfy
``<dx, v> == (<p, f(x + e v)> - <p, f(x - e v)>) / (2 e)`` for random ``v``.
"""

import numpy as np


def rng(seed=0):
    return np.random.default_rng(seed)


def randn(shape, dtype=np.float64, seed=0, order="C"):
    a = rng(seed).standard_normal(shape).astype(dtype)
    return np.asfortranarray(a) if order == "F" else a


def numerical_directional(f, x, direction, proj, eps=1e-6):
    """Central difference of ``<proj, f(x)>`` along ``direction``."""
    plus = np.vdot(proj, np.asarray(f(x + eps * direction), np.float64))
    minus = np.vdot(proj, np.asarray(f(x - eps * direction), np.float64))
    return (plus - minus) / (2 * eps)


def check_derivative(f, x, analytic, proj, eps=1e-6, rtol=1e-6, atol=1e-9,
                     directions=3, seed=1):
    """Assert that ``analytic`` (the derivative of ``<proj, f(x)>`` w.r.t.
    ``x``) matches central differences along a few random directions.

    ``f`` takes an array shaped like ``x`` and returns the block's output;
    everything is float64.
    """
    x = np.asarray(x, np.float64)
    analytic = np.asarray(analytic, np.float64)
    assert analytic.shape == x.shape, (analytic.shape, x.shape)
    r = rng(seed)
    for _ in range(directions):
        v = r.standard_normal(x.shape)
        numeric = numerical_directional(f, x, v, proj, eps)
        exact = float(np.vdot(analytic, v))
        scale = max(abs(numeric), abs(exact), 1.0)
        assert abs(numeric - exact) <= rtol * scale + atol, \
            f"derivative mismatch: numerical {numeric!r} vs analytic {exact!r}"


def check_gradient_elementwise(f, x, analytic, proj, eps=1e-6, rtol=1e-6, atol=1e-8):
    """Full central-difference gradient, element by element (tiny inputs
    only); stricter than random directions where kinks are possible."""
    x = np.asarray(x, np.float64)
    num = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        idx = it.multi_index
        e = np.zeros_like(x)
        e[idx] = eps
        num[idx] = (np.vdot(proj, f(x + e)) - np.vdot(proj, f(x - e))) / (2 * eps)
    np.testing.assert_allclose(np.asarray(analytic, np.float64), num, rtol=rtol, atol=atol)
