"""Tensor plumbing: concatenation, cropping, accumulation."""

import numpy as np

from ._backend import (FLOAT_TYPES, block_tensors, common_dtype, get_array_module, like_shape,
                       shape4, to4d)
from ._options import as_float, as_int, as_quad, int_vector, parse_options, split_derivative


def _padded(shape, ndim):
    """MATLAB's view of ``shape`` with ``ndim`` dimensions (trailing 1s)."""
    return tuple(shape) + (1,) * (ndim - len(shape))


def _as_list(inputs, fname, name):
    """A MATLAB cell: a list or tuple (or an object array read from a .mat
    file); ``None`` is an empty cell."""
    if inputs is None:
        return []
    if isinstance(inputs, np.ndarray) and inputs.dtype == object:
        return list(inputs.ravel(order="F"))
    if not isinstance(inputs, (list, tuple)):
        raise ValueError(
            f"{fname}: {name} must be a list or tuple of arrays (MATLAB's cell array), "
            f"got {type(inputs).__name__}")
    return list(inputs)


def _size_list(sizes, fname):
    """``inputSizes``: one size vector per input (a list of vectors, a
    2-D array with one row per input, or a cell read from a .mat file)."""
    if isinstance(sizes, np.ndarray) and sizes.dtype != object:
        rows = list(sizes.reshape(1, -1) if sizes.ndim < 2 else sizes.reshape(-1, sizes.shape[-1]))
    else:
        rows = _as_list(sizes, fname, "inputSizes")
    if not rows:
        raise ValueError(f"{fname}: inputSizes must list one size per input, got {sizes!r}")
    out = []
    for i, row in enumerate(rows):
        try:
            count = int(np.size(row))
        except ValueError:  # ragged nested lists
            count = 0
        if count == 0:
            raise ValueError(f"{fname}: inputSizes[{i}] must be a non-empty size vector, "
                             f"got {row!r}")
        out.append(int_vector(row, fname, f"inputSizes[{i}]", (count,), minimum=0))
    return out


def _cat_shape(fname, shapes, names, axis):
    """Shape of the concatenation along ``axis`` of equally-long ``shapes``;
    every other dimension must agree."""
    ref, ref_name = shapes[0], names[0]
    for shape, name in zip(shapes[1:], names[1:]):
        others = [i for i in range(len(ref)) if i != axis and shape[i] != ref[i]]
        if others:
            raise ValueError(
                f"{fname}: {name} has shape {shape} but {ref_name} has shape {ref}; all "
                f"dimensions except dim={axis + 1} must agree (dimension {others[0] + 1} "
                f"differs)")
    return ref[:axis] + (sum(s[axis] for s in shapes),) + ref[axis + 1:]


