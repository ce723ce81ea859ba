"""vl_imreadjpeg: MatConvNet's multithreaded image reader and augmenter.

ImageNet-style ``getBatch`` functions read their images with it::

    % MATLAB
    vl_imreadjpeg(files, 'NumThreads', 4, 'Prefetch') ;   % start reading
    ...
    ims = vl_imreadjpeg(files, 'NumThreads', 4) ;         % collect them

    # Python
    vl_imreadjpeg(files, 'NumThreads', 4, 'Prefetch')      # returns None at once
    ...
    ims = vl_imreadjpeg(files, 'NumThreads', 4)

Images are decoded by Pillow (an optional dependency: ``pip install
vlnn[images]``), imported on the first call.  Each image then goes through
MatConvNet's steps, in its order (``matlab/src/vl_imreadjpeg.cu``): the crop
geometry and output size, the crop resized with MatConvNet's filters (rows,
then columns; the horizontal flip is applied in the column pass), the average
image subtracted, then one colour transform that combines the brightness
shift, the contrast change, the saturation change and the subtraction of the
average colour.
"""

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._backend import gpu_module
from ._options import as_float, as_int, int_vector, numbers_of, parse_options
from .rng import get_random_generator

__all__ = ["vl_imreadjpeg"]

FNAME = "vl_imreadjpeg"

_DEFAULTS = {"NumThreads": None, "Resize": None, "SubtractAverage": None,
             "CropAnisotropy": [1, 1], "CropSize": [1, 1], "CropLocation": "center",
             "Brightness": 0, "Contrast": 0, "Saturation": 0, "Interpolation": "bilinear",
             "seed": None}
_FLAGS = ("Prefetch", "Verbose", "Pack", "GPU", "Flip")

# filter name -> (support in output pixels, kernel of the offset delta)
_FILTERS = {
    "box": 1,
    "bilinear": 2,
    "bicubic": 4,
    "lanczos2": 4,
    "lanczos3": 6,
}

# draws per image: anisotropy, crop size, crop x, crop y, flip, saturation, contrast
_NUM_UNIFORMS = 7


def _pil_image():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            f"{FNAME} needs Pillow to decode images: pip install 'vlnn[images]' "
            f"(or pip install Pillow)") from None
    return Image


# ---------------------------------------------------------------------------
# resizing (MatConvNet's ImageResizeFilter, imread_helpers.hpp)


def _kernel(method, delta):
    """The interpolation kernel at the offsets ``delta`` (float32)."""
    one = np.float32(1)
    if method == "box":
        return ((-0.5 <= delta) & (delta < 0.5)).astype(np.float32)
    if method == "bilinear":
        return np.maximum(np.float32(0), one - np.abs(delta))
    if method == "bicubic":
        a = np.abs(delta)
        a2, a3 = a * a, a * a * a
        near = np.float32(1.5) * a3 - np.float32(2.5) * a2 + one
        far = np.float32(-0.5) * a3 + np.float32(2.5) * a2 - np.float32(4) * a + np.float32(2)
        return np.where(a <= 1, near, np.where(a <= 2, far, np.float32(0))).astype(np.float32)
    lobes = np.float32(2 if method == "lanczos2" else 3)
    eps = np.float32(1e-5)
    pi = np.float32(np.pi)
    value = ((np.sin(pi * delta) * np.sin(pi * delta / lobes) + eps)
             / (pi * pi * delta * delta / lobes + eps))
    return np.where(np.abs(delta) < lobes, value, np.float32(0)).astype(np.float32)


