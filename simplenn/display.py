"""vl_simplenn_display: MatConvNet's table of a SimpleNN network's geometry.

Per layer it reports the operator's support, stride and padding, the
receptive field of each output pixel on the network input, the size of the
data flowing through the network and the memory taken by data and
parameters (MATCONVNET_SEMANTICS.md section 24).  The text is MatConvNet's,
character for character, in its three formats (ascii, latex, csv).
"""

import math
import sys
from collections.abc import Mapping

import numpy as np

from vlnn._backend import shape4
from vlnn._options import as_int, numbers_of, parse_options, split_derivative

from .naming import layer_label
from .struct import Struct

FNAME = "vl_simplenn_display"

# (key, row label) in the order MatConvNet prints them; '-' is a rule.
_ROWS = (
    ("layer", "layer"), ("type", "type"), ("name", "name"), ("-", "-"),
    ("support", "support"), ("filtd", "filt dim"), ("filtdil", "filt dilat"),
    ("nfilt", "num filts"), ("stride", "stride"), ("pad", "pad"), ("-", "-"),
    ("rfsize", "rf size"), ("rfoffset", "rf offset"), ("rfstride", "rf stride"),
    ("-", "-"),
    ("dsize", "data size"), ("ddepth", "data depth"), ("dnum", "data num"),
    ("-", "-"),
    ("xmem", "data mem"), ("wmem", "param mem"),
)

_TYPE_ABBREVIATIONS = {"normalize": "norm", "softmax": "softmx", "softmaxloss": "softmxl"}

_FORMATS = ("ascii", "latex", "csv")


# ---------------------------------------------------------------------------
# reading nets given as dicts, Structs or objects, tidied or not

def _field(obj, name, default=None):
    """``obj.name`` for mappings and objects alike; ``None`` counts as missing."""
    if isinstance(obj, Mapping):
        value = obj.get(name, None)
    else:
        value = getattr(obj, name, None)
    return default if value is None else value


def _numel(a):
    if a is None:
        return 0
    size = getattr(a, "size", None)
    return int(size) if size is not None else int(np.size(a))


def _items(values):
    """The elements of a cell: a list, a tuple or a numpy object array (as
    ``scipy.io.loadmat`` returns MATLAB cells)."""
    if isinstance(values, np.ndarray) and values.dtype == object:
        return list(values.ravel(order="F"))
    return list(values)


def _filters(layer):
    """The conv filter bank: ``weights[0]``, else the legacy ``filters``."""
    weights = _field(layer, "weights")
    if weights is not None:
        weights = _items(weights)
        return weights[0] if weights else None
    return _field(layer, "filters")


def _filter_shape(filters):
    """4-D shape of a filter bank; MATLAB's ``[]`` (None) is ``0 x 0``."""
    if filters is None:
        return (0, 0, 1, 1)
    return shape4(getattr(filters, "shape", np.shape(filters)))


def _param_count(layer):
    """Number of parameters: every weight plus the legacy filters/biases."""
    count = sum(_numel(w) for w in _items(_field(layer, "weights", ())))
    return count + _numel(_field(layer, "filters")) + _numel(_field(layer, "biases"))


def _layer_vector(layer, index, name, counts, default):
    """A layer's scalar-or-vector field as float64 of length ``max(counts)``."""
    value = _field(layer, name)
    if value is None:
        return np.full(max(counts), float(default))
    vec = numbers_of(value, FNAME, f"the {name} of {layer_label(index, layer)}", counts)
    return np.full(max(counts), vec[0]) if vec.size == 1 else vec


def _size_vector(value, what):
    """A size such as ``meta.inputSize``: 1 to 4 real numbers (NaN allowed)."""
    try:
        arr = np.asarray(value).astype(np.float64).ravel(order="F")
    except (TypeError, ValueError):
        raise ValueError(f"{FNAME}: {what} must be numeric, got {value!r}") from None
    if not 1 <= arr.size <= 4:
        raise ValueError(f"{FNAME}: {what} must have 1 to 4 elements (H W C N), got {value!r}")
    return arr


