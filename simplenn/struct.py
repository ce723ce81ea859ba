"""A MATLAB-like struct: a dict whose fields are also attributes.

``net.layers[0].weights[0]`` and ``net['layers'][0]['weights'][0]`` are the
same thing.  Key access always works, also for fields that are Python
keywords or dict method names (``layer['class']``, ``s['keys']``).
"""

import numpy as np


class Struct(dict):
    """A dict with attribute access, printed like a MATLAB struct.

    Examples
    --------
    >>> layer = Struct(type='conv', stride=1)
    >>> layer.stride == layer['stride']
    True
    >>> layer.pad = 0
    >>> sorted(layer)
    ['pad', 'stride', 'type']
    """

    __slots__ = ()

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"struct has no field '{name}' (fields: {', '.join(map(str, self)) or 'none'})"
            ) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __dir__(self):
        return list(super().__dir__()) + [k for k in self if isinstance(k, str)]

    def copy(self):
        """A shallow copy, still a :class:`Struct`."""
        return Struct(self)

    def to_dict(self):
        """Plain dicts and lists all the way down (arrays are kept)."""
        return to_plain(self)

    def __repr__(self):
        return _format(self, 0)

    def __reduce__(self):
        return (Struct, (dict(self),))


_NO_VALUE = object()


def struct(value=_NO_VALUE, **fields):
    """Convert mappings (recursively, through lists and tuples) to
    :class:`Struct`; ``struct(a=1)`` builds one from keywords.  Other
    values (``None`` included) are returned as they are."""
    if value is _NO_VALUE:
        return Struct({k: struct(v) for k, v in fields.items()})
    if isinstance(value, dict):
        return Struct({k: struct(v) for k, v in value.items()})
    if isinstance(value, list):
        return [struct(v) for v in value]
    if isinstance(value, tuple):
        return tuple(struct(v) for v in value)
    return value


def to_plain(value):
    """The inverse of :func:`struct`: plain dicts and lists."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_plain(v) for v in value)
    return value


def _summary(value):
    """One-line description of a leaf value."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        if value.size <= 4 and len(value.shape) <= 2:
            text = np.array2string(np.asarray(value).ravel(), separator=" ")
            return f"{text} ({value.dtype})" if value.dtype.kind != "f" else text
        dims = "x".join(str(d) for d in value.shape) or "scalar"
        return f"[{dims} {value.dtype}]"
    if callable(value):
        return f"<function {getattr(value, '__name__', type(value).__name__)}>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _format(value, indent):
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "Struct()"
        width = max(len(str(k)) for k in value)
        lines = ["Struct("]
        for key, item in value.items():
            lines.append(f"{pad}  {str(key):>{width}}: {_format(item, indent + 1)}")
        lines.append(f"{pad})")
        return "\n".join(lines)
    if isinstance(value, (list, tuple)):
        if value and any(isinstance(v, dict) for v in value):
            lines = ["["]
            for i, item in enumerate(value):
                lines.append(f"{pad}  [{i}] {_format(item, indent + 1)}")
            lines.append(f"{pad}]")
            return "\n".join(lines)
        inner = ", ".join(_summary(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return _summary(value)
