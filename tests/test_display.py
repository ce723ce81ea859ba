"""Tests of vl_simplenn_display (MATCONVNET_SEMANTICS.md section 24).

The oracle is the worked example of the semantics page: MatConvNet's MNIST
LeNet (section 29) with a batch of 100 28x28 images, whose receptive
fields, data sizes and memory figures are listed there; plus small hand
nets for the rules the example does not exercise (dilation, asymmetric
padding, custom layers, untidied and legacy nets, ``res``).
"""

import doctest
import types

import numpy as np
import pytest

import simplenn.display
from simplenn.display import vl_simplenn_display
from simplenn.struct import Struct, struct

F32 = np.float32


def conv(fh, fw, c, k, bias=True, **fields):
    weights = [np.zeros((fh, fw, c, k), F32), np.zeros((1, k), F32) if bias else None]
    return dict(type="conv", weights=weights, **fields)


def lenet():
    """cnn_mnist_init without batch normalisation, as tidy would leave it."""
    layers = [
        conv(5, 5, 1, 20, stride=1, pad=0),
        dict(type="pool", method="max", pool=[2, 2], stride=2, pad=0),
        conv(5, 5, 20, 50, stride=1, pad=0),
        dict(type="pool", method="max", pool=[2, 2], stride=2, pad=0),
        conv(4, 4, 50, 500, stride=1, pad=0),
        dict(type="relu"),
        conv(1, 1, 500, 10, stride=1, pad=0),
        dict(type="softmaxloss"),
    ]
    for i, layer in enumerate(layers):
        layer.update(name=f"layer{i + 1}", precious=False)
        if layer["type"] == "conv":
            layer.update(dilate=1, opts=[])
    return {"layers": layers, "meta": {"inputSize": [28, 28, 1]}}


def quiet(net, *args, **opts):
    return vl_simplenn_display(net, *args, print=False, **opts)


def rows_of(text):
    """The rows of every table in an ascii text, split into cells."""
    tables = [t for t in text.split("\n\n") if t]
    return [[line.split("|")[:-1] for line in t.split("\n") if line] for t in tables]


def row(table, label):
    for cells in table:
        if cells[0].strip() == label:
            return [c.strip() for c in cells[1:]]
    raise KeyError(label)


# ---------------------------------------------------------------------------
# the LeNet worked example


LENET_SUPPORT = [5, 2, 5, 2, 4, 1, 1, 1]
LENET_STRIDE = [1, 2, 1, 2, 1, 1, 1, 1]
LENET_RF_SIZE = [5, 6, 14, 16, 28, 28, 28, 28]
LENET_RF_OFFSET = [3, 3.5, 7.5, 8.5, 14.5, 14.5, 14.5, 14.5]
LENET_RF_STRIDE = [1, 2, 2, 4, 4, 4, 4, 4]
LENET_DATA_SIZE = [28, 24, 12, 8, 4, 1, 1, 1, 1]
LENET_DEPTH = [1, 20, 20, 50, 50, 500, 500, 10, 1]
LENET_NUM = [100] * 8 + [1]
LENET_DATA_BYTES = [313600, 4608000, 1152000, 1280000, 320000, 200000, 200000, 4000, 4]


@pytest.fixture(scope="module")
def info():
    """vl_simplenn_display's figures for MatConvNet's LeNet (computed once)."""
    return quiet(lenet(), batchSize=100)


