"""MatConvNet's ``DagNN.print``: tables of layers, parameters, variables,
memory and receptive fields, as ascii, LaTeX or CSV text, or the graph as
Graphviz ``dot`` text."""

import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np

from vlnn._options import parse_options

__all__ = ["print_net"]

_UNSET = object()


def print_net(net, inputSizes=None, *args, **opts):
    """Print information about a DagNN (MatConvNet's ``net.print``).

    ``print_net(net)`` (``net.print()``) prints a table of the layers
    (name, type, inputs, outputs, params, pad, stride) and of the memory
    used by parameters and variables; ``print_net(net, ['input', [224,
    224, 3, 1]])`` (or a dict) also prints the variables with the sizes
    computed from those of the inputs.  Tables are printed transposed, one
    column per layer/parameter/variable, split into chunks of
    ``MaxNumColumns`` columns.  The text is printed to standard output and
    returned.

    Options (keywords or ``'Name', value`` pairs; ``net.print('All',
    True)`` is accepted too, as in MATLAB):

    All : bool, default False
        Print everything below.
    Layers : '*', list of names or of 0-based indexes, default '*'
        The layers to list (``None`` or ``[]``: no layer table).
    Parameters : idem, default ``None`` (``'*'`` with ``All``)
        The parameters to list.
    Variables : idem, default ``None`` (``'*'`` with ``All`` or when
        input sizes or any positional argument is given)
        The variables to list.
    Memory : bool, default True
        Print the memory table (4 bytes per element, as single precision).
    Dependencies : bool, default ``All``
        Print the receptive field of every variable in each input.
    Format : 'ascii' (default), 'latex', 'csv', 'digraph' or 'dot'
        'digraph' and 'dot' give the whole graph as Graphviz dot text
        (variables, parameters and layers, with sizes and memory).
    FigurePath : str, default 'tempname.pdf'
        With 'dot' given explicitly, the dot text is also written next to
        this path (``.dot``) and compiled with Graphviz's ``dot`` when it
        is installed (format from the extension, PDF by default; a
        'tempname' stem is a fresh temporary name).
    dotArgs : str, default ''
        Extra arguments to ``dot``.
    MaxNumColumns : int, default 18
        Columns per table chunk.

    Returns
    -------
    str
        The printed text.
    """
    positional = inputSizes is not None
    if isinstance(inputSizes, str):     # called with options only
        args = (inputSizes,) + args
        inputSizes = None
    defaults = {"All": False, "Format": "ascii", "FigurePath": "tempname.pdf", "dotArgs": "",
                "Layers": "*", "Parameters": _UNSET, "Variables": _UNSET, "Memory": True,
                "Dependencies": _UNSET, "MaxNumColumns": 18}
    options = parse_options("DagNN.print", args, opts, defaults)
    show_all = bool(options.All)
    if options.Parameters is _UNSET:
        options.Parameters = "*" if show_all else None
    if options.Variables is _UNSET:
        options.Variables = "*" if show_all or positional else None
    if options.Dependencies is _UNSET:
        options.Dependencies = show_all
    fmt = str(options.Format).lower()
    if fmt not in ("ascii", "latex", "csv", "digraph", "dot"):
        raise ValueError(f"DagNN.print: unknown format '{options.Format}' "
                         "(ascii, latex, csv, digraph or dot)")
    max_columns = int(options.MaxNumColumns)
    if max_columns < 1:
        raise ValueError(f"DagNN.print: MaxNumColumns must be at least 1, got {max_columns}")

    var_sizes = net.getVarSizes(inputSizes if inputSizes is not None else [])
    param_sizes = [_matlab_size(param.value) for param in net.params]

    if fmt in ("digraph", "dot"):
        text = _dot(net, var_sizes, param_sizes)
        if fmt == "dot" and ("FigurePath" in {_norm(k) for k in opts} or
                             any(isinstance(a, str) and _norm(a) == "figurepath" for a in args)):
            _render_dot(text, str(options.FigurePath), str(options.dotArgs))
        sys.stdout.write(text)
        return text

    parts = [""]
    if not _empty(options.Layers):
        table = [["func", "-", "type", "inputs", "outputs", "params", "pad", "stride"]]
        for l in _select(net.layers, options.Layers):
            layer = net.layers[l]
            block = layer.block
            row = [layer.name, "-", _short_type(block.type_name()), " ".join(layer.inputs),
                   " ".join(layer.outputs), " ".join(layer.params),
                   _pdims(block.pad) if hasattr(block, "pad") else "n/a",
                   _pdims(block.stride) if hasattr(block, "stride") else "n/a"]
            _put(table, l + 1, row)
        parts += [_printtable(fmt, max_columns, table), "\n"]

    if not _empty(options.Parameters):
        table = [["param", "-", "dims", "mem", "fanout"]]
        for p in _select(net.params, options.Parameters):
            size = param_sizes[p]
            _put(table, p + 1, [net.params[p].name, "-", _pdims(size), _pmem(_prod(size) * 4),
                                f"{net.params[p].fanout}"])
        parts += [_printtable(fmt, max_columns, table), "\n"]

    if not _empty(options.Variables):
        table = [["var", "-", "dims", "mem", "fanin", "fanout"]]
        for v in _select(net.vars, options.Variables):
            size = var_sizes[v]
            var = net.vars[v]
            _put(table, v + 1, [var.name, "-", _pdims(size), _pmem(_prod(size) * 4),
                                f"{var.fanin}", f"{var.fanout}"])
        parts += [_printtable(fmt, max_columns, table), "\n"]

    if options.Memory:
        param_mem = sum(_mem(s) for s in param_sizes)
        var_mem = sum(_mem(s) for s in var_sizes)
        table = [["params", "vars", "total"],
                 [_pmem(param_mem), _pmem(var_mem), _pmem(param_mem + var_mem)]]
        parts += [_printtable(fmt, max_columns, table), "\n"]

    if options.Dependencies:
        inputs = net.getInputs()
        rfs = net.getVarReceptiveFields(inputs) if inputs else []
        for name, row in zip(inputs, rfs):
            table = [[f"rf in '{name}'", "-", "size", "stride", "offset"]]
            for v, rf in enumerate(row):
                table.append([net.vars[v].name, "-", _pdims(rf.size), _pdims(rf.stride),
                              _pdims(rf.offset)])
            parts += [_printtable(fmt, max_columns, table), "\n"]

    text = "".join(parts)
    sys.stdout.write(text)
    return text


