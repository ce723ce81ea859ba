"""Convolution and convolution transpose.

One engine computes the three quantities of a convolution layer, the output
``y``, the data derivative ``dx`` and the filter derivative ``dw``, through
im2col and large GEMMs over byte-bounded chunks of the batch (stride-1
layers with enough channels use GEMMs on views instead: per tap, or per
filter row after copying the horizontal windows once; see _strategy).
``vl_nnconvt`` is the same engine run the other way round: its forward is
the convolution's data derivative, as in MatConvNet's C++ code.
"""

from dataclasses import dataclass

import numpy as np

from ._backend import (block_tensors, check_derivative, from_nhwc, like_shape, shape4, to4d,
                       to_nhwc)
from ._im2col import (add_unpadded, as_strided, col2im, col2im_taps, fill_padded,
                      get_workspace_limit, im2col, workspace)
from ._options import as_int, as_pair, as_quad, parse_options, split_derivative
from ._shapes import conv_output_size, convt_output_size
from ._threads import run_chunks, workers_for

# Target size of one chunk's column buffer.  Small buffers stay in cache and
# are reused across chunks; PERFORMANCE.md measured 1-4 MB as the sweet spot.
_CHUNK_BYTES = 4 * 2 ** 20
# With at most this many channels per group the planar column layout (copies
# along image rows) beats the interleaved one (copies of FC-long runs).
_PLANAR_MAX_FC = 8
# With fewer channels per group than this, the data derivative's columns are
# computed tap-major (one GEMM per tap) so that col2im adds long contiguous
# runs; with more, the interleaved runs are long already and the narrow
# per-tap GEMMs would cost more than col2im saves (AlexNet conv2: -20%).
_TAP_MAJOR_MAX_FC = 64
# Stride-1 layers with at least this many channels per group skip im2col.
_SHIFTED_MIN_FC = 16
# ... and when the padded grid is at most this much larger than the output
# (measured: VGG 56x56 pad 1, 1.07, gains 20%; CIFAR 16x16 pad 2, 1.56, loses)
_SHIFTED_MAX_WASTE = 1.2
# Other stride-1 layers with at least this many channels per group and
# output images of at least this many pixels run by filter rows (_conv_rows)
# instead of im2col.  Measured fwd+bwd against im2col, 2 threads: CIFAR conv2
# (16x16, 5x5x32x32 pad 2) -20 to -35%, dilate 2 (32x32, 3x3x64) -17 to -33%,
# AlexNet conv2 -5%; 13x13 layers (169 pixels) even or up to 5% slower, LeNet
# conv2 (8x8 = 64 pixels: GEMMs 64 rows deep) +35-40%.  Dilated layers, which
# took shifted GEMMs before, are as fast or faster this way (dilate 2: -2 to -13%).
_ROWS_MIN_FC = 16
_ROWS_MIN_PIXELS = 200
# Strided layers whose filters are a whole number of strides fold their input
# into channels and run at stride 1 (_space_to_depth) when a stride-1 engine
# takes the folded layer.
_SPACE_TO_DEPTH = True
# Tests and benchmarks may force 'im2col', 'shifted' or 'rows' (None: automatic).
_FORCE_STRATEGY = None
# Chunks run on the shared threads (vlnn._threads), BLAS at this many threads each.
_BLAS_THREADS_IN_POOL = 1


@dataclass(frozen=True)
class _Geometry:
    """A convolution's sizes: input ``n x h x w x c``, filters
    ``fh x fw x fc x k`` in ``groups`` groups, output ``ho x wo``."""
    n: int
    h: int
    w: int
    c: int
    fh: int
    fw: int
    fc: int
    k: int
    groups: int
    stride_y: int
    stride_x: int
    pad: tuple
    dil_y: int
    dil_x: int
    ho: int
    wo: int
    eh: int
    ew: int

    @property
    def taps(self):
        return self.fh * self.fw

    @property
    def kg(self):
        return self.k // self.groups