class TestLeNet:

    def test_info_is_a_struct_of_float_arrays(self, info):
        assert isinstance(info, Struct)
        for name, shape in (("support", (2, 8)), ("stride", (2, 8)), ("pad", (4, 8)),
                            ("receptiveFieldSize", (2, 8)), ("receptiveFieldOffset", (2, 8)),
                            ("receptiveFieldStride", (2, 8)), ("dataSize", (4, 9))):
            assert isinstance(info[name], np.ndarray) and info[name].shape == shape, name
            assert info[name].dtype == np.float64
        assert getattr(info, "support") is info["support"]
        assert isinstance(info.text, str)

    def test_geometry(self, info):
        for name, expected in (("support", LENET_SUPPORT), ("stride", LENET_STRIDE),
                               ("receptiveFieldSize", LENET_RF_SIZE),
                               ("receptiveFieldOffset", LENET_RF_OFFSET),
                               ("receptiveFieldStride", LENET_RF_STRIDE)):
            np.testing.assert_array_equal(info[name], [expected, expected], err_msg=name)
        np.testing.assert_array_equal(info.pad, np.zeros((4, 8)))

    def test_data_sizes_and_memory(self, info):
        np.testing.assert_array_equal(info.dataSize[0], LENET_DATA_SIZE)
        np.testing.assert_array_equal(info.dataSize[1], LENET_DATA_SIZE)
        np.testing.assert_array_equal(info.dataSize[2], LENET_DEPTH)
        np.testing.assert_array_equal(info.dataSize[3], LENET_NUM)
        np.testing.assert_array_equal(np.prod(info.dataSize, axis=0) * 4, LENET_DATA_BYTES)
        assert sum(LENET_DATA_BYTES) == 8077604

    def test_parameter_count(self):
        net = lenet()
        assert sum(w.size for layer in net["layers"] for w in layer.get("weights", ())
                   if w is not None) == 431080

    def test_printed_table(self, info):
        tables = rows_of(info.text)
        assert len(tables) == 2  # 9 columns fit in one table, then the summary
        main, summary = tables
        labels = [cells[0].strip() for cells in main]
        rule = "-" * 10
        assert labels == ["layer", "type", "name", rule, "support", "filt dim", "filt dilat",
                          "num filts", "stride", "pad", rule, "rf size", "rf offset",
                          "rf stride", rule, "data size", "data depth", "data num", rule,
                          "data mem", "param mem"]
        assert row(main, "layer") == [str(i) for i in range(9)]
        assert row(main, "type") == ["input", "conv", "mpool", "conv", "mpool", "conv",
                                     "relu", "conv", "softmxl"]
        assert row(main, "name") == ["n/a"] + [f"layer{i}" for i in range(1, 9)]
        assert row(main, "support") == ["n/a", "5", "2", "5", "2", "4", "1", "1", "1"]
        assert row(main, "filt dim") == ["n/a", "1", "n/a", "20", "n/a", "50", "n/a", "500",
                                         "n/a"]
        assert row(main, "filt dilat") == ["n/a", "1", "n/a", "1", "n/a", "1", "n/a", "1",
                                           "n/a"]
        assert row(main, "num filts") == ["n/a", "20", "n/a", "50", "n/a", "500", "n/a", "10",
                                          "n/a"]
        assert row(main, "rf offset") == ["n/a", "3", "3.5", "7.5", "8.5", "14.5", "14.5",
                                          "14.5", "14.5"]
        assert row(main, "data size") == [str(s) for s in LENET_DATA_SIZE]
        assert row(main, "data depth") == [str(s) for s in LENET_DEPTH]
        assert row(main, "data num") == [str(s) for s in LENET_NUM]
        # %.0f of 312.5 rounds to even in C and in Python (MATLAB may say 313KB)
        assert row(main, "data mem") == ["306KB", "4MB", "1MB", "1MB", "312KB", "195KB",
                                         "195KB", "4KB", "4B"]
        assert row(main, "param mem") == ["n/a", "2KB", "0B", "98KB", "0B", "2MB", "0B",
                                          "20KB", "0B"]
        assert row(summary, "parameter memory") == ["2MB (4.3e+05 parameters)"]
        assert row(summary, "data memory") == ["8MB (for batch size 100)"]

    def test_ascii_layout(self):
        net = lenet()
        for layer in net["layers"]:
            del layer["name"]
        lines = quiet(net, batchSize=100).text.split("\n")
        # each table: rows of equal width, every cell followed by '|', then a blank line
        assert lines[21] == "" and lines[24] == "" and lines[25] == "" and len(lines) == 26
        main = lines[:21]
        assert len({len(line) for line in main}) == 1
        assert main[0] == "     layer|    0|   1|    2|   3|    4|    5|    6|   7|      8|"
        assert main[3] == "----------|-----|----|-----|----|-----|-----|-----|----|-------|"
        assert main[1] == "      type|input|conv|mpool|conv|mpool| conv| relu|conv|softmxl|"
        assert lines[22:24] == ["parameter memory|2MB (4.3e+05 parameters)|",
                                "     data memory|8MB (for batch size 100)|"]

    def test_chunks_of_max_num_columns(self):
        text = quiet(lenet(), batchSize=100, maxNumColumns=4).text
        tables = rows_of(text)
        assert len(tables) == 4  # columns 0-3, 4-7, 8, then the summary
        assert [row(t, "layer") for t in tables[:3]] == [["0", "1", "2", "3"],
                                                         ["4", "5", "6", "7"], ["8"]]
        for t in tables[:3]:
            assert len(t) == 21 and t[0][0].strip() == "layer"
        # each chunk is laid out on its own: the last one is narrow
        assert text.split("\n\n")[2].split("\n")[0] == "     layer|      8|"
        assert row(tables[3], "data memory") == ["8MB (for batch size 100)"]

    def test_latex(self):
        net = lenet()
        net["layers"][0]["name"] = "conv_1"
        text = quiet(net, batchSize=100, format="latex", maxNumColumns=4).text
        blocks = [b for b in text.split("\n\n") if b]
        assert len(blocks) == 4
        for block, ncols in zip(blocks, (5, 5, 2, 2)):
            lines = block.split("\n")
            assert lines[0] == "\\begin{tabular}{%s}" % ("c" * ncols)
            assert lines[-1] == "\\end{tabular}"
            body = lines[1:-1]
            rules = [line for line in body if line == "\\hline"]
            assert len(rules) == (0 if block is blocks[3] else 4)
            for line in body:
                if line != "\\hline":
                    assert line.endswith("\\\\") and line.count("&") == ncols - 1
        first = blocks[0].split("\n")
        # widths come from the unescaped text, as in MatConvNet
        assert first[1] == "     layer&    0&     1&     2&     3\\\\"
        assert first[3] == "      name&  n/a&conv\\char`_1&layer2&layer3\\\\"
        assert blocks[3].split("\n")[1:3] == ["parameter memory&2MB (4.3e+05 parameters)\\\\",
                                              "     data memory&8MB (for batch size 100)\\\\"]

    def test_csv(self):
        text = quiet(lenet(), batchSize=100, format="csv").text
        blocks = [b for b in text.split("\n\n") if b]
        assert len(blocks) == 2
        lines = blocks[0].split("\n")
        assert len(lines) == 17  # 21 rows less the 4 rules
        assert lines[0] == '"layer","0","1","2","3","4","5","6","7","8",'
        assert lines[-2] == '"data mem","306KB","4MB","1MB","1MB","312KB","195KB","195KB",' \
                            '"4KB","4B",'
        assert blocks[1] == ('"parameter memory","2MB (4.3e+05 parameters)",\n'
                             '"data memory","8MB (for batch size 100)",')

    def test_prints_to_stdout_unless_told_not_to(self, capsys):
        info = vl_simplenn_display(lenet(), batchSize=100)
        assert capsys.readouterr().out == info.text
        quiet(lenet())
        assert capsys.readouterr().out == ""

    def test_batch_size_defaults_to_one(self):
        info = quiet(lenet())
        np.testing.assert_array_equal(info.dataSize[:, 0], [28, 28, 1, 1])
        assert "79KB (for batch size 1)" in info.text

    def test_matlab_pairs_and_option_spelling(self):
        reference = quiet(lenet(), batchSize=100, maxNumColumns=4)
        for call in (lambda n: vl_simplenn_display(n, "batchSize", 100, "MaxNumColumns", 4,
                                                   "print", False),
                     lambda n: vl_simplenn_display(n, None, "BATCHSIZE", 100,
                                                   max_num_columns=4, Print=False),
                     lambda n: quiet(n, batch_size=100, maxnumcolumns=4.0)):
            other = call(lenet())
            assert other.text == reference.text
            np.testing.assert_array_equal(other.dataSize, reference.dataSize)

    def test_input_size_option_overrides_meta(self):
        info = quiet(lenet(), inputSize=[32, 30, 1, 5])
        np.testing.assert_array_equal(info.dataSize[:, 0], [32, 30, 1, 5])
        np.testing.assert_array_equal(info.dataSize[:2, 1], [28, 26])
        info = quiet(lenet(), inputSize=np.array([[32, 32, 1, 5]]), batchSize=7)
        np.testing.assert_array_equal(info.dataSize[:, 0], [32, 32, 1, 7])

    def test_struct_net_gives_the_same_result(self):
        plain = quiet(lenet(), batchSize=100)
        nested = quiet(struct(lenet()), batchSize=100)
        assert nested.text == plain.text
        np.testing.assert_array_equal(nested.dataSize, plain.dataSize)

    def test_the_net_is_not_modified(self):
        net = lenet()
        before = [dict(layer) for layer in net["layers"]]
        quiet(net, batchSize=100)
        assert [dict(layer) for layer in net["layers"]] == before


