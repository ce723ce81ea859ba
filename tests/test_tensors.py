"""Tests of vl_nnconcat, vl_nncrop and vl_taccum (MATCONVNET_SEMANTICS.md
sections 16, 17 and 20)."""

import numpy as np
import pytest

from _checks import check_derivative, rng
from vlnn import vl_nnconcat, vl_nncrop, vl_taccum

DTYPES = [np.float32, np.float64]


def randn(shape, dtype=np.float64, seed=0):
    return rng(seed).standard_normal(shape).astype(dtype)


def padded_shape(shape, ndim):
    return tuple(shape) + (1,) * (ndim - len(shape))


# ---------------------------------------------------------------------------
# vl_nnconcat


def ref_concat(inputs, dim):
    """MATLAB's ``cat(dim, inputs{:})`` element by element."""
    ndim = max([dim] + [a.ndim for a in inputs])
    arrays = [a.reshape(padded_shape(a.shape, ndim)) for a in inputs]
    sizes = [a.shape[dim - 1] for a in arrays]
    out_shape = list(arrays[0].shape)
    out_shape[dim - 1] = sum(sizes)
    y = np.empty(out_shape, np.float64)
    for idx in np.ndindex(*out_shape):
        k, offset = 0, idx[dim - 1]
        while offset >= sizes[k]:
            offset -= sizes[k]
            k += 1
        source = list(idx)
        source[dim - 1] = offset
        y[idx] = arrays[k][tuple(source)]
    return y


def concat_inputs(dim, counts=(3, 7, 2), base=(4, 5, 10, 3), dtype=np.float64, order="C"):
    """MatConvNet's nnconcat/basic: sizes [4 5 10 3] with 3/7/2 along dim."""
    inputs = []
    for i, count in enumerate(counts):
        shape = list(padded_shape(base, max(dim, len(base))))
        shape[dim - 1] = count
        a = randn(tuple(shape), dtype, seed=i)
        inputs.append(np.asfortranarray(a) if order == "F" else a)
    return inputs