def resize_filter(out_size, in_size, crop_size, crop_offset, method="bilinear"):
    """MatConvNet's resizing along one axis as taps: ``(starts, weights)``
    with output pixel ``v = sum_r weights[v, r] * input[starts[v] + r]``
    (0-based; only taps with a non-zero weight lie inside the input).

    As in MatConvNet (``ImageResizeFilter``, ``imread_helpers.hpp``): output
    pixel ``v`` of the crop ``[crop_offset, crop_offset + crop_size)``
    resized to ``out_size`` pixels sits at ``u = alpha v + beta`` in the
    input, ``alpha = crop_size / out_size``, ``beta = (alpha - 1) / 2 +
    crop_offset``; the kernel is stretched by ``alpha`` when shrinking (a
    simple antialiasing, as MATLAB's ``imresize``); taps beyond the image
    repeat its first or last pixel; the weights are normalised to sum to 1;
    and, as MatConvNet's loop stops at the first zero weight of a filter,
    the weights after one are dropped.  Single precision throughout.
    """
    size = _FILTERS[method]
    alpha = np.float32(crop_size) / np.float32(out_size)
    beta = np.float32(0.5) * (alpha - np.float32(1)) + np.float32(crop_offset)
    support = np.float32(size)
    if alpha > 1:
        support = support * alpha
        size = int(np.ceil(support))
    rows = np.arange(out_size)
    u = alpha * rows.astype(np.float32) + beta
    starts = np.ceil(u - support / np.float32(2)).astype(np.int64)
    taps = np.arange(size)
    k = starts[:, None] + taps
    delta = u[:, None] - k.astype(np.float32)
    if alpha > 1:
        delta = delta / alpha
    h = _kernel(method, delta.astype(np.float32))
    # taps outside the image read its first or last pixel
    q = np.where(k < 0, taps - k, np.where(k >= in_size, taps - (k - in_size + 1), taps))
    filt = np.zeros((out_size, size), np.float32)
    mass = np.zeros(out_size, np.float32)
    for r in range(size):           # in the order MatConvNet accumulates
        filt[rows, q[:, r]] += h[:, r]
        mass += h[:, r]
    nonzero = h != 0
    skip = np.where(nonzero.any(axis=1), np.where(nonzero, q, size).min(axis=1), size)
    weights = np.zeros((out_size, size), np.float32)
    for r in range(size):
        src = r + skip
        ok = src < size
        weights[ok, r] = filt[rows[ok], src[ok]] / mass[ok]
    # MatConvNet's loop breaks at the first zero weight
    weights[np.cumsum(weights == 0, axis=1) > 0] = 0
    return starts + skip, weights


def resize_matrix(out_size, in_size, crop_size, crop_offset, method="bilinear"):
    """:func:`resize_filter` as a dense ``out_size x in_size`` matrix."""
    starts, weights = resize_filter(out_size, in_size, crop_size, crop_offset, method)
    matrix = np.zeros((out_size, in_size), np.float32)
    rows = np.broadcast_to(np.arange(out_size)[:, None], weights.shape)
    cols = starts[:, None] + np.arange(weights.shape[1])
    keep = weights != 0
    matrix[rows[keep], cols[keep]] = weights[keep]
    return matrix


def _resize_axis(image, starts, weights, axis):
    """Resize ``image`` along ``axis`` with the taps of :func:`resize_filter`:
    one gather and one multiply-add per tap, accumulated in single
    precision in MatConvNet's order (no BLAS, so reader threads never
    compete with the caller's BLAS threads)."""
    n = image.shape[axis]
    shape = [1] * image.ndim
    shape[axis] = -1
    out = None
    for r in range(weights.shape[1]):
        w = weights[:, r]
        if not w.any():
            break
        # zero-weight taps may point past the image: clip them to a valid pixel
        index = [slice(None)] * image.ndim
        index[axis] = np.clip(starts + r, 0, n - 1)
        term = image[tuple(index)] * w.reshape(shape)
        if out is None:
            out = term.astype(np.float32, copy=False)
        else:
            out += term
    return out


# ---------------------------------------------------------------------------
# the per-image plan (MatConvNet's Batch::prefetch)


def _round(x):
    """C's ``round`` (half away from zero) for the non-negative sizes here."""
    return math.floor(x + 0.5)


