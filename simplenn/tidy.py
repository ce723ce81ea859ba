"""vl_simplenn_tidy: complete and upgrade a SimpleNN network (MatConvNet's
``vl_simplenn_tidy.m``)."""

from collections.abc import Mapping

import numpy as np

from vlnn._backend import get_array_module, shape4

from .naming import layer_label
from .struct import Struct

# Missing fields are filled with these values (MatConvNet's table), after
# ``name`` and ``precious`` which every non-custom layer gets.  Each entry is
# a factory so that every layer receives its own mutable objects (``opts``
# lists, the LRN ``param`` array): a tidied net never aliases its defaults.
LAYER_DEFAULTS = {
    "conv": (("pad", lambda: 0), ("stride", lambda: 1), ("dilate", lambda: 1),
             ("opts", list)),
    # MatConvNet lists 'pool' twice in its switch, so the second case (the one
    # with method = 'max') is never reached and a pool layer without 'method'
    # fails later in vl_simplenn.  We apply the intended default.
    "pool": (("method", lambda: "max"), ("pad", lambda: 0), ("stride", lambda: 1),
             ("opts", list)),
    "convt": (("crop", lambda: 0), ("upsample", lambda: 1), ("numGroups", lambda: 1),
              ("opts", list)),
    "relu": (("leak", lambda: 0),),
    "dropout": (("rate", lambda: 0.5),),
    "normalize": (("param", lambda: np.array([[5, 1, 0.0001 / 5, 0.75]])),),
    "lrn": (("param", lambda: np.array([[5, 1, 0.0001 / 5, 0.75]])),),
    "pdist": (("noRoot", lambda: False), ("aggregate", lambda: False), ("p", lambda: 2),
              ("epsilon", lambda: 1e-3), ("instanceWeights", lambda: None)),
    "bnorm": (("epsilon", lambda: 1e-5),),
}



def layer_default(kind, field):
    """A fresh copy of tidy's default for ``field`` of a ``kind`` layer
    (``KeyError`` when tidy has none): vl_simplenn uses it for untidied
    layers, so the table lives here only."""
    for name, make in LAYER_DEFAULTS.get(kind, ()):
        if name == field:
            return make()
    raise KeyError(field)


# Layer types whose parameters may come as legacy 'filters'/'biases' fields.
_WEIGHTED = ("conv", "convt", "bnorm")