def vl_nnconcat(inputs, dim=3, *args, dzdy=None, **opts):
    """CNN concatenation of several arrays along one dimension.

    ``Y = vl_nnconcat(INPUTS, DIM)`` concatenates the arrays of the list
    ``INPUTS`` along the 1-based MATLAB dimension ``DIM`` (3, the channels,
    by default).

    ``DZDINPUTS = vl_nnconcat(INPUTS, DIM, DZDY)`` splits the derivative
    ``DZDY`` back into one derivative per input;
    ``vl_nnconcat(None, DIM, DZDY, inputSizes=SIZES)`` does the same
    without the inputs.

    Parameters
    ----------
    inputs : list or tuple of arrays
        Every dimension except ``dim`` must agree (missing trailing
        dimensions are 1).  Empty inputs (``None`` or zero elements, MATLAB's
        ``[]``) are skipped in forward mode, as MATLAB's ``cat`` does; in
        backward mode they need ``inputSizes``.  Same dtype throughout.
    dim : int >= 1, default 3
        1-based dimension: 1 rows, 2 columns, 3 channels, 4 images; larger
        values concatenate along new trailing dimensions.  ``None`` means 3.
    dzdy : array, optional
        Passing it selects backward mode; shaped like ``Y``.

    Other Parameters
    ----------------
    inputSizes : list of size vectors, default None
        The size of each input (``[H, W, C, N]``, trailing ones may be
        left out).  When given, it replaces the shapes of ``inputs`` in
        backward mode (non-empty inputs must agree with it), so the inputs
        may be ``None`` or empty.  Ignored in forward mode.

    Returns
    -------
    y : array (forward)
        ``cat(dim, inputs{:})``, with ``max(dim, ndim of the inputs)``
        dimensions.
    dzdinputs : list of arrays (backward)
        One derivative per input (per ``inputSizes`` entry), each shaped
        like its input: the consecutive slices of ``DZDY`` along ``dim``::

            DZDINPUTS[i] = DZDY(:, .., s_i + 1 : s_i + size(INPUTS[i], dim), .., :)

        with ``s_i`` the sum of the sizes of the inputs before ``i``.
    """
    fname = "vl_nnconcat"
    dzdy, args = split_derivative(fname, args, dzdy)
    o = parse_options(fname, args, opts, {"inputSizes": None})
    dim = 3 if dim is None else as_int(dim, fname, "dim", minimum=1)
    axis = dim - 1
    inputs = _as_list(inputs, fname, "inputs")
    names = [f"inputs[{i}]" for i in range(len(inputs))]
    # dzdy first: a mixed-dtype message names it before the inputs
    xp, _, (dzdy, *arrays) = block_tensors(fname, required=(), dzdy=dzdy,
                                           **dict(zip(names, inputs)))

    if dzdy is None:
        present = [(a, n) for a, n in zip(arrays, names) if a is not None]
        if not present:
            raise ValueError(f"{fname}: inputs must hold at least one non-empty array")
        ndim = max([dim] + [a.ndim for a, _ in present])
        shapes = [_padded(a.shape, ndim) for a, _ in present]
        _cat_shape(fname, shapes, [n for _, n in present], axis)
        return xp.concatenate([a.reshape(s) for (a, _), s in zip(present, shapes)], axis=axis)

    if o.inputSizes is not None:
        sizes = _size_list(o.inputSizes, fname)
        if arrays and len(arrays) != len(sizes):
            raise ValueError(
                f"{fname}: inputSizes lists {len(sizes)} sizes but inputs holds "
                f"{len(arrays)} arrays")
        arrays = arrays or [None] * len(sizes)
        for i, (a, size) in enumerate(zip(arrays, sizes)):
            common = max(len(size), a.ndim if a is not None else 0)
            if a is not None and _padded(a.shape, common) != _padded(size, common):
                raise ValueError(
                    f"{fname}: inputs[{i}] has shape {tuple(a.shape)} but inputSizes[{i}] "
                    f"is {list(size)}")
        out_shapes = [a.shape if a is not None else size for a, size in zip(arrays, sizes)]
        names = [f"inputSizes[{i}]" for i in range(len(sizes))]
    else:
        if not arrays:
            raise ValueError(f"{fname}: backward mode needs the inputs or inputSizes")
        empty = [n for a, n in zip(arrays, names) if a is None]
        if empty:
            raise ValueError(
                f"{fname}: {empty[0]} is empty; pass inputSizes to give the size of empty "
                f"inputs in backward mode")
        out_shapes = [a.shape for a in arrays]

    ndim = max([dim, dzdy.ndim] + [len(s) for s in out_shapes])
    shapes = [_padded(s, ndim) for s in out_shapes]
    expected = _cat_shape(fname, shapes, names, axis)
    if _padded(dzdy.shape, ndim) != expected:
        raise ValueError(
            f"{fname}: dzdy has shape {tuple(dzdy.shape)} but the concatenation of the "
            f"inputs along dim={dim} has shape {expected}")
    dzdy = dzdy.reshape(expected)
    derivatives = []
    start = 0
    for shape, out_shape in zip(shapes, out_shapes):
        index = [slice(None)] * ndim
        index[axis] = slice(start, start + shape[axis])
        start += shape[axis]
        derivatives.append(dzdy[tuple(index)].copy().reshape(tuple(out_shape)))
    return derivatives