def _geometry(height, width, o, draws):
    """Output size, crop rectangle and flip of one ``height x width`` image."""
    if o.Resize is None:
        out_h, out_w = height, width
    elif len(o.Resize) == 1:
        scale = max(o.Resize[0] / width, o.Resize[0] / height)
        out_h = max(1, _round(scale * height))
        out_w = max(1, _round(scale * width))
    else:
        out_h, out_w = o.Resize
    min_aniso, max_aniso = o.CropAnisotropy
    if min_aniso == 0 or max_aniso == 0:
        # stretch the crop to the shape of the input
        ratio = (width / height) / (out_w / out_h)
    else:
        a, b = math.log(max_aniso), math.log(min_aniso)
        ratio = math.exp(draws[0] * (b - a) + a)
    crop_w = out_w * math.sqrt(ratio)
    crop_h = out_h / math.sqrt(ratio)
    scale = min(width / crop_w, height / crop_h)
    a, b = o.CropSize[1] ** 2, o.CropSize[0] ** 2
    size = math.sqrt(draws[1] * (b - a) + a)
    # at least one pixel (a zero CropSize would leave nothing to resize)
    crop_w = max(1, int(min(_round(crop_w * scale * size), width)))
    crop_h = max(1, int(min(_round(crop_h * scale * size), height)))
    dx, dy = width - crop_w, height - crop_h
    if o.CropLocation == "random":
        dx, dy = int(draws[2] * (dx + 1)), int(draws[3] * (dy + 1))
    else:
        dx, dy = dx // 2, dy // 2
    flip = bool(o.Flip and draws[4] > 0.5)
    return (out_h, out_w), (dy, dx, crop_h, crop_w), flip


def _decode(name):
    """The pixels of one file as ``H x W x 3`` uint8 (gray replicated)."""
    Image = _pil_image()
    if not os.path.exists(name):
        raise FileNotFoundError(f"{FNAME}: could not read image '{name}': no such file")
    try:
        with Image.open(name) as im:
            im.load()
            gray = im.mode in ("1", "L", "LA")
            pixels = np.asarray(im.convert("L" if gray else "RGB"))   # uint8
    except Exception as err:
        raise OSError(f"{FNAME}: could not read image '{name}' because: {err}") from None
    if gray:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return pixels


def _read_one(name, o, draws, normal):
    """Read and transform one image (runs in a reader thread)."""
    pixels = _decode(name)
    height, width = pixels.shape[:2]
    (out_h, out_w), (dy, dx, crop_h, crop_w), flip = _geometry(height, width, o, draws)
    row_starts, row_weights = resize_filter(out_h, height, crop_h, dy, o.Interpolation)
    col_starts, col_weights = resize_filter(out_w, width, crop_w, dx, o.Interpolation)
    if flip:
        col_starts, col_weights = col_starts[::-1], col_weights[::-1]
    # rows, then columns, as MatConvNet; the row pass only over the columns
    # the column pass reads
    used = col_weights != 0
    cols = (col_starts[:, None] + np.arange(col_weights.shape[1]))[used]
    c0, c1 = int(cols.min()), int(cols.max()) + 1
    image = _resize_axis(pixels[:, c0:c1], row_starts, row_weights, 0)
    image = _resize_axis(image, col_starts - c0, col_weights, 1)

    # colour: MatConvNet's single pass (average image first, then the
    # per-channel offsets dv and the mixing of the channels)
    if o.average_image is not None:
        image -= o.average_image
    contrast, saturation = np.float32(draws[6]), np.float32(draws[5])
    dv = (o.brightness @ normal).astype(np.float32) - o.average
    if contrast != 1:
        means = image.sum(axis=0, dtype=np.float64).sum(axis=0) / (out_h * out_w)
        dv = dv + ((1.0 - float(contrast)) * means).astype(np.float32)
    dv = saturation * dv + (np.float32(1) - saturation) / np.float32(3) * dv.sum(dtype=np.float32)
    a = contrast * saturation
    b = contrast * (np.float32(1) - saturation) / np.float32(3)
    mixed = image[:, :, 0] + image[:, :, 1] + image[:, :, 2]   # MatConvNet's order
    mixed *= b
    image *= a
    image += mixed[:, :, None]
    image += dv
    info = (name, (height, width), (out_h, out_w), (crop_h, crop_w), (dy, dx), flip)
    return image.astype(np.float32, copy=False), info


# ---------------------------------------------------------------------------
# options