# ---------------------------------------------------------------------------
# input size sources and res


class TestSizes:
    def test_image_size_from_normalization(self):
        net = lenet()
        net["meta"] = {"normalization": {"imageSize": [28, 28, 1]}}
        np.testing.assert_array_equal(quiet(net).dataSize[:, 0], [28, 28, 1, 1])

    def test_legacy_top_level_normalization(self):
        net = lenet()
        del net["meta"]
        net["normalization"] = {"imageSize": np.array([[28, 28, 1]])}
        np.testing.assert_array_equal(quiet(net, batchSize=3).dataSize[:, 0], [28, 28, 1, 3])

    def test_meta_input_size_wins_over_normalization(self):
        net = lenet()
        net["meta"]["normalization"] = {"imageSize": [64, 64, 3]}
        np.testing.assert_array_equal(quiet(net).dataSize[:, 0], [28, 28, 1, 1])

    def test_unknown_input_size_is_nan(self):
        net = lenet()
        del net["meta"]
        info = quiet(net)
        assert np.all(np.isnan(info.dataSize[:3, 0])) and info.dataSize[3, 0] == 1
        # the depth is known again after the first conv
        np.testing.assert_array_equal(info.dataSize[2:, 1], [20, 1])
        main, summary = rows_of(info.text)
        assert row(main, "data size")[:2] == ["NaNxNaN", "NaNxNaN"]
        assert row(main, "data depth")[:2] == ["NaN", "20"]
        assert row(main, "data mem")[0] == "NaN"
        assert row(summary, "data memory") == ["NaN (for batch size 1)"]

    def test_data_sizes_come_from_res_where_present(self):
        net = lenet()
        res = [Struct(x=None, dzdx=None) for _ in range(9)]
        res[0].x = np.zeros((28, 28, 1, 7), F32)
        res[3].x = np.zeros((9, 8, 50, 7), F32)  # an odd size, to see that it is used
        res[8] = {"x": np.zeros(())}  # a plain dict record, 0-d loss value
        info = quiet(net, res, batchSize=100)
        np.testing.assert_array_equal(info.dataSize[:, 0], [28, 28, 1, 7])
        np.testing.assert_array_equal(info.dataSize[:, 3], [9, 8, 50, 7])
        np.testing.assert_array_equal(info.dataSize[:, 4], [4, 4, 50, 7])  # from res[3]
        np.testing.assert_array_equal(info.dataSize[:, 8], [1, 1, 1, 1])
        assert "(for batch size 7)" in info.text
        # res by keyword, and MATLAB pairs after it
        again = vl_simplenn_display(net, res, "batchSize", 100, "print", False)
        np.testing.assert_array_equal(again.dataSize, info.dataSize)
        again = quiet(net, res=res)
        np.testing.assert_array_equal(again.dataSize, info.dataSize)

    def test_res_of_the_wrong_length(self):
        with pytest.raises(ValueError, match="res must have"):
            quiet(lenet(), [Struct(x=None)] * 3)


