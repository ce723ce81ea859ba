"""Tests of vl_nnloss (MATCONVNET_SEMANTICS.md sections 8, 31, 32 and 34).

The oracle is a plain loop over the locations ``(i, j, n)`` (and the
attributes ``k`` of the attribute losses) that applies section 8's table
with Python's ``math``: the label forms are expanded, label 0 gets weight 0,
``instanceWeights`` are broadcast MATLAB-style (missing trailing
dimensions are 1), the weighted losses are summed and divided by ``N``.
Derivatives are the table's formulas in the same loops, and every
backward is also checked against central differences in float64.
"""

import math

import numpy as np
import pytest

from _checks import check_derivative, check_gradient_elementwise, rng
from vlnn import vl_nnsoftmax
from vlnn import vl_nnloss, vl_nnsoftmaxloss

CATEGORICAL = ["classerror", "topkerror", "log", "softmaxlog", "mhinge", "mshinge"]
BINARY = ["binaryerror", "binarylog", "logistic", "hinge"]
ALL = CATEGORICAL + BINARY
SMOOTH = ["log", "softmaxlog", "mhinge", "mshinge", "binarylog", "logistic", "hinge"]
FLAT = ["classerror", "topkerror", "binaryerror"]

H, W, D, N = 3, 2, 4, 2


# ---------------------------------------------------------------------------
# the loop reference

def _as4(a):
    a = np.asarray(a)
    s = a.shape + (1,) * (4 - a.ndim)
    if len(s) > 4:
        s = s[:3] + (int(np.prod(s[3:])),)
    return a.reshape(s, order="F")


def ref_labels(c, shape4):
    """Form 1 replicated over H x W; forms 2 and 3 as given."""
    h, w, _, n = shape4
    c = np.asarray(c, np.float64)
    if c.size == n:
        return np.broadcast_to(c.reshape(1, 1, 1, n, order="F"), (h, w, 1, n))
    c4 = _as4(c)
    if c4.shape[:2] == (1, 1):
        c4 = np.broadcast_to(c4, (h, w) + c4.shape[2:])
    return c4


def ref_weights(c4, instance_weights):
    """[c != 0] times instanceWeights broadcast MATLAB-style to c's shape."""
    wt = (c4 != 0).astype(np.float64)
    if instance_weights is not None:
        wt = wt * np.broadcast_to(_as4(np.asarray(instance_weights, np.float64)), c4.shape)
    return wt


def stable_rank(v, k):
    """Position of class k in MATLAB's stable descending sort of v."""
    order = sorted(range(len(v)), key=lambda q: -v[q])   # Python's sort is stable
    return order.index(k)


def ref_categorical_t(loss, v, label, top_k):
    k = int(label) - 1
    if loss == "classerror":
        return float(max(range(len(v)), key=lambda q: (v[q], -q)) != k)
    if loss == "topkerror":
        return float(stable_rank(v, k) >= top_k)
    if loss == "log":
        return -math.log(v[k])
    if loss == "softmaxlog":
        m = max(v)
        return m + math.log(sum(math.exp(s - m) for s in v)) - v[k]
    if loss == "mhinge":
        return max(0.0, 1 - v[k])
    others = [v[q] for q in range(len(v)) if q != k]
    return max(0.0, 1 - v[k] + max(others, default=-math.inf))    # mshinge


def ref_categorical_dx(loss, v, label):
    k = int(label) - 1
    g = [0.0] * len(v)
    if loss == "log":
        g[k] = -1 / max(v[k], 1e-8)
    elif loss == "softmaxlog":
        m = max(v)
        e = [math.exp(s - m) for s in v]
        g = [a / sum(e) for a in e]
        g[k] -= 1
    elif loss == "mhinge":
        g[k] = -1.0 if v[k] < 1 else 0.0
    elif loss == "mshinge":
        others = [q for q in range(len(v)) if q != k]
        if others:
            q = max(others, key=lambda r: (v[r], -r))
            if v[k] - v[q] < 1:
                g[k], g[q] = -1.0, 1.0
    return g


def ref_binary_t(loss, x, c, threshold):
    if loss == "binaryerror":
        return float(np.sign(x - threshold) != c)
    if loss == "binarylog":
        return -math.log(c * (x - 0.5) + 0.5)
    if loss == "logistic":
        a = -c * x
        return max(a, 0.0) + math.log1p(math.exp(-abs(a)))
    return max(0.0, 1 - c * x)    # hinge


def ref_binary_dx(loss, x, c):
    if loss == "binaryerror":
        return 0.0
    if loss == "binarylog":
        return -1 / (x + (c - 1) / 2)
    if loss == "logistic":
        return -c / (1 + math.exp(c * x)) if c * x < 700 else 0.0
    return -c if c * x < 1 else 0.0    # hinge


def ref_loss(x, c, loss, instance_weights=None, threshold=0.0, top_k=5, normalise=True):
    x4 = _as4(np.asarray(x, np.float64))
    h, w, d, n = x4.shape
    c4 = ref_labels(c, x4.shape)
    wt = ref_weights(c4, instance_weights)
    total = 0.0
    for nn in range(n):
        for j in range(w):
            for i in range(h):
                if loss in CATEGORICAL:
                    if wt[i, j, 0, nn] == 0:
                        continue
                    t = ref_categorical_t(loss, list(x4[i, j, :, nn]), c4[i, j, 0, nn], top_k)
                    total += wt[i, j, 0, nn] * t
                else:
                    for k in range(d):
                        if wt[i, j, k, nn] == 0:
                            continue
                        t = ref_binary_t(loss, x4[i, j, k, nn], c4[i, j, k, nn], threshold)
                        total += wt[i, j, k, nn] * t
    return total / n if normalise else total