def _input_size(net, opts):
    """``[H W C N]`` from the inputSize option, else ``meta.inputSize``, else
    ``meta.normalization.imageSize`` (legacy: ``net.normalization``), with
    ``N = 1`` unless ``batchSize`` says otherwise."""
    size = np.array([np.nan, np.nan, np.nan, 1.0])
    if opts.inputSize is not None:
        given, what = opts.inputSize, "inputSize"
    else:
        meta = _field(net, "meta", {})
        normalization = _field(meta, "normalization", None) or _field(net, "normalization", {})
        given, what = _field(meta, "inputSize"), "net.meta.inputSize"
        if given is None:
            given, what = _field(normalization, "imageSize"), "net.meta.normalization.imageSize"
    if given is not None:
        vec = _size_vector(given, what)
        size[:vec.size] = vec
    if opts.batchSize is not None:
        size[3] = as_int(opts.batchSize, FNAME, "batchSize", minimum=1)
    return size


def _res_input_shape(res, i):
    """4-D shape of ``res[i].x`` as floats, or ``None`` when it is cleared."""
    x = _field(res[i], "x")
    if x is None or not hasattr(x, "shape"):
        return None
    return np.array(shape4(x.shape), dtype=np.float64)


# ---------------------------------------------------------------------------
# the figures

def _geometry(layers):
    """Support, stride and pad of every layer (2xL, 2xL, 4xL) and the conv
    dilations (2xL, 1 for other layers)."""
    n = len(layers)
    support = np.ones((2, n))
    stride = np.ones((2, n))
    pad = np.zeros((4, n))
    dilate = np.ones((2, n))
    for i, layer in enumerate(layers):
        kind = str(_field(layer, "type", ""))
        if kind == "conv":
            fh, fw = _filter_shape(_filters(layer))[:2]
            # [DY DX] dilation: DY for rows, DX for columns
            dilate[:, i] = _layer_vector(layer, i, "dilate", (1, 2), 1)
            support[:, i] = (np.maximum([fh, fw], 1) - 1) * dilate[:, i] + 1
        elif kind == "pool":
            if _field(layer, "pool") is None:
                raise ValueError(f"{FNAME}: {layer_label(i, layer)} is a pool layer without "
                                 f"'pool'")
            support[:, i] = _layer_vector(layer, i, "pool", (1, 2), 1)
        stride[:, i] = _layer_vector(layer, i, "stride", (1, 2), 1)
        pad[:, i] = _layer_vector(layer, i, "pad", (1, 4), 0)
    return support, stride, pad, dilate


def _receptive_fields(support, stride, pad):
    """Receptive field of each layer's output on the network input.

    With ``cs_k`` the product of the strides of the layers before ``k``::

        size(l)   = 1 + sum_{k<=l} cs_k (support_k - 1)
        offset(l) = 1 + sum_{k<=l} cs_k ((support_k - 1)/2 - padTopOrLeft_k)
        stride(l) = prod_{k<=l} stride_k
    """
    n = support.shape[1]
    rf_stride = np.cumprod(stride, axis=1)
    before = np.concatenate([np.ones((2, 1)), rf_stride[:, :n - 1]], axis=1)[:, :n]
    rf_size = 1 + np.cumsum(before * (support - 1), axis=1)
    rf_offset = 1 + np.cumsum(before * ((support - 1) / 2 - pad[[0, 2]]), axis=1)
    return rf_size, rf_offset, rf_stride


