"""Tests of vl_nnsoftmaxloss (MATCONVNET_SEMANTICS.md sections 7 and 31).

The oracle is a plain loop over the locations ``(i, j, n)``: log-sum-exp of
the scores with the maximum subtracted, minus the score of the 1-based
label, times the location's weight (label <= 0 -> weight 0), summed and
divided by the number of images N (MatConvNet's final code, "HEAD").
"""

import math

import numpy as np
import pytest
from scipy.special import log_softmax

from _checks import check_derivative, check_gradient_elementwise, rng
from vlnn import vl_nnsoftmaxloss


# ---------------------------------------------------------------------------
# the loop reference

def _as4(a):
    s = a.shape + (1,) * (4 - a.ndim)
    if len(s) > 4:
        s = s[:3] + (int(np.prod(s[3:])),)
    return a.reshape(s, order="F")


def ref_labels(c, x4shape):
    """Section 7's label forms -> (labels, weights), both ``H x W x N``."""
    h, w, _, n = x4shape
    c = np.asarray(c, np.float64)
    if c.size == n:
        labels = np.broadcast_to(c.reshape(n, order="F"), (h, w, n))
        weights = np.ones((h, w, n))
    else:
        c4 = _as4(c)
        if c4.shape[:2] == (1, 1):
            c4 = np.broadcast_to(c4, (h, w) + c4.shape[2:])
        assert c4.shape in ((h, w, 1, n), (h, w, 2, n))
        labels = c4[:, :, 0, :]
        weights = c4[:, :, 1, :] if c4.shape[2] == 2 else np.ones((h, w, n))
    return labels, weights


def ref_loss(x, c, normalise=True):
    x4 = _as4(np.asarray(x, np.float64))
    h, w, d, n = x4.shape
    labels, weights = ref_labels(c, x4.shape)
    total = 0.0
    for nn in range(n):
        for j in range(w):
            for i in range(h):
                label = labels[i, j, nn]
                if label <= 0:
                    continue
                scores = x4[i, j, :, nn]
                m = max(scores)
                lse = m + math.log(sum(math.exp(s - m) for s in scores))
                total += weights[i, j, nn] * (lse - scores[int(label) - 1])
    return total / n if normalise else total


def ref_loss_backward(x, c, dzdy, normalise=True):
    x = np.asarray(x, np.float64)
    x4 = _as4(x)
    h, w, d, n = x4.shape
    labels, weights = ref_labels(c, x4.shape)
    dz = np.broadcast_to(_as4(np.asarray(dzdy, np.float64)), (h, w, 1, n))
    dx = np.zeros(x4.shape)
    for nn in range(n):
        for j in range(w):
            for i in range(h):
                label = labels[i, j, nn]
                if label <= 0:
                    continue
                scores = x4[i, j, :, nn]
                e = np.exp(scores - scores.max())
                g = e / e.sum()
                g[int(label) - 1] -= 1
                dx[i, j, :, nn] = weights[i, j, nn] * dz[i, j, 0, nn] * g
    if normalise:
        dx /= n
    return dx.reshape(x.shape, order="F")


H, W, D, N = 3, 4, 5, 2


def scores(shape=(H, W, D, N), seed=0, dtype=np.float64, scale=1.0):
    return (scale * rng(seed).standard_normal(shape)).astype(dtype)


def label_forms():
    """(name, c) for x of shape H x W x D x N."""
    r = rng(42)
    per_loc = r.integers(1, D + 1, size=(H, W, 1, N)).astype(np.float64)
    with_zero = per_loc.copy()
    with_zero[0, 1, 0, 0] = 0
    with_zero[2, 3, 0, 1] = 0
    with_zero[1, 0, 0, 1] = -1           # non-positive labels are ignored too
    weighted = np.concatenate([with_zero, r.uniform(-0.5, 2.0, size=(H, W, 1, N))], axis=2)
    return [
        ("list", [3, 5]),
        ("vector", np.array([2, 1])),
        ("row", np.array([[4, 1]])),
        ("column", np.array([[4], [1]])),
        ("1x1x1xN", np.array([1, 5]).reshape(1, 1, 1, N)),
        ("1x1x2xN", np.array([[2, 0.5], [3, 1.5]]).T.reshape(1, 1, 2, N)),
        ("1x1x2xN-ignored", np.array([[0, 0.5], [3, 1.5]]).T.reshape(1, 1, 2, N)),
        ("HxWx1xN", per_loc),
        ("HxWx1xN-zeros", with_zero),
        ("HxWx2xN", weighted),
        ("int32", per_loc.astype(np.int32)),
        ("uint8", with_zero.clip(0).astype(np.uint8)),
        ("float32", weighted.astype(np.float32)),
    ]