def _filters_to_mat(w4, groups, xp):
    """``FH x FW x FC x K`` filters -> ``G x (FH*FW*FC) x (K/G)`` matrices
    whose rows follow the (tap, channel) order of the columns."""
    fh, fw, fc, k = w4.shape
    return xp.ascontiguousarray(
        xp.ascontiguousarray(w4).reshape(fh * fw * fc, groups, k // groups).transpose(1, 0, 2))


def _mat_to_filters(wmat, shape4_):
    fh, fw, fc, k = shape4_
    return wmat.transpose(1, 0, 2).reshape(fh, fw, fc, k)


def _direct_view(geom):
    """How to see the data as the column matrix without copying, or None.

    1x1 filters with unit stride and no padding read each pixel as its own
    column; a filter covering the whole unpadded input (the fully-connected
    case) reads each image as one column."""
    nopad = geom.pad == (0, 0, 0, 0)
    if nopad and geom.taps == 1 and geom.stride_y == 1 and geom.stride_x == 1:
        return "pixels"
    if nopad and geom.groups == 1 and geom.fh == geom.h and geom.fw == geom.w \
            and geom.dil_y == 1 and geom.dil_x == 1:
        return "images"
    return None


def _strategy(geom):
    """Pick the engine for a layer: 'direct' (no copy at all), 'shifted'
    (stride 1, enough channels for per-tap GEMMs, little padding), 'rows'
    (stride 1, enough channels and pixels for per-filter-row GEMMs) or
    'im2col'."""
    if _direct_view(geom) is not None:
        return "direct"
    unit_stride = geom.stride_y == 1 and geom.stride_x == 1
    if _FORCE_STRATEGY is not None:
        return _FORCE_STRATEGY if unit_stride else "im2col"
    # (a shifted chunk is at least one whole image: it must fit the limit)
    if unit_stride and geom.fc >= _SHIFTED_MIN_FC and \
            2 * _shifted_image_bytes(geom, 8) <= get_workspace_limit():
        # shifted GEMMs compute every position of the padded grid; they win
        # while that wastes little
        waste = (geom.h + geom.pad[0] + geom.pad[1]) * (geom.w + geom.pad[2] + geom.pad[3]) \
            / (geom.ho * geom.wo)
        if waste <= _SHIFTED_MAX_WASTE:
            return "shifted"
    if unit_stride and geom.fc >= _ROWS_MIN_FC and geom.ho * geom.wo >= _ROWS_MIN_PIXELS and \
            2 * _rows_image_bytes(geom, 8) <= get_workspace_limit():
        return "rows"
    return "im2col"


def _space_to_depth(geom):
    """The stride-1 geometry that computes a strided layer whose filter
    size is a multiple of the stride (e.g. 4x4 filters at stride 2, the
    usual 2x upsampling vl_nnconvt), or None.

    Output ``(i, j)`` reads padded pixels ``(i*SY + u, j*SX + v)``; with
    ``u = SY*a + ry`` and ``v = SX*b + rx`` it reads pixel ``(i + a, j + b)``
    of the padded input folded ``SY x SX`` into channels ``(ry, rx, c)``
    with the ``FH/SY x FW/SX`` filter ``W'[a, b, (ry, rx, c)] = W[SY*a + ry,
    SX*b + rx, c]``: the same products, no zero taps, and wide channels for
    the stride-1 engines.  Used when one of those takes the folded layer
    (a filter of exactly one stride, e.g. 2x2 at stride 2, folds to a 1x1
    filter: one plain GEMM)."""
    sy, sx = geom.stride_y, geom.stride_x
    if (sy, sx) == (1, 1) or geom.groups != 1 or (geom.dil_y, geom.dil_x) != (1, 1) \
            or geom.fh % sy or geom.fw % sx or _FORCE_STRATEGY == "im2col" \
            or not _SPACE_TO_DEPTH:
        return None
    hp, wp = (geom.ho - 1) * sy + geom.fh, (geom.wo - 1) * sx + geom.fw
    fh, fw, c = geom.fh // sy, geom.fw // sx, sy * sx * geom.c
    folded = _Geometry(geom.n, hp // sy, wp // sx, c, fh, fw, c, geom.k, 1, 1, 1, (0, 0, 0, 0),
                       1, 1, geom.ho, geom.wo, fh, fw)
    return folded if _strategy(folded) in ("direct", "rows", "shifted") else None


def _phases(size, pad, stride, folded_size):
    """Per phase ``r < stride``: ``(first, count, start)``, the image
    pixels ``first, first + stride, ...`` (``count`` of them) sitting at
    padded positions ``r, r + stride, ...`` that fall inside the image,
    the first of them at folded position ``start``."""
    out = []
    for r in range(stride):
        first = (r - pad) % stride
        stop = min(size, folded_size * stride - pad)     # image pixels the fold holds
        count = len(range(first, stop, stride)) if stop > first else 0
        out.append((first, count, (first + pad) // stride))
    return out


def _conv_space_to_depth(geom, folded, wmat, xp, dtype, x4, dy4, want_y, want_dx, want_dw):
    """:func:`_conv` of a strided layer through its :func:`_space_to_depth`
    geometry: fold the padded input (one strided copy per phase), run the
    stride-1 engine, unfold dx (the same copies the other way) and dw."""
    sy, sx = geom.stride_y, geom.stride_x
    rows = _phases(geom.h, geom.pad[0], sy, folded.h)
    cols = _phases(geom.w, geom.pad[2], sx, folded.w)
    # W'[a, b, (ry, rx, c), k] = W[SY*a + ry, SX*b + rx, c, k]
    w6 = wmat[0].reshape(folded.fh, sy, folded.fw, sx, geom.fc, geom.k)
    wfold = xp.ascontiguousarray(w6.transpose(0, 2, 1, 3, 4, 5)).reshape(1, -1, geom.k)
    xf = None
    if x4 is not None:
        x = x4.transpose(3, 0, 1, 2)
        xf6 = xp.empty((geom.n, folded.h, folded.w, sy, sx, geom.c), dtype)
        for ry, (i0, ni, a0) in enumerate(rows):
            for rx, (j0, nj, b0) in enumerate(cols):
                # folded (a, b) holds image pixel (i0 + (a - a0) SY, j0 + (b - b0) SX)
                fill_padded(xf6[:, :, :, ry, rx], x[:, i0::sy, j0::sx][:, :ni, :nj],
                            -a0, -b0, planar=False)
        xf = xf6.reshape(geom.n, folded.h, folded.w, folded.c).transpose(1, 2, 3, 0)
    y, dxf, dwf = _conv(folded, wfold, xp, dtype, x4=xf, dy4=dy4,
                        want_y=want_y, want_dx=want_dx, want_dw=want_dw)
    dx = dwmat = None
    if want_dx:
        dxf6 = dxf.reshape(geom.n, folded.h, folded.w, sy, sx, geom.c)
        dx = xp.empty((geom.n, geom.h, geom.w, geom.c), dtype)
        for ry, (i0, ni, a0) in enumerate(rows):
            for rx, (j0, nj, b0) in enumerate(cols):
                dx[:, i0:i0 + ni * sy:sy, j0:j0 + nj * sx:sx] = \
                    dxf6[:, a0:a0 + ni, b0:b0 + nj, ry, rx]
        # pixels past the last window (all of them when the top or left
        # padding reaches past it): read by none
        h_read = max(0, min(geom.h, folded.h * sy - geom.pad[0]))
        w_read = max(0, min(geom.w, folded.w * sx - geom.pad[2]))
        dx[:, h_read:] = 0
        dx[:, :, w_read:] = 0
    if want_dw:
        dwmat = dwf.reshape(folded.fh, folded.fw, sy, sx, geom.fc, geom.k) \
            .transpose(0, 2, 1, 3, 4, 5).reshape(1, -1, geom.k)
    return y, dx, dwmat


def _conv(geom, wmat, xp, dtype, x4=None, dy4=None, want_y=False, want_dx=False, want_dw=False):
    """Run the engine chosen by :func:`_strategy` on ``H x W x C x N`` views;
    returns NHWC ``(y, dx, dwmat)``."""
    folded = _space_to_depth(geom)
    if folded is not None:
        return _conv_space_to_depth(geom, folded, wmat, xp, dtype, x4, dy4,
                                    want_y, want_dx, want_dw)
    # Shifted GEMMs also multiply input pixels (for dw) and filters (for dx)
    # by the zeros that stand for invalid output positions; with a NaN or Inf
    # there, 0 * NaN would leak where MatConvNet has none: take im2col then.
    strategy = _strategy(geom)
    if strategy == "rows" and not (want_dx and not bool(xp.isfinite(wmat).all())):
        # (dx correlates the zero-padded dY with every filter tap: a NaN
        # filter would reach pixels no window reads; im2col then)
        return _conv_rows(geom, wmat, xp, dtype,
                          x=x4.transpose(3, 0, 1, 2) if x4 is not None else None,
                          dy=dy4.transpose(3, 0, 1, 2) if dy4 is not None else None,
                          want_y=want_y, want_dx=want_dx, want_dw=want_dw)
    if strategy == "shifted" \
            and not (want_dw and not bool(xp.isfinite(x4.sum(dtype=dtype)))) \
            and not (want_dx and not bool(xp.isfinite(wmat).all())):
        return _conv_shifted(geom, wmat, xp, dtype,
                             x=x4.transpose(3, 0, 1, 2) if x4 is not None else None,
                             dy=dy4.transpose(3, 0, 1, 2) if dy4 is not None else None,
                             want_y=want_y, want_dx=want_dx, want_dw=want_dw)
    # N x H x W x C views: im2col copies chunks straight out of them, so a
    # C-ordered H x W x C x N input is not transposed twice
    return _conv_core(geom, wmat, xp, dtype,
                      x=x4.transpose(3, 0, 1, 2) if x4 is not None else None,
                      dy=dy4.transpose(3, 0, 1, 2) if dy4 is not None else None,
                      want_y=want_y, want_dx=want_dx, want_dw=want_dw)


def _conv_core(geom, wmat, xp, dtype, x=None, dy=None,
               want_y=False, want_dx=False, want_dw=False):
    """Convolution engine on ``N x H x W x C`` arrays (any strides).

    ``x`` is the input (needed for ``y`` and ``dw``), ``dy`` the output
    derivative ``N x HO x WO x K`` (needed for ``dx`` and ``dw``); ``wmat``
    comes from :func:`_filters_to_mat`.  Returns ``(y, dx, dwmat)`` with
    ``None`` for what was not asked."""
    g_count, kg, fc, taps = geom.groups, geom.kg, geom.fc, geom.taps
    y = xp.empty((geom.n, geom.ho, geom.wo, geom.k), dtype) if want_y else None
    dx = None
    direct = _direct_view(geom)

    if direct is not None:
        rows = geom.n * geom.h * geom.w if direct == "pixels" else geom.n
        x2 = x.reshape(rows, -1) if x is not None else None
        y2 = y.reshape(rows, geom.k) if want_y else None
        dy2 = dy.reshape(rows, geom.k) if dy is not None else None
        if want_dx:
            dx = xp.empty((geom.n, geom.h, geom.w, geom.c), dtype)
            dx2 = dx.reshape(rows, -1)
        dwmat = xp.empty(wmat.shape, dtype) if want_dw else None
        for g in range(g_count):
            cs, ks = slice(g * taps * fc, (g + 1) * taps * fc), slice(g * kg, (g + 1) * kg)
            if want_y:
                xp.matmul(x2[:, cs], wmat[g], out=y2[:, ks])
            if want_dw:
                xp.matmul(x2[:, cs].T, dy2[:, ks], out=dwmat[g])
            if want_dx:
                xp.matmul(dy2[:, ks], wmat[g].T, out=dx2[:, cs])
        return y, dx, dwmat

    planar = fc <= _PLANAR_MAX_FC
    if want_dx:
        dx = xp.zeros((geom.n, geom.h, geom.w, geom.c), dtype)
        # per group, the filters as T x (K/G) x FC: one matrix per tap
        wtaps = [xp.ascontiguousarray(wmat[g].reshape(taps, fc, kg).transpose(0, 2, 1))
                 for g in range(g_count)] if not planar and fc < _TAP_MAJOR_MAX_FC else None
    need_cols = want_y or want_dw
    itemsize = np.dtype(dtype).itemsize
    row_bytes = geom.wo * taps * geom.c * itemsize
    image_bytes = row_bytes * geom.ho
    # two threads each hold up to 4 targets of columns plus padded copies:
    # all of it stays under the workspace limit
    target = min(_CHUNK_BYTES, get_workspace_limit() // 16)
    if image_bytes <= 4 * target:
        # whole images per chunk: chunks are independent and may run in parallel
        per = max(1, target // image_bytes)
        chunks = [(n0, min(n0 + per, geom.n), 0, geom.ho) for n0 in range(0, geom.n, per)]
    else:
        per = max(1, target // row_bytes)
        chunks = [(n0, n0 + 1, i0, min(i0 + per, geom.ho))
                  for n0 in range(geom.n) for i0 in range(0, geom.ho, per)]

    def run(chunk, dw_acc):
        n0, n1, i0, i1 = chunk
        nb, hb = n1 - n0, i1 - i0
        m = nb * hb * geom.wo
        row0, col0 = i0 * geom.stride_y - geom.pad[0], -geom.pad[2]
        hin = (hb - 1) * geom.stride_y + geom.eh
        win = (geom.wo - 1) * geom.stride_x + geom.ew
        pad_shape = (geom.c, nb, hin, win) if planar else (nb, hin, win, geom.c)
        col_shape = (g_count, taps, fc, nb, hb, geom.wo) if planar \
            else (nb, hb, geom.wo, g_count, taps, fc)
        cols = workspace("cols", col_shape, dtype, xp)
        if planar:
            def group_view(a, g):
                return a[g].reshape(taps * fc, m).T
        else:
            def group_view(a, g):
                return a.reshape(m, g_count, taps * fc)[:, g]
        y2 = y[n0:n1, i0:i1].reshape(m, geom.k) if want_y else None
        dy2 = dy[n0:n1, i0:i1].reshape(m, geom.k) if dy is not None else None
        if need_cols:
            xpad = workspace("xpad", pad_shape, dtype, xp)
            fill_padded(xpad, x[n0:n1], row0, col0, planar)
            im2col(xpad, cols, geom, planar)
            for g in range(g_count):
                ks = slice(g * kg, (g + 1) * kg)
                if want_y:
                    xp.matmul(group_view(cols, g), wmat[g], out=y2[:, ks])
                if want_dw:
                    dw_tmp = workspace("dw_tmp", wmat.shape[1:], dtype, xp)
                    xp.matmul(group_view(cols, g).T, dy2[:, ks], out=dw_tmp)
                    dw_acc[g] += dw_tmp
        if want_dx:
            # the column buffer is free again: reuse it for the column gradient
            dxpad = workspace("dxpad", pad_shape, dtype, xp)
            dxpad[...] = 0
            if wtaps is None:
                for g in range(g_count):
                    ks = slice(g * kg, (g + 1) * kg)
                    xp.matmul(dy2[:, ks], wmat[g].T, out=group_view(cols, g))
                col2im(cols, dxpad, geom, planar)
            else:
                # tap-major columns (one GEMM per tap, batched): col2im then
                # adds contiguous WO*FC-long runs instead of FC-long pieces
                # of interleaved columns (2.5-3.5x faster, same sums)
                tcols = cols.reshape(-1).reshape(g_count, taps, nb, hb, geom.wo, fc)
                for g in range(g_count):
                    ks = slice(g * kg, (g + 1) * kg)
                    dyg = dy2[:, ks] if g_count == 1 else xp.ascontiguousarray(dy2[:, ks])
                    xp.matmul(dyg[None], wtaps[g], out=tcols[g].reshape(taps, m, fc))
                col2im_taps(tcols, dxpad, geom)
            add_unpadded(dx[n0:n1], dxpad, row0, col0, planar)

    # row bands of one image add into overlapping rows of dx: no threads then
    whole_images = chunks[0][3] - chunks[0][2] == geom.ho
    dwmat = _run_chunks(run, chunks, xp, whole_images, wmat.shape if want_dw else None, dtype)
    return y, dx, dwmat


def _shifted_pass(src, base, offsets, mats, in_width, out_width, groups, buf, rows, xp):
    """``buf[r] = sum_t src[base + r + offsets[t]] @ mats[g][t]`` for ``r < rows``,
    per group ``g`` (input columns ``g*in_width...``, output columns
    ``g*out_width...``): a correlation on a flattened padded grid, one GEMM
    per kernel tap on an offset view, no im2col."""
    tmp = workspace("shift_tmp", (rows, out_width), buf.dtype, xp)
    for g in range(groups):
        a_cols = slice(g * in_width, (g + 1) * in_width)
        acc = buf[:rows, g * out_width:(g + 1) * out_width]
        for t, off in enumerate(offsets):
            a = src[base + off:base + off + rows, a_cols]
            if t == 0:
                xp.matmul(a, mats[g][t], out=acc)
            else:
                xp.matmul(a, mats[g][t], out=tmp)
                acc += tmp


def _shifted_image_bytes(geom, itemsize):
    """Scratch of one image in :func:`_conv_shifted` (padded input, padded
    output derivative and both padded results)."""
    hp = geom.h + geom.pad[0] + geom.pad[1]
    wp = geom.w + geom.pad[2] + geom.pad[3]
    return hp * wp * 2 * (geom.c + geom.k) * itemsize


def _image_chunks(geom, xp, dtype, want_y, want_dx, per_image):
    """The NHWC outputs ``y`` and ``dx`` (None when not asked) of the engines
    that take whole images, and their chunks ``(n0, n1)``: as many images as
    fit the chunk size with ``per_image`` bytes of scratch each, at least one."""
    y = xp.empty((geom.n, geom.ho, geom.wo, geom.k), dtype) if want_y else None
    dx = xp.empty((geom.n, geom.h, geom.w, geom.c), dtype) if want_dx else None
    per = max(1, min(_CHUNK_BYTES, get_workspace_limit() // 4) // per_image)
    return y, dx, [(n0, min(n0 + per, geom.n)) for n0 in range(0, geom.n, per)]


def _conv_shifted(geom, wmat, xp, dtype, x=None, dy=None,
                  want_y=False, want_dx=False, want_dw=False):
    """Stride-1 convolution by shifted GEMMs (any dilation, groups, padding).

    Each chunk of whole images is zero-padded and flattened to a
    ``(N*HP*WP) x C`` matrix; output pixel ``p`` of the padded grid is
    ``sum_t X[p + off_t] @ W_t`` with ``off_t = u*DY*WP + v*DX``, computed for
    every grid position and cropped.  The data derivative is the same
    correlation with negated offsets over the (zero-extended) output
    derivative, the filter derivative one GEMM per tap.  Same contract as
    :func:`_conv_core`."""
    g_count, kg, fc = geom.groups, geom.kg, geom.fc
    pt, pb, pl, pr = geom.pad
    hp, wp = geom.h + pt + pb, geom.w + pl + pr
    plane = hp * wp
    offsets = [u * geom.dil_y * wp + v * geom.dil_x
               for u in range(geom.fh) for v in range(geom.fw)]
    off_max = offsets[-1]
    taps_w = [[wmat[g, t * fc:(t + 1) * fc] for t in range(geom.taps)] for g in range(g_count)]
    taps_wt = [[m.T for m in per_group] for per_group in taps_w]
    y, dx, chunks = _image_chunks(geom, xp, dtype, want_y, want_dx,
                                  _shifted_image_bytes(geom, np.dtype(dtype).itemsize))

    def run(chunk, dw_acc):
        n0, n1 = chunk
        nb = n1 - n0
        if want_y or want_dw:
            xpad = workspace("shift_x", (nb, hp, wp, geom.c), dtype, xp)
            fill_padded(xpad, x[n0:n1], -pt, -pl, planar=False)
            xflat = xpad.reshape(nb * plane, geom.c)
        if want_y:
            buf = workspace("shift_y", (nb * plane, geom.k), dtype, xp)
            _shifted_pass(xflat, 0, offsets, taps_w, fc, kg, g_count, buf,
                          (nb - 1) * plane + (geom.ho - 1) * wp + geom.wo, xp)
            y[n0:n1] = buf.reshape(nb, hp, wp, geom.k)[:, :geom.ho, :geom.wo]
        if not (want_dx or want_dw):
            return
        # the output derivative on the padded grid, zero off the valid
        # outputs, behind off_max zero rows so that negated offsets stay in range
        dyext = workspace("shift_dy", (off_max + nb * plane, geom.k), dtype, xp)
        dyext[:off_max] = 0
        dygrid = dyext[off_max:].reshape(nb, hp, wp, geom.k)
        dygrid[:, geom.ho:] = 0
        dygrid[:, :geom.ho, geom.wo:] = 0
        dygrid[:, :geom.ho, :geom.wo] = dy[n0:n1]
        dyflat = dyext[off_max:]
        if want_dw:
            rows = nb * plane - off_max
            tmp = workspace("shift_dw", (fc, kg), dtype, xp)
            for g in range(g_count):
                for t, off in enumerate(offsets):
                    xp.matmul(xflat[off:off + rows, g * fc:(g + 1) * fc].T,
                              dyflat[:rows, g * kg:(g + 1) * kg], out=tmp)
                    dw_acc[g, t * fc:(t + 1) * fc] += tmp
        if want_dx:
            buf = workspace("shift_dx", (nb * plane, geom.c), dtype, xp)
            _shifted_pass(dyext, off_max, [-o for o in offsets], taps_wt, kg, fc, g_count, buf,
                          (nb - 1) * plane + (pt + geom.h - 1) * wp + pl + geom.w, xp)
            dx[n0:n1] = buf.reshape(nb, hp, wp, geom.c)[:, pt:pt + geom.h, pl:pl + geom.w]

    dwmat = _run_chunks(run, chunks, xp, True, wmat.shape if want_dw else None, dtype)
    return y, dx, dwmat


def _rows_image_bytes(geom, itemsize):
    """Scratch of one image in :func:`_conv_rows` (padded input and output
    derivative, their row-window copies of one group, one group's product)."""
    hp = geom.h + geom.pad[0] + geom.pad[1]
    wp = geom.w + geom.pad[2] + geom.pad[3]
    hq, wq = geom.h + geom.eh - 1, geom.w + geom.ew - 1
    return itemsize * (hp * wp * geom.c + hp * geom.wo * geom.fw * geom.fc
                       + hq * wq * geom.k + hq * geom.w * geom.fw * geom.kg
                       + geom.ho * geom.wo * geom.kg + geom.h * geom.w * geom.fc)


def _row_windows(src, width, fw, dil_x, channels, slot, xp):
    """Copy the horizontal filter windows of the ``N x HS x WS x C`` chunk
    ``src``: ``out[n, r, j, v, :] = src[n, r, j + v*DX, channels]`` for
    ``j < width``, returned as ``N x (HS*width) x (FW*CG)`` (rows: padded
    input rows by output columns; one row holds the FW*CG values a filter
    row reads).  With one group and no horizontal dilation each row is one
    contiguous run of ``src``."""
    nb, hs, _, _ = src.shape
    part = src[..., channels]
    cg = part.shape[3]
    s_n, s_h, s_w, s_c = part.strides
    window = as_strided(part, shape=(nb, hs, width, fw, cg),
                        strides=(s_n, s_h, s_w, s_w * dil_x, s_c))
    rows = workspace(slot, (nb, hs, width, fw, cg), part.dtype, xp)
    rows[...] = window
    return rows.reshape(nb, hs * width, fw * cg)


def _row_correlation(rows, mats, dil_y, width, out_rows, out, slot, xp):
    """``out[n] = sum_u rows[n, u*DY*width : u*DY*width + out_rows] @ mats[u]``:
    one batched GEMM per filter row (``FW*CG``-deep products) on offset views
    of the row windows, accumulated in filter-row order."""
    tmp = None
    for u, mat in enumerate(mats):
        start = u * dil_y * width
        a = rows[:, start:start + out_rows]
        if u == 0:
            xp.matmul(a, mat, out=out)
        else:
            if tmp is None:
                tmp = workspace(slot, out.shape, out.dtype, xp)
            xp.matmul(a, mat, out=tmp)
            out += tmp


def _conv_rows(geom, wmat, xp, dtype, x=None, dy=None,
               want_y=False, want_dx=False, want_dw=False):
    """Stride-1 convolution by filter rows (any dilation, groups, padding).

    A chunk of whole images is zero-padded and its horizontal filter
    windows are copied once (``FW`` copies of the input, where im2col makes
    ``FH*FW``); each filter row ``u`` is then one batched GEMM on the
    windows of the padded rows ``i + u*DY`` (exact output rows: no position
    is computed and thrown away).  The filter derivative uses the same
    windows with the output derivative, one GEMM per filter row; the data
    derivative is the same row correlation run over the output derivative,
    zero-padded by the filter extent less the padding, with the filters
    flipped.  Same contract as :func:`_conv_core`; all sums are those of
    the convolution, in a different order (float rounding)."""
    g_count, kg, fc, fh, fw = geom.groups, geom.kg, geom.fc, geom.fh, geom.fw
    pt, pb, pl, pr = geom.pad
    hp, wp = geom.h + pt + pb, geom.w + pl + pr
    hq, wq = geom.h + geom.eh - 1, geom.w + geom.ew - 1
    ho, wo = geom.ho, geom.wo
    run_len = fw * fc
    # per group, filter row u as (FW*FC) x (K/G); flipped for dx: (FW*K/G) x FC
    mats = [[wmat[g, u * run_len:(u + 1) * run_len] for u in range(fh)] for g in range(g_count)]
    flipped = None
    if want_dx:
        flipped = [[xp.ascontiguousarray(
            wmat[g].reshape(fh, fw, fc, kg)[::-1, ::-1].transpose(0, 1, 3, 2)[u]
            .reshape(fw * kg, fc)) for u in range(fh)] for g in range(g_count)]
    y, dx, chunks = _image_chunks(geom, xp, dtype, want_y, want_dx,
                                  _rows_image_bytes(geom, np.dtype(dtype).itemsize))

    def run(chunk, dw_acc):
        n0, n1 = chunk
        nb = n1 - n0
        if want_y or want_dw:
            xpad = workspace("rows_x", (nb, hp, wp, geom.c), dtype, xp)
            fill_padded(xpad, x[n0:n1], -pt, -pl, planar=False)
        if want_dx or want_dw:
            dyc = xp.ascontiguousarray(dy[n0:n1])
            dy3 = dyc.reshape(nb, ho * wo, geom.k)
        if want_y:
            y3 = y[n0:n1].reshape(nb, ho * wo, geom.k)
        for g in range(g_count):
            cs, ks = slice(g * fc, (g + 1) * fc), slice(g * kg, (g + 1) * kg)
            if want_y or want_dw:
                rows = _row_windows(xpad, wo, fw, geom.dil_x, cs, "rows_xw", xp)
            if want_y:
                _row_correlation(rows, mats[g], geom.dil_y, wo, ho * wo, y3[:, :, ks],
                                 "rows_ytmp", xp)
            if want_dw:
                part = workspace("rows_dw", (nb, run_len, kg), dtype, xp)
                dyg = dy3[:, :, ks]
                for u in range(fh):
                    start = u * geom.dil_y * wo
                    xp.matmul(rows[:, start:start + ho * wo].transpose(0, 2, 1), dyg, out=part)
                    dw_acc[g, u * run_len:(u + 1) * run_len] += part.sum(axis=0)
        if want_dx:
            dypad = workspace("rows_dy", (nb, hq, wq, geom.k), dtype, xp)
            fill_padded(dypad, dyc, pt - (fh - 1) * geom.dil_y, pl - (fw - 1) * geom.dil_x,
                        planar=False)
            dx3 = dx[n0:n1].reshape(nb, geom.h * geom.w, geom.c)
            for g in range(g_count):
                rows = _row_windows(dypad, geom.w, fw, geom.dil_x,
                                    slice(g * kg, (g + 1) * kg), "rows_dyw", xp)
                _row_correlation(rows, flipped[g], geom.dil_y, geom.w, geom.h * geom.w,
                                 dx3[:, :, g * fc:(g + 1) * fc], "rows_dxtmp", xp)

    dwmat = _run_chunks(run, chunks, xp, True, wmat.shape if want_dw else None, dtype)
    return y, dx, dwmat


def _run_chunks(run, chunks, xp, parallel, dw_shape, dtype):
    """Call ``run(chunk, dw_acc)`` for every chunk, on the shared threads
    when ``parallel`` (:mod:`vlnn._threads`: numpy releases the GIL in copies
    and GEMMs, so one chunk's im2col copies run beside another's GEMM; BLAS
    is held at one thread meanwhile and restored afterwards).  Thread ``k``
    takes chunks ``k, k + T, ...`` and owns the filter-derivative
    accumulator ``dw_acc`` it is handed (None when ``dw_shape`` is None): a
    fixed assignment and a fixed summation order, so results do not depend
    on thread timing.  Returns the summed accumulators."""
    workers = workers_for(xp, len(chunks)) if parallel else 1
    accumulators = [xp.zeros(dw_shape, dtype) if dw_shape is not None else None
                    for _ in range(workers)]
    run_chunks(lambda k, chunk: run(chunk, accumulators[k]), chunks, workers,
               blas=_BLAS_THREADS_IN_POOL)
    if dw_shape is None:
        return None
    total = accumulators[0]
    for part in accumulators[1:]:
        total += part
    return total


def _empty_filter_ranges(size, out, stride, pad_before):
    """Output indices ``i`` whose input ``i*stride - pad`` is inside the image,
    as ``(out_slice, in_slice)``."""
    lo = -(-pad_before // stride)
    hi = min(out - 1, (size - 1 + pad_before) // stride)
    if hi < lo:
        return slice(0, 0), slice(0, 0)
    return slice(lo, hi + 1), slice(lo * stride - pad_before, hi * stride - pad_before + 1, stride)


def _channel_sums(a4, xp):
    """``a4.sum(axis=(0, 1, 3))`` of an ``H x W x K x N`` array (the bias
    derivative), faster for the ``N x H x W x K`` buffers the blocks pass:
    seen as rows of about 1024 elements (several pixels each), summed in
    blocks of 64 rows, the block sums added in float64.  numpy's reduction
    over the other axes runs K-long inner loops (LeNet conv1: 1.7 -> 0.15 ms)."""
    k = a4.shape[2]
    nhwc = a4.transpose(3, 0, 1, 2)
    if xp is not np or not nhwc.flags.c_contiguous or k > 1024:
        return a4.sum(axis=(0, 1, 3))
    m = a4.size // k
    r = max(1, 1024 // k)
    while m % r:
        r -= 1
    rows = nhwc.reshape(m // r, r * k)
    total = np.zeros(r * k, np.float64)
    for i in range(0, rows.shape[0], 64):
        total += rows[i:i + 64].sum(axis=0)
    return total.reshape(r, k).sum(axis=0).astype(a4.dtype)


def _bias_vector(b, k, fname, what):
    if b is None:
        return None
    if b.size != k:
        raise ValueError(
            f"{fname}: b has {b.size} elements (shape {tuple(b.shape)}) but {what} is {k}")
    return b.reshape(-1, order="F")


def vl_nnconv(x, w, b, *args, dzdy=None, **opts):
    """CNN convolution (cross-correlation, filters are not flipped).

    ``Y = vl_nnconv(X, F, B)`` computes the convolution of the images ``X``
    with the filter bank ``F`` and biases ``B``.

    ``DX, DF, DB = vl_nnconv(X, F, B, DZDY)`` computes the derivatives of a
    scalar ``z(Y)`` with respect to ``X``, ``F`` and ``B`` given ``DZDY``.

    Parameters
    ----------
    x : array, ``H x W x C x N``
        Input images (missing trailing dimensions are 1).
    w : array, ``FH x FW x FC x K``, or None
        Filters.  ``C / FC`` must be an integer ``G``, the number of filter
        groups; filter ``k`` reads channels ``g*FC ... g*FC + FC - 1`` of its
        group ``g = k // (K / G)``, and ``K`` must be a multiple of ``G``.
        ``None`` (MATLAB's ``[]``) acts as an identity filter bank: the
        block then only adds ``b`` and subsamples by ``Stride``.
    b : array with K elements, or None
        Biases, any shape (``(K,)``, ``(1, K)``...).
    dzdy : array ``HO x WO x K x N``, optional
        Derivative of the output; passing it selects backward mode.

    Other Parameters
    ----------------
    Stride : int or [SY, SX], default 1
    Pad : int or [TOP, BOTTOM, LEFT, RIGHT], default 0
        Zero padding; may exceed the filter size.
    Dilate : int or [DY, DX], default 1
        Filter dilation (not allowed with ``w=None``).
    NoDerData, NoDerFilters, NoDerBiases : flags
        Skip that derivative (``None`` is returned in its place).
    Cudnn, NoCudnn, Verbose, CudnnWorkspaceLimit :
        Accepted for compatibility; no numerical effect.

    Returns
    -------
    y : array ``HO x WO x K x N`` (forward), where with the dilated extent
        ``EH = (FH - 1) * DY + 1``::

            HO = floor((H + TOP + BOTTOM - EH) / SY) + 1
            WO = floor((W + LEFT + RIGHT - EW) / SX) + 1

    (dx, dw, db) : tuple (backward)
        Shaped exactly like ``x``, ``w`` and ``b``; ``dw`` is None when ``w``
        is, ``db`` is None when ``b`` is.

    Options may also be given MATLAB-style: ``vl_nnconv(x, w, b, 'pad', 1)``.

    Examples
    --------
    >>> x = np.random.randn(28, 28, 1, 100).astype(np.float32)
    >>> w = np.random.randn(5, 5, 1, 20).astype(np.float32)
    >>> y = vl_nnconv(x, w, np.zeros(20, np.float32), pad=2)
    >>> y.shape
    (28, 28, 20, 100)
    """
    fname = "vl_nnconv"
    if isinstance(b, str):
        raise TypeError(f"{fname}: expected at least 3 arguments (x, w, b); got option '{b}' as b")
    dzdy, args = split_derivative(fname, args, dzdy)
    o = parse_options(fname, args, opts, {"Stride": 1, "Pad": 0, "Dilate": 1},
                      flags=("NoDerData", "NoDerFilters", "NoDerBiases"), gpu=True)
    stride = as_pair(o.Stride, fname, "Stride", 1)
    pad = as_quad(o.Pad, fname, "Pad", 0)
    dilate = as_pair(o.Dilate, fname, "Dilate", 1)
    xp, dtype, (x, w, b, dzdy) = block_tensors(fname, x=x, w=w, b=b, dzdy=dzdy)
    x4 = to4d(x)
    h, wd, c, n = x4.shape

    if w is None:
        if dilate != (1, 1):
            raise ValueError(f"{fname}: Dilate {list(dilate)} needs filters; w is empty")
        bias = _bias_vector(b, c, fname, "the number of data channels C")
        ho, wo, _, _ = conv_output_size(fname, h, wd, 1, 1, stride, pad)
        osl_y, isl_y = _empty_filter_ranges(h, ho, stride[0], pad[0])
        osl_x, isl_x = _empty_filter_ranges(wd, wo, stride[1], pad[2])
        xn = to_nhwc(x4, xp)
        if dzdy is None:
            y = xp.zeros((n, ho, wo, c), dtype)
            y[:, osl_y, osl_x] = xn[:, isl_y, isl_x]
            if bias is not None:
                y += bias
            return from_nhwc(y)
        check_derivative(fname, dzdy, (ho, wo, c, n))
        dyn = to_nhwc(to4d(dzdy), xp)
        dx = db = None
        if not o.NoDerData:
            dxn = xp.zeros((n, h, wd, c), dtype)
            dxn[:, isl_y, isl_x] = dyn[:, osl_y, osl_x]
            dx = like_shape(from_nhwc(dxn), x.shape)
        if bias is not None and not o.NoDerBiases:
            db = like_shape(dyn.sum(axis=(0, 1, 2)), b.shape)
        return dx, None, db

    fh, fw, fc, k = shape4(w.shape)
    if c % fc:
        raise ValueError(
            f"{fname}: the filter depth {fc} (w is {tuple(w.shape)}) does not divide "
            f"the data depth {c} (x is {tuple(x.shape)})")
    groups = c // fc
    if k % groups:
        raise ValueError(
            f"{fname}: the number of filters {k} (w is {tuple(w.shape)}) is not a multiple "
            f"of the number of groups {groups} (data depth {c} / filter depth {fc})")
    bias = _bias_vector(b, k, fname, "the number of filters K")
    ho, wo, eh, ew = conv_output_size(fname, h, wd, fh, fw, stride, pad, dilate)
    geom = _Geometry(n, h, wd, c, fh, fw, fc, k, groups, stride[0], stride[1], pad,
                     dilate[0], dilate[1], ho, wo, eh, ew)
    wmat = _filters_to_mat(to4d(w), groups, xp)
    if dzdy is None:
        y, _, _ = _conv(geom, wmat, xp, dtype, x4=x4, want_y=True)
        if bias is not None:
            y += bias
        return from_nhwc(y)

    check_derivative(fname, dzdy, (ho, wo, k, n))
    dy4 = to4d(dzdy)
    _, dxn, dwmat = _conv(geom, wmat, xp, dtype, x4=x4, dy4=dy4,
                          want_dx=not o.NoDerData, want_dw=not o.NoDerFilters)
    dx = like_shape(from_nhwc(dxn), x.shape) if dxn is not None else None
    dw = like_shape(_mat_to_filters(dwmat, (fh, fw, fc, k)), w.shape) \
        if dwmat is not None else None
    db = None
    if bias is not None and not o.NoDerBiases:
        db = like_shape(_channel_sums(dy4, xp), b.shape)
    return dx, dw, db


def vl_nnconvt(x, w, b, *args, dzdy=None, **opts):
    """CNN convolution transpose ("deconvolution").

    ``Y = vl_nnconvt(X, F, B)`` is the transpose of ``vl_nnconv``: it equals
    the data derivative of a convolution with the same filters, stride
    ``Upsample`` and padding ``Crop``, plus the biases.

    ``DX, DF, DB = vl_nnconvt(X, F, B, DZDY)`` computes the derivatives.

    Parameters
    ----------
    x : array, ``H x W x D x N``
    w : array, ``FH x FW x K x D``
        Note the layout: the third dimension is the number of output
        channels per group, the fourth must equal the input depth ``D``.
    b : array with ``K * NumGroups`` elements, or None
    dzdy : array ``YH x YW x (K*NumGroups) x N``, optional
        Passing it selects backward mode.

    Other Parameters
    ----------------
    Upsample : int or [UY, UX], default 1
    Crop : int or [TOP, BOTTOM, LEFT, RIGHT], default 0
    NumGroups : int, default 1
        Input channel ``d`` (of ``D``) belongs to group
        ``g = d // (D / NumGroups)`` and writes output channels
        ``g*K ... g*K + K - 1``.
    NoDerData, NoDerFilters, NoDerBiases : flags
    Cudnn, NoCudnn, Verbose, CudnnWorkspaceLimit :
        Accepted for compatibility; no numerical effect.

    Returns
    -------
    y : array ``YH x YW x (K*NumGroups) x N`` (forward), where::

            YH = (H - 1) * UY + FH - TOP - BOTTOM
            YW = (W - 1) * UX + FW - LEFT - RIGHT

    (dx, dw, db) : tuple (backward), shaped like ``x``, ``w`` and ``b``
        (``db`` is None when ``b`` is).
    """
    fname = "vl_nnconvt"
    if isinstance(b, str):
        raise TypeError(f"{fname}: expected at least 3 arguments (x, w, b); got option '{b}' as b")
    dzdy, args = split_derivative(fname, args, dzdy)
    o = parse_options(fname, args, opts, {"Upsample": 1, "Crop": 0, "NumGroups": 1},
                      flags=("NoDerData", "NoDerFilters", "NoDerBiases"), gpu=True)
    upsample = as_pair(o.Upsample, fname, "Upsample", 1)
    crop = as_quad(o.Crop, fname, "Crop", 0)
    groups = as_int(o.NumGroups, fname, "NumGroups", 1)
    xp, dtype, (x, w, b, dzdy) = block_tensors(fname, required=("x", "w"),
                                               x=x, w=w, b=b, dzdy=dzdy)
    x4 = to4d(x)
    h, wd, d, n = x4.shape
    fh, fw, k, fd = shape4(w.shape)
    if fd != d:
        raise ValueError(
            f"{fname}: the fourth dimension of w {tuple(w.shape)} must equal the data depth "
            f"{d} (x is {tuple(x.shape)})")
    if d % groups:
        raise ValueError(
            f"{fname}: NumGroups {groups} does not divide the number of filters {d} "
            f"(w is {tuple(w.shape)})")
    bias = _bias_vector(b, k * groups, fname, "K * NumGroups")
    yh, yw = convt_output_size(fname, h, wd, fh, fw, upsample, crop)
    # the convolution whose data derivative this is: input YH x YW x K*G,
    # D filters of depth K in G groups, stride Upsample, padding Crop
    geom = _Geometry(n, yh, yw, k * groups, fh, fw, k, d, groups, upsample[0], upsample[1],
                     crop, 1, 1, h, wd, fh, fw)
    wmat = _filters_to_mat(to4d(w), groups, xp)
    if dzdy is None:
        _, y, _ = _conv(geom, wmat, xp, dtype, dy4=x4, want_dx=True)
        if bias is not None:
            y += bias
        return from_nhwc(y)

    check_derivative(fname, dzdy, (yh, yw, k * groups, n))
    dy4 = to4d(dzdy)
    dxn, _, dwmat = _conv(geom, wmat, xp, dtype, x4=dy4, dy4=x4,
                          want_y=not o.NoDerData, want_dw=not o.NoDerFilters)
    dx = like_shape(from_nhwc(dxn), x.shape) if dxn is not None else None
    dw = like_shape(_mat_to_filters(dwmat, (fh, fw, k, d)), w.shape) \
        if dwmat is not None else None
    db = None
    if bias is not None and not o.NoDerBiases:
        db = like_shape(_channel_sums(dy4, xp), b.shape)
    return dx, dw, db
