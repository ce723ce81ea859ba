"""vl_argparse: MatConvNet's parsing of ``'Name', value`` option lists.

Almost every MatConvNet script and example starts with::

    opts.batchSize = 100 ;
    opts.train = struct() ;
    opts = vl_argparse(opts, varargin) ;

which ports line by line to::

    opts = {"batchSize": 100, "train": {}}
    opts = vl_argparse(opts, varargin)

A MATLAB struct is any mapping here (a ``dict``, ``simplenn.Struct``).
"""

from collections.abc import Mapping

__all__ = ["vl_argparse"]

FNAME = "vl_argparse"


def _is_struct(value):
    return isinstance(value, Mapping)


def _new_like(template, items):
    """A struct of ``template``'s type (a ``dict`` subclass such as
    ``simplenn.Struct`` stays one; other mappings give a ``dict``)."""
    if isinstance(template, dict):
        try:
            return type(template)(items)
        except TypeError:
            pass
    return dict(items)


def _copy_struct(value):
    """MATLAB's value semantics for structs: nested mappings are copied, so
    editing the result never edits the defaults or the arguments (arrays
    and other values are shared, as nobody edits them in place)."""
    if _is_struct(value):
        return _new_like(value, ((k, _copy_struct(v)) for k, v in value.items()))
    return value