def _data_sizes(layers, input_size, support, stride, pad, res):
    """``[H W C N]`` of the input and of every layer's output (4 x (L+1))."""
    n = len(layers)
    sizes = np.empty((4, n + 1))
    sizes[:, 0] = input_size
    if res is not None:
        measured = _res_input_shape(res, 0)
        if measured is not None:
            sizes[:, 0] = measured
    for i, layer in enumerate(layers):
        prev = sizes[:, i]
        kind = str(_field(layer, "type", ""))
        forward_size = _field(layer, "getForwardSize") if kind == "custom" else None
        if forward_size is not None:
            out = np.asarray(forward_size(layer, prev.copy()), dtype=np.float64).ravel(order="F")
            if out.size > 4:
                raise ValueError(
                    f"{FNAME}: the getForwardSize of {layer_label(i, layer)} returned "
                    f"{out.size} numbers, "
                    f"expected at most 4 (H W C N)")
            sizes[:, i + 1] = np.concatenate([out, np.ones(4 - out.size)])
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                sizes[0, i + 1] = np.floor((prev[0] + pad[0, i] + pad[1, i] - support[0, i])
                                           / stride[0, i]) + 1
                sizes[1, i + 1] = np.floor((prev[1] + pad[2, i] + pad[3, i] - support[1, i])
                                           / stride[1, i]) + 1
            sizes[2:, i + 1] = prev[2:]
            if kind == "conv":
                filters = _filters(layer)
                if _numel(filters) > 0:
                    sizes[2, i + 1] = _filter_shape(filters)[3]
            elif kind in ("loss", "softmaxloss"):
                sizes[2:, i + 1] = 1
            elif kind == "custom":
                sizes[2, i + 1] = np.nan
        if res is not None:
            measured = _res_input_shape(res, i + 1)
            if measured is not None:
                sizes[:, i + 1] = measured
    return sizes


# ---------------------------------------------------------------------------
# MATLAB's number formats

def _special(value):
    """MATLAB's spelling of NaN and the infinities, or None."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return None


def _g4(value):
    value = float(value)
    return _special(value) or "%.4g" % value


def _d(value):
    """MATLAB's ``%d``: integers as such, other values in ``%e``."""
    value = float(value)
    special = _special(value)
    if special:
        return special
    return "%d" % value if value == int(value) else "%e" % value


