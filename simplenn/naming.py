"""How every SimpleNN (and DagNN) error message names a layer.

One format everywhere: MatConvNet's 1-based layer number, the layer's name
in quotes when it has one, and the Python expression that reaches it::

    layer 4 'conv2' (net.layers[3])
    layer 1 (net.layers[0])            # a layer without a name
"""

from collections.abc import Mapping

__all__ = ["layer_label"]


def layer_label(index, layer=None):
    """The name of ``net.layers[index]`` in error messages.

    Parameters
    ----------
    index : int
        The 0-based Python position of the layer.
    layer : mapping or object, optional
        The layer; its ``name`` (a key, or an attribute for objects such as
        DagNN's layer records) is quoted when it is a non-empty string.

    Returns
    -------
    str
        ``"layer {index + 1} '{name}' (net.layers[{index}])"``, without the
        quoted name when there is none.

    Examples
    --------
    >>> layer_label(3, {"type": "conv", "name": "conv2"})
    "layer 4 'conv2' (net.layers[3])"
    >>> layer_label(0)
    'layer 1 (net.layers[0])'
    """
    if isinstance(layer, Mapping):
        name = layer.get("name")
    else:
        name = getattr(layer, "name", None)
    quoted = f" '{name}'" if isinstance(name, str) and name else ""
    return f"layer {index + 1}{quoted} (net.layers[{index}])"