# ---------------------------------------------------------------------------
# layer rules beyond LeNet


class TestLayers:
    def test_dilation_uses_dy_for_rows_and_dx_for_columns(self):
        net = {"layers": [conv(3, 3, 1, 4, dilate=[2, 3], stride=[1, 2], pad=[1, 0, 2, 0])]}
        info = quiet(net, inputSize=[20, 20, 1, 1])
        np.testing.assert_array_equal(info.support[:, 0], [5, 7])
        np.testing.assert_array_equal(info.stride[:, 0], [1, 2])
        np.testing.assert_array_equal(info.pad[:, 0], [1, 0, 2, 0])
        np.testing.assert_array_equal(info.receptiveFieldSize[:, 0], [5, 7])
        # offset uses the top and the left pad
        np.testing.assert_array_equal(info.receptiveFieldOffset[:, 0], [1 + 2 - 1, 1 + 3 - 2])
        np.testing.assert_array_equal(info.dataSize[:, 1], [17, 8, 4, 1])
        main = rows_of(info.text)[0]
        assert row(main, "support") == ["n/a", "5x7"]
        assert row(main, "filt dilat") == ["n/a", "2x3"]
        assert row(main, "stride") == ["n/a", "1x2"]
        assert row(main, "pad") == ["n/a", "1x0x2x0"]
        assert row(main, "data size") == ["20", "17x8"]

    def test_scalar_dilation(self):
        info = quiet({"layers": [conv(3, 3, 1, 1, dilate=2)]}, inputSize=[9, 9, 1, 1])
        np.testing.assert_array_equal(info.support[:, 0], [5, 5])
        np.testing.assert_array_equal(info.dataSize[:2, 1], [5, 5])

    def test_untidied_layers_take_defaults(self):
        net = {"layers": [{"type": "conv", "weights": [np.zeros((3, 3, 2, 4), F32)]},
                          {"type": "pool", "pool": 3},
                          {"type": "relu"}]}
        info = quiet(net, inputSize=[10, 10, 2, 1])
        np.testing.assert_array_equal(info.stride, np.ones((2, 3)))
        np.testing.assert_array_equal(info.pad, np.zeros((4, 3)))
        np.testing.assert_array_equal(info.support, [[3, 3, 1], [3, 3, 1]])
        np.testing.assert_array_equal(info.dataSize[:, -1], [6, 6, 4, 1])
        main = rows_of(info.text)[0]
        assert row(main, "name") == ["n/a", "", "", ""]
        assert row(main, "type") == ["input", "conv", "mpool", "relu"]

    def test_legacy_filters_and_biases(self):
        net = {"layers": [{"type": "conv", "filters": np.zeros((5, 5, 3, 8), F32),
                           "biases": np.zeros(8, F32)}]}
        info = quiet(net, inputSize=[32, 32, 3, 2])
        np.testing.assert_array_equal(info.dataSize[:, 1], [28, 28, 8, 2])
        main, summary = rows_of(info.text)
        assert row(main, "filt dim") == ["n/a", "3"]
        assert row(main, "num filts") == ["n/a", "8"]
        assert row(main, "param mem") == ["n/a", "2KB"]  # (600 + 8) * 4 bytes
        assert row(summary, "parameter memory") == ["2KB (6.1e+02 parameters)"]

    def test_cells_as_object_arrays_and_layers_as_objects(self):
        # scipy.io.loadmat(..., struct_as_record=False) gives attribute
        # records and numpy object arrays for MATLAB cells
        cell = np.empty((1, 2), dtype=object)
        cell[0, 0], cell[0, 1] = np.zeros((3, 3, 2, 6), F32), np.zeros((1, 6), F32)
        layer = types.SimpleNamespace(type="conv", weights=cell, stride=np.array(2.0),
                                      pad=np.array([[1, 1, 1, 1]]), name="c1")
        info = quiet(types.SimpleNamespace(layers=[layer], meta=None), inputSize=[9, 9, 2, 1])
        np.testing.assert_array_equal(info.dataSize[:, 1], [5, 5, 6, 1])
        main, summary = rows_of(info.text)
        assert row(main, "name") == ["n/a", "c1"]
        assert row(main, "num filts") == ["n/a", "6"]
        assert row(summary, "parameter memory") == ["456B (1.1e+02 parameters)"]

    def test_conv_without_filters_keeps_the_depth(self):
        net = {"layers": [{"type": "conv", "weights": [None, np.zeros(3, F32)], "stride": 2}]}
        info = quiet(net, inputSize=[8, 8, 3, 1])
        np.testing.assert_array_equal(info.dataSize[:, 1], [4, 4, 3, 1])
        np.testing.assert_array_equal(info.support[:, 0], [1, 1])

    def test_type_abbreviations_and_other_layers(self):
        layers = [{"type": "pool", "method": "avg", "pool": [3, 2], "stride": [2, 1]},
                  {"type": "normalize", "param": [5, 1, 2e-5, 0.75]},
                  {"type": "lrn"}, {"type": "softmax"}, {"type": "sigmoid"},
                  {"type": "dropout", "rate": 0.5},
                  {"type": "bnorm", "weights": [np.ones(3, F32), np.zeros(3, F32),
                                                 np.zeros((3, 2), F32)]},
                  {"type": "convt", "weights": [np.zeros((4, 4, 3, 3), F32)],
                   "upsample": 2, "crop": 1},
                  {"type": "loss"}]
        info = quiet({"layers": layers}, inputSize=[11, 11, 3, 4])
        main = rows_of(info.text)[0]
        assert row(main, "type") == ["input", "apool", "norm", "lrn", "softmx", "sigmoid",
                                     "dropout", "bnorm", "convt", "loss"]
        assert row(main, "support") == ["n/a", "3x2", "1", "1", "1", "1", "1", "1", "1", "1"]
        # convt and bnorm have unit support; the loss collapses depth and count
        np.testing.assert_array_equal(info.dataSize[:, 1], [5, 10, 3, 4])
        np.testing.assert_array_equal(info.dataSize[:, 8], [5, 10, 3, 4])
        np.testing.assert_array_equal(info.dataSize[:, 9], [5, 10, 1, 1])
        assert row(main, "param mem")[7:9] == ["48B", "576B"]  # bnorm 12, convt 144 numbers

    def test_custom_layers(self):
        def forward_size(layer, size):
            assert layer["name"] == "doubler" and size.shape == (4,)
            return [size[0] * 2, size[1] * 2, size[2]]  # a trailing 1 is implied

        layers = [{"type": "custom", "name": "doubler", "getForwardSize": forward_size},
                  {"type": "custom", "name": "opaque", "stride": 2}]
        info = quiet({"layers": layers}, inputSize=[5, 6, 3, 8])
        np.testing.assert_array_equal(info.dataSize[:, 1], [10, 12, 3, 1])
        np.testing.assert_array_equal(info.dataSize[:2, 2], [5, 6])
        assert np.isnan(info.dataSize[2, 2]) and info.dataSize[3, 2] == 1

    def test_net_without_layers_of_data(self):
        info = quiet({"layers": []}, inputSize=[4, 4, 1, 2])
        assert info.support.shape == (2, 0) and info.dataSize.shape == (4, 1)
        assert row(rows_of(info.text)[0], "layer") == ["0"]

    def test_names_are_printed_verbatim_in_csv(self):
        net = {"layers": [{"type": "relu", "name": "relu_1"}]}
        text = quiet(net, format="csv").text
        assert '"name","n/a","relu_1",' in text


