"""Command line: ``python -m dagnn print MODEL.mat [--input-size H W C [N]]``.

Prints MatConvNet's ``net.print`` tables of a DagNN file (a MatConvNet
``*-dag.mat`` model, a ``cnn_train_dag`` checkpoint or a file written by
:func:`dagnn.save_net`; a SimpleNN file is converted with
``DagNN.fromSimpleNN``, as MatConvNet's ``loadobj`` does).
"""

import argparse
import sys
import warnings
from collections.abc import Mapping


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m dagnn",
        description="Tools for MatConvNet DagNN networks stored in .mat files.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    show = commands.add_parser(
        "print", help="print the tables of a network (DagNN.print)",
        description="Print DagNN.print's tables of the network in a .mat file: layers, "
                    "parameters, variables with their sizes, memory and (with --all) "
                    "receptive fields; or the graph as Graphviz dot text.")
    show.add_argument("model", help="a .mat file (DagNN model, cnn_train_dag checkpoint, or "
                                    "SimpleNN model, converted)")
    show.add_argument("--input-size", nargs="+", type=int, metavar="N",
                      help="size of the input: H W C [N] (default: from the net's meta: "
                           "inputs.size, normalization.imageSize or inputSize; one image)")
    show.add_argument("--input-name", metavar="NAME",
                      help="the input variable the size is for (default: the first input)")
    show.add_argument("--all", action="store_true",
                      help="print everything: also parameters and receptive fields")
    show.add_argument("--format", default="ascii",
                      help="ascii (default), latex, csv, or digraph (Graphviz dot text)")
    show.add_argument("--max-columns", type=int, default=18, metavar="N",
                      help="split tables wider than this many columns (default 18)")
    return parser


def _get(value, name):
    return value.get(name) if isinstance(value, Mapping) else None


def _default_sizes(net):
    """Input sizes from the net's meta, MatConvNet's conventions:
    ``meta.inputs`` (name and size of each input), else
    ``meta.normalization.imageSize`` or ``meta.inputSize`` for the first
    input."""
    import numpy as np

    inputs = _get(net.meta, "inputs")
    if isinstance(inputs, Mapping):
        inputs = [inputs]
    sizes = []
    if isinstance(inputs, list):
        for entry in inputs:
            if _get(entry, "name") is not None and _get(entry, "size") is not None:
                sizes += [entry["name"], np.asarray(entry["size"]).ravel().tolist()]
    if sizes:
        return sizes
    size = _get(_get(net.meta, "normalization"), "imageSize")
    if size is None:
        size = _get(net.meta, "inputSize")
    names = net.getInputs()
    if size is not None and names:
        return [names[0], np.asarray(size).ravel().tolist()]
    return None


def _print(args, parser):
    from .dagnn import DagNN

    if args.input_size is not None and not 1 <= len(args.input_size) <= 4:
        parser.error("--input-size takes 1 to 4 numbers: H W C [N]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the SimpleNN conversion notice
        net = DagNN.loadobj(args.model)
    if args.input_size is not None:
        name = args.input_name or (net.getInputs() or [None])[0]
        sizes = [name, list(args.input_size)]
    else:
        sizes = _default_sizes(net)
        if sizes is not None and args.input_name is not None:
            sizes[0] = args.input_name
    options = {"MaxNumColumns": args.max_columns, "Format": args.format}
    if args.all:
        options["All"] = True
    net.print(sizes, **options)


def main(argv=None):
    """Run the command line; returns the exit status (0 on success, 1 when
    the file cannot be read or printed)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "print":
            _print(args, parser)
    except (OSError, ValueError, ImportError, TypeError) as exc:
        print(f"python -m dagnn {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