@pytest.mark.parametrize("dim", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("dtype", DTYPES)
def test_concat_forward(dim, dtype):
    inputs = concat_inputs(dim, base=(2, 3, 4, 2), dtype=dtype)
    y = vl_nnconcat(inputs, dim)
    expected = ref_concat(inputs, dim)
    assert y.shape == expected.shape and y.dtype == dtype
    assert y.shape[dim - 1] == 12
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("dim", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("dtype", DTYPES)
def test_concat_backward(dim, dtype):
    inputs = concat_inputs(dim, base=(2, 3, 4, 2), dtype=dtype)
    y = vl_nnconcat(inputs, dim)
    dy = randn(y.shape, dtype, seed=9)
    ders = vl_nnconcat(inputs, dim, dy)
    assert isinstance(ders, list) and len(ders) == len(inputs)
    start = 0
    for a, d in zip(inputs, ders):
        assert d.shape == a.shape and d.dtype == dtype
        # the slice of dy along dim, element by element
        for idx in np.ndindex(*a.shape):
            source = list(padded_shape(idx, dy.ndim))
            source[dim - 1] += start
            assert d[idx] == dy[tuple(source)]
        start += a.shape[dim - 1]
        assert not np.shares_memory(d, dy)


@pytest.mark.parametrize("dim", [1, 2, 3, 4])
def test_concat_backward_matches_numerical_derivative(dim):
    inputs = concat_inputs(dim)
    proj = randn(vl_nnconcat(inputs, dim).shape, seed=10)
    ders = vl_nnconcat(inputs, dim, proj)
    for i in range(len(inputs)):
        def f(z, i=i):
            return vl_nnconcat(inputs[:i] + [z] + inputs[i + 1:], dim)
        check_derivative(f, inputs[i], ders[i], proj, eps=1e-3, rtol=1e-9)


@pytest.mark.parametrize("dim", [1, 2, 3, 4])
def test_concat_by_size(dim):
    # MatConvNet's nnconcat/by_size: inputSizes with empty inputs
    inputs = concat_inputs(dim)
    dy = randn(vl_nnconcat(inputs, dim).shape, seed=11)
    expected = vl_nnconcat(inputs, dim, dy)
    sizes = [list(a.shape) for a in inputs]
    for given in ([None] * 3, [np.zeros((0,))] * 3, [], None, [None, inputs[1], None]):
        ders = vl_nnconcat(given, dim, dy, inputSizes=sizes)
        assert len(ders) == 3
        for d, e in zip(ders, expected):
            assert d.shape == e.shape
            np.testing.assert_array_equal(d, e)
    # the size list in other forms: a 2-D array, a .mat cell (object array), tuples
    cell = np.empty((1, 3), dtype=object)
    for i, s in enumerate(sizes):
        cell[0, i] = np.array(s, np.float64).reshape(1, 4)
    for form in (np.array(sizes), cell, tuple(tuple(s) for s in sizes)):
        for d, e in zip(vl_nnconcat(None, dim, dy, "inputSizes", form), expected):
            np.testing.assert_array_equal(d, e)


def test_concat_input_sizes_may_leave_out_trailing_ones():
    a, b = randn((3, 4, 2)), randn((3, 4, 5))
    dy = randn((3, 4, 7), seed=1)
    da, db = vl_nnconcat(None, 3, dy, inputSizes=[[3, 4, 2], [3, 4, 5, 1]])
    assert da.shape == (3, 4, 2) and db.shape == (3, 4, 5, 1)
    np.testing.assert_array_equal(da, dy[:, :, :2])
    np.testing.assert_array_equal(db[..., 0], dy[:, :, 2:])
    # given inputs keep their own shapes
    da, db = vl_nnconcat([a, b], 3, dy, inputSizes=[[3, 4, 2, 1], [3, 4, 5]])
    assert da.shape == a.shape and db.shape == b.shape


@pytest.mark.parametrize("dim,expected", [(1, (6, 4)), (2, (3, 8)), (3, (3, 4, 2)),
                                          (4, (3, 4, 1, 2)), (5, (3, 4, 1, 1, 2))])
def test_concat_trailing_singleton_dims(dim, expected):
    a, b = randn((3, 4)), randn((3, 4), seed=1)
    y = vl_nnconcat([a, b], dim)
    assert y.shape == expected
    np.testing.assert_array_equal(y, ref_concat([a, b], dim))
    da, db = vl_nnconcat([a, b], dim, y)
    np.testing.assert_array_equal(da, a)
    np.testing.assert_array_equal(db, b)


def test_concat_mixed_ranks_and_one_input():
    a, b = randn((3, 4, 2)), randn((3, 4, 1, 1), seed=1)
    y = vl_nnconcat([a, b])
    assert y.shape == (3, 4, 3, 1)
    np.testing.assert_array_equal(y, ref_concat([a, b], 3))
    single = vl_nnconcat([a], 3)
    np.testing.assert_array_equal(single, a)
    assert not np.shares_memory(single, a)


def test_concat_skips_empty_inputs_in_forward():
    a, b = randn((2, 3, 2, 2)), randn((2, 3, 1, 2), seed=1)
    expected = ref_concat([a, b], 3)
    for inputs in ([None, a, b], [a, np.zeros((0,)), b, None], (a, b)):
        np.testing.assert_array_equal(vl_nnconcat(inputs), expected)


def test_concat_dim_forms_and_calling_forms():
    inputs = concat_inputs(2, base=(2, 3, 2, 2))
    y = vl_nnconcat(inputs, 2)
    for dim in (2.0, np.int64(2), np.array([[2]]), [2]):
        np.testing.assert_array_equal(vl_nnconcat(inputs, dim), y)
    inputs3 = concat_inputs(3, base=(2, 3, 2, 2))
    np.testing.assert_array_equal(vl_nnconcat(inputs3, None), vl_nnconcat(inputs3))
    np.testing.assert_array_equal(vl_nnconcat(inputs3), ref_concat(inputs3, 3))
    dy = randn(y.shape, seed=3)
    sizes = [a.shape for a in inputs]
    for ders in (vl_nnconcat(inputs, 2, dzdy=dy), vl_nnconcat(None, 2, dy, "InputSizes", sizes),
                 vl_nnconcat(None, 2, dy, input_sizes=sizes)):
        for d, a in zip(ders, vl_nnconcat(inputs, 2, dy)):
            np.testing.assert_array_equal(d, a)
    # an empty dzdy is the forward form (MATLAB tests isempty(dzdy))
    np.testing.assert_array_equal(vl_nnconcat(inputs, 2, np.zeros((0,))), y)
    # forward ignores inputSizes
    np.testing.assert_array_equal(vl_nnconcat(inputs, 2, None, inputSizes=[[1, 1]]), y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_concat_memory_order_and_inputs_untouched(dtype):
    inputs_c = concat_inputs(3, base=(3, 4, 2, 2), dtype=dtype)
    inputs_f = [np.asfortranarray(a) for a in inputs_c]
    copies = [a.copy() for a in inputs_c]
    y = vl_nnconcat(inputs_c)
    np.testing.assert_array_equal(vl_nnconcat(inputs_f), y)
    np.testing.assert_array_equal(vl_nnconcat([inputs_c[0], inputs_f[1], inputs_c[2]]), y)
    dy = randn(y.shape, dtype, seed=4)
    for d_c, d_f in zip(vl_nnconcat(inputs_c, 3, dy), vl_nnconcat(inputs_f, 3,
                                                                   np.asfortranarray(dy))):
        np.testing.assert_array_equal(d_c, d_f)
    for a, b in zip(inputs_c + inputs_f, copies + copies):
        np.testing.assert_array_equal(a, b)


A = np.zeros((2, 3, 4, 2))
B = np.zeros((2, 3, 1, 2))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: vl_nnconcat([A, np.zeros((2, 4, 1, 2))]), ValueError,
     r"inputs\[1\] has shape \(2, 4, 1, 2\) but inputs\[0\] has shape \(2, 3, 4, 2\); all "
     r"dimensions except dim=3 must agree \(dimension 2 differs\)"),
    (lambda: vl_nnconcat([A, B], 1), ValueError, r"dimension 3 differs"),
    (lambda: vl_nnconcat([A, B], 0), ValueError, r"dim must be >= 1"),
    (lambda: vl_nnconcat([A, B], 1.5), ValueError, r"dim must be integral"),
    (lambda: vl_nnconcat([A, B], "channels"), ValueError, r"dim must be numeric"),
    (lambda: vl_nnconcat(A), ValueError,
     r"inputs must be a list or tuple of arrays \(MATLAB's cell array\), got ndarray"),
    (lambda: vl_nnconcat([None, np.zeros((0, 3))]), ValueError,
     r"inputs must hold at least one non-empty array"),
    (lambda: vl_nnconcat([A, B.astype(np.float32)]), ValueError,
     r"must not mix float32 and float64 \(inputs\[0\] is float64, inputs\[1\] is float32\)"),
    (lambda: vl_nnconcat([A, B.astype(np.int16)]), ValueError,
     r"inputs\[1\] must be float32 or float64"),
    (lambda: vl_nnconcat([A, B], 3, np.zeros((2, 3, 5, 2), np.float32)), ValueError,
     r"must not mix float32 and float64"),
    (lambda: vl_nnconcat([A, B], 3, np.zeros((2, 3, 4, 2))), ValueError,
     r"dzdy has shape \(2, 3, 4, 2\) but the concatenation of the inputs along dim=3 has "
     r"shape \(2, 3, 5, 2\)"),
    (lambda: vl_nnconcat([A, None], 3, np.zeros((2, 3, 5, 2))), ValueError,
     r"inputs\[1\] is empty; pass inputSizes"),
    (lambda: vl_nnconcat(None, 3, np.zeros((2, 3, 5, 2))), ValueError,
     r"backward mode needs the inputs or inputSizes"),
    (lambda: vl_nnconcat([A, B], 3, np.zeros((2, 3, 5, 2)), inputSizes=[[2, 3, 4, 2]]),
     ValueError, r"inputSizes lists 1 sizes but inputs holds 2 arrays"),
    (lambda: vl_nnconcat([A, B], 3, np.zeros((2, 3, 5, 2)),
                         inputSizes=[[2, 3, 4, 2], [2, 3, 2, 2]]),
     ValueError, r"inputs\[1\] has shape \(2, 3, 1, 2\) but inputSizes\[1\] is \[2, 3, 2, 2\]"),
    (lambda: vl_nnconcat(None, 3, np.zeros((2, 3, 5, 2)),
                         inputSizes=[[2, 3, 4, 2], [2, 4, 1, 2]]),
     ValueError, r"inputSizes\[1\] has shape \(2, 4, 1, 2\) but inputSizes\[0\] has shape "
                 r"\(2, 3, 4, 2\)"),
    (lambda: vl_nnconcat(None, 3, np.zeros((2, 3, 5, 2)), inputSizes=[[2, 3, 4.5, 2], [1]]),
     ValueError, r"inputSizes\[0\] must be integral"),
    (lambda: vl_nnconcat(None, 3, np.zeros((2, 3, 5, 2)), inputSizes=[[2, 3, 4, 2], []]),
     ValueError, r"inputSizes\[1\] must be a non-empty size vector"),
    (lambda: vl_nnconcat(None, 3, np.zeros((2, 3, 5, 2)), inputSizes=[]), ValueError,
     r"inputSizes must list one size per input"),
    (lambda: vl_nnconcat([A, B], 3, None, sizes=1), TypeError,
     r"unknown option 'sizes'; valid options: inputSizes"),
])
def test_concat_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------
# vl_nncrop