def _norm(name):
    return name.lower().replace("_", "")


def _empty(selection):
    return selection is None or (not isinstance(selection, str) and np.size(selection) == 0) \
        or selection == ""


def _select(records, pattern):
    """MatConvNet's ``select``: '*' is everything, numbers are (0-based)
    indexes, names select the records with those names (in net order)."""
    if isinstance(pattern, str):
        if pattern == "*":
            return list(range(len(records)))
        pattern = [pattern]
    pattern = list(np.ravel(pattern)) if isinstance(pattern, np.ndarray) else list(pattern)
    if all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in pattern):
        for p in pattern:
            if not 0 <= p < len(records):
                raise IndexError(f"DagNN.print: index {p} out of range (0..{len(records) - 1})")
        return [int(p) for p in pattern]
    wanted = set(pattern)
    return [i for i, record in enumerate(records) if record.name in wanted]


def _put(table, row, values):
    """``table{row, :} = values`` growing the table with empty cells (MATLAB's [])."""
    while len(table) <= row:
        table.append([None] * len(table[0]))
    table[row] = values


def _short_type(name):
    return name[6:] if len(name) >= 7 and name.startswith("dagnn.") else name


def _matlab_size(value):
    """MATLAB's ``size`` of a parameter value: ``[0 0]`` for empty, at
    least two dimensions (a 1-D array is a row)."""
    if value is None:
        return [0, 0]
    shape = list(getattr(value, "shape", np.shape(value)))
    if len(shape) == 0:
        return [1, 1]
    if len(shape) == 1:
        return [1, shape[0]]
    return shape


def _prod(size):
    out = 1.0
    for s in size:
        out *= float(s)
    return out


def _mem(size):
    m = _prod(size) * 4
    return 0.0 if math.isnan(m) else m


def _g(x):
    """MATLAB's ``%.4g`` (NaN and Inf spelled as MATLAB does)."""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    return "%.4g" % x


def _pdims(x):
    if x is None:
        return "n/a"
    values = np.asarray(x, dtype=np.float64).ravel(order="F")
    if values.size == 0 or np.all(np.isnan(values)):
        return "n/a"
    if np.all(values == values[0]):
        return _g(values[0])
    return "x".join(_g(v) for v in values)


def _pmem(x):
    if math.isnan(x):
        return "NaN"
    if x < 1024:
        return "%.0fB" % x
    if x < 1024 ** 2:
        return "%.0fKB" % (x / 1024)
    if x < 1024 ** 3:
        return "%.0fMB" % (x / 1024 ** 2)
    return "%.0fGB" % (x / 1024 ** 3)