def vl_simplenn_tidy(net):
    """Fix an incomplete or outdated SimpleNN network.

    ``tnet = vl_simplenn_tidy(net)`` upgrades ``net`` to the current SimpleNN
    format and fills in every missing layer field with its default, so that
    the rest of the toolbox can rely on the fields being there.  The result
    is a **new** network with exactly two fields, ``layers`` and ``meta``
    (other top-level fields are dropped); ``net`` is never modified.

    Conversions of legacy networks (MatConvNet before beta18):

    - top-level ``net.classes`` and ``net.normalization`` move to
      ``meta.classes`` and ``meta.normalization`` (overriding those of
      ``meta``);
    - ``meta.normalization.cropSize`` is computed as
      ``imageSize[:2] / (imageSize[:2] + border)`` (a ``1 x 2`` float64
      array) when ``border`` and ``imageSize`` are given but ``cropSize`` is
      not;
    - ``conv``, ``convt`` and ``bnorm`` layers with ``filters`` and
      ``biases`` instead of ``weights`` get ``weights = [filters, biases]``
      and lose the two old fields;
    - a ``bnorm`` layer with fewer than three weights gets the moments
      ``weights[2] = zeros(numel(weights[0]), 2)`` in float32;
    - legacy per-parameter fields (``filtersLearningRate``, ``momentum``,
      ...) are left in place; nothing reads them.

    Defaults of missing fields (existing values are never changed):

    ==================  ====================================================
    layer type          defaults
    ==================  ====================================================
    all but ``custom``  ``name = 'layer%d'`` (1-based index),
                        ``precious = False``, ``weights = []``
    ``conv``            ``pad 0``, ``stride 1``, ``dilate 1``, ``opts []``
    ``pool``            ``method 'max'``, ``pad 0``, ``stride 1``, ``opts []``
    ``convt``           ``crop 0``, ``upsample 1``, ``numGroups 1``,
                        ``opts []``
    ``relu``            ``leak 0``
    ``dropout``         ``rate 0.5``
    ``normalize``,      ``param [[5, 1, 0.0001/5, 0.75]]`` (a ``1 x 4``
    ``lrn``             float64 array)
    ``pdist``           ``noRoot False``, ``aggregate False``, ``p 2``,
                        ``epsilon 1e-3``, ``instanceWeights None``
    ``bnorm``           ``epsilon 1e-5`` (``vl_nnbnorm``'s own default is
                        1e-4)
    ==================  ====================================================

    Other types (``softmax``, ``softmaxloss``, ``loss``, ``sigmoid``,
    ``noffset``, ``spnorm``) only get ``name``, ``precious`` and
    ``weights``.  ``custom`` layers are copied unchanged, without any
    default.  A layer of an unknown type is kept (with ``name``,
    ``precious`` and ``weights``) without complaint, as in MatConvNet;
    :func:`vl_simplenn` rejects it when the network is run.  Type names are
    matched exactly (case-sensitive), as MATLAB's ``switch`` does.

    Conv and convt filters are returned 4-D: MATLAB drops trailing
    singleton dimensions when it stores an array (a ``3x3x64x1`` filter,
    K = 1, is stored as ``3x3x64``; a ``5x5x1x1`` one as ``5x5``), and the
    4-D view of MatConvNet's blocks (missing trailing dimensions are 1) is
    restored here.  No other value is converted, except that a ``weights``
    tuple becomes a list (MATLAB's cell), so that trainers can assign to it.

    Parameters
    ----------
    net : mapping
        The network: ``layers`` (a list of layer mappings, each with a
        ``type``) and optionally ``meta``, ``classes``, ``normalization``.
        Plain dicts and :class:`~simplenn.struct.Struct` both work.

    Returns
    -------
    tnet : Struct
        ``tnet.layers`` is a list of :class:`Struct`, ``tnet.meta`` a
        :class:`Struct`.  Dicts and lists are new objects; arrays (and the
        callables of custom layers) are shared with ``net``, which tidy
        never mutates.  As with MATLAB's copy-on-write, copy an array before
        changing it in place if ``net`` must stay as it was.

    Raises
    ------
    TypeError
        If ``net`` is not a mapping.
    ValueError
        If ``net`` has no ``layers``, ``layers`` is not a list, a layer is
        not a mapping or has no string ``type`` (the message names the
        layer), a legacy layer lacks ``filters``/``biases``, or a ``bnorm``
        layer has no weights to size its moments from.

    Notes
    -----
    Deviation from MatConvNet: a ``pool`` layer without ``method`` gets
    ``'max'``.  MatConvNet intended this default, but its duplicated
    ``case 'pool'`` means it is never applied (such a layer then fails in
    ``vl_simplenn``).

    Examples
    --------
    >>> net = vl_simplenn_tidy({'layers': [{'type': 'relu'}, {'type': 'softmax'}]})
    >>> net.layers[0].name, net.layers[0].leak, net.layers[1].precious
    ('layer1', 0, False)
    """
    if not isinstance(net, Mapping):
        raise TypeError(f"vl_simplenn_tidy: net must be a mapping (dict or Struct), "
                        f"got {type(net).__name__}")
    if "layers" not in net:
        raise ValueError("vl_simplenn_tidy: the network has no 'layers' field "
                         f"(fields: {', '.join(map(str, net)) or 'none'})")
    layers = net["layers"]
    if not isinstance(layers, (list, tuple)):
        raise ValueError("vl_simplenn_tidy: net.layers must be a list of layer mappings, "
                         f"got {type(layers).__name__}")

    meta = net.get("meta")
    if meta is None:
        meta = Struct()
    elif isinstance(meta, Mapping):
        meta = _copy(meta)
    else:
        raise ValueError(f"vl_simplenn_tidy: net.meta must be a mapping, got {type(meta).__name__}")
    for legacy in ("classes", "normalization"):
        if legacy in net:
            meta[legacy] = _copy(net[legacy])
    _tidy_normalization(meta)

    return Struct(layers=[_tidy_layer(layer, index) for index, layer in enumerate(layers)],
                  meta=meta)


