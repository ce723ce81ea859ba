"""Bilinear sampling and region-of-interest pooling.

Both blocks gather input pixels at data-dependent positions and scatter the
derivatives back to them.  Gathers are ``take`` calls on the ``N*H*W x C``
row view of the NHWC data with one extra sentinel row (zero, or ``-inf``
for max pooling) that every dropped position reads, so no value is ever
masked by multiplying with zero (which would turn ``Inf`` into ``NaN``).
Scatters go through :func:`_spread_rows`: on NumPy a sparse incidence
matrix times the derivatives (measured 2 to 20 times faster than
``np.bincount`` on flattened indices or ``np.add.at`` on rows), on CuPy an
atomic scatter-add.
"""

import numpy as np

from ._backend import (FLOAT_TYPES, block_tensors, check_derivative, from_nhwc, get_array_module,
                       like_shape, to4d, to_nhwc)
from ._options import as_pair, numbers_of, parse_options, split_derivative

# Upper bound (elements) on one gathered block of ROI tiles, raised to the
# size of x when x is larger; see vl_nnroipool's "Memory" notes.
_ROI_BLOCK_ELEMENTS = 2 ** 22


def _spread_rows(xp, nrows, rows, weights, values, out=None):
    """``out[rows[s, e]] += weights[s, e] * values[s]`` for every source
    row ``s`` and entry ``e``, repeated rows accumulating.

    ``rows`` and ``weights`` are ``S x E``, ``values`` is ``S x C``,
    ``weights`` has ``values``' dtype; ``out`` (``nrows x C``) is created
    zero when not given.  Returns ``out``."""
    sources, entries = rows.shape
    if xp is np:
        import scipy.sparse
        # column s of the incidence matrix holds source s's E entries; int32
        # indices spare scipy a scan of the index array
        index = np.int32 if max(nrows, sources * entries) < 2 ** 31 else np.int64
        incidence = scipy.sparse.csc_matrix(
            (weights.ravel(), rows.ravel().astype(index, copy=False),
             np.arange(0, sources * entries + 1, entries, dtype=index)),
            shape=(nrows, sources))
        if out is None:
            return incidence @ values
        out += incidence @ values
        return out
    try:
        from cupyx import scatter_add
    except ImportError:  # CuPy releases that dropped it in favour of add.at
        scatter_add = xp.add.at
    if out is None:
        out = xp.zeros((nrows, values.shape[1]), values.dtype)
    contributions = weights[:, :, None] * values[:, None, :]
    scatter_add(out, rows.ravel(), contributions.reshape(sources * entries, -1))
    return out