def ref_crop(x, crop):
    """``Y = X(T+1 : H-B, L+1 : W-R, :, :)`` element by element."""
    t, b, l, r = crop
    x4 = x.reshape(padded_shape(x.shape, 4))
    h, w, c, n = x4.shape
    y = np.empty((h - t - b, w - l - r, c, n), np.float64)
    for i, j, k, m in np.ndindex(*y.shape):
        y[i, j, k, m] = x4[i + t, j + l, k, m]
    return y


def ref_crop_backward(shape, crop, dy):
    """Zeros of ``shape`` with ``dy`` written into the cropped region."""
    t, _, l, _ = crop
    dx = np.zeros(padded_shape(shape, 4))
    dy4 = dy.reshape(padded_shape(dy.shape, 4))
    for i, j, k, m in np.ndindex(*dy4.shape):
        dx[i + t, j + l, k, m] = dy4[i, j, k, m]
    return dx.reshape(shape)


CROPS = [(0, 0, 0, 0), (1, 0, 0, 0), (0, 2, 1, 0), (1, 2, 3, 1), (3, 0, 0, 4)]


@pytest.mark.parametrize("crop", CROPS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_crop_forward(crop, dtype):
    x = randn((6, 7, 3, 2), dtype)
    y = vl_nncrop(x, crop)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, ref_crop(x, crop))
    assert not np.shares_memory(y, x)