def _pdims(values):
    """``'5'`` when all entries agree, else ``'3x2'``, ``'0x0x1x1'``."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if np.all(values == values[0]):
        return _g4(values[0])
    return "x".join(_g4(v) for v in values)


def _pmem(nbytes):
    """Bytes as ``'%.0f'`` B, KB, MB or GB (powers of 1024)."""
    nbytes = float(nbytes)
    if math.isnan(nbytes):
        return "NaN"
    for unit, scale in (("B", 1), ("KB", 1024), ("MB", 1024 ** 2)):
        if nbytes < 1024 * scale:
            return "%.0f%s" % (nbytes / scale, unit)
    value = nbytes / 1024 ** 3
    return (_special(value) or "%.0f" % value) + "GB"


# ---------------------------------------------------------------------------
# table layout

def _ascii(table):
    widths = [max(len(row[j]) for row in table) for j in range(len(table[0]))]
    lines = []
    for row in table:
        cells = ("-" * w if cell == "-" else cell.rjust(w) for cell, w in zip(row, widths))
        lines.append("".join(f"{cell}|" for cell in cells) + "\n")
    return "".join(lines)


def _latex_escape(text):
    return text.replace("\\", "\\\\").replace("_", "\\char`_")


def _latex(table):
    widths = [max(len(row[j]) for row in table) for j in range(len(table[0]))]
    lines = ["\\begin{tabular}{%s}\n" % ("c" * len(widths))]
    for row in table:
        if row[0] == "-":
            lines.append("\\hline\n")
            continue
        lines.append("&".join(_latex_escape(cell).rjust(w) for cell, w in zip(row, widths))
                     + "\\\\\n")
    lines.append("\\end{tabular}\n")
    return "".join(lines)


def _csv(table):
    return "".join("".join(f'"{cell}",' for cell in row) + "\n"
                   for row in table if row[0] != "-")


_LAYOUTS = {"ascii": _ascii, "latex": _latex, "csv": _csv}


def _cell(key, column, layers, info, dilate):
    """Text of row ``key`` for table column ``column`` (0 = the input)."""
    sizes = info.dataSize[:, column]
    if key == "-":
        return "-"
    if key == "layer":
        return "%d" % column
    if key == "dsize":
        return _pdims(sizes[:2])
    if key == "ddepth":
        return _d(sizes[2])
    if key == "dnum":
        return _d(sizes[3])
    if key == "xmem":
        return _pmem(np.prod(sizes) * 4)
    if column == 0:
        return "input" if key == "type" else "n/a"
    index = column - 1
    layer = layers[index]
    kind = str(_field(layer, "type", ""))
    if key == "name":
        return str(_field(layer, "name", ""))
    if key == "type":
        if kind == "pool":
            return "apool" if str(_field(layer, "method", "max")).lower() == "avg" else "mpool"
        return _TYPE_ABBREVIATIONS.get(kind, kind)
    if key in ("filtd", "nfilt", "filtdil"):
        if kind != "conv":
            return "n/a"
        if key == "filtdil":
            return _pdims(dilate[:, index])
        return _d(_filter_shape(_filters(layer))[2 if key == "filtd" else 3])
    if key == "wmem":
        return _pmem(_param_count(layer) * 4)
    table_field = {"support": "support", "stride": "stride", "pad": "pad",
                   "rfsize": "receptiveFieldSize", "rfoffset": "receptiveFieldOffset",
                   "rfstride": "receptiveFieldStride"}[key]
    return _pdims(info[table_field][:, index])


def _render(layers, info, dilate, fmt, max_columns):
    table = [[label] + [_cell(key, c, layers, info, dilate) for c in range(len(layers) + 1)]
             for key, label in _ROWS]
    layout = _LAYOUTS[fmt]
    chunks = []
    for start in range(1, len(table[0]), max_columns):
        chunk = [[row[0]] + row[start:start + max_columns] for row in table]
        chunks.append(layout(chunk) + "\n")
    param_bytes = 4 * sum(_param_count(layer) for layer in layers)
    data_bytes = float(np.sum(np.prod(info.dataSize, axis=0) * 4))
    summary = [
        ["parameter memory", "%s (%.2g parameters)" % (_pmem(param_bytes), param_bytes / 4)],
        ["data memory", "%s (for batch size %s)" % (_pmem(data_bytes), _d(info.dataSize[3, 0]))],
    ]
    chunks.append(layout(summary) + "\n")
    return "".join(chunks)


# ---------------------------------------------------------------------------

def vl_simplenn_display(net, res=None, *args, **opts):
    """Display the structure of a SimpleNN network.

    ``vl_simplenn_display(net)`` prints statistics about the network
    ``net``: for each layer its support, stride and padding, the receptive
    field of its output on the network input, the size of the data it
    produces and the memory taken by that data and by its parameters.

    ``info = vl_simplenn_display(net)`` also returns these statistics.
    MatConvNet prints only when no output is requested; Python cannot tell,
    so printing is controlled by the ``print`` option:
    ``info = vl_simplenn_display(net, print=False)`` returns the statistics
    and the text (``info.text``, MatConvNet's second output ``STR``)
    without printing anything.

    ``vl_simplenn_display(net, res)`` takes the data sizes from the arrays
    of a ``res`` computed by :func:`vl_simplenn` (``res[i].x``) wherever they
    are present, and computes the others as usual (an addition to
    MatConvNet).

    Parameters
    ----------
    net : mapping
        The network: ``layers`` (a list of layer mappings) and optionally
        ``meta``.  Plain dicts and Structs, tidied or not: missing fields
        take their defaults (stride 1, pad 0, dilate 1, no name, max
        pooling).  Conv layers may keep their filters in ``weights[0]`` or in
        the legacy field ``filters``.
    res : list of records, optional
        The ``len(net.layers) + 1`` records returned by ``vl_simplenn``
        (attribute or key ``x``).  Cleared entries (``x`` is ``None``) are
        computed from the previous size.  A string here starts the
        MATLAB-style ``'Name', value`` option pairs.

    Other Parameters
    ----------------
    inputSize : [H, W, C, N], default: from the net
        The size of the input tensor ``X`` that will be passed to the
        network.  It is used to estimate the memory required to process the
        network.  When not given, ``net.meta.inputSize`` is used, else
        ``net.meta.normalization.imageSize`` (else the legacy
        ``net.normalization.imageSize``), assuming a batch size of one image
        unless ``batchSize`` says otherwise; unknown entries are NaN.  Fewer
        than four numbers fill the leading entries of ``[NaN NaN NaN 1]``.
    batchSize : int, default None
        The number of data points in a batch in estimating the memory
        consumption, overriding the last dimension of ``inputSize``.
    maxNumColumns : int, default 18
        Maximum number of columns in a table.  Wider tables are broken into
        multiple smaller ones, each repeating the row labels.
    format : 'ascii', 'latex' or 'csv', default 'ascii'
        The text format of the tables.
    print : bool, default True
        Write the text to ``sys.stdout``.  With ``False`` nothing is printed
        and the text is only returned in ``info.text``.

    Returns
    -------
    info : Struct
        ``support``, ``stride`` (2 x L: rows, columns), ``pad`` (4 x L:
        top, bottom, left, right), ``receptiveFieldSize``,
        ``receptiveFieldOffset``, ``receptiveFieldStride`` (2 x L) and
        ``dataSize`` (4 x (L+1): ``H W C N`` of the input, then of the output
        of each layer), all float64 numpy arrays (NaN where unknown), and
        ``text``, the printed table.

    Notes
    -----
    The support of a conv layer is its filter size enlarged by the dilation,
    ``(F - 1) * dilate + 1``; of a pool layer the pool size; of every other
    layer (convt and bnorm included) ``1 x 1``.  With ``cs_k`` the product of
    the strides of the layers before ``k``, the receptive field of layer
    ``l`` on the network input has::

        size   = 1 + sum_{k<=l} cs_k (support_k - 1)
        offset = 1 + sum_{k<=l} cs_k ((support_k - 1)/2 - padTopOrLeft_k)
        stride = prod_{k<=l} stride_k

    Each layer maps ``H`` to ``floor((H + PT + PB - supportY) / strideY) + 1``
    (likewise ``W``; convt is treated like that as well, as in MatConvNet);
    conv layers set the depth to their number of filters, loss layers the
    depth and count to 1, custom layers use their ``getForwardSize(layer,
    size)`` when they have one (else the depth is NaN).  Data memory is
    ``4 * prod(size)`` bytes per column; parameter memory ``4`` bytes per
    weight.

    Examples
    --------
    >>> import numpy as np
    >>> net = {"layers": [{"type": "conv", "weights": [np.zeros((5, 5, 1, 20), np.float32),
    ...                                                 np.zeros(20, np.float32)]},
    ...                   {"type": "pool", "method": "max", "pool": [2, 2], "stride": 2}]}
    >>> info = vl_simplenn_display(net, inputSize=[28, 28, 1, 100], print=False)
    >>> info.dataSize[:, -1]
    array([ 12.,  12.,  20., 100.])
    >>> info.receptiveFieldSize[:, -1]
    array([6., 6.])
    """
    res, args = split_derivative(FNAME, (res,) + tuple(args))
    o = parse_options(FNAME, args, opts, {"inputSize": None, "batchSize": None,
                                          "maxNumColumns": 18, "format": "ascii",
                                          "print": True})
    fmt = o.format.lower() if isinstance(o.format, str) else o.format
    if fmt not in _FORMATS:
        raise ValueError(f"{FNAME}: format must be one of {', '.join(map(repr, _FORMATS))}, "
                         f"got {o.format!r}")
    max_columns = as_int(o.maxNumColumns, FNAME, "maxNumColumns", minimum=1)

    layers = _field(net, "layers")
    if layers is None:
        raise ValueError(f"{FNAME}: net has no 'layers'")
    layers = list(layers)
    if res is not None and len(res) != len(layers) + 1:
        raise ValueError(f"{FNAME}: res must have len(net.layers) + 1 = {len(layers) + 1} "
                         f"entries, got {len(res)}")

    support, stride, pad, dilate = _geometry(layers)
    rf_size, rf_offset, rf_stride = _receptive_fields(support, stride, pad)
    data_size = _data_sizes(layers, _input_size(net, o), support, stride, pad, res)
    info = Struct(support=support, stride=stride, pad=pad,
                  receptiveFieldSize=rf_size, receptiveFieldOffset=rf_offset,
                  receptiveFieldStride=rf_stride, dataSize=data_size)
    info.text = text = _render(layers, info, dilate, fmt, max_columns)
    if o["print"]:
        sys.stdout.write(text)
    return info