def _host(a):
    """A small index array on the host (ROI geometry is bookkeeping)."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


# ---------------------------------------------------------------------------
# vl_nnbilinearsampler

def vl_nnbilinearsampler(x, grid, *args, dzdy=None, **opts):
    """CNN spatial bilinear resampling.

    ``Y = vl_nnbilinearsampler(X, GRID)`` resamples the images ``X`` at the
    points of ``GRID`` by bilinear interpolation.

    ``DX, DGRID = vl_nnbilinearsampler(X, GRID, DZDY)`` computes the
    derivatives with respect to ``X`` and ``GRID``.

    Parameters
    ----------
    x : array, ``H x W x C x N``
    grid : array, ``2 x Ho x Wo x No``
        Sampling points in normalised coordinates.  ``grid[0]`` is the
        vertical coordinate ``gy`` and ``grid[1]`` the horizontal ``gx``;
        ``-1`` and ``+1`` are the centres of the first and last pixel
        (PyTorch's ``align_corners=True``).  ``No`` must be a multiple of
        ``N``: the first ``No/N`` grids sample image 0, the next ``No/N``
        image 1, and so on (0-based; output ``o`` samples image
        ``o // (No/N)``).  Same dtype as ``x``.
    dzdy : array ``Ho x Wo x C x No``, optional
        Passing it selects backward mode.

    Other Parameters
    ----------------
    Cudnn, NoCudnn, Verbose, CudnnWorkspaceLimit :
        Accepted for compatibility; no numerical effect.

    Returns
    -------
    y : array ``Ho x Wo x C x No`` (forward)
        With 0-based pixel coordinates ``py = (gy + 1)/2 * (H - 1)``,
        ``px = (gx + 1)/2 * (W - 1)``, ``sy = floor(py)``, ``sx = floor(px)``,
        ``wy = py - sy``, ``wx = px - sx``, ``Wy = (1 - wy, wy)``,
        ``Wx = (1 - wx, wx)``::

            Y(i, j, c, o) = sum_{a, b in {0, 1}} Wy(a) Wx(b) X(sy + a, sx + b, c, n(o))

        where corner terms outside the image are dropped (zero padding), and
        ``Y = 0`` when the floor corner itself is outside (``sy < 0``,
        ``sy >= H``, ``sx < 0`` or ``sx >= W``): as in MatConvNet's CPU code,
        a point at row ``-0.5`` gives 0, not half of row 0.
    dx, dgrid : arrays shaped like ``x`` and ``grid`` (backward)
        ``dX(sy + a, sx + b, c, n(o)) += Wy(a) Wx(b) dY(i, j, c, o)``,
        accumulated over every point of every grid of an image, and::

            dGRID(0, i, j, o) = (H - 1)/2 * sum_c dY(i, j, c, o)
                                * sum_{a,b} (2a - 1) Wx(b) X(sy + a, sx + b, c, n(o))
            dGRID(1, i, j, o) = (W - 1)/2 * sum_c dY(i, j, c, o)
                                * sum_{a,b} (2b - 1) Wy(a) X(sy + a, sx + b, c, n(o))

        with the same dropped terms; points whose floor corner is outside
        get zero derivative.  The output is piecewise bilinear in the grid,
        so ``dgrid`` is the one-sided derivative from the floor cell at
        integer pixel positions.

    Raises
    ------
    ValueError
        Empty ``x`` or ``grid``, ``grid``'s first dimension not 2, ``No`` not
        a multiple of ``N``, ``dzdy`` of the wrong shape, non-float data or
        float32 mixed with float64.
    TypeError
        An unknown option.

    Examples
    --------
    The identity grid reproduces the input:

    >>> import numpy as np
    >>> x = np.arange(12.0).reshape(3, 4)
    >>> gy, gx = np.meshgrid(np.linspace(-1, 1, 3), np.linspace(-1, 1, 4), indexing="ij")
    >>> y = vl_nnbilinearsampler(x, np.stack([gy, gx]))
    >>> bool(np.allclose(y[:, :, 0, 0], x))
    True
    """
    fname = "vl_nnbilinearsampler"
    dzdy, args = split_derivative(fname, args, dzdy)
    parse_options(fname, args, opts, {}, gpu=True)
    xp, dtype, (x, grid, dzdy) = block_tensors(fname, required=("x", "grid"),
                                               x=x, grid=grid, dzdy=dzdy)
    x4, grid4 = to4d(x), to4d(grid)
    h, w, c, n = x4.shape
    if grid4.shape[0] != 2:
        raise ValueError(
            f"{fname}: grid must be 2 x Ho x Wo x No (y and x coordinates first); "
            f"got grid shape {tuple(grid.shape)}")
    _, ho, wo, no = grid4.shape
    if no % n:
        raise ValueError(
            f"{fname}: the number of grids No = {no} must be a multiple of the number of "
            f"images N = {n} (x shape {tuple(x.shape)}, grid shape {tuple(grid.shape)})")
    if dzdy is not None:
        check_derivative(fname, dzdy, (ho, wo, c, no))

    # points in (grid o, row i, column j) order, i.e. the output's NHWC order
    gy = grid4[0].transpose(2, 0, 1).reshape(no, ho * wo)
    gx = grid4[1].transpose(2, 0, 1).reshape(no, ho * wo)
    py = (gy + 1) * 0.5 * (h - 1)
    px = (gx + 1) * 0.5 * (w - 1)
    fy, fx = xp.floor(py), xp.floor(px)
    # NaN coordinates fail every comparison and count as outside
    inside = (fy >= 0) & (fy < h) & (fx >= 0) & (fx < w)
    zero = dtype.type(0)
    # outside points read the sentinel row; give them finite dummy coordinates
    fy, fx = xp.where(inside, fy, zero), xp.where(inside, fx, zero)
    wy = xp.where(inside, py, zero) - fy
    wx = xp.where(inside, px, zero) - fx
    sy, sx = fy.astype(xp.intp), fx.astype(xp.intp)
    image = (xp.arange(no) // (no // n))[:, None]
    top_left = (image * h + sy) * w + sx
    sentinel = n * h * w        # the extra zero row every dropped corner reads
    down = inside & (sy + 1 < h)
    right = inside & (sx + 1 < w)
    # corners in MatConvNet's order: columns outer, rows inner
    rows = xp.stack([xp.where(inside, top_left, sentinel),
                     xp.where(down, top_left + w, sentinel),
                     xp.where(right, top_left + 1, sentinel),
                     xp.where(down & right, top_left + w + 1, sentinel)], axis=-1)
    one = dtype.type(1)
    wy0, wx0 = one - wy, one - wx
    weights = xp.stack([wx0 * wy0, wx0 * wy, wx * wy0, wx * wy], axis=-1)
    points = no * ho * wo
    rows = rows.reshape(points, 4)
    weights = weights.reshape(points, 4)

    xrows = to_nhwc(x4, xp).reshape(sentinel, c)
    padded = xp.concatenate([xrows, xp.zeros((1, c), dtype)])
    corners = xp.take(padded, rows.ravel(), axis=0).reshape(points, 4, c)
    if dzdy is None:
        y = xp.einsum("pkc,pk->pc", corners, weights)
        return from_nhwc(y.reshape(no, ho, wo, c))

    dyn = to_nhwc(to4d(dzdy), xp).reshape(points, c)
    dx = _spread_rows(xp, sentinel + 1, rows, weights, dyn)
    dx = like_shape(from_nhwc(dx[:sentinel].reshape(n, h, w, c)), x.shape)

    # <dY, X(corner)> per point and corner; dropped corners contribute nothing
    # (not 0 * dY, which is NaN for an infinite dY)
    proj = xp.where(rows != sentinel, xp.einsum("pkc,pc->pk", corners, dyn), zero)
    proj = proj.reshape(no, ho * wo, 4)
    dgy = (h - 1) / 2 * (wx0 * (proj[..., 1] - proj[..., 0]) + wx * (proj[..., 3] - proj[..., 2]))
    dgx = (w - 1) / 2 * (wy0 * (proj[..., 2] - proj[..., 0]) + wy * (proj[..., 3] - proj[..., 1]))
    dgrid = xp.stack([dgy, dgx]).reshape(2, no, ho, wo).transpose(0, 2, 3, 1)
    return dx, like_shape(dgrid.astype(dtype, copy=False), grid.shape)


# ---------------------------------------------------------------------------
# vl_nnroipool

def _round_half_away(v):
    """C's ``round``: halves go away from zero (numpy rounds them to even).
    ``v - trunc(v)`` is exact, so no ``floor(v + 0.5)`` rounding trap."""
    t = np.trunc(v)
    return t + np.where(np.abs(v - t) >= 0.5, np.sign(v), 0)


def _transform_matrix(value, fname):
    """MatConvNet's ``Transform`` as the 6 numbers of the ``2 x 3`` matrix
    ``T`` in column-major order: ``u' = T[0] u + T[2] v + T[4]``,
    ``v' = T[1] u + T[3] v + T[5]``."""
    t = numbers_of(value, fname, "Transform", (1, 2, 6))
    if t.size == 6:
        return t
    su, sv = (t[0], t[0]) if t.size == 1 else (t[0], t[1])
    return np.array([su, 0.0, 0.0, sv, 1.0 - su, 1.0 - sv])


def _roi_array(rois, x, fname):
    """ROIs as any real numeric array or nested list (MATLAB passes doubles
    holding integers), converted to the data's dtype and array module.

    ``None`` and ``x`` of no float dtype are passed through for the block's
    own checks to report."""
    if rois is None or getattr(x, "dtype", None) not in FLOAT_TYPES:
        return rois
    xp = get_array_module(x, rois)
    if not hasattr(rois, "dtype"):
        try:
            rois = np.asarray(rois)
        except Exception:  # ragged nested lists
            raise ValueError(f"{fname}: rois must be a real numeric array, got {rois!r}") from None
    if rois.dtype.kind not in "iuf":
        raise ValueError(f"{fname}: rois must be real numeric, got dtype {rois.dtype} "
                         f"(shape {tuple(rois.shape)})")
    return xp.asarray(rois, dtype=x.dtype)


def _roi_tiles(rois, dtype, h, w, n, sub_h, sub_w, transform):
    """Tile geometry of every ROI (host arrays, ``K*SH*SW`` tiles in
    ``(roi, tile row, tile column)`` order): image, first row, first column,
    height and width.  Follows MatConvNet's C++ step by step, including
    which steps use the data's precision."""
    t, u1, v1, u2, v2 = (rois[:, i].astype(np.float64) for i in range(5))
    tr = transform

    def warp(u, v):
        # double-precision affine map, stored back in the data's precision
        return ((tr[0] * u + tr[2] * v + tr[4]).astype(dtype),
                (tr[1] * u + tr[3] * v + tr[5]).astype(dtype))

    u1, v1 = warp(u1, v1)
    u2, v2 = warp(u2, v2)
    row_start = _round_half_away(v1.astype(np.float64)) - 1
    row_end = _round_half_away(v2.astype(np.float64)) - 1
    col_start = _round_half_away(u1.astype(np.float64)) - 1
    col_end = _round_half_away(u2.astype(np.float64)) - 1
    roi_h = np.maximum(row_end - row_start + 1, 1)
    roi_w = np.maximum(col_end - col_start + 1, 1)
    image = np.clip(np.trunc(t) - 1, 0, n - 1).astype(np.intp)

    def spans(start, length, parts, size):
        # [floor(p*bin), ceil((p+1)*bin)) + start, clamped to [0, size]
        bin_size = length.astype(dtype) / dtype.type(parts)
        p = np.arange(parts, dtype=dtype)
        lo = np.floor(p[None, :] * bin_size[:, None]).astype(np.float64) + start[:, None]
        hi = np.ceil((p + 1)[None, :] * bin_size[:, None]).astype(np.float64) + start[:, None]
        lo, hi = np.clip(lo, 0, size), np.clip(hi, 0, size)
        return lo.astype(np.intp), np.maximum(hi - lo, 0).astype(np.intp)

    r0, th = spans(row_start, roi_h, sub_h, h)
    c0, tw = spans(col_start, roi_w, sub_w, w)
    k = len(t)
    shape = (k, sub_h, sub_w)
    return (np.broadcast_to(image[:, None, None], shape).ravel(),
            np.broadcast_to(r0[:, :, None], shape).ravel(),
            np.broadcast_to(c0[:, None, :], shape).ravel(),
            np.broadcast_to(th[:, :, None], shape).ravel(),
            np.broadcast_to(tw[:, None, :], shape).ravel())


def _tile_blocks(area, channels, budget):
    """Split the non-empty tiles into blocks of similar area.

    Tiles are bucketed by ``ceil(log2(area))``, so padding every tile of a
    block to the block's largest area at most doubles the work; a block
    holds at most ``budget // (largest area * channels)`` tiles (at least
    one).  Yields host index arrays."""
    tiles = np.flatnonzero(area > 0)
    if tiles.size == 0:
        return
    bucket = np.ceil(np.log2(area[tiles])).astype(np.intp)
    tiles = tiles[np.argsort(bucket, kind="stable")]
    bucket = np.sort(bucket, kind="stable")
    edges = np.flatnonzero(np.diff(bucket)) + 1
    for group in np.split(tiles, edges):
        per_block = max(1, budget // (int(area[group].max()) * channels))
        for start in range(0, group.size, per_block):
            yield group[start:start + per_block]


def _first_hit(xp, hits):
    """Index along axis 1 of the first True of ``hits`` (``T x E x C``, at
    least one True per ``(t, c)``).  Entries are in scan order, so this is
    the first maximum.  Weighting hit ``e`` by ``E - e`` and taking the
    maximum reduces over axis 1 with C-long inner loops, several times
    faster than ``argmax(axis=1)``, which transposes the block."""
    size = hits.shape[1]
    if size < 2 ** 8:
        kind, weighted = xp.uint8, hits.view(xp.uint8)
    else:
        kind = xp.uint16 if size < 2 ** 16 else xp.uint32
        weighted = hits.astype(kind)
    weighted *= xp.arange(size, 0, -1, dtype=kind)[None, :, None]
    return size - weighted.max(axis=1).astype(xp.intp)


def vl_nnroipool(x, rois, *args, dzdy=None, **opts):
    """CNN region-of-interest pooling.

    ``Y = vl_nnroipool(X, ROIS)`` max-pools each region of interest of
    ``X`` into a fixed grid of ``SH x SW`` tiles.

    ``DX = vl_nnroipool(X, ROIS, DZDY)`` computes the derivative with
    respect to ``X``.

    Parameters
    ----------
    x : array, ``H x W x C x N``
    rois : array or nested list with ``5K`` elements (K >= 1)
        Any real numeric type (MATLAB passes doubles holding integers);
        converted to ``x``'s dtype.
        Read in column-major order as ``K`` columns ``[t, u1, v1, u2, v2]``
        (a ``5 x K`` array, or a flat vector): ``t`` is the 1-based image
        index (truncated, then clamped to ``1..N``), ``(u1, v1)`` and
        ``(u2, v2)`` the top-left and bottom-right corners in 1-based pixel
        coordinates, ``u`` horizontal (column) and ``v`` vertical (row).
    dzdy : array ``SH x SW x C x K``, optional
        Passing it selects backward mode.

    Other Parameters
    ----------------
    Method : 'max' or 'avg', default 'max'
        Case-insensitive.
    Subdivisions : int or [SH, SW], default [1, 1]
        Number of tiles along the rows and the columns; each >= 1.  A scalar
        means ``[s, s]``.
    Transform : scalar, [SU, SV] or 2 x 3 matrix T, default 1
        Maps the corners before rounding: a scalar ``s`` gives
        ``u' = s (u - 1) + 1``, ``v' = s (v - 1) + 1``; ``[SU, SV]`` scales
        ``u`` by ``SU`` and ``v`` by ``SV`` the same way; six numbers are the
        ``2 x 3`` matrix ``T`` read in column-major order (a ``2 x 3`` array,
        or ``[T11, T21, T12, T22, T13, T23]``) with
        ``u' = T11 u + T12 v + T13`` and ``v' = T21 u + T22 v + T23``.
        Computed in double precision, then stored in ``x``'s precision.
    Cudnn, NoCudnn, Verbose, CudnnWorkspaceLimit :
        Accepted for compatibility; no numerical effect.

    Returns
    -------
    y : array ``SH x SW x C x K`` (forward)
        With ``round`` rounding halves away from zero (C's ``round``, not
        numpy's), 0-based ``rs = round(v1') - 1``, ``re = round(v2') - 1``,
        ``cs = round(u1') - 1``, ``ce = round(u2') - 1``,
        ``RH = max(re - rs + 1, 1)``, ``RW = max(ce - cs + 1, 1)``,
        ``binH = RH / SH`` and ``binW = RW / SW`` (in ``x``'s precision),
        tile ``(p, q)`` covers rows
        ``[clamp(floor(p binH) + rs, 0, H), clamp(ceil((p + 1) binH) + rs, 0, H))``
        and columns
        ``[clamp(floor(q binW) + cs, 0, W), clamp(ceil((q + 1) binW) + cs, 0, W))``
        of image ``clamp(trunc(t) - 1, 0, N - 1)``.  ``Y`` is the tile's
        maximum (NaNs skipped; ``-inf`` if all are NaN) or mean, and 0 for an
        empty tile.  Adjacent tiles may share a row or column.
    dx : array shaped like ``x`` (backward)
        ``avg``: every pixel of a tile receives ``dY / (tile pixels)``;
        ``max``: the tile's first maximum in column-major order (columns
        outer, rows inner) receives ``dY``.  Contributions of overlapping
        tiles and ROIs add up; empty tiles and tiles without a maximum
        above ``-inf`` give nothing.

    Raises
    ------
    ValueError
        ``rois`` without a positive multiple of 5 elements or with
        non-finite values, a ``Transform`` that has not 1, 2 or 6 elements,
        ``Subdivisions`` < 1 or with more than 2 elements, an unknown
        ``Method``, empty ``x``, ``dzdy`` of the wrong shape, non-float data
        or float32 mixed with float64.
    TypeError
        An unknown option.

    Notes
    -----
    Time is proportional to ``C`` times the total number of tile pixels
    (at most twice that, see below), as in MatConvNet's loops.  Tiles are
    processed in blocks of similar area, each padded to its largest tile;
    one block gathers at most ``max(2**22, x.size)`` values (or one tile of
    at most ``H * W * C`` values when a single tile is larger).  Other
    temporaries are ``O(x.size + y.size)``: a copy of ``x`` with a sentinel
    row, the output and, for max backward, one winner index per output
    element.  The ROI geometry is computed on the host.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(4, 4)
    >>> rois = np.array([1.0, 1, 1, 4, 4])          # the whole image
    >>> vl_nnroipool(x, rois, subdivisions=2)[:, :, 0, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    fname = "vl_nnroipool"
    if isinstance(rois, str):
        raise TypeError(f"{fname}: expected at least 2 arguments (x, rois); got {rois!r} as rois")
    dzdy, args = split_derivative(fname, args, dzdy)
    o = parse_options(fname, args, opts,
                      {"Method": "max", "Subdivisions": [1, 1], "Transform": 1}, gpu=True)
    rois = _roi_array(rois, x, fname)
    method = o.Method.lower() if isinstance(o.Method, str) else o.Method
    if method not in ("max", "avg"):
        raise ValueError(f"{fname}: Method must be 'max' or 'avg', got {o.Method!r}")
    sub_h, sub_w = as_pair(o.Subdivisions, fname, "Subdivisions", 1)
    transform = _transform_matrix(o.Transform, fname)
    xp, dtype, (x, rois_checked, dzdy) = block_tensors(fname, x=x, rois=rois, dzdy=dzdy)
    if rois_checked is None or rois_checked.size % 5:
        shape = getattr(rois, "shape", None)
        raise ValueError(
            f"{fname}: rois must have 5K elements (K >= 1 columns [t u1 v1 u2 v2]); "
            f"got {'shape ' + str(tuple(shape)) if shape is not None else repr(rois)}")
    rois = rois_checked
    x4 = to4d(x)
    h, w, c, n = x4.shape
    roi_table = _host(rois).ravel(order="F").reshape(-1, 5)
    if not np.all(np.isfinite(roi_table)):
        raise ValueError(f"{fname}: rois must be finite (shape {tuple(rois.shape)})")
    k = roi_table.shape[0]
    if dzdy is not None:
        check_derivative(fname, dzdy, (sub_h, sub_w, c, k))

    image, r0, c0, th, tw = _roi_tiles(roi_table, dtype, h, w, n, sub_h, sub_w, transform)
    area = th * tw
    tiles = k * sub_h * sub_w
    # row index of each tile's top-left pixel in the N*H*W x C view of x
    origin = (image * h + r0) * w + c0
    sentinel = n * h * w
    scale = (dtype.type(1) / np.maximum(area, 1).astype(dtype)).astype(dtype)
    blocks = _tile_blocks(area, c, max(_ROI_BLOCK_ELEMENTS, sentinel * c))

    def pixels(block):
        """Rows of x read by each tile of ``block``, padded with the sentinel;
        entry e of a tile is (row e % th, column e // th): column-major."""
        size = int(area[block].max())
        heights = xp.asarray(th[block])[:, None]
        e = xp.arange(size)[None, :]
        inside = e < xp.asarray(area[block])[:, None]
        offsets = (e % heights) * w + e // heights
        return xp.where(inside, xp.asarray(origin[block])[:, None] + offsets, sentinel)

    if dzdy is not None:
        dyn = to_nhwc(to4d(dzdy), xp).reshape(tiles, c)
        if method == "avg":
            dx = xp.zeros((sentinel + 1, c), dtype)
            for block in blocks:
                rows = pixels(block)
                share = dyn[xp.asarray(block)] * xp.asarray(scale[block])[:, None]
                _spread_rows(xp, sentinel + 1, rows, xp.ones(rows.shape, dtype), share, out=dx)
            return like_shape(from_nhwc(dx[:sentinel].reshape(n, h, w, c)), x.shape)

    xrows = to_nhwc(x4, xp).reshape(sentinel, c)
    if method == "max":
        # NaN never wins (MatConvNet compares with '<'): read it as -inf
        xrows = xp.where(xp.isnan(xrows), dtype.type(-np.inf), xrows)
    fill = -np.inf if method == "max" else 0
    padded = xp.concatenate([xrows, xp.full((1, c), fill, dtype)])
    y = xp.zeros((tiles, c), dtype) if dzdy is None else None
    # winning rows of x per output element; int32 while the element indices
    # of the (N*H*W + 1) x C derivative they become below fit in it
    index_type = xp.int32 if (sentinel + 1) * c < 2 ** 31 else xp.int64
    winner = xp.full((tiles, c), sentinel, index_type) if dzdy is not None else None
    for block in blocks:
        rows = pixels(block)
        values = xp.take(padded, rows.ravel(), axis=0).reshape(rows.shape + (c,))
        index = xp.asarray(block)
        if method == "avg":
            y[index] = values.sum(axis=1) * xp.asarray(scale[block])[:, None]
        elif dzdy is None:
            y[index] = values.max(axis=1)
        else:
            best = values.max(axis=1)
            first = _first_hit(xp, values == best[:, None, :])
            winner[index] = xp.where(best > -xp.inf, xp.take_along_axis(rows, first, axis=1),
                                     sentinel)
    if dzdy is None:
        return from_nhwc(y.reshape(k, sub_h, sub_w, c))

    # one dY per output element, routed to its winner (sentinel: no winner)
    winner *= c
    winner += xp.arange(c, dtype=index_type)
    flat = winner.reshape(tiles * c, 1)
    dx = _spread_rows(xp, (sentinel + 1) * c, flat, xp.ones(flat.shape, dtype),
                      dyn.reshape(tiles * c, 1))
    return like_shape(from_nhwc(dx[:sentinel * c].reshape(n, h, w, c)), x.shape)
