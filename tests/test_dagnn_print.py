"""DagNN.print (MatConvNet's print.m) and ``python -m dagnn print``."""

import numpy as np
import pytest

import dagnn
from dagnn import DagNN, save_net
from dagnn.__main__ import main


def tiny():
    net = DagNN()
    net.addLayer("c", dagnn.Conv("size", [3, 3, 1, 2], "pad", 1), "x", "y", ["f", "b"])
    net.addLayer("r", dagnn.ReLU(), "y", "z")
    net.params[0].value = np.zeros((3, 3, 1, 2), np.float32)
    net.params[1].value = np.zeros((2, 1), np.float32)
    return net


LAYERS = ("   func|   c|   r|\n"
          "-------|----|----|\n"
          "   type|Conv|ReLU|\n"
          " inputs|   x|   y|\n"
          "outputs|   y|   z|\n"
          " params| f b|    |\n"
          "    pad|   1| n/a|\n"
          " stride|   1| n/a|\n")


def test_default_tables_are_matconvnets_text(capsys):
    # 3x3x1x2 filters (72 bytes) and 2 biases (8 bytes), as single precision;
    # without input sizes the variables' memory is unknown and counts 0
    text = tiny().print()
    memory = ("params|80B|\n"
              "  vars| 0B|\n"
              " total|80B|\n")
    assert text == LAYERS + "\n\n" + memory + "\n\n"
    assert capsys.readouterr().out == text


def test_input_sizes_add_the_variables(capsys):
    # x: 200 singles (800 bytes); y and z: 400 (1600 bytes, '%.0fKB' -> 2KB)
    text = tiny().print(["x", [5, 4, 1, 10]])
    variables = ("   var|       x|       y|       z|\n"
                 "------|--------|--------|--------|\n"
                 "  dims|5x4x1x10|5x4x2x10|5x4x2x10|\n"
                 "   mem|    800B|     2KB|     2KB|\n"
                 " fanin|       0|       1|       1|\n"
                 "fanout|       1|       1|       0|\n")
    memory = ("params|80B|\n"      # 4000 bytes of variables: 4KB
              "  vars|4KB|\n"
              " total|4KB|\n")
    assert text == LAYERS + "\n\n" + variables + "\n\n" + memory + "\n\n"
    assert tiny().print({"x": [5, 4, 1, 10]}) == text
    capsys.readouterr()


def test_memory_units_and_dims():
    from dagnn.print import _pdims, _pmem

    assert [_pmem(x) for x in (0, 1023, 1024, 1536, 1024 ** 2 * 3, 1024 ** 3 * 5,
                               float("nan"))] == ["0B", "1023B", "1KB", "2KB", "3MB", "5GB",
                                                  "NaN"]
    assert _pdims([2, 2]) == "2" and _pdims([224, 224, 3, 1]) == "224x224x3x1"
    assert _pdims([float("nan")] * 4) == "n/a" and _pdims(None) == "n/a"
    assert _pdims([float("nan"), 3]) == "NaNx3" and _pdims([0.5, 1234567]) == "0.5x1.235e+06"


def test_selection_chunks_and_options(capsys):
    net = tiny()
    text = net.print(Layers=["r"], Memory=False)
    assert text == ("   func|   r|\n"
                    "-------|----|\n"
                    "   type|ReLU|\n"
                    " inputs|   y|\n"
                    "outputs|   z|\n"
                    " params|    |\n"
                    "    pad| n/a|\n"
                    " stride| n/a|\n\n\n")
    text = net.print(Layers=[], Parameters="*", Memory=False, MaxNumColumns=1)
    assert text == (" param|      f|\n"
                    "------|-------|\n"
                    "  dims|3x3x1x2|\n"
                    "   mem|    72B|\n"
                    "fanout|      1|\n\n"
                    " param|  b|\n"
                    "------|---|\n"
                    "  dims|2x1|\n"
                    "   mem| 8B|\n"
                    "fanout|  1|\n\n\n")
    # MATLAB's net.print('All', true): options without input sizes
    text = net.print("All", True)
    assert "rf in 'x'|x|y|z|" in text and "   var|" in text and " param|" in text
    with pytest.raises(TypeError, match="unknown option 'Colour'"):
        net.print(Colour=True)
    with pytest.raises(ValueError, match="unknown format 'html'"):
        net.print(Format="html")
    capsys.readouterr()