@pytest.mark.parametrize("crop", CROPS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_crop_backward(crop, dtype):
    x = randn((6, 7, 3, 2), dtype)
    dy = randn(ref_crop(x, crop).shape, dtype, seed=1)
    dx = vl_nncrop(x, crop, dy)
    assert dx.shape == x.shape and dx.dtype == dtype
    np.testing.assert_array_equal(dx, ref_crop_backward(x.shape, crop, dy))
    # MatConvNet's form without x
    dx2 = vl_nncrop(None, crop, dy, [6, 7, 3, 2])
    assert dx2.shape == x.shape and dx2.dtype == dtype
    np.testing.assert_array_equal(dx2, dx)


@pytest.mark.parametrize("crop", CROPS)
def test_crop_backward_matches_numerical_derivative(crop):
    x = randn((6, 7, 3, 2))
    proj = randn(ref_crop(x, crop).shape, seed=2)
    check_derivative(lambda z: vl_nncrop(z, crop), x, vl_nncrop(x, crop, proj), proj,
                     eps=1e-3, rtol=1e-9)


def test_crop_scalar_and_array_forms():
    x = randn((6, 7, 3, 2))
    np.testing.assert_array_equal(vl_nncrop(x, 1), ref_crop(x, (1, 1, 1, 1)))
    np.testing.assert_array_equal(vl_nncrop(x, np.array([[1.0, 2.0, 0.0, 3.0]])),
                                  ref_crop(x, (1, 2, 0, 3)))
    np.testing.assert_array_equal(vl_nncrop(x, (1, 2, 0, 3)), ref_crop(x, (1, 2, 0, 3)))


@pytest.mark.parametrize("shape", [(6, 7), (6, 7, 3), (6, 7, 3, 2, 2)])
def test_crop_other_ranks(shape):
    # the output is 4-D (dims past the 4th fold into it in column-major
    # order, as in MATLAB); the derivative has x's shape
    x = randn(shape)
    x4 = x.reshape(x.shape[:3] + (-1,), order="F") if x.ndim > 4 else x
    y = vl_nncrop(x, (1, 2, 3, 0))
    assert y.ndim == 4
    np.testing.assert_array_equal(y, ref_crop(x4, (1, 2, 3, 0)))
    dx = vl_nncrop(x, (1, 2, 3, 0), y)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx.reshape(x4.shape, order="F"),
                                  ref_crop_backward(x4.shape, (1, 2, 3, 0), y))


@pytest.mark.parametrize("size,shape", [([6, 7], (6, 7)), ([6, 7, 3], (6, 7, 3)),
                                        (np.array([[6.0, 7.0, 3.0, 1.0]]), (6, 7, 3, 1))])
