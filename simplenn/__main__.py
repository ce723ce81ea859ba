"""Command line: ``python -m simplenn display MODEL.mat [--input-size H W C N]``.

Prints MatConvNet's ``vl_simplenn_display`` table of a network file (a
MatConvNet model or a ``cnn_train`` checkpoint, read by
:func:`simplenn.io.load_net`).
"""

import argparse
import sys


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m simplenn",
        description="Tools for MatConvNet SimpleNN networks stored in .mat files.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    display = commands.add_parser(
        "display", help="print the layer table of a network (vl_simplenn_display)",
        description="Print vl_simplenn_display's table of the network in a .mat file: "
                    "support, filters, stride, pad, receptive field, data size and memory "
                    "of every layer.")
    display.add_argument("model", help="a MatConvNet .mat file (model or cnn_train checkpoint)")
    display.add_argument("--input-size", nargs="+", type=int, metavar="N",
                         help="size of the input: H W C [N] (default: the net's "
                              "meta.inputSize or normalization.imageSize, one image)")
    display.add_argument("--batch-size", type=int, metavar="N",
                         help="number of images per batch for the memory estimates")
    display.add_argument("--max-columns", type=int, default=18, metavar="N",
                         help="split tables wider than this many layers (default 18)")
    display.add_argument("--format", default="ascii",
                         help="table format: ascii (default), latex or csv")
    return parser


def _display(args, parser):
    from .display import vl_simplenn_display
    from .io import load_net

    if args.input_size is not None and not 1 <= len(args.input_size) <= 4:
        parser.error("--input-size takes 1 to 4 numbers: H W C [N]")
    net = load_net(args.model)
    options = {"maxNumColumns": args.max_columns, "format": args.format}
    if args.input_size is not None:
        options["inputSize"] = list(args.input_size)
    if args.batch_size is not None:
        options["batchSize"] = args.batch_size
    vl_simplenn_display(net, **options)


def main(argv=None):
    """Run the command line; returns the exit status (0 on success, 1 when
    the file cannot be read or displayed)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "display":
            _display(args, parser)
    except (OSError, ValueError, ImportError) as exc:
        print(f"python -m simplenn {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