LABEL_FORMS = label_forms()


# ---------------------------------------------------------------------------
# forward

@pytest.mark.parametrize("name,c", LABEL_FORMS, ids=[n for n, _ in LABEL_FORMS])
def test_forward_matches_loop_reference(name, c):
    x = scores()
    y = vl_nnsoftmaxloss(x, c)
    assert isinstance(y, np.ndarray) and y.shape == () and y.dtype == np.float64
    np.testing.assert_allclose(y, ref_loss(x, c), rtol=1e-13)


def test_label_forms_agree_with_each_other():
    x = scores()
    per_image = np.array([3, 2])
    full = np.broadcast_to(per_image.reshape(1, 1, 1, N), (H, W, 1, N))
    ones = np.concatenate([full, np.ones((H, W, 1, N))], axis=2)
    y = vl_nnsoftmaxloss(x, per_image)
    for c in (per_image.reshape(1, 1, 1, N), full, ones,
              np.stack([per_image, np.ones(N)]).reshape(1, 1, 2, N)):
        np.testing.assert_allclose(vl_nnsoftmaxloss(x, c), y, rtol=1e-14)


def test_ignored_labels_contribute_nothing():
    x = scores()
    c = rng(1).integers(1, D + 1, size=(H, W, 1, N)).astype(float)
    y_all = vl_nnsoftmaxloss(x, c)
    c0 = c.copy()
    c0[1, 2, 0, 0] = 0
    # changing the ignored location's scores leaves loss and other gradients alone
    x2 = x.copy()
    x2[1, 2, :, 0] += rng(2).standard_normal(D) * 10
    assert vl_nnsoftmaxloss(x, c0) == vl_nnsoftmaxloss(x2, c0)
    assert vl_nnsoftmaxloss(x, c0) < y_all
    dx = vl_nnsoftmaxloss(x, c0, 1.0)
    assert np.all(dx[1, 2, :, 0] == 0)
    assert vl_nnsoftmaxloss(x, np.zeros(N)) == 0
    assert np.all(vl_nnsoftmaxloss(x, np.zeros(N), 1.0) == 0)


def test_equals_minus_mean_log_softmax_at_labels():
    x = scores((1, 1, 7, 6), seed=3)
    c = np.array([1, 7, 3, 3, 2, 5])
    logp = log_softmax(x[0, 0], axis=0)                 # D x N
    expected = -np.mean(logp[c - 1, np.arange(6)])
    np.testing.assert_allclose(vl_nnsoftmaxloss(x, c), expected, rtol=1e-14)
    # per location: the sum over locations divided by N
    x = scores()
    c = rng(4).integers(1, D + 1, size=(H, W, 1, N))
    logp = log_softmax(x, axis=2)
    picked = np.take_along_axis(logp, c - 1, axis=2)
    np.testing.assert_allclose(vl_nnsoftmaxloss(x, c), -picked.sum() / N, rtol=1e-14)


@pytest.mark.parametrize("name,c", LABEL_FORMS[::3], ids=[n for n, _ in LABEL_FORMS[::3]])
def test_normalise_false_is_n_times_the_head_value(name, c):
    x = scores()
    y = vl_nnsoftmaxloss(x, c)
    y_sum = vl_nnsoftmaxloss(x, c, normalise=False)
    np.testing.assert_allclose(y_sum, N * y, rtol=1e-14)
    np.testing.assert_allclose(y_sum, ref_loss(x, c, normalise=False), rtol=1e-13)
    np.testing.assert_array_equal(vl_nnsoftmaxloss(x, c, "normalise", False), y_sum)
    np.testing.assert_array_equal(vl_nnsoftmaxloss(x, c, None, "normalise", False), y_sum)
    dx = vl_nnsoftmaxloss(x, c, 1.0)
    dx_sum = vl_nnsoftmaxloss(x, c, 1.0, normalise=False)
    np.testing.assert_allclose(dx_sum, N * dx, rtol=1e-14)
    np.testing.assert_allclose(dx_sum, ref_loss_backward(x, c, 1.0, normalise=False),
                               rtol=1e-13, atol=1e-15)