def _options(flags, opts):
    o = parse_options(FNAME, flags, opts, _DEFAULTS, flags=_FLAGS)
    if o.NumThreads is not None:
        o.NumThreads = max(1, as_int(o.NumThreads, FNAME, "NumThreads"))
    if o.Resize is not None:
        o.Resize = int_vector(o.Resize, FNAME, "Resize", (1, 2), minimum=1)
    lo, hi = _range(o.CropAnisotropy, "CropAnisotropy")
    if lo < 0 or lo > hi:
        raise ValueError(f"{FNAME}: CropAnisotropy must be [MIN, MAX] with 0 <= MIN <= MAX, "
                         f"got {o.CropAnisotropy!r}")
    o.CropAnisotropy = (lo, hi)
    lo, hi = _range(o.CropSize, "CropSize")
    if lo < 0 or lo > hi or hi > 1:
        raise ValueError(f"{FNAME}: CropSize must be [MIN, MAX] with 0 <= MIN <= MAX <= 1, "
                         f"got {o.CropSize!r}")
    o.CropSize = (lo, hi)
    location = o.CropLocation.lower() if isinstance(o.CropLocation, str) else None
    if location not in ("center", "random"):
        raise ValueError(f"{FNAME}: CropLocation must be 'center' or 'random', "
                         f"got {o.CropLocation!r}")
    o.CropLocation = location
    method = o.Interpolation.lower() if isinstance(o.Interpolation, str) else None
    if method not in _FILTERS:
        raise ValueError(f"{FNAME}: Interpolation must be one of {', '.join(_FILTERS)}, "
                         f"got {o.Interpolation!r}")
    o.Interpolation = method
    for name in ("Contrast", "Saturation"):
        value = as_float(o[name], FNAME, name)
        if not 0 <= value <= 1:
            raise ValueError(f"{FNAME}: {name} must be in [0, 1], got {value!r}")
        o[name] = value
    o.brightness = _brightness(o.Brightness)
    o.average, o.average_image = _average(o.SubtractAverage, o.Resize)
    if o.Pack and (o.Resize is None or len(o.Resize) != 2):
        raise ValueError(f"{FNAME}: Pack must be used with Resize [H, W] (a fixed output size)")
    return o


def _range(value, name):
    v = numbers_of(value, FNAME, name, (1, 2))
    return float(v[0]), float(v[-1])


def _brightness(value):
    """``Brightness``: the 3 x 3 matrix B of the colour shift ``B w``."""
    v = numbers_of(value, FNAME, "Brightness", (1, 3, 9))
    if v.size == 1:
        return np.eye(3) * v[0]
    if v.size == 3:
        return np.diag(v)
    return v.reshape(3, 3, order="F")  # MATLAB's column-major 3 x 3


def _average(value, resize):
    """``SubtractAverage``: an RGB triple (1 or 3 numbers) or an average
    image of the output size (``Resize`` [H, W] required)."""
    if value is None:
        return np.zeros(3, np.float32), None
    size = np.size(value)
    if size in (1, 3):
        v = numbers_of(value, FNAME, "SubtractAverage", (1, 3)).astype(np.float32)
        return np.resize(v, 3), None
    image = np.asarray(value)
    if image.dtype.kind != "f":
        raise ValueError(f"{FNAME}: SubtractAverage must be an RGB triple or a float image, "
                         f"got dtype {image.dtype}")
    if resize is None or len(resize) != 2:
        raise ValueError(f"{FNAME}: cannot subtract an average image unless Resize [H, W] "
                         f"sets the size of the output")
    if image.shape != (resize[0], resize[1], 3):
        raise ValueError(f"{FNAME}: the average image has shape {image.shape} but must be "
                         f"RESIZEHEIGHT x RESIZEWIDTH x 3 = {(resize[0], resize[1], 3)}")
    return np.zeros(3, np.float32), image.astype(np.float32)


def _file_names(files):
    if isinstance(files, (str, bytes, os.PathLike)):
        raise TypeError(f"{FNAME}: files must be a list of file names (MATLAB's cell array), "
                        f"got {type(files).__name__} {files!r}; pass [{files!r}]")
    if isinstance(files, np.ndarray):
        files = list(files.ravel(order="F"))
    try:
        names = list(files)
    except TypeError:
        raise TypeError(f"{FNAME}: files must be a list of file names, "
                        f"got {type(files).__name__}") from None
    out = []
    for i, name in enumerate(names):
        if isinstance(name, np.ndarray) and name.dtype.kind == "U" and name.size == 1:
            name = str(name.item())
        if not isinstance(name, (str, os.PathLike)):
            raise TypeError(f"{FNAME}: files[{i}] is not a file name: {name!r}")
        out.append(os.fspath(name))
    return out