def test_crop_input_size_forms(size, shape):
    dy = randn((5, 5, 3 if len(shape) > 2 else 1, 1), np.float32)
    dx = vl_nncrop(None, (1, 0, 2, 0), dy, size)
    assert dx.shape == shape and dx.dtype == np.float32
    np.testing.assert_array_equal(dx, ref_crop_backward(shape, (1, 0, 2, 0), dy))


def test_crop_with_both_x_and_input_size():
    x = randn((6, 7, 3, 2))
    dy = randn((5, 5, 3, 2), seed=1)
    np.testing.assert_array_equal(vl_nncrop(x, (1, 0, 2, 0), dy, [6, 7, 3, 2]),
                                  vl_nncrop(x, (1, 0, 2, 0), dy))


def test_crop_everything_gives_an_empty_output():
    x = randn((4, 5, 2, 1))
    assert vl_nncrop(x, (2, 2, 0, 0)).shape == (0, 5, 2, 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_crop_memory_order_and_inputs_untouched(dtype):
    x = randn((6, 7, 3, 2), dtype)
    dy = randn((3, 4, 3, 2), dtype, seed=1)
    copies = x.copy(), dy.copy()
    xf, dyf = np.asfortranarray(x), np.asfortranarray(dy)
    y, dx = vl_nncrop(x, (1, 2, 0, 3)), vl_nncrop(x, (1, 2, 0, 3), dy)
    np.testing.assert_array_equal(vl_nncrop(xf, (1, 2, 0, 3)), y)
    np.testing.assert_array_equal(vl_nncrop(xf, (1, 2, 0, 3), dyf), dx)
    np.testing.assert_array_equal(vl_nncrop(None, (1, 2, 0, 3), dyf, x.shape), dx)
    for a, b in zip((x, dy, xf, dyf), copies + copies):
        np.testing.assert_array_equal(a, b)
    assert not np.shares_memory(dx, dy)


X = np.zeros((6, 7, 3, 2))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: vl_nncrop(X, (4, 3, 0, 0)), ValueError,
     r"crop \[4, 3, 0, 0\] is larger than the input of shape \(6, 7, 3, 2\)"),
    (lambda: vl_nncrop(X, (0, 0, 5, 3)), ValueError, r"crop \[0, 0, 5, 3\] is larger"),
    (lambda: vl_nncrop(X, (1, -1, 0, 0)), ValueError, r"crop must be >= 0"),
    (lambda: vl_nncrop(X, (1, 1, 0)), ValueError, r"crop must have 1 or 4 elements"),
    (lambda: vl_nncrop(X, 1.5), ValueError, r"crop must be integral"),
    (lambda: vl_nncrop(X, 1, np.zeros((4, 5, 3, 1))), ValueError,
     r"dzdy has shape \(4, 5, 3, 1\) but the cropped output has shape \(4, 5, 3, 2\)"),
    (lambda: vl_nncrop(X, 1, np.zeros((4, 5, 3, 2), np.float32)), ValueError,
     r"must not mix float32 and float64 \(x is float64, dzdy is float32\)"),
    (lambda: vl_nncrop(X, 1, np.zeros((4, 5, 3, 2)), [6, 7, 3, 3]), ValueError,
     r"x has shape \(6, 7, 3, 2\) but input_size is \[6, 7, 3, 3\]"),
    (lambda: vl_nncrop(None, 1, np.zeros((4, 5, 3, 2))), ValueError,
     r"x must not be empty \(or, in backward mode, give input_size\)"),
    (lambda: vl_nncrop(None, 1, None, [6, 7, 3, 2]), ValueError,
     r"x must not be empty in forward mode"),
    (lambda: vl_nncrop(None, 1, np.zeros((4, 5, 3, 2)), [6]), ValueError,
     r"input_size must have 2 or 3 or 4 elements"),
    (lambda: vl_nncrop(None, 1, np.zeros((4, 5, 3, 2)), [6, 7.5]), ValueError,
     r"input_size must be integral"),
    (lambda: vl_nncrop(X.astype(np.int8), 1), ValueError, r"x must be float32 or float64"),
])
def test_crop_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------
# vl_taccum