def ref_loss_backward(x, c, loss, dzdy, instance_weights=None, normalise=True):
    x = np.asarray(x, np.float64)
    x4 = _as4(x)
    h, w, d, n = x4.shape
    c4 = ref_labels(c, x4.shape)
    wt = ref_weights(c4, instance_weights)
    p = wt * np.broadcast_to(_as4(np.asarray(dzdy, np.float64)), c4.shape)
    dx = np.zeros(x4.shape)
    for nn in range(n):
        for j in range(w):
            for i in range(h):
                if loss in CATEGORICAL:
                    if wt[i, j, 0, nn] == 0:
                        continue
                    g = ref_categorical_dx(loss, list(x4[i, j, :, nn]), c4[i, j, 0, nn])
                    dx[i, j, :, nn] = p[i, j, 0, nn] * np.array(g)
                else:
                    for k in range(d):
                        if wt[i, j, k, nn] == 0:
                            continue
                        dx[i, j, k, nn] = p[i, j, k, nn] * ref_binary_dx(
                            loss, x4[i, j, k, nn], c4[i, j, k, nn])
    if normalise:
        dx /= n
    return dx.reshape(x.shape, order="F")


# ---------------------------------------------------------------------------
# data: scores suited to each loss, away from the kinks of the hinges

def make_scores(loss, shape=(H, W, D, N), seed=0, labels=None):
    """MatConvNet's nnloss data: probabilities U(0.2, 0.8) normalised over
    the classes for ``log``, U(0.2, 0.8) for ``binarylog``, unit normal
    otherwise; hinge losses are resampled where a kink is within 0.05 (and
    ``mshinge`` where the best two other classes are within 0.05)."""
    r = rng(seed)
    if loss == "log":
        x = r.uniform(0.2, 0.8, shape)
        return x / x.sum(axis=2, keepdims=True)
    if loss == "binarylog":
        return r.uniform(0.2, 0.8, shape)
    x = r.standard_normal(shape)
    if loss in ("mhinge", "mshinge", "hinge"):
        assert labels is not None
        c4 = ref_labels(labels, x.shape)
        for idx in np.ndindex(x.shape[:2] + x.shape[3:]):
            i, j, nn = idx
            while not _away_from_kinks(loss, x[i, j, :, nn], c4[i, j, :, nn]):
                x[i, j, :, nn] = r.standard_normal(x.shape[2])
    return x


def _away_from_kinks(loss, v, c):
    if loss == "hinge":
        return bool(np.all(np.abs(1 - c * v) > 0.05))
    k = max(int(c[0]) - 1, 0)
    if loss == "mhinge":
        return abs(1 - v[k]) > 0.05
    others = np.sort(np.delete(v, k))
    if others.size == 0:
        return True
    gap_ok = others.size < 2 or others[-1] - others[-2] > 0.05
    return gap_ok and abs(1 - v[k] + others[-1]) > 0.05


def make_labels(loss, shape=(H, W, D, N), seed=1, zeros=False):
    """Per-location categorical labels (or +-1 attributes), some 0 if asked."""
    r = rng(seed)
    h, w, d, n = shape
    if loss in CATEGORICAL:
        c = r.integers(1, d + 1, size=(h, w, 1, n)).astype(np.float64)
    else:
        c = np.where(r.random((h, w, d, n)) < 0.5, -1.0, 1.0)
    if zeros:
        c[r.random(c.shape) < 0.5] = 0
    return c