def _printtable(fmt, max_columns, rows):
    """``rows`` as built (one row per entry); printed transposed, chunks of
    ``max_columns`` columns each preceded by the header column."""
    columns = len(rows)
    table = [[row[i] for row in rows] for i in range(len(rows[0]))]   # transpose
    parts = []
    for start in range(1, columns, max_columns):
        selected = [0] + list(range(start, min(start + max_columns, columns)))
        parts += [_chunk(fmt, [[line[j] for j in selected] for line in table]), "\n"]
    return "".join(parts)


def _chunk(fmt, table):
    widths = [max(len(line[j] or "") for line in table) for j in range(len(table[0]))]
    out = []
    if fmt == "ascii":
        for line in table:
            for s, width in zip(line, widths):
                if s is None:
                    continue    # MATLAB's sprintf('%Ns|', []) prints nothing
                if s == "-":
                    s = "-" * width
                out.append(s.rjust(width) + "|")
            out.append("\n")
    elif fmt == "latex":
        out.append("\\begin{tabular}{%s}\n" % ("c" * len(widths)))
        for line in table:
            if line[0] == "-":
                out.append("\\hline\n")
                continue
            for j, (s, width) in enumerate(zip(line, widths)):
                if s is not None:
                    out.append(_latexesc(s).rjust(width))
                if j < len(widths) - 1:
                    out.append("&")
            out.append("\\\\\n")
        out.append("\\end{tabular}\n")
    else:  # csv
        for line in table:
            if line[0] == "-":
                continue
            for s, width in zip(line, widths):
                out.append(f'"{s or ""}"'.rjust(width + 2) + ",")
            out.append("\n")
    return "".join(out)


def _latexesc(s):
    return s.replace("\\", "\\\\").replace("_", "\\char`_")


def _dot(net, var_sizes, param_sizes):
    font = 'fontsize=12 fontname="helvetica"'
    out = ["digraph DagNN {\n\tfontsize=12\n"]
    for var, size in zip(net.vars, var_sizes):
        label = f"{{{{{var.name}}} | {{{_pdims(size)} | {_pmem(4 * _prod(size))} }}}}"
        out.append(f'\tvar_{var.name} [label="{label}" shape=record '
                   f'style="solid,rounded,filled" color=cornsilk4 fillcolor=beige {font} ]\n')
    for param, size in zip(net.params, param_sizes):
        label = f"{{{{{param.name}}} | {{{_pdims(size)} | {_pmem(4 * _prod(size))} }}}}"
        out.append(f'\tpar_{param.name} [label="{label}" shape=record '
                   f'style="solid,rounded,filled" color=lightsteelblue4 '
                   f'fillcolor=lightsteelblue {font} ]\n')
    for layer in net.layers:
        label = f"{{ {layer.name} | {layer.block.type_name()} }}"
        out.append(f'\t{layer.name} [label="{label}" shape=record style="bold,filled" '
                   f'color="tomato4" fillcolor="tomato" {font} ]\n')
        for name in layer.inputs:
            out.append(f"\tvar_{name}->{layer.name} [weight=10]\n")
        for name in layer.outputs:
            out.append(f"\t{layer.name}->var_{name} [weight=10]\n")
        for name in layer.params:
            out.append(f"\tpar_{name}->{layer.name} [weight=1]\n")
    out.append("}\n")
    return "".join(out)


def _render_dot(text, figure_path, dot_args):
    """Write ``text`` as a .dot file beside ``figure_path`` and compile it
    with Graphviz's ``dot`` (a warning when ``dot`` is not installed)."""
    folder, base = os.path.split(figure_path)
    stem, ext = os.path.splitext(base)
    ext = ext or ".pdf"
    if stem == "tempname":
        handle, stem_path = tempfile.mkstemp(prefix="dagnn-")
        os.close(handle)
        os.unlink(stem_path)
        folder, stem = os.path.split(stem_path)
    dot_file = os.path.join(folder, stem + ".dot")
    figure = os.path.join(folder, stem + ext)
    with open(dot_file, "w") as stream:
        stream.write(text)
    dot = shutil.which("dot")
    if dot is None:
        warnings.warn("DagNN.print: could not generate a figure because the `dot` utility "
                      f"(Graphviz) could not be found; the graph is in {dot_file}", stacklevel=3)
        return
    command = [dot, f"-T{ext[1:]}", *dot_args.split(), "-o", figure, dot_file]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"DagNN.print: unable to run {' '.join(command)}\n{result.stderr}")
    sys.stdout.write(f"The figure saved at \"{figure}\"\n")