def _copy(value):
    """New dicts (as :class:`Struct`), lists and tuples all the way down;
    other values (arrays, callables, ``None``) are shared."""
    if isinstance(value, Mapping):
        return Struct((key, _copy(item)) for key, item in value.items())
    if isinstance(value, list):
        return [_copy(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_copy(item) for item in value)
    return value


def _tidy_normalization(meta):
    """Legacy ``border``/``imageSize`` -> ``cropSize`` (in place on the copy)."""
    norm = meta.get("normalization")
    if not isinstance(norm, Mapping) or "cropSize" in norm:
        return
    if "border" not in norm or "imageSize" not in norm:
        return
    try:
        image_size = np.asarray(norm["imageSize"], dtype=np.float64).ravel(order="F")
        border = np.asarray(norm["border"], dtype=np.float64).ravel(order="F")
    except (TypeError, ValueError):
        raise ValueError("vl_simplenn_tidy: meta.normalization.imageSize and .border must be "
                         f"numeric, got {norm['imageSize']!r} and {norm['border']!r}") from None
    if image_size.size < 2 or border.size not in (1, 2):
        raise ValueError("vl_simplenn_tidy: meta.normalization.imageSize needs at least 2 "
                         f"elements and .border 1 or 2, got {norm['imageSize']!r} and "
                         f"{norm['border']!r}")
    size = image_size[:2]
    norm["cropSize"] = (size / (size + border)).reshape(1, 2)


def _where(index, layer=None):
    """How an error message names a layer (:func:`simplenn.naming.layer_label`)."""
    return layer_label(index, layer)


def _tidy_layer(layer, index):
    if not isinstance(layer, Mapping):
        raise ValueError(f"vl_simplenn_tidy: {_where(index)} must be a mapping with a 'type' "
                         f"field, got {type(layer).__name__}")
    if "type" not in layer:
        raise ValueError(f"vl_simplenn_tidy: {_where(index, layer)} has no 'type' field "
                         f"(fields: {', '.join(map(str, layer)) or 'none'})")
    kind = layer["type"]
    if not isinstance(kind, str):
        raise ValueError(f"vl_simplenn_tidy: {_where(index, layer)} has a non-string type "
                         f"{kind!r}")
    # New containers all the way down; arrays and callables are shared.
    layer = _copy(layer)
    if kind == "custom":
        return layer

    if kind in _WEIGHTED and "weights" not in layer:
        missing = [f for f in ("filters", "biases") if f not in layer]
        if missing:
            raise ValueError(f"vl_simplenn_tidy: {_where(index, layer)} ({kind}) has neither "
                             f"'weights' nor {' and '.join(repr(m) for m in missing)}")
        layer["weights"] = [layer.pop("filters"), layer.pop("biases")]
    if "weights" not in layer:
        layer["weights"] = []
    elif isinstance(layer["weights"], tuple):
        layer["weights"] = list(layer["weights"])

    weights = layer["weights"]
    if kind in ("conv", "convt") and isinstance(weights, list) and weights:
        weights[0] = _as_4d(weights[0])
    if kind == "bnorm" and isinstance(weights, list) and len(weights) < 3:
        if not weights:
            raise ValueError(f"vl_simplenn_tidy: {_where(index, layer)} (bnorm) has no weights; "
                             "expected [multipliers, biases] or [multipliers, biases, moments]")
        layer["weights"] = weights + [None] * (2 - len(weights)) + [_zero_moments(weights[0])]

    defaults = (("name", lambda: f"layer{index + 1}"), ("precious", lambda: False))
    for field, make in defaults + LAYER_DEFAULTS.get(kind, ()):
        if field not in layer:
            layer[field] = make()
    return layer


def _as_4d(filters):
    """MatConvNet's 4-D view of a filter bank stored with MATLAB's trailing
    singleton dimensions dropped.  Returns a view (never mutates)."""
    shape = getattr(filters, "shape", None)
    if shape is None or filters.size == 0 or len(shape) == 4:
        return filters
    return filters.reshape(shape4(shape), order="F")


def _zero_moments(multipliers):
    """``zeros(numel(multipliers), 2, 'single')`` on the multipliers' device."""
    count = 0 if multipliers is None else int(np.size(multipliers))
    xp = get_array_module(multipliers) if hasattr(multipliers, "shape") else np
    return xp.zeros((count, 2), dtype=np.float32)