def vl_nncrop(x, crop, *args, dzdy=None, input_size=None):
    """CNN spatial crop.

    ``Y = vl_nncrop(X, CROP)`` removes ``CROP = [TOP, BOTTOM, LEFT, RIGHT]``
    rows and columns from the borders of ``X``.

    ``DX = vl_nncrop(X, CROP, DZDY)`` computes the derivative;
    ``DX = vl_nncrop(None, CROP, DZDY, INPUT_SIZE)`` does the same without
    ``X``, given its size (MatConvNet's form).

    Parameters
    ----------
    x : array ``H x W x C x N``, or ``None`` in backward mode with ``input_size``
    crop : int or [TOP, BOTTOM, LEFT, RIGHT]
        Non-negative integers; ``TOP + BOTTOM <= H`` and ``LEFT + RIGHT <= W``.
    dzdy : array ``(H - TOP - BOTTOM) x (W - LEFT - RIGHT) x C x N``, optional
        Passing it selects backward mode; ``None`` or empty is forward (as
        in MatConvNet, which tests ``isempty(dzdy)``).
    input_size : [H, W], [H, W, C] or [H, W, C, N], optional
        The size of ``x``; when ``x`` is given as well they must agree.

    Returns
    -------
    y : array, 4-D (forward)::

        Y = X(TOP+1 : H-BOTTOM, LEFT+1 : W-RIGHT, :, :)      (1-based)

    dx : array shaped like ``x`` (or ``input_size``) (backward)
        Zeros of ``dzdy``'s dtype with ``DZDY`` written into the cropped
        region.
    """
    fname = "vl_nncrop"
    # MatConvNet's positional tail is (dzdy, inputSize); it takes no options
    dzdy, args = split_derivative(fname, args, dzdy)
    if args and isinstance(args[0], str):
        raise TypeError(f"{fname}: takes no options, got {args[0]!r}")
    if len(args) > 1 or (args and input_size is not None):
        raise TypeError(f"{fname}: expected at most (x, crop, dzdy, input_size); "
                        f"got {len(args) + 1} arguments after crop"
                        f"{' and input_size=' if input_size is not None else ''}")
    if args:
        input_size = args[0]
    top, bottom, left, right = as_quad(crop, fname, "crop", minimum=0)
    # x may be empty in backward mode, given input_size
    xp, _, (x, dzdy) = block_tensors(fname, required=(), x=x, dzdy=dzdy)
    size = None
    if input_size is not None and getattr(input_size, "size", 1) != 0:
        size = int_vector(input_size, fname, "input_size", (2, 3, 4), minimum=0)
        if x is not None and shape4(x.shape) != shape4(size):
            raise ValueError(
                f"{fname}: x has shape {tuple(x.shape)} but input_size is {list(size)}")
    if x is not None:
        size = x.shape
    elif size is None:
        raise ValueError(f"{fname}: x must not be empty (or, in backward mode, give input_size)")
    in4 = shape4(size)
    h, w, c, n = in4
    if top + bottom > h or left + right > w:
        raise ValueError(
            f"{fname}: crop [{top}, {bottom}, {left}, {right}] is larger than the input "
            f"of shape {tuple(size)}")
    rows, cols = slice(top, h - bottom), slice(left, w - right)

    if dzdy is None:
        if x is None:
            raise ValueError(f"{fname}: x must not be empty in forward mode")
        return to4d(x)[rows, cols].copy(order="K")

    out4 = (h - top - bottom, w - left - right, c, n)
    if shape4(dzdy.shape) != out4:
        raise ValueError(
            f"{fname}: dzdy has shape {tuple(dzdy.shape)} but the cropped output has shape "
            f"{out4}")
    dx = xp.zeros(in4, dtype=dzdy.dtype)
    dx[rows, cols] = to4d(dzdy)
    return like_shape(dx, size)


def _operand(value, fname, name, xp):
    """A ``vl_taccum`` operand as an array of ``xp``: Python numbers are
    double scalars; arrays must be float32 or float64."""
    if isinstance(value, (bool, int, float)):
        return xp.asarray(float(value))
    if not hasattr(value, "dtype"):
        try:
            value = np.asarray(value)
        except Exception:
            raise ValueError(f"{fname}: {name} must be an array, got {type(value).__name__}") \
                from None
    if value.dtype not in FLOAT_TYPES:
        raise ValueError(
            f"{fname}: {name} must be float32 or float64, got {value.dtype} "
            f"(shape {tuple(value.shape)})")
    return xp.asarray(value)


def vl_taccum(alpha, a, beta, b):
    """Tensor accumulation: ``alpha * A + beta * B``.

    ``C = vl_taccum(ALPHA, A, BETA, B)`` returns ``ALPHA * A + BETA * B``
    as a new array (MatConvNet updates GPU arrays in place; inputs are never
    modified here).

    Parameters
    ----------
    alpha, beta : real scalars
    a, b : arrays (float32 or float64) or real scalars

    Returns
    -------
    c : array
        * If ``a`` or ``b`` has one element (a Python number counts as a
          double scalar), plain MATLAB arithmetic: the scalar is broadcast
          and the result has the other operand's shape.  As in MATLAB,
          single wins: the result is float32 if either operand is float32.
        * Otherwise ``a`` and ``b`` must have the same number of elements
          and the same dtype; ``b``'s elements are taken in column-major
          order and the result has ``a``'s shape and dtype.
    """
    fname = "vl_taccum"
    alpha = as_float(alpha, fname, "alpha")
    beta = as_float(beta, fname, "beta")
    xp = get_array_module(a, b)
    a = _operand(a, fname, "a", xp)
    b = _operand(b, fname, "b", xp)
    if a.size == 1 or b.size == 1:
        dtype = np.dtype(np.float32) if np.float32 in (a.dtype, b.dtype) else np.dtype(np.float64)
        if a.size == 1 and b.size == 1:
            shape = np.broadcast_shapes(a.shape, b.shape)
        else:
            shape = a.shape if b.size == 1 else b.shape
        a = a.reshape(()) if a.size == 1 else a
        b = b.reshape(()) if b.size == 1 else b
        t = dtype.type
        return (t(alpha) * a.astype(dtype) + t(beta) * b.astype(dtype)).reshape(shape)
    if a.size != b.size:
        raise ValueError(
            f"{fname}: a and b must have the same number of elements (or one be a scalar); "
            f"a has shape {tuple(a.shape)}, b has shape {tuple(b.shape)}")
    dtype = common_dtype(fname, a=a, b=b)
    t = dtype.type
    b = b if b.shape == a.shape else b.reshape(a.shape, order="F")
    return t(alpha) * a + t(beta) * b