def _find_field(name, fields):
    """The one field of ``fields`` matching ``name`` case-insensitively (as
    MATLAB's ``strcmpi``), else with underscores ignored as well (the
    project's rule for Python spellings such as ``batch_size``); ``None``
    when there is no single match."""
    for norm in (str.lower, lambda s: s.lower().replace("_", "")):
        hits = [f for f in fields if isinstance(f, str) and norm(f) == norm(name)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            return None
    return None


def _dotted(param, value):
    """``('train.learningRate', v)`` -> ``('train', {'learningRate': v})``,
    nested for sub-sub-fields."""
    parts = param.split(".")
    for part in reversed(parts[1:]):
        value = {part: value}
    return parts[0], value


def _as_items(args):
    """MATLAB's ``if ~iscell(args), args = {args}``: a list or tuple is the
    cell of pairs and structs, anything else (a mapping) one element."""
    if isinstance(args, (list, tuple)):
        return list(args)
    if args is None:
        return []
    return [args]


def vl_argparse(opts, args, *flags, nargout=1):
    """Parse a list of parameter-value pairs into a struct of options.

    ``OPTS = vl_argparse(OPTS, ARGS)`` updates the struct ``OPTS`` from the
    pairs ``ARGS = ['PAR1', VAL1, ..., 'PARN', VALN]``.  A parameter that
    matches no field of ``OPTS`` is an error.

    ``OPTS, ARGS = vl_argparse(OPTS, ARGS, nargout=2)`` (MATLAB's
    ``[OPTS, ARGS] = VL_ARGPARSE(OPTS, ARGS)``) returns the pairs that match
    no field in ``ARGS`` instead of raising, so another parser can take
    them.

    MATLAB::

        opts.learningRate = 0.001 ;
        opts.train = struct('gpus', []) ;
        [opts, varargin] = vl_argparse(opts, varargin) ;
        opts = vl_argparse(opts, {'train.gpus', 1}, 'merge') ;

    Python::

        opts = {"learningRate": 0.001, "train": {"gpus": []}}
        opts, varargin = vl_argparse(opts, varargin, nargout=2)
        opts = vl_argparse(opts, ["train.gpus", 1], "merge")

    Parameters
    ----------
    opts : mapping
        The defaults (MATLAB's struct): a ``dict``, a ``simplenn.Struct`` or
        any other mapping.  It is not modified: a new struct of the same
        type (a ``dict`` for mappings that are not dicts) is returned, its
        nested structs copied.
    args : list or tuple, or mapping
        MATLAB's cell ``varargin``: ``'Name', value`` pairs, where any pair
        may be replaced by a mapping whose fields are names and values; a
        single mapping (a struct) is one such element.  ``None`` is an
        empty list.
    *flags : str
        ``'nonrecursive'``: struct values are copied as given (replacing
        the default struct) and a mapping in ``args`` is not expanded into
        pairs (it is an error, as in MatConvNet), which is faster.
        ``'merge'``: parameters that match no field are added to ``OPTS``
        under the name given, instead of an error.  Case-insensitive; at
        most the two.
    nargout : {1, 2}, default 1
        The number of MATLAB output arguments: with 2, ``(opts, rest)`` is
        returned.

    Returns
    -------
    opts : mapping
        The updated options.  A name matches a field case-insensitively
        (MATLAB's ``strcmpi``; a Python spelling with underscores such as
        ``batch_size`` also matches ``batchSize`` when nothing matches
        otherwise) and the field keeps its spelling in ``OPTS``.
        ``'field.subfield'`` stands for ``field`` with the value
        ``{'subfield': value}`` (also deeper).  Unless ``'nonrecursive'``,
        a field whose default is a non-empty struct is updated field by
        field from a struct value (recursively, with the same flags), and
        assigning it a value that is not a struct is an error; a struct
        value for any other field is merged into the default when that is
        an (empty) struct, and copied otherwise.
    rest : list, only with ``nargout=2``
        The unmatched ``'Name', value`` pairs, in order; an unmatched field
        of a mapping in ``args`` comes back in a mapping in its place (empty
        ones are left out), and one of a struct-valued parameter as that
        parameter with a mapping of the unmatched subfields.  Always empty
        with ``'merge'``.

    Raises
    ------
    TypeError
        ``opts`` is not a mapping.
    ValueError
        An unknown parameter (naming it), an unknown flag or more than two,
        an element of ``args`` in the name position that is neither a
        string nor a mapping, a name without its value, a non-struct value
        for a struct parameter, ``nargout`` other than 1 or 2.

    Notes
    -----
    Departures from ``vl_argparse.m``, where MatConvNet fails: a name
    given without a value is a clear error, a struct value for a field whose
    default is not a struct replaces it (MatConvNet errors inside its
    'merge' call), and the unmatched subfields of a struct-valued parameter
    are returned with ``nargout=2`` (MatConvNet drops them).

    Examples
    --------
    >>> opts = {"batchSize": 256, "train": {"learningRate": 0.1, "gpus": []}}
    >>> opts = vl_argparse(opts, ["BATCHSIZE", 10, "train.gpus", 1])
    >>> opts["batchSize"], opts["train"]
    (10, {'learningRate': 0.1, 'gpus': 1})
    >>> vl_argparse({"a": 1}, ["a", 2, "b", 3], nargout=2)
    ({'a': 2}, ['b', 3])
    """
    if not _is_struct(opts):
        raise TypeError(f"{FNAME}: OPTS must be a structure (a mapping), "
                        f"got {type(opts).__name__}")
    if nargout not in (1, 2):
        raise ValueError(f"{FNAME}: nargout must be 1 or 2, got {nargout!r}")
    if len(flags) > 2:
        raise ValueError(f"{FNAME}: there can be at most two flags, got {list(flags)!r}")
    recursive, merge = True, False
    for flag in flags:
        name = flag.lower() if isinstance(flag, str) else None
        if name == "nonrecursive":
            recursive = False
        elif name == "merge":
            merge = True
        else:
            raise ValueError(f"{FNAME}: unknown flag {flag!r}; the flags are 'nonrecursive' "
                             f"and 'merge'")
    out, rest = _parse(opts, _as_items(args), flags, recursive, merge, nargout == 2)
    return (out, rest) if nargout == 2 else out


def _parse(opts, items, flags, recursive, merge, keep_rest):
    original = opts  # struct-ness of a field is judged on the defaults
    opts = _copy_struct(opts)
    rest = []
    i = 0
    while i < len(items):
        item = items[i]
        if recursive and _is_struct(item):
            pairs = [x for k, v in item.items() for x in (k, v)]
            opts, unmatched = _parse(opts, pairs, flags, recursive, merge, keep_rest)
            if unmatched:
                rest.append(_new_like(item, zip(unmatched[0::2], unmatched[1::2])))
            i += 1
            continue
        if not isinstance(item, str):
            raise ValueError(
                f"{FNAME}: expected either a param-value pair or a structure at position {i} "
                f"of args, got {type(item).__name__} {item!r}")
        if i + 1 >= len(items):
            raise ValueError(f"{FNAME}: parameter '{item}' has no value")
        param, value = item, items[i + 1]
        if "." in param:
            param, value = _dotted(param, value)
        field = _find_field(param, list(opts))
        if field is None:
            if merge:
                field = param
            elif keep_rest:
                rest += [item, items[i + 1]]
                i += 2
                continue
            else:
                raise ValueError(f"{FNAME}: unknown parameter '{param}'; the parameters are: "
                                 f"{', '.join(map(str, opts)) or '(none)'}")

        default = original.get(field) if field in original else None
        if not recursive:
            opts[field] = _copy_struct(value)
        elif _is_struct(default) and len(default) > 0:
            if not _is_struct(value):
                raise ValueError(
                    f"{FNAME}: cannot assign a non-struct value to the struct parameter "
                    f"'{field}' (got {type(value).__name__})")
            opts[field], unmatched = _parse(opts[field], _as_items(value), flags, recursive,
                                            merge, keep_rest)
            if unmatched:
                # the subfields come back as one struct (MatConvNet drops them)
                rest += [field, _new_like(value, _struct_items(unmatched))]
        elif _is_struct(value) and _is_struct(opts.get(field)):
            opts[field] = vl_argparse(opts[field], value, "merge")
        else:
            opts[field] = _copy_struct(value)
        i += 2
    return opts, rest


def _struct_items(rest):
    """Pairs and mappings (a ``rest`` list) as one list of (name, value)."""
    items = []
    i = 0
    while i < len(rest):
        if _is_struct(rest[i]):
            items += list(rest[i].items())
            i += 1
        else:
            items.append((rest[i], rest[i + 1]))
            i += 2
    return items