def test_dependencies_table():
    net = tiny()
    text = net.print(Layers=None, Memory=False, Dependencies=True)
    assert text == ("rf in 'x'|x|y|z|\n"
                    "---------|-|-|-|\n"
                    "     size|1|3|3|\n"
                    "   stride|1|1|1|\n"
                    "   offset|1|1|1|\n\n\n")


def test_latex_and_csv():
    net = DagNN()
    net.addLayer("my_relu", dagnn.ReLU(), "in_x", "out")
    latex = net.print(Format="latex", Memory=False)
    assert latex == ("\\begin{tabular}{cc}\n"
                     "   func&my\\char`_relu\\\\\n"
                     "\\hline\n"
                     "   type&   ReLU\\\\\n"
                     " inputs&in\\char`_x\\\\\n"
                     "outputs&    out\\\\\n"
                     " params&       \\\\\n"
                     "    pad&    n/a\\\\\n"
                     " stride&    n/a\\\\\n"
                     "\\end{tabular}\n\n\n")
    csv = net.print(Format="csv", Memory=False)
    assert csv == ('   "func","my_relu",\n'
                   '   "type",   "ReLU",\n'
                   ' "inputs",   "in_x",\n'
                   '"outputs",    "out",\n'
                   ' "params",       "",\n'
                   '    "pad",    "n/a",\n'
                   ' "stride",    "n/a",\n\n\n')


def test_digraph_is_graphviz_dot_text():
    net = tiny()
    dot = net.print(["x", [5, 4, 1, 1]], Format="digraph")
    lines = dot.splitlines()
    assert lines[0] == "digraph DagNN {" and lines[-1] == "}"
    font = 'fontsize=12 fontname="helvetica"'
    assert (f'\tvar_x [label="{{{{x}} | {{5x4x1x1 | 80B }}}}" shape=record '
            f'style="solid,rounded,filled" color=cornsilk4 fillcolor=beige {font} ]') in lines
    assert (f'\tpar_f [label="{{{{f}} | {{3x3x1x2 | 72B }}}}" shape=record '
            f'style="solid,rounded,filled" color=lightsteelblue4 fillcolor=lightsteelblue '
            f'{font} ]') in lines
    assert (f'\tc [label="{{ c | dagnn.Conv }}" shape=record style="bold,filled" '
            f'color="tomato4" fillcolor="tomato" {font} ]') in lines
    assert "\tvar_x->c [weight=10]" in lines and "\tc->var_y [weight=10]" in lines
    assert "\tpar_b->c [weight=1]" in lines and "\tvar_y->r [weight=10]" in lines
    assert net.print(Format="dot") == net.print(Format="digraph")


def test_command_line(tmp_path, capsys):
    net = tiny()
    net.meta.inputs = {"name": "x", "size": [8, 8, 1, 1]}
    path = save_net(tmp_path / "tiny.mat", net)
    assert main(["print", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(LAYERS) and "  dims|8x8x1x1|8x8x2x1|8x8x2x1|" in out
    assert main(["print", str(path), "--input-size", "6", "6", "1", "--all"]) == 0
    out = capsys.readouterr().out
    assert "  dims|6x6x1x1|6x6x2x1|6x6x2x1|" in out and "rf in 'x'" in out
    assert main(["print", str(tmp_path / "missing.mat")]) == 1
    assert "python -m dagnn print: error:" in capsys.readouterr().err
