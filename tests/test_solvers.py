"""simplenn.solvers: MatConvNet's adam, adagrad, adadelta and rmsprop.

Each solver's first two steps are compared with its formula written out
here (MATLAB's ``examples/+solver/*.m``), with default and custom
hyper-parameters, in float32 and float64; then the calling conventions
(defaults from a no-argument call, initial states, dtypes, untouched
inputs) and the errors."""

import numpy as np
import pytest

from simplenn import solvers
from simplenn.struct import Struct

SHAPE = (3, 2, 2, 4)


def arrays(dtype, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(SHAPE).astype(dtype)
    g1 = rng.standard_normal(SHAPE).astype(dtype)
    g2 = rng.standard_normal(SHAPE).astype(dtype)
    return w, g1, g2


# The formulas, written independently of the module (float64 reference).

def adam_reference(w, grads, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    m = v = 0.0
    out = []
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        lr_t = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        w = w - lr_t * m / (np.sqrt(v) + eps)
        out.append(w)
    return out


def adagrad_reference(w, grads, lr, epsilon=1e-10, rho=1.0):
    g_sqr = 0.0
    out = []
    for g in grads:
        g_sqr = rho * g_sqr + g ** 2
        w = w - lr * g / (np.sqrt(g_sqr) + epsilon)
        out.append(w)
    return out


def adadelta_reference(w, grads, lr, epsilon=1e-6, rho=0.9):
    g_sqr = delta_sqr = 0.0
    out = []
    for g in grads:
        g_sqr = rho * g_sqr + (1 - rho) * g ** 2
        delta = -np.sqrt((delta_sqr + epsilon) / (g_sqr + epsilon)) * g
        delta_sqr = rho * delta_sqr + (1 - rho) * delta ** 2
        w = w + delta
        out.append(w)
    return out


def rmsprop_reference(w, grads, lr, epsilon=1e-8, rho=0.99):
    g_sqr = 0.0
    out = []
    for g in grads:
        g_sqr = rho * g_sqr + (1 - rho) * g ** 2
        w = w - lr * g / (np.sqrt(g_sqr) + epsilon)
        out.append(w)
    return out


CASES = {
    "adam": (solvers.adam, adam_reference, {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
             {"beta1": 0.5, "beta2": 0.9, "eps": 1e-3}),
    "adagrad": (solvers.adagrad, adagrad_reference, {"epsilon": 1e-10, "rho": 1.0},
                {"epsilon": 1e-2, "rho": 0.7}),
    "adadelta": (solvers.adadelta, adadelta_reference, {"epsilon": 1e-6, "rho": 0.9},
                 {"epsilon": 1e-3, "rho": 0.5}),
    "rmsprop": (solvers.rmsprop, rmsprop_reference, {"epsilon": 1e-8, "rho": 0.99},
                {"epsilon": 1e-3, "rho": 0.8}),
}


@pytest.mark.parametrize("name", CASES)
def test_defaults_are_matconvnets(name):
    solver, _, defaults, _ = CASES[name]
    opts = solver()
    assert isinstance(opts, Struct)
    assert dict(opts) == defaults


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("custom", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_two_steps_equal_the_formula(name, custom, dtype):
    solver, reference, defaults, others = CASES[name]
    hyper = others if custom else defaults
    opts = dict(hyper) if custom else None
    w0, g1, g2 = arrays(dtype)
    lr = 0.01
    expected = reference(w0.astype(np.float64), [g1.astype(np.float64), g2.astype(np.float64)],
                         lr, **hyper)
    w1, state = solver(w0, 0, g1, opts, lr)
    w2, state = solver(w1, state, g2, opts, lr)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    for got, want in zip((w1, w2), expected):
        assert got.dtype == dtype and got.shape == SHAPE
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", CASES)
def test_none_and_zero_start_alike_and_inputs_untouched(name):
    solver = CASES[name][0]
    w, g, _ = arrays(np.float32)
    w_copy, g_copy = w.copy(), g.copy()
    a, state_a = solver(w, None, g, None, 0.1)
    b, state_b = solver(w, 0, g, {}, 0.1)
    c, _ = solver(w, np.zeros(0), g, Struct(), 0.1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(w, w_copy)
    np.testing.assert_array_equal(g, g_copy)
    # the state is new: a further step does not change the first result
    solver(a, state_a, g, None, 0.1)
    np.testing.assert_array_equal(a, b)


def test_state_contents():
    w, g1, g2 = arrays(np.float64)
    _, state = solvers.adam(w, 0, g1, None, 0.1)
    assert set(state) == {"m", "v", "t"} and state.t == 1
    np.testing.assert_allclose(state.m, 0.1 * g1)
    np.testing.assert_allclose(state.v, 0.001 * g1 ** 2)
    _, state = solvers.adam(w, state, g2, None, 0.1)
    assert state.t == 2
    # a state read back from a checkpoint is a plain mapping: it works too
    _, again = solvers.adam(w, {"m": state.m, "v": state.v, "t": 2}, g1, None, 0.1)
    assert again.t == 3
    _, g_sqr = solvers.adagrad(w, 0, g1, None, 0.1)
    np.testing.assert_allclose(g_sqr, g1 ** 2)
    _, g_sqr = solvers.rmsprop(w, 0, g1, None, 0.1)
    np.testing.assert_allclose(g_sqr, 0.01 * g1 ** 2)
    _, state = solvers.adadelta(w, 0, g1, None, 0.1)
    assert set(state) == {"g_sqr", "delta_sqr"}


def test_adagrad_has_no_one_minus_rho_factor():
    w, g1, g2 = arrays(np.float64)
    _, g_sqr = solvers.adagrad(w, 0, g1, {"rho": 0.5}, 0.1)
    _, g_sqr = solvers.adagrad(w, g_sqr, g2, {"rho": 0.5}, 0.1)
    np.testing.assert_allclose(g_sqr, 0.5 * g1 ** 2 + g2 ** 2)


def test_adadelta_ignores_the_learning_rate():
    w, g, _ = arrays(np.float32)
    a, _ = solvers.adadelta(w, 0, g, None, 0.1)
    b, _ = solvers.adadelta(w, 0, g, None, 1000.0)
    c, _ = solvers.adadelta(w, 0, g, None, None)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("name", CASES)
def test_float32_stays_float32_with_numpy_scalars(name):
    solver = CASES[name][0]
    w, g, _ = arrays(np.float32)
    w1, state = solver(w, 0, g, {key: np.float64(v) for key, v in CASES[name][2].items()},
                       np.float64(0.01))
    w2, _ = solver(w1, state, g, None, np.float64(0.01))
    assert w1.dtype == np.float32 and w2.dtype == np.float32


def test_option_names_are_case_insensitive():
    w, g, _ = arrays(np.float64)
    a, _ = solvers.rmsprop(w, 0, g, {"RHO": 0.5, "Epsilon": 1e-3}, 0.1)
    b, _ = solvers.rmsprop(w, 0, g, {"rho": 0.5, "epsilon": 1e-3}, 0.1)
    np.testing.assert_array_equal(a, b)


def test_errors():
    w, g, _ = arrays(np.float64)
    with pytest.raises(TypeError, match="unknown option 'beta3'"):
        solvers.adam(w, 0, g, {"beta3": 0.1}, 0.1)
    with pytest.raises(TypeError, match="mapping"):
        solvers.adam(w, 0, g, [0.9], 0.1)
    with pytest.raises(TypeError, match="learning rate"):
        solvers.rmsprop(w, 0, g, None, None)
    with pytest.raises(TypeError, match="w and grad"):
        solvers.adagrad(w, 0, None, None, 0.1)
    with pytest.raises(ValueError, match="field 'm'"):
        solvers.adam(w, {"v": 0, "t": 0}, g, None, 0.1)
    with pytest.raises(ValueError, match="rho"):
        solvers.adagrad(w, 0, g, {"rho": "fast"}, 0.1)


@pytest.mark.parametrize("name", CASES)
def test_cupy_matches_numpy(name):
    cupy = pytest.importorskip("cupy")
    try:
        cupy.zeros(1)
    except Exception:  # CuPy installed without a usable GPU
        pytest.skip("no usable GPU")
    solver = CASES[name][0]
    w, g1, g2 = arrays(np.float32)
    w1, s = solver(w, 0, g1, None, 0.01)
    w2, _ = solver(w1, s, g2, None, 0.01)
    d1, ds = solver(cupy.asarray(w), 0, cupy.asarray(g1), None, 0.01)
    d2, _ = solver(d1, ds, cupy.asarray(g2), None, 0.01)
    assert isinstance(d2, cupy.ndarray) and d2.dtype == np.float32
    np.testing.assert_allclose(cupy.asnumpy(d2), w2, rtol=1e-5, atol=1e-6)