def test_one_image_normalisation_is_identity():
    x = scores((H, W, D, 1))
    c = rng(1).integers(1, D + 1, size=(H, W))
    np.testing.assert_allclose(vl_nnsoftmaxloss(x, c), vl_nnsoftmaxloss(x, c, normalise=False),
                               rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_scores_stay_finite(dtype):
    x = scores(seed=5, dtype=dtype, scale=1e4)
    c = rng(6).integers(1, D + 1, size=(H, W, 1, N))
    y = vl_nnsoftmaxloss(x, c)
    assert np.isfinite(y) and y.dtype == dtype
    np.testing.assert_allclose(y, ref_loss(x, c), rtol=1e-5 if dtype == np.float32 else 1e-12)
    dx = vl_nnsoftmaxloss(x, c, 1.0)
    assert np.all(np.isfinite(dx))
    np.testing.assert_allclose(dx, ref_loss_backward(x, c, 1.0), rtol=1e-5, atol=1e-6)
    # a one-hot winner gives zero loss and zero gradient
    x = np.zeros((1, 1, 3, 1), dtype)
    x[0, 0, 1, 0] = 1e4
    assert vl_nnsoftmaxloss(x, [2]) == 0
    assert np.all(vl_nnsoftmaxloss(x, [2], 1.0) == 0)
    # the loss of a wrong label is (almost exactly) the score gap
    np.testing.assert_allclose(vl_nnsoftmaxloss(x, [1]), 1e4, rtol=1e-6)


# ---------------------------------------------------------------------------
# backward

@pytest.mark.parametrize("name,c", LABEL_FORMS, ids=[n for n, _ in LABEL_FORMS])
def test_backward_matches_loop_reference(name, c):
    x = scores(seed=7)
    dx = vl_nnsoftmaxloss(x, c, 0.7)
    assert dx.shape == x.shape and dx.dtype == np.float64
    np.testing.assert_allclose(dx, ref_loss_backward(x, c, 0.7), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name,c", LABEL_FORMS, ids=[n for n, _ in LABEL_FORMS])
@pytest.mark.parametrize("normalise", [True, False])
def test_backward_matches_numerical_derivative(name, c, normalise):
    x = scores(seed=8)

    def f(z):
        return vl_nnsoftmaxloss(z, c, normalise=normalise)

    proj = np.float64(rng(9).standard_normal())
    dx = vl_nnsoftmaxloss(x, c, proj, normalise=normalise)
    check_derivative(f, x, dx, proj, eps=1e-5, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("seed,offset", [(10, 0.001), (11, 0.128)])
def test_elementwise_numerical_derivative_matconvnet_data(seed, offset):
    # MatConvNet's nnsoftmaxloss: x = scale * U(0,1) + offset, labels mod(0:35,10)+1
    # as 3x4x1x3 with 128 * U(0,1) weights
    r = rng(seed)
    scale = offset * 1000
    x = scale * r.random((3, 4, 10, 3)) + offset
    labels = (np.arange(36) % 10 + 1).reshape(3, 4, 1, 3, order="F")
    c = np.concatenate([labels, 128 * r.random((3, 4, 1, 3))], axis=2)
    f = lambda z: vl_nnsoftmaxloss(z, c)  # noqa: E731
    proj = np.float64(0.3)
    dx = vl_nnsoftmaxloss(x, c, proj)
    check_gradient_elementwise(f, x, dx, proj, eps=1e-5 * max(scale, 1), rtol=1e-6, atol=1e-7)


def test_dzdy_python_and_float64_scalar_with_float32_x():
    x32 = scores(seed=12, dtype=np.float32)
    c = [1, 4]
    base = vl_nnsoftmaxloss(x32, c, np.float32(1.0))
    assert base.dtype == np.float32
    for dz in (1.0, np.float64(1.0), np.array(1.0), 1):
        dx = vl_nnsoftmaxloss(x32, c, dz)
        assert dx.dtype == np.float32 and dx.shape == x32.shape
        np.testing.assert_array_equal(dx, base)
    dx = vl_nnsoftmaxloss(x32, c, 2.5)
    assert dx.dtype == np.float32
    np.testing.assert_allclose(dx, 2.5 * base, rtol=1e-6)
    np.testing.assert_allclose(dx, ref_loss_backward(x32, c, 2.5), rtol=1e-5, atol=1e-7)
    # forward with float32 scores is float32
    y = vl_nnsoftmaxloss(x32, c)
    assert y.dtype == np.float32 and y.shape == ()


@pytest.mark.parametrize("dz_shape", [(H, W, 1, N), (1, 1, 1, N), (H, W), (H, W, 1), (1, 1), ()])
def test_array_dzdy_broadcasts_to_locations(dz_shape):
    x = scores(seed=13)
    labels = rng(14).integers(0, D + 1, size=(H, W, 1, N)).astype(float)
    dz = rng(15).standard_normal(dz_shape)
    dx = vl_nnsoftmaxloss(x, labels, dz)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, ref_loss_backward(x, labels, dz), rtol=1e-12, atol=1e-15)
    # a per-location dzdy acts like per-location weights with dzdy = 1
    dz_full = np.broadcast_to(_as4(dz), (H, W, 1, N))
    weighted = np.concatenate([labels, dz_full], axis=2)
    np.testing.assert_allclose(dx, vl_nnsoftmaxloss(x, weighted, 1.0), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------
# torch oracle

def test_matches_torch_cross_entropy():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = scores(seed=16)
    labels = rng(17).integers(0, D + 1, size=(H, W, 1, N))
    weights = rng(18).uniform(0, 2, size=(H, W, 1, N))
    c = np.concatenate([labels, weights], axis=2)

    xt = torch.tensor(x.transpose(3, 2, 0, 1).copy(), requires_grad=True)       # N D H W
    target = torch.tensor(labels[:, :, 0, :].transpose(2, 0, 1) - 1)            # N H W
    wt = torch.tensor(weights[:, :, 0, :].transpose(2, 0, 1))
    per_loc = F.cross_entropy(xt, target, ignore_index=-1, reduction="none")
    loss = (per_loc * wt).sum() / N
    loss.backward()
    np.testing.assert_allclose(vl_nnsoftmaxloss(x, c), loss.item(), rtol=1e-12)
    dx = vl_nnsoftmaxloss(x, c, 1.0)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-10, atol=1e-14)

    # one label per image, plain mean cross-entropy
    x = scores((1, 1, 6, 4), seed=19)
    c = np.array([6, 1, 2, 2])
    ref = F.cross_entropy(torch.tensor(x[0, 0].T), torch.tensor(c - 1))
    np.testing.assert_allclose(vl_nnsoftmaxloss(x, c), ref.item(), rtol=1e-12)


# ---------------------------------------------------------------------------
# errors

X = np.zeros((H, W, D, N))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: vl_nnsoftmaxloss(X, [1, D + 1]), ValueError,
     r"labels must be integers in 1\.\.5 .* got 6"),
    (lambda: vl_nnsoftmaxloss(X, [1.5, 1]), ValueError, r"labels must be integers.*got 1\.5"),
    (lambda: vl_nnsoftmaxloss(X, [np.nan, 1]), ValueError, r"labels must be integers.*got nan"),
    (lambda: vl_nnsoftmaxloss(X, [np.inf, 1]), ValueError, r"labels must be integers.*got inf"),
    (lambda: vl_nnsoftmaxloss(X, [1, D + 1], 1.0), ValueError, r"labels must be integers"),
    (lambda: vl_nnsoftmaxloss(X, np.full((H, W, 2, N), 2.5)), ValueError,
     r"labels must be integers.*got 2\.5"),
    (lambda: vl_nnsoftmaxloss(X, [1, 2, 3]), ValueError,
     r"labels c of shape \(3,\) do not fit x of shape \(3, 4, 5, 2\).*"
     r"2 labels.*3 x 4 x 1 x 2 or 3 x 4 x 2 x 2"),
    (lambda: vl_nnsoftmaxloss(X, np.ones((H, W, 3, N))), ValueError,
     r"labels c of shape \(3, 4, 3, 2\) do not fit"),
    (lambda: vl_nnsoftmaxloss(X, np.ones((W, H, 1, N))), ValueError, r"do not fit"),
    (lambda: vl_nnsoftmaxloss(X, np.ones((H, W, 1, 3))), ValueError, r"do not fit"),
    (lambda: vl_nnsoftmaxloss(X, None), ValueError, r"labels c must not be empty"),
    (lambda: vl_nnsoftmaxloss(X, []), ValueError, r"labels c must not be empty"),
    (lambda: vl_nnsoftmaxloss(X, ["a", "b"]), ValueError, r"labels c must be real numeric"),
    (lambda: vl_nnsoftmaxloss(X, np.array([1j, 1])), ValueError, r"labels c must be real"),
    (lambda: vl_nnsoftmaxloss(X.astype(np.int64), [1, 2]), ValueError,
     r"x must be float32 or float64"),
    (lambda: vl_nnsoftmaxloss(X, [1, 2], np.ones((W, H, 1, N))), ValueError,
     r"dzdy of shape \(4, 3, 1, 2\) does not broadcast to 3 x 4 x 1 x 2"),
    (lambda: vl_nnsoftmaxloss(X, [1, 2], np.ones((1, 1, 1, 3))), ValueError,
     r"does not broadcast"),
    (lambda: vl_nnsoftmaxloss(X, [1, 2], 1j), ValueError, r"dzdy must be real"),
    (lambda: vl_nnsoftmaxloss(X, [1, 2], normalize=False), TypeError,
     r"unknown option 'normalize'; valid options: normalise"),
    (lambda: vl_nnsoftmaxloss(X, [1, 2], None, "normalise"), TypeError, r"needs a value"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------
# generic: dtypes, memory order, inputs untouched, shapes

def test_float32_matches_float64():
    x = scores(seed=20)
    c = LABEL_FORMS[9][1]
    y32 = vl_nnsoftmaxloss(x.astype(np.float32), c)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, vl_nnsoftmaxloss(x, c), rtol=1e-5)
    dx32 = vl_nnsoftmaxloss(x.astype(np.float32), c, 1.0)
    assert dx32.dtype == np.float32
    np.testing.assert_allclose(dx32, vl_nnsoftmaxloss(x, c, 1.0), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_memory_order_and_inputs_untouched(dtype):
    x = scores(seed=21, dtype=dtype)
    c = np.asarray(LABEL_FORMS[9][1])
    dz = rng(22).standard_normal((H, W, 1, N))
    copies = [a.copy() for a in (x, c, dz)]
    y = vl_nnsoftmaxloss(x, c)
    dx = vl_nnsoftmaxloss(x, c, dz)
    xf, cf, dzf = (np.asfortranarray(a) for a in (x, c, dz))
    np.testing.assert_array_equal(vl_nnsoftmaxloss(xf, c), y)
    np.testing.assert_array_equal(vl_nnsoftmaxloss(xf, cf), y)
    np.testing.assert_array_equal(vl_nnsoftmaxloss(xf, cf, dzf), dx)
    np.testing.assert_array_equal(vl_nnsoftmaxloss(x, cf, dzf), dx)
    for a, b in zip((x, c, dz), copies):
        np.testing.assert_array_equal(a, b)
    for a, b in zip((xf, cf, dzf), copies):
        np.testing.assert_array_equal(a, b)


def test_three_dimensional_x_is_one_image():
    x = scores((H, W, D), seed=23)
    c = rng(24).integers(1, D + 1, size=(H, W))
    y = vl_nnsoftmaxloss(x, c)
    np.testing.assert_allclose(y, ref_loss(x, c), rtol=1e-13)
    dx = vl_nnsoftmaxloss(x, c, 1.0)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, ref_loss_backward(x, c, 1.0), rtol=1e-12, atol=1e-15)
    # a single label for the only image is replicated over the locations
    np.testing.assert_allclose(vl_nnsoftmaxloss(x, 3), ref_loss(x, [3]), rtol=1e-13)


def test_five_dimensional_x_folds_into_images():
    x = scores((2, 2, D, 2, 3), seed=25)          # N = 2 * 3
    c = rng(26).integers(1, D + 1, size=6)
    np.testing.assert_allclose(vl_nnsoftmaxloss(x, c), ref_loss(x, c), rtol=1e-13)
    dx = vl_nnsoftmaxloss(x, c, 1.0)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, ref_loss_backward(x, c, 1.0), rtol=1e-12, atol=1e-15)
    check_derivative(lambda z: vl_nnsoftmaxloss(z, c), x, dx, np.float64(1.0), eps=1e-5,
                     rtol=1e-8, atol=1e-10)
