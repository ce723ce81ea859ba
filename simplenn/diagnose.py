"""vl_simplenn_diagnose: per-layer ranges of parameters, data and derivatives
(MATCONVNET_SEMANTICS.md section 26).

matplotlib is optional: it is imported only when this function is called,
and only its object-oriented API with the Agg canvas is used, so the plot
works headless and never opens a window.
"""

from collections.abc import Mapping

import numpy as np

from vlnn._backend import to_host

FNAME = "vl_simplenn_diagnose"

# Layers whose parameters (and parameter derivatives) are plotted.
_PARAM_TYPES = ("conv", "bnorm")

# The subplots, top to bottom: each one's statistic and its y label.
_PANELS = ("filters", "biases", "x", "dzdx", "dfilters", "dbiases")


def _get(obj, name):
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name, None)
    return getattr(obj, name, None)


def _item(values, index):
    """``values[index]`` of a cell (list, tuple or numpy object array as
    ``scipy.io.loadmat`` returns), or None when there is none."""
    if values is None:
        return None
    if isinstance(values, np.ndarray) and values.dtype == object:
        values = values.ravel(order="F")
    return values[index] if len(values) > index else None


def _parameter(layer, index):
    """``weights[index]``, else the legacy ``filters`` / ``biases`` field."""
    weights = _get(layer, "weights")
    if weights is not None:
        return _item(weights, index)
    return _get(layer, ("filters", "biases")[index])


def _host(a):
    """A numpy array (CuPy arrays are gathered)."""
    return np.asarray(to_host(a))


def _numel(a):
    if a is None:
        return 0
    return int(a.size) if hasattr(a, "size") else int(np.size(a))


def _range(a):
    """(mean, min, max) of an array: the mean includes NaNs, min and max skip
    them, as MATLAB's do."""
    a = _host(a).astype(np.float64, copy=False).ravel()
    with np.errstate(invalid="ignore"):
        mean = float(np.mean(a))
    finite = a[~np.isnan(a)]
    if finite.size == 0:
        return mean, np.nan, np.nan
    return mean, float(finite.min()), float(finite.max())


def _statistics(net, res=None):
    """Per-layer (mean, min, max) of every plotted quantity.

    Returns a dict ``key -> array (3, n)`` (rows mean, min, max; NaN where a
    layer has no such value) for the keys ``filters``, ``biases`` and, with
    ``res``, ``x``, ``dzdx``, ``dfilters``, ``dbiases``.
    """
    layers = _get(net, "layers")
    if layers is None:
        raise ValueError(f"{FNAME}: net has no 'layers'")
    layers = list(layers)
    n = len(layers)
    stats = {key: np.full((3, n), np.nan) for key in _PANELS[:2 if res is None else 6]}
    if res is not None and len(res) < n:
        raise ValueError(f"{FNAME}: res must have at least len(net.layers) = {n} entries "
                         f"(vl_simplenn returns {n + 1}), got {len(res)}")

    def put(key, i, a, minimum):
        if _numel(a) >= minimum:
            stats[key][:, i] = _range(a)

    for i, layer in enumerate(layers):
        has_params = str(_get(layer, "type")) in _PARAM_TYPES
        if has_params:
            put("filters", i, _parameter(layer, 0), 1)
            put("biases", i, _parameter(layer, 1), 1)
        if res is not None:
            # as MatConvNet: x and dzdx only when they hold more than one number
            put("x", i, _get(res[i], "x"), 2)
            put("dzdx", i, _get(res[i], "dzdx"), 2)
            if has_params:
                dzdw = _get(res[i], "dzdw")
                put("dfilters", i, _item(dzdw, 0), 1)
                put("dbiases", i, _item(dzdw, 1), 1)
    return stats


def vl_simplenn_diagnose(net, res=None, figure=None, path=None):
    """Plot diagnostic information.

    ``vl_simplenn_diagnose(net)`` plots the average, minimum and maximum
    element of the filters (``weights[0]``) and biases (``weights[1]``) of
    every conv and bnorm layer of the network ``net``.

    ``vl_simplenn_diagnose(net, res)`` also plots the average, minimum and
    maximum element of the intermediate responses ``res[i].x``, of their
    derivatives ``res[i].dzdx`` (both only where they hold more than one
    number) and of the parameter derivatives ``res[i].dzdw[0]``,
    ``res[i].dzdw[1]`` of conv and bnorm layers, stored in ``res`` by
    :func:`vl_simplenn`.

    This function can be used to rapidly glance at the evolution of the
    parameters during training.

    Parameters
    ----------
    net : mapping
        The network (dicts or Structs; legacy ``filters``/``biases`` fields
        are read when a layer has no ``weights``).
    res : list of records, optional
        The output of ``vl_simplenn`` (attribute or key access to ``x``,
        ``dzdx``, ``dzdw``).  Entry ``i`` is plotted for layer ``i``.
    figure : matplotlib.figure.Figure, optional
        Figure to draw into; it is cleared first (MATLAB's ``clf``).  By
        default a new figure with an Agg canvas is created: nothing is
        shown on screen, and no pyplot state is touched.
    path : str or path-like, optional
        Also save the figure there (format from the extension, e.g. PNG).

    Returns
    -------
    figure : matplotlib.figure.Figure
        Two stacked subplots (``filters``, ``biases``), or six with ``res``
        (then ``x``, ``dzdx``, ``dfilters``, ``dbiases``); x axis the layer
        index ``1..n`` (MATLAB's numbering), blue circles at the mean with
        bars from the minimum to the maximum, NaN (nothing drawn) where a
        layer has no such value.  x label ``layer``, the first subplot
        titled ``coefficient ranges``, grids on.

    Raises
    ------
    ImportError
        matplotlib is not installed.

    Notes
    -----
    MatConvNet calls ``errorbar(1:n, mean, min, max)``, which MATLAB reads
    as bar *lengths* below and above the mean; the bars here span the actual
    ``[min, max]`` range, which is what the plot means to show.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as err:
        raise ImportError(f"{FNAME} needs matplotlib, which is not installed "
                          f"('pip install matplotlib')") from err

    stats = _statistics(net, res)
    panels = _PANELS[:len(stats)]
    n = next(iter(stats.values())).shape[1]

    if figure is None:
        figure = Figure(figsize=(8, 1.8 * len(panels) + 0.6), constrained_layout=True)
        FigureCanvasAgg(figure)
    elif not (hasattr(figure, "clf") and hasattr(figure, "add_subplot")):
        raise TypeError(f"{FNAME}: figure must be a matplotlib Figure, "
                        f"got {type(figure).__name__}")
    else:
        figure.clf()

    layer_index = np.arange(1, n + 1)
    for k, key in enumerate(panels):
        ax = figure.add_subplot(len(panels), 1, k + 1)
        mean, low, high = stats[key]
        # errorbar wants non-negative lengths below and above each mean
        with np.errstate(invalid="ignore"):
            below = np.where(np.isnan(mean), np.nan, np.maximum(mean - low, 0))
            above = np.where(np.isnan(mean), np.nan, np.maximum(high - mean, 0))
        ax.errorbar(layer_index, mean, yerr=np.vstack([below, above]), fmt="bo")
        ax.grid(True)
        ax.set_xlabel("layer")
        ax.set_ylabel(key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if n:
            ax.set_xlim(0.5, n + 0.5)
        if k == 0:
            ax.set_title("coefficient ranges")

    if path is not None:
        figure.savefig(path)
    return figure