def tol(dtype):
    return dict(rtol=2e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------
# forward against the loop reference

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", ALL)
def test_forward_matches_loop_reference(loss, dtype):
    for zeros in (False, True):
        c = make_labels(loss, zeros=zeros)
        x = make_scores(loss, labels=c).astype(dtype)
        y = vl_nnloss(x, c, loss=loss, topK=2)
        assert isinstance(y, np.ndarray) and y.shape == () and y.dtype == dtype
        np.testing.assert_allclose(y, ref_loss(x, c, loss, top_k=2), **tol(dtype))


CATEGORICAL_FORMS = [
    ("list", [3, 1]),
    ("vector-int32", np.array([2, 4], np.int32)),
    ("row", np.array([[4, 1]])),
    ("1x1x1xN", np.array([1, 3]).reshape(1, 1, 1, N)),
    ("1x1x1xN-uint8", np.array([1, 0], np.uint8).reshape(1, 1, 1, N)),
    ("HxWx1xN", make_labels("log", seed=5)),
    ("HxWx1xN-zeros", make_labels("log", seed=6, zeros=True)),
    ("HxWx1xN-float32", make_labels("log", seed=7, zeros=True).astype(np.float32)),
    ("HxWx1xN-bool", np.ones((H, W, 1, N), bool)),
]


@pytest.mark.parametrize("loss", CATEGORICAL)
@pytest.mark.parametrize("name,c", CATEGORICAL_FORMS, ids=[n for n, _ in CATEGORICAL_FORMS])
def test_categorical_label_forms(name, c, loss):
    x = make_scores(loss, seed=2, labels=c)
    np.testing.assert_allclose(vl_nnloss(x, c, loss=loss, topk=3),
                               ref_loss(x, c, loss, top_k=3), rtol=1e-12, atol=1e-14)
    if loss not in FLAT:
        np.testing.assert_allclose(vl_nnloss(x, c, 0.5, loss=loss),
                                   ref_loss_backward(x, c, loss, 0.5), rtol=1e-12, atol=1e-14)


def test_per_image_labels_equal_replicated_labels():
    x = make_scores("softmaxlog", seed=3)
    per_image = np.array([2, 4])
    full = np.broadcast_to(per_image.reshape(1, 1, 1, N), (H, W, 1, N))
    for loss in ("softmaxlog", "classerror", "topkerror"):
        y = vl_nnloss(x, full, loss=loss, topK=2)
        for c in (per_image, list(per_image), per_image.reshape(1, 1, 1, N), per_image[None]):
            assert vl_nnloss(x, c, loss=loss, topK=2) == y
    np.testing.assert_array_equal(vl_nnloss(x, per_image, 1.0), vl_nnloss(x, full, 1.0))


@pytest.mark.parametrize("loss", BINARY)
def test_binary_label_forms(loss):
    c = make_labels(loss, seed=8, zeros=True)
    x = make_scores(loss, seed=9, labels=c)
    y = vl_nnloss(x, c, loss=loss)
    for form in (c.astype(np.int8), c.astype(np.float32), np.asfortranarray(c)):
        assert vl_nnloss(x, form, loss=loss) == y
    # one attribute per location: H x W x N for a single image, N labels per image
    c1 = make_labels(loss, shape=(H, W, 1, 1), seed=10)[:, :, 0, 0]
    x1 = make_scores(loss, shape=(H, W, 1, 1), seed=11, labels=c1)[:, :, 0, 0]
    np.testing.assert_allclose(vl_nnloss(x1, c1, loss=loss), ref_loss(x1, c1, loss), rtol=1e-12)
    xn = make_scores(loss, shape=(1, 1, 1, 3), seed=12, labels=[1, -1, 1])
    np.testing.assert_allclose(vl_nnloss(xn, [1, -1, 1], loss=loss),
                               ref_loss(xn, [1, -1, 1], loss), rtol=1e-12)
    # a 1 x 1 x D x N array is replicated over the locations, as in vl_nnsoftmaxloss
    cd = make_labels(loss, shape=(1, 1, D, N), seed=13)
    xd = make_scores(loss, seed=14, labels=np.broadcast_to(cd, (H, W, D, N)))
    np.testing.assert_allclose(vl_nnloss(xd, cd, loss=loss),
                               vl_nnloss(xd, np.broadcast_to(cd, (H, W, D, N)), loss=loss),
                               rtol=1e-15)


@pytest.mark.parametrize("loss", ALL)
def test_normalise_false_is_n_times_the_default(loss):
    c = make_labels(loss, seed=15, zeros=True)
    x = make_scores(loss, seed=16, labels=c)
    y = vl_nnloss(x, c, loss=loss, topK=2)
    y_sum = vl_nnloss(x, c, loss=loss, topK=2, normalise=False)
    np.testing.assert_allclose(y_sum, N * y, rtol=1e-14)
    np.testing.assert_allclose(y_sum, ref_loss(x, c, loss, top_k=2, normalise=False),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(vl_nnloss(x, c, None, "loss", loss, "topK", 2,
                                            "normalise", 0), y_sum)
    dx = vl_nnloss(x, c, 0.7, loss=loss)
    dx_sum = vl_nnloss(x, c, 0.7, loss=loss, normalise=False)
    np.testing.assert_allclose(dx_sum, N * dx, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(dx_sum, ref_loss_backward(x, c, loss, 0.7, normalise=False),
                               rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------
# instance weights

CATEGORICAL_WEIGHT_SHAPES = [(), (1,), (H,), (H, W), (H, W, 1), (H, W, 1, N), (1, 1, 1, N),
                             (1, W), (1, 1, 1, 1)]
BINARY_WEIGHT_SHAPES = [(), (H, W), (H, W, D), (H, W, D, N), (1, 1, D), (1, 1, D, N),
                        (H, W, 1, N), (1, 1, 1, N)]


@pytest.mark.parametrize("loss", ALL)
def test_instance_weights_every_broadcastable_shape(loss):
    shapes = CATEGORICAL_WEIGHT_SHAPES if loss in CATEGORICAL else BINARY_WEIGHT_SHAPES
    c = make_labels(loss, seed=17, zeros=True)
    x = make_scores(loss, seed=18, labels=c)
    r = rng(19)
    for shape in shapes:
        iw = r.uniform(0, 2, shape)
        np.testing.assert_allclose(vl_nnloss(x, c, loss=loss, instanceWeights=iw, topK=3),
                                   ref_loss(x, c, loss, iw, top_k=3), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(vl_nnloss(x, c, 1.3, loss=loss, instance_weights=iw),
                                   ref_loss_backward(x, c, loss, 1.3, iw), rtol=1e-12,
                                   atol=1e-14)
    # integer and float32 weights are cast to x's dtype; [] means none
    iw = r.integers(0, 3, (H, W, 1, N))
    np.testing.assert_allclose(
        vl_nnloss(x, c, loss=loss, instanceWeights=iw.astype(np.int16), topK=3),
        vl_nnloss(x, c, loss=loss, instanceWeights=iw.astype(float), topK=3), rtol=1e-15)
    assert vl_nnloss(x, c, loss=loss, instanceWeights=[], topK=3) == \
        vl_nnloss(x, c, loss=loss, topK=3)


@pytest.mark.parametrize("loss", ALL)
def test_all_zero_instance_weights_give_zero_loss(loss):
    # MatConvNet's nnloss/instanceWeights
    c = make_labels(loss, seed=20)
    x = make_scores(loss, seed=21, labels=c)
    iw = np.zeros((H, W, 1, N)) if loss in CATEGORICAL else np.zeros((H, W, D, N))
    assert vl_nnloss(x, c, loss=loss, instanceWeights=iw, topK=2) == 0
    assert np.all(vl_nnloss(x, c, 1.0, loss=loss, instanceWeights=iw) == 0)


def test_class_weights_are_accepted_without_effect():
    c = make_labels("softmaxlog", seed=22, zeros=True)
    x = make_scores("softmaxlog", seed=23)
    for cw in ([1, 2, 3, 4], np.arange(D, dtype=np.float32), None, 5.0):
        assert vl_nnloss(x, c, classWeights=cw) == vl_nnloss(x, c)
        np.testing.assert_array_equal(vl_nnloss(x, c, 1.0, "classWeights", cw),
                                      vl_nnloss(x, c, 1.0))


# ---------------------------------------------------------------------------
# ignored labels

@pytest.mark.parametrize("loss", ALL)
def test_label_zero_is_ignored(loss):
    c = make_labels(loss, seed=24)
    x = make_scores(loss, seed=25, labels=c)
    c0 = c.copy()
    c0[1, 0, :, 1] = 0
    x2 = x.copy()
    x2[1, 0, :, 1] = make_scores(loss, seed=26, labels=c)[1, 0, :, 1]
    assert vl_nnloss(x, c0, loss=loss, topK=2) == vl_nnloss(x2, c0, loss=loss, topK=2)
    dx = vl_nnloss(x, c0, 1.0, loss=loss)
    assert np.all(dx[1, 0, :, 1] == 0)
    assert vl_nnloss(x, np.zeros_like(c), loss=loss, topK=2) == 0
    assert np.all(vl_nnloss(x, np.zeros_like(c), 1.0, loss=loss) == 0)


def test_zero_weight_contributes_nothing_even_where_the_loss_is_infinite():
    # deliberate difference from MatConvNet (which gets 0 * inf = NaN): the
    # class-1 probability of an ignored location underflowed to 0
    x = np.full((1, 1, 3, 2), 0.5)
    x[0, 0, 0, 1] = 0.0
    c = np.array([2, 0])
    with np.errstate(divide="ignore"):
        y = vl_nnloss(x, c, loss="log")
        np.testing.assert_allclose(y, -math.log(0.5) / 2, rtol=1e-15)
        assert np.all(np.isfinite(vl_nnloss(x, c, 1.0, loss="log")))
        y = vl_nnloss(x, [2, 1], loss="log", instanceWeights=np.array([1, 0]).reshape(1, 1, 1, 2))
        np.testing.assert_allclose(y, -math.log(0.5) / 2, rtol=1e-15)
    # binarylog at a pole of an ignored attribute: the derivative 0/0 stays 0
    xb = np.array([0.5, 0.0, 1.0, 0.3]).reshape(1, 1, 4, 1)
    cb = np.array([0, 0, 0, 1]).reshape(1, 1, 4, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = vl_nnloss(xb, cb, 1.0, loss="binarylog")
    np.testing.assert_array_equal(dx.ravel(), [0, 0, 0, -1 / 0.3])


def test_nan_scores_propagate_where_used():
    x = make_scores("softmaxlog", seed=27)
    x[0, 0, 1, 0] = np.nan
    c = make_labels("softmaxlog", seed=28)
    assert np.isnan(vl_nnloss(x, c))
    c[0, 0, 0, 0] = 0          # the NaN sits at an ignored location
    assert np.isfinite(vl_nnloss(x, c))


# ---------------------------------------------------------------------------
# backward: loop reference and numerical derivatives

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", ALL)
def test_backward_matches_loop_reference(loss, dtype):
    for zeros in (False, True):
        c = make_labels(loss, seed=29, zeros=zeros)
        x = make_scores(loss, seed=30, labels=c).astype(dtype)
        dx = vl_nnloss(x, c, 0.8, loss=loss)
        assert dx.shape == x.shape and dx.dtype == dtype
        np.testing.assert_allclose(dx, ref_loss_backward(x, c, loss, 0.8), **tol(dtype))
        if loss in FLAT:
            assert not np.any(dx)


@pytest.mark.parametrize("weighed", [False, True])
@pytest.mark.parametrize("loss", SMOOTH)
def test_backward_matches_numerical_derivative(loss, weighed):
    c = make_labels(loss, seed=31, zeros=True)
    x = make_scores(loss, seed=32, labels=c)
    iw = rng(33).uniform(0.1, 1, (H, W, 1, N) if loss in CATEGORICAL else (H, W, D)) \
        if weighed else None

    def f(z):
        return vl_nnloss(z, c, loss=loss, instanceWeights=iw)

    proj = np.float64(rng(34).standard_normal())
    dx = vl_nnloss(x, c, proj, loss=loss, instanceWeights=iw)
    check_derivative(f, x, dx, proj, eps=1e-6, rtol=1e-7, atol=1e-9)
    check_gradient_elementwise(f, x, dx, proj, eps=1e-6, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("weighed", [False, True])
@pytest.mark.parametrize("loss", ALL)
def test_matconvnet_nullcategories(loss, weighed):
    # nnloss/nullcategories: about half the labels are 0
    c = make_labels(loss, seed=35, zeros=True)
    assert 0 < np.count_nonzero(c == 0) < c.size
    x = make_scores(loss, seed=36, labels=c)
    iw = rng(37).random((H, W, 1, N) if loss in CATEGORICAL else (H, W, D, N)) \
        if weighed else None
    dz = np.float64(rng(38).standard_normal())
    dx = vl_nnloss(x, c, dz, loss=loss, instanceWeights=iw)
    np.testing.assert_allclose(dx, ref_loss_backward(x, c, loss, dz, iw), rtol=1e-12,
                               atol=1e-14)
    check_gradient_elementwise(lambda z: vl_nnloss(z, c, loss=loss, instanceWeights=iw, topK=2),
                               x, dx, dz, eps=1e-6, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("weighed", [False, True])
@pytest.mark.parametrize("loss", ALL)
def test_matconvnet_convolutional(loss, weighed):
    # nnloss/convolutional: H = 4, W = 5, 3 classes or 5 attributes, 3 images,
    # weights U(0, 1) / (h w) (/ 5 for attributes), a scalar unit-normal dzdy
    h, w, n = 4, 5, 3
    d = 3 if loss in CATEGORICAL else 5
    r = rng(39)
    if loss in CATEGORICAL:
        c = r.integers(1, d + 1, size=(h, w, 1, n)).astype(float)
        iw = r.random((h, w, 1, n)) / (h * w)
    else:
        c = np.sign(r.standard_normal((h, w, d, n)))
        iw = r.random((h, w, d, n)) / (h * w * 5)
    iw = iw if weighed else None
    x = make_scores(loss, (h, w, d, n), seed=40, labels=c)
    dz = np.float64(r.standard_normal())
    np.testing.assert_allclose(vl_nnloss(x, c, loss=loss, instanceWeights=iw, topK=2),
                               ref_loss(x, c, loss, iw, top_k=2), rtol=1e-12, atol=1e-14)
    dx = vl_nnloss(x, c, dz, loss=loss, instanceWeights=iw)
    np.testing.assert_allclose(dx, ref_loss_backward(x, c, loss, dz, iw), rtol=1e-12,
                               atol=1e-14)
    check_derivative(lambda z: vl_nnloss(z, c, loss=loss, instanceWeights=iw, topK=2),
                     x, dx, dz, eps=1e-6, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("loss", ALL)
def test_array_dzdy_acts_as_weights(loss):
    c = make_labels(loss, seed=41, zeros=True)
    x = make_scores(loss, seed=42, labels=c)
    r = rng(43)
    for shape in [c.shape, (1, 1, 1, N), (H, W), (1, 1)]:
        dz = r.standard_normal(shape)
        dx = vl_nnloss(x, c, dz, loss=loss)
        assert dx.shape == x.shape
        np.testing.assert_allclose(dx, ref_loss_backward(x, c, loss, dz), rtol=1e-12,
                                   atol=1e-14)
        np.testing.assert_allclose(dx, vl_nnloss(x, c, 1.0, loss=loss, instanceWeights=dz),
                                   rtol=1e-14, atol=1e-300)


def test_dzdy_python_and_float64_scalar_with_float32_x():
    for loss in ALL:
        c = make_labels(loss, seed=44)
        x32 = make_scores(loss, seed=45, labels=c).astype(np.float32)
        base = vl_nnloss(x32, c, np.float32(1.0), loss=loss)
        assert base.dtype == np.float32
        for dz in (1.0, np.float64(1.0), np.array(1.0), 1, np.ones((1, 1, 1, N))):
            dx = vl_nnloss(x32, c, dz, loss=loss)
            assert dx.dtype == np.float32 and dx.shape == x32.shape
            np.testing.assert_array_equal(dx, base)
        assert vl_nnloss(x32, c, loss=loss, topK=2).dtype == np.float32


@pytest.mark.parametrize("empty", [None, [], np.zeros((0,)), np.zeros((0, 2), np.float32)])
def test_empty_dzdy_means_forward(empty):
    c = make_labels("hinge", seed=46)
    x = make_scores("hinge", seed=47, labels=c)
    assert vl_nnloss(x, c, empty, loss="hinge") == vl_nnloss(x, c, loss="hinge")
    assert vl_nnloss(x, c, empty, "loss", "hinge") == vl_nnloss(x, c, loss="hinge")


# ---------------------------------------------------------------------------
# particular losses

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmaxlog_equals_vl_nnsoftmaxloss(dtype):
    x = make_scores("softmaxlog", seed=48).astype(dtype)
    c = make_labels("softmaxlog", seed=49, zeros=True)
    iw = rng(50).uniform(0, 2, (H, W, 1, N))
    t = dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-16)
    for kw in ({}, {"normalise": False}):
        np.testing.assert_allclose(vl_nnloss(x, c, **kw), vl_nnsoftmaxloss(x, c, **kw), **t)
        np.testing.assert_allclose(vl_nnloss(x, c, 0.3, **kw), vl_nnsoftmaxloss(x, c, 0.3, **kw),
                                   **t)
        weighted = np.concatenate([c, iw], axis=2)
        np.testing.assert_allclose(vl_nnloss(x, c, instanceWeights=iw, **kw),
                                   vl_nnsoftmaxloss(x, weighted, **kw), **t)
        np.testing.assert_allclose(vl_nnloss(x, c, 1.0, instanceWeights=iw, **kw),
                                   vl_nnsoftmaxloss(x, weighted, 1.0, **kw), **t)
    np.testing.assert_allclose(vl_nnloss(x, [2, 4]), vl_nnsoftmaxloss(x, [2, 4]), **t)


def test_softmaxloss_equals_log_loss_of_softmax():
    # MatConvNet's nnsoftmaxloss/basic: vl_nnloss(vl_nnsoftmax(x), c1, 'loss', 'log',
    # 'instanceWeights', c2) forward and (through vl_nnsoftmax) backward
    r = rng(51)
    x = r.random((3, 4, 10, 3)) + 0.001
    c1 = (np.arange(36) % 10 + 1).reshape(3, 4, 1, 3, order="F").astype(float)
    c2 = 128 * r.random((3, 4, 1, 3))
    c = np.concatenate([c1, c2], axis=2)
    p = vl_nnsoftmax(x)
    np.testing.assert_allclose(vl_nnloss(p, c1, loss="log", instanceWeights=c2),
                               vl_nnsoftmaxloss(x, c), rtol=1e-13)
    dp = vl_nnloss(p, c1, 1.0, loss="log", instanceWeights=c2)
    np.testing.assert_allclose(vl_nnsoftmax(x, dp), vl_nnsoftmaxloss(x, c, 1.0),
                               rtol=1e-10, atol=1e-12)


def test_logistic_is_two_class_softmaxlog_and_hinge_is_two_class_mshinge():
    # MatConvNet's help: class c = +1 gets score x, class c = -1 score 0
    x = make_scores("logistic", shape=(H, W, 1, N), seed=52)
    c = make_labels("logistic", shape=(H, W, 1, N), seed=53)
    two = np.concatenate([x, np.zeros_like(x)], axis=2)
    cat = np.where(c > 0, 1, 2)
    np.testing.assert_allclose(vl_nnloss(x, c, loss="logistic"),
                               vl_nnloss(two, cat, loss="softmaxlog"), rtol=1e-14)
    np.testing.assert_allclose(vl_nnloss(x, c, 1.0, loss="logistic"),
                               vl_nnloss(two, cat, 1.0, loss="softmaxlog")[:, :, :1],
                               rtol=1e-13, atol=1e-16)
    xh = make_scores("hinge", shape=(H, W, 1, N), seed=54, labels=c)
    twoh = np.concatenate([xh, np.zeros_like(xh)], axis=2)
    np.testing.assert_allclose(vl_nnloss(xh, c, loss="hinge"),
                               vl_nnloss(twoh, cat, loss="mshinge"), rtol=1e-14)
    np.testing.assert_allclose(vl_nnloss(xh, c, 1.0, loss="hinge"),
                               vl_nnloss(twoh, cat, 1.0, loss="mshinge")[:, :, :1], rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", ["softmaxlog", "logistic"])
def test_huge_scores_stay_finite(loss, dtype):
    shape = (H, W, D, N)
    c = make_labels(loss, seed=55)
    x = np.where(rng(56).random(shape) < 0.5, 1e4, -1e4).astype(dtype)
    x[0, 0, :, 0] = 1e4
    with np.errstate(over="raise", invalid="raise", divide="raise"):    # not even a warning
        y = vl_nnloss(x, c, loss=loss)
        dx = vl_nnloss(x, c, 1.0, loss=loss)
    assert np.isfinite(y) and y.dtype == dtype
    assert np.all(np.isfinite(dx)) and dx.dtype == dtype
    np.testing.assert_allclose(y, ref_loss(x, c, loss), rtol=1e-6)
    np.testing.assert_allclose(dx, ref_loss_backward(x, c, loss, 1.0), rtol=1e-6, atol=1e-7)
    # scale 1e4 normal scores too
    x = (1e4 * rng(57).standard_normal(shape)).astype(dtype)
    assert np.isfinite(vl_nnloss(x, c, loss=loss))
    assert np.all(np.isfinite(vl_nnloss(x, c, 1.0, loss=loss)))
    np.testing.assert_allclose(vl_nnloss(x, c, loss=loss), ref_loss(x, c, loss), rtol=1e-5)


def test_classerror_takes_the_first_maximum():
    x = np.array([1.0, 3.0, 3.0, 2.0]).reshape(1, 1, 4, 1)
    assert vl_nnloss(x, [2], loss="classerror") == 0
    assert vl_nnloss(x, [3], loss="classerror") == 1
    # MATLAB's max skips NaN
    x = np.array([np.nan, 3.0, 1.0]).reshape(1, 1, 3, 1)
    assert vl_nnloss(x, [2], loss="classerror") == 0
    assert vl_nnloss(np.full((1, 1, 3, 1), np.nan), [1], loss="classerror") == 0


def test_topkerror_ranks_and_ties():
    x = np.array([0.5, 2.0, 2.0, 1.0, 2.0, -1.0]).reshape(1, 1, 6, 1)
    # stable descending order: classes 2, 3, 5, 4, 1, 6
    for label, rank in [(2, 0), (3, 1), (5, 2), (4, 3), (1, 4), (6, 5)]:
        for k in range(1, 7):
            assert vl_nnloss(x, [label], loss="topkerror", topK=k) == float(rank >= k)
    # topK = 1 is the classification error; topK = D never errs
    x = make_scores("topkerror", shape=(H, W, D, N), seed=58)
    c = make_labels("topkerror", seed=59, zeros=True)
    assert vl_nnloss(x, c, loss="topkerror", topK=1) == vl_nnloss(x, c, loss="classerror")
    assert vl_nnloss(x, c, loss="topkerror", topK=D) == 0
    # the default topK is 5; NaN ranks first in a descending sort
    x = np.array([1.0, np.nan, 0.5, 0.2, 0.1, 0.0, 3.0]).reshape(1, 1, 7, 1)
    assert vl_nnloss(x, [2], loss="topkerror", topK=1) == 0
    assert vl_nnloss(x, [7], loss="topkerror", topK=1) == 1
    assert vl_nnloss(x, [4], loss="topkerror") == 0
    assert vl_nnloss(x, [5], loss="topkerror") == 1


def test_binaryerror_threshold():
    x = np.array([0.2, 0.5, 0.7, 0.0]).reshape(1, 1, 4, 1)
    c = np.array([1, 1, -1, -1]).reshape(1, 1, 4, 1)
    # sign(x - t): x == t gives 0, an error for either label
    assert vl_nnloss(x, c, loss="binaryerror") == 2          # 0.7 and 0.0
    assert vl_nnloss(x, c, loss="binaryerror", threshold=0.5) == 3   # 0.2, 0.5 and 0.7
    assert vl_nnloss(x, c, "loss", "binaryerror", "threshold", 0.6, normalise=False) == 3


def test_mshinge_single_class_has_zero_derivative():
    x = np.array([0.3, -2.0]).reshape(1, 1, 1, 2)
    assert vl_nnloss(x, [1, 1], loss="mshinge") == 0
    assert np.all(vl_nnloss(x, [1, 1], 1.0, loss="mshinge") == 0)


def test_log_derivative_floor():
    x = np.array([0.0, 1.0, 1e-12, 1.0]).reshape(1, 1, 2, 2, order="F")
    dx = vl_nnloss(x, [1, 1], 1.0, loss="log", normalise=False)
    np.testing.assert_allclose(dx.ravel(order="F"), [-1e8, 0, -1e8, 0])


def test_loss_names_are_case_insensitive():
    c = make_labels("softmaxlog", seed=60)
    x = make_scores("softmaxlog", seed=61)
    y = vl_nnloss(x, c, loss="softmaxlog")
    assert vl_nnloss(x, c) == y
    assert vl_nnloss(x, c, loss="SoftMaxLog") == y
    assert vl_nnloss(x, c, "Loss", "SOFTMAXLOG") == y
    assert vl_nnloss(x, c, None, "LOSS", "softmaxlog", "TopK", 2) == y


# ---------------------------------------------------------------------------
# shapes, dtypes, memory order

@pytest.mark.parametrize("loss", ["softmaxlog", "mshinge", "logistic", "binarylog"])
def test_three_and_five_dimensional_x(loss):
    x3 = make_scores(loss, shape=(H, W, D, 1), seed=62,
                     labels=make_labels(loss, shape=(H, W, D, 1), seed=63))[..., 0]
    c3 = make_labels(loss, shape=(H, W, D, 1), seed=63)[..., 0]
    np.testing.assert_allclose(vl_nnloss(x3, c3, loss=loss), ref_loss(x3, c3, loss), rtol=1e-12)
    dx = vl_nnloss(x3, c3, 1.0, loss=loss)
    assert dx.shape == x3.shape
    np.testing.assert_allclose(dx, ref_loss_backward(x3, c3, loss, 1.0), rtol=1e-12, atol=1e-14)
    # dimensions past the 4th are images (N = 2 * 3), and the loss is divided by 6
    c5 = make_labels(loss, shape=(2, 2, D, 6), seed=64)
    x5 = make_scores(loss, shape=(2, 2, D, 6), seed=65, labels=c5).reshape(
        (2, 2, D, 2, 3), order="F")
    c5 = c5.reshape(c5.shape[:3] + (2, 3), order="F")
    np.testing.assert_allclose(vl_nnloss(x5, c5, loss=loss), ref_loss(x5, c5, loss),
                               rtol=1e-12)
    dx = vl_nnloss(x5, c5, 1.0, loss=loss)
    assert dx.shape == x5.shape
    np.testing.assert_allclose(dx, ref_loss_backward(x5, c5, loss, 1.0), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("loss", ALL)
def test_float32_matches_float64(loss):
    c = make_labels(loss, seed=66, zeros=True)
    x = make_scores(loss, seed=67, labels=c)
    y32 = vl_nnloss(x.astype(np.float32), c, loss=loss, topK=2)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, vl_nnloss(x, c, loss=loss, topK=2), rtol=1e-5, atol=1e-6)
    dx32 = vl_nnloss(x.astype(np.float32), c, 1.0, loss=loss)
    assert dx32.dtype == np.float32
    np.testing.assert_allclose(dx32, vl_nnloss(x, c, 1.0, loss=loss), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", ["softmaxlog", "mshinge", "hinge"])
def test_memory_order_and_inputs_untouched(loss, dtype):
    c = make_labels(loss, seed=68, zeros=True)
    x = make_scores(loss, seed=69, labels=c).astype(dtype)
    iw = rng(70).random(c.shape)
    dz = rng(71).standard_normal(c.shape)
    copies = [a.copy() for a in (x, c, iw, dz)]
    y = vl_nnloss(x, c, loss=loss, instanceWeights=iw)
    dx = vl_nnloss(x, c, dz, loss=loss, instanceWeights=iw)
    xf, cf, iwf, dzf = (np.asfortranarray(a) for a in (x, c, iw, dz))
    # the summation order follows the memory order: equal up to rounding
    np.testing.assert_allclose(vl_nnloss(xf, cf, loss=loss, instanceWeights=iwf), y,
                               rtol=1e-6 if dtype == np.float32 else 1e-14)
    assert vl_nnloss(x, cf, loss=loss, instanceWeights=iwf) == y
    np.testing.assert_array_equal(vl_nnloss(xf, cf, dzf, loss=loss, instanceWeights=iwf), dx)
    for a, b in zip((x, c, iw, dz, xf, cf, iwf, dzf), copies * 2):
        np.testing.assert_array_equal(a, b)
    assert not np.shares_memory(dx, x)


# ---------------------------------------------------------------------------
# torch oracle

def test_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = make_scores("softmaxlog", seed=72)
    labels = make_labels("softmaxlog", seed=73, zeros=True)
    xt = torch.tensor(x.transpose(3, 2, 0, 1).copy(), requires_grad=True)      # N D H W
    target = torch.tensor(labels[:, :, 0, :].transpose(2, 0, 1).astype(np.int64) - 1)
    loss = F.cross_entropy(xt, target, ignore_index=-1, reduction="sum") / N
    loss.backward()
    np.testing.assert_allclose(vl_nnloss(x, labels), loss.item(), rtol=1e-12)
    np.testing.assert_allclose(vl_nnloss(x, labels, 1.0), xt.grad.numpy().transpose(2, 3, 1, 0),
                               rtol=1e-10, atol=1e-14)

    # logistic: binary cross-entropy with logits against (c + 1) / 2
    c = make_labels("logistic", seed=74)
    x = make_scores("logistic", seed=75)
    xt = torch.tensor(x, requires_grad=True)
    ref = F.binary_cross_entropy_with_logits(xt, torch.tensor((c + 1) / 2), reduction="sum") / N
    ref.backward()
    np.testing.assert_allclose(vl_nnloss(x, c, loss="logistic"), ref.item(), rtol=1e-12)
    np.testing.assert_allclose(vl_nnloss(x, c, 1.0, loss="logistic"), xt.grad.numpy(),
                               rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------------------
# errors

X = np.zeros((H, W, D, N))
CAT = np.ones((H, W, 1, N))
ATTR = np.ones((H, W, D, N))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: vl_nnloss(X, CAT, loss="softmax"), ValueError,
     r"unknown loss 'softmax'; valid losses: classerror, topkerror, log, softmaxlog, mhinge, "
     r"mshinge, binaryerror, binarylog, logistic, hinge"),
    (lambda: vl_nnloss(X, CAT, loss=3), ValueError, r"unknown loss 3; valid losses"),
    (lambda: vl_nnloss(X, [1, D + 1]), ValueError,
     r"labels must be integers in 1\.\.4 .* or 0 to ignore; got 5"),
    (lambda: vl_nnloss(X, [1, -1], loss="log"), ValueError, r"labels must be integers.*got -1"),
    (lambda: vl_nnloss(X, [1, 1.5], 1.0, loss="mshinge"), ValueError,
     r"labels must be integers.*got 1\.5"),
    (lambda: vl_nnloss(X, [np.nan, 1], loss="classerror"), ValueError, r"got nan"),
    (lambda: vl_nnloss(X, [np.inf, 1], loss="mhinge"), ValueError, r"got inf"),
    (lambda: vl_nnloss(X, CAT, loss="topkerror"), ValueError,
     r"topK = 5 exceeds the number of classes size\(x, 3\) = 4"),
    (lambda: vl_nnloss(X, CAT, loss="topkerror", topK=0), ValueError, r"topK must be >= 1"),
    (lambda: vl_nnloss(X, CAT, loss="topkerror", topK=1.5), ValueError,
     r"topK must be integral"),
    (lambda: vl_nnloss(X, ATTR), ValueError,
     r"labels c of shape \(3, 2, 4, 2\) do not fit x of shape \(3, 2, 4, 2\): expected "
     r"2 labels \(one per image\) or 3 x 2 x 1 x 2"),
    (lambda: vl_nnloss(X, CAT, loss="hinge"), ValueError,
     r"labels c of shape \(3, 2, 1, 2\) do not fit x of shape \(3, 2, 4, 2\): expected "
     r"3 x 2 x 4 x 2$"),
    (lambda: vl_nnloss(X, [1, -1], loss="logistic"), ValueError, r"expected 3 x 2 x 4 x 2"),
    (lambda: vl_nnloss(X, np.ones((W, H, 1, N))), ValueError, r"do not fit"),
    (lambda: vl_nnloss(X, np.ones((H, W, 1, 3))), ValueError, r"do not fit"),
    (lambda: vl_nnloss(X, [1, 2, 3]), ValueError, r"labels c of shape \(3,\) do not fit"),
    (lambda: vl_nnloss(X, None), ValueError, r"labels c must not be empty"),
    (lambda: vl_nnloss(X, []), ValueError, r"labels c must not be empty"),
    (lambda: vl_nnloss(X, ["a", "b"]), ValueError, r"labels c must be real numeric"),
    (lambda: vl_nnloss(X, np.array([1j, 1])), ValueError, r"labels c must be real numeric"),
    (lambda: vl_nnloss(X, CAT, instanceWeights=np.ones((H, W, D, N))), ValueError,
     r"instanceWeights of shape \(3, 2, 4, 2\) does not broadcast to the labels' shape "
     r"3 x 2 x 1 x 2"),
    (lambda: vl_nnloss(X, CAT, instanceWeights=np.ones(N)), ValueError,
     r"instanceWeights of shape \(2,\) does not broadcast"),
    (lambda: vl_nnloss(X, ATTR, loss="hinge", instanceWeights=np.ones((1, 1, 3))), ValueError,
     r"does not broadcast to the labels' shape 3 x 2 x 4 x 2"),
    (lambda: vl_nnloss(X, CAT, instanceWeights="big"), ValueError,
     r"instanceWeights must be real numeric"),
    (lambda: vl_nnloss(X, CAT, np.ones((W, H))), ValueError,
     r"dzdy of shape \(2, 3\) does not broadcast to 3 x 2 x 1 x 2"),
    (lambda: vl_nnloss(X, CAT, np.ones((H, W, D, N))), ValueError, r"does not broadcast"),
    (lambda: vl_nnloss(X, ATTR, np.ones((H, W, 3)), loss="hinge"), ValueError,
     r"does not broadcast to 3 x 2 x 4 x 2"),
    (lambda: vl_nnloss(X, CAT, 1j), ValueError, r"dzdy must be real"),
    (lambda: vl_nnloss(X.astype(np.int32), CAT), ValueError, r"x must be float32 or float64"),
    (lambda: vl_nnloss(np.zeros((0, 2)), CAT), ValueError, r"x must not be empty"),
    (lambda: vl_nnloss(X, CAT, normalize=False), TypeError,
     r"unknown option 'normalize'; valid options: classWeights, instanceWeights, loss, "
     r"normalise, threshold, topK"),
    (lambda: vl_nnloss(X, CAT, None, "loss"), TypeError, r"option 'loss' needs a value"),
    (lambda: vl_nnloss(X, CAT, threshold=[0, 1], loss="binaryerror"), ValueError,
     r"threshold must have 1 elements"),
    (lambda: vl_nnloss(X, CAT, normalise="yes"), ValueError, r"normalise must be numeric"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