# ---------------------------------------------------------------------------
# the reader threads and the prefetched batch


class _Readers:
    """The thread pool and the batch being read (MatConvNet's ``readers``
    and ``batch``, which also live across calls)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pool = None
        self.num_threads = 1
        self.batch = None  # (names, options, futures)

    def drop_batch(self):
        if self.batch is not None:
            for future in self.batch[2]:
                future.cancel()
            self.batch = None

    def ensure_pool(self, num_threads):
        if num_threads is None:
            num_threads = self.num_threads
        if self.pool is not None and num_threads != self.num_threads:
            # MatConvNet: a new thread count finalises the threads and the batch
            self.drop_batch()
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=num_threads,
                                           thread_name_prefix="vl_imreadjpeg")
            self.num_threads = num_threads
        return self.pool


_readers = _Readers()


def vl_imreadjpeg(files, *flags, **opts):
    """Load and transform images asynchronously.

    ``IMAGES = vl_imreadjpeg(FILES)`` reads the image files of the list
    ``FILES`` and returns a list of ``H x W x 3`` float32 arrays with values
    in [0, 255].

    ``vl_imreadjpeg(FILES, 'Prefetch')`` starts reading the files in the
    background and returns ``None`` at once; a later call with *exactly the
    same files in the same order* returns those images (read and transformed
    with the options of the prefetching call, as in MatConvNet).

    MATLAB::

        ims = vl_imreadjpeg(files, 'NumThreads', 4, 'Resize', [224 224], ...
                            'CropSize', [.5 1], 'CropLocation', 'random', 'Flip', ...
                            'Pack') ;
        im = ims{1} ;

    Python::

        im = vl_imreadjpeg(files, 'NumThreads', 4, 'Resize', [224, 224],
                           'CropSize', [.5, 1], 'CropLocation', 'random', 'Flip',
                           'Pack')
        # or: vl_imreadjpeg(files, num_threads=4, resize=[224, 224], ..., pack=True)

    Parameters
    ----------
    files : list of str or os.PathLike
        The image files (any format Pillow reads; JPEG as in MatConvNet).
    *flags
        MATLAB-style flags and ``'Name', value`` pairs (the options below).

    Other Parameters
    ----------------
    NumThreads : int, default: as in the previous call (1 at first)
        Threads reading and transforming the images (at least 1).
    Prefetch : flag
        Start reading and return ``None`` without waiting (see above).
    Verbose : flag
        Print the size, crop and output of each image.
    Pack : flag
        Return one ``H x W x 3 x K`` float32 array instead of a list (with
        ``Resize`` ``[H, W]``, which sets one size for all the images).
    GPU : flag
        Return CuPy arrays (CuPy required).
    Resize : S or [H, W], default: no resizing
        ``S``: resize isotropically so that the shorter side is ``S``;
        ``[H, W]``: the output size.  Resizing filters as MATLAB's
        ``imresize``: when shrinking the kernel is stretched over several
        input pixels (antialiasing).
    CropAnisotropy : [MIN, MAX], default [1, 1]
        The range of the anisotropy ratio ``A = Wcrop / Hcrop`` relative
        to the output's aspect, drawn log-uniformly per image; ``[0, 0]``
        stretches the crop to the whole input's aspect.
    CropSize : [MIN, MAX], default [1, 1]
        The range of the crop's size as a fraction of the largest crop
        (of that anisotropy) that fits the input; the area is drawn
        uniformly.  ``[1, 1]``: the largest crop.
    CropLocation : 'center' or 'random', default 'center'
        ``'random'``: uniformly among the positions inside the image.
    Flip : flag
        Flip each crop horizontally with probability 1/2.
    SubtractAverage : [R, G, B], a scalar, or an H x W x 3 image, default [0, 0, 0]
        Subtracted from every pixel; an image needs ``Resize`` ``[H, W]``.
    Brightness : B (1, 3 or 3 x 3 numbers), default 0
        Standard deviation of the colour shift ``B w`` added to each image,
        ``w`` a standard normal 3-vector (a scalar is ``B * eye(3)``, three
        numbers ``diag(B)``, nine a 3 x 3 matrix in MATLAB's column order).
    Contrast : float in [0, 1], default 0
        Each image's contrast is scaled by a factor drawn uniformly from
        ``[1 - C, 1 + C]`` (``c X + (1 - c) mean(X)`` per channel).
    Saturation : float in [0, 1], default 0
        The same for saturation (``s X + (1 - s) gray(X)``).
    Interpolation : str, default 'bilinear'
        ``'box'``, ``'bilinear'``, ``'bicubic'``, ``'lanczos2'`` or
        ``'lanczos3'``.
    seed : int or numpy.random.Generator, default None
        The source of the random crops, flips and colour shifts (drawn in
        file order before the threads start, so the result does not depend
        on ``NumThreads``); ``None`` uses the blocks' random state
        (``vlnn.set_random_seed``).

    Returns
    -------
    images : list of float32 arrays ``H x W x 3``, or one ``H x W x 3 x K`` array
        ``None`` with ``Prefetch``.  Each image, in MatConvNet's order:
        cropped and resized (``Resize``, ``Crop*``, ``Interpolation``),
        flipped (``Flip``), the average image subtracted, then
        ``Y = SAT(c X + (1 - c) mean(X) + B w - AVG)``, with
        ``SAT(Z) = s Z + (1 - s) mean_over_channels(Z)``.

    Raises
    ------
    FileNotFoundError
        A file that does not exist (naming it).
    OSError
        A file that is not a readable image (naming it).
    ImportError
        Pillow is not installed.
    TypeError, ValueError
        Bad options, naming them.

    Notes
    -----
    Departures from MatConvNet: gray images always get three channels
    (MatConvNet keeps one unless ``Pack``), a file that cannot be read is an
    error (MatConvNet warns and returns an empty cell), ``Pack`` returns
    the array itself (MatConvNet a 1 x 1 cell holding it, ``ims{1}``), a
    zero ``CropSize`` still crops one pixel, and the brightness shift is
    ``B w`` as MatConvNet documents (its code reads ``B`` at the wrong
    indices, which for a scalar or three numbers doubles the red shift and
    drops the green one).  The random numbers come from NumPy, so a seed
    does not reproduce MATLAB's draws.
    """
    o = _options(flags, opts)
    names = _file_names(files)
    if o.GPU:
        gpu = gpu_module(f"{FNAME}: GPU")
    _pil_image()
    with _readers.lock:
        pool = _readers.ensure_pool(o.NumThreads)
        batch = _readers.batch
        if batch is None or batch[0] != names:
            _readers.drop_batch()
            generator = o.seed if isinstance(o.seed, np.random.Generator) else (
                get_random_generator() if o.seed is None else
                np.random.default_rng(as_int(o.seed, FNAME, "seed", minimum=0)))
            uniforms = generator.random((len(names), _NUM_UNIFORMS))
            normals = generator.standard_normal((len(names), 3))
            # the saturation and contrast factors, MatConvNet's 1 + D (2z - 1)
            uniforms[:, 5] = 1 + o.Saturation * (2 * uniforms[:, 5] - 1)
            uniforms[:, 6] = 1 + o.Contrast * (2 * uniforms[:, 6] - 1)
            futures = [pool.submit(_read_one, name, o, draws, normal)
                       for name, draws, normal in zip(names, uniforms, normals)]
            batch = (names, o, futures)
        if o.Prefetch:
            _readers.batch = batch
            return None
        _readers.batch = None
    names, o, futures = batch
    results = [future.result() for future in futures]
    if o.Verbose:
        for name, (h, w), (oh, ow), (ch, cw), (dy, dx), flip in (r[1] for r in results):
            print(f"{FNAME}: {name}: input {h} x {w} x 3, crop {ch} x {cw} at ({dy}, {dx})"
                  f"{' flipped' if flip else ''}, output {oh} x {ow} x 3")
    images = [r[0] for r in results]
    if o.Pack:
        images = (np.stack(images, axis=3) if images
                  else np.zeros(tuple(o.Resize) + (3, 0), np.float32))
    if o.GPU:
        images = gpu.asarray(images) if o.Pack else [gpu.asarray(im) for im in images]
    return images