# ---------------------------------------------------------------------------
# errors


class TestErrors:
    def test_bad_format(self):
        with pytest.raises(ValueError, match="format"):
            quiet(lenet(), format="html")

    def test_unknown_option(self):
        with pytest.raises(TypeError, match="unknown option 'colour'"):
            quiet(lenet(), colour="red")

    def test_bad_max_num_columns(self):
        with pytest.raises(ValueError, match="maxNumColumns"):
            quiet(lenet(), maxNumColumns=0)
        with pytest.raises(ValueError, match="maxNumColumns"):
            quiet(lenet(), maxNumColumns=2.5)

    def test_bad_input_size(self):
        with pytest.raises(ValueError, match="inputSize"):
            quiet(lenet(), inputSize=[1, 2, 3, 4, 5])
        with pytest.raises(ValueError, match="inputSize"):
            quiet(lenet(), inputSize="big")

    def test_bad_layer_field_names_the_layer(self):
        net = {"layers": [conv(3, 3, 1, 1, pad=[1, 1])]}
        with pytest.raises(ValueError, match=r"the pad of layer 1 \(net\.layers\[0\]\) must have"):
            quiet(net)

    def test_net_without_layers(self):
        with pytest.raises(ValueError, match="layers"):
            quiet({"meta": {}})


def test_docstring_example():
    result = doctest.testmod(simplenn.display, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