def ref_taccum(alpha, a, beta, b):
    """``alpha * a(i) + beta * b(i)`` over column-major linear indices,
    shaped like ``a``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    flat_a, flat_b = a.ravel(order="F"), b.ravel(order="F")
    out = np.empty(flat_a.size)
    for i in range(flat_a.size):
        out[i] = alpha * flat_a[i] + beta * flat_b[i]
    return out.reshape(a.shape, order="F")


@pytest.mark.parametrize("dtype", DTYPES)
def test_taccum_same_shape(dtype):
    a, b = randn((4, 5, 3, 2), dtype), randn((4, 5, 3, 2), dtype, seed=1)
    copies = a.copy(), b.copy()
    c = vl_taccum(0.5, a, -2, b)
    assert c.shape == a.shape and c.dtype == dtype
    np.testing.assert_allclose(c, ref_taccum(0.5, a, -2, b),
                               rtol=1e-6 if dtype == np.float32 else 1e-15)
    np.testing.assert_array_equal(a, copies[0])
    np.testing.assert_array_equal(b, copies[1])
    assert not np.shares_memory(c, a) and not np.shares_memory(c, b)
    np.testing.assert_array_equal(vl_taccum(1, a, 0, b), a)


@pytest.mark.parametrize("dtype", DTYPES)
def test_taccum_same_numel_takes_column_major_order(dtype):
    a, b = randn((4, 6), dtype), randn((2, 3, 4), dtype, seed=1)
    c = vl_taccum(1.5, a, 3, b)
    assert c.shape == (4, 6) and c.dtype == dtype
    np.testing.assert_allclose(c, ref_taccum(1.5, a, 3, b), rtol=1e-6)
    np.testing.assert_allclose(vl_taccum(1.5, a, 3, np.asfortranarray(b)), c, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_taccum_scalars(dtype):
    a = randn((3, 4, 2), dtype)
    # a scalar on either side broadcasts; the result has the array's shape
    c = vl_taccum(2, a, 3, 1.5)
    assert c.shape == a.shape and c.dtype == dtype
    np.testing.assert_allclose(c, 2 * a.astype(np.float64) + 4.5, rtol=1e-6)
    c = vl_taccum(2, np.array([[1.5]], dtype), 3, a)
    assert c.shape == a.shape and c.dtype == dtype
    np.testing.assert_allclose(c, 3 + 3 * a.astype(np.float64), rtol=1e-6)
    # both scalars
    c = vl_taccum(2, 1.0, 3, np.array([[2.0]], dtype))
    assert c.shape == (1, 1) and c.dtype == dtype
    assert c[0, 0] == 8
    c = vl_taccum(2, 1, 3, 2)
    assert c.shape == () and c.dtype == np.float64 and c == 8


def test_taccum_single_wins_in_scalar_arithmetic():
    a32, a64 = randn((3, 4), np.float32), randn((3, 4))
    assert vl_taccum(1, a32, 1, np.float64(2)).dtype == np.float32
    assert vl_taccum(1, np.array([2.0]), 1, a32).dtype == np.float32
    assert vl_taccum(1, a64, 1, np.float32(2)).dtype == np.float32
    assert vl_taccum(1, a64, 1, 2.0).dtype == np.float64
    assert vl_taccum(np.float64(1), a32, np.array([[0.5]]), 2).dtype == np.float32


def test_taccum_empty_arrays():
    c = vl_taccum(1, np.zeros((0, 3)), 2, np.zeros((3, 0)))
    assert c.shape == (0, 3)
    assert vl_taccum(1, np.zeros((0, 3)), 2, 5.0).shape == (0, 3)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: vl_taccum(1, np.zeros((3, 4)), 1, np.zeros((3, 5))), ValueError,
     r"a and b must have the same number of elements \(or one be a scalar\); a has shape "
     r"\(3, 4\), b has shape \(3, 5\)"),
    (lambda: vl_taccum(1, np.zeros((3, 4)), 1, np.zeros((3, 4), np.float32)), ValueError,
     r"must not mix float32 and float64 \(a is float64, b is float32\)"),
    (lambda: vl_taccum(1, np.zeros((3, 4), np.int32), 1, np.zeros((3, 4))), ValueError,
     r"a must be float32 or float64, got int32 \(shape \(3, 4\)\)"),
    (lambda: vl_taccum(1, np.zeros((3, 4)), 1, 1j), ValueError,
     r"b must be float32 or float64, got complex128"),
    (lambda: vl_taccum(1, np.zeros((3, 4)), 1, "b"), ValueError, r"b must be float32 or float64"),
    (lambda: vl_taccum([1, 2], np.zeros((3, 4)), 1, 1.0), ValueError,
     r"alpha must have 1 elements"),
    (lambda: vl_taccum(1, np.zeros((3, 4)), "one", 1.0), ValueError, r"beta must be numeric"),
])
def test_taccum_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
