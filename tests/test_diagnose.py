"""Tests of vl_simplenn_diagnose (MATCONVNET_SEMANTICS.md section 26).

matplotlib is optional: every plotting test skips without it; only the
test of the error message for a missing matplotlib runs everywhere.  The
plotted values are read back from the figure's artists.
"""

import sys
import warnings

import numpy as np
import pytest

from simplenn.diagnose import vl_simplenn_diagnose
from simplenn.struct import Struct, struct

F32 = np.float32


@pytest.fixture
def mpl():
    return pytest.importorskip("matplotlib")


def sample_net():
    r = np.random.default_rng(0)
    return {"layers": [
        {"type": "conv", "weights": [r.standard_normal((3, 3, 1, 4)).astype(F32),
                                     np.arange(4, dtype=F32)]},
        {"type": "relu"},
        {"type": "bnorm", "weights": [np.full(4, 2, F32), np.zeros(4, F32),
                                      np.zeros((4, 2), F32)]},
        {"type": "conv", "weights": [r.standard_normal((2, 2, 4, 3)).astype(F32), None]},
        {"type": "softmaxloss"},
    ]}


def sample_res(net):
    """Records as vl_simplenn leaves them after a backward pass."""
    r = np.random.default_rng(1)
    res = [Struct(x=None, dzdx=None, dzdw=[], aux=None, stats=None, time=0, backwardTime=0)
           for _ in range(len(net["layers"]) + 1)]
    for i, shape in enumerate([(6, 6, 1, 2), (4, 4, 4, 2), (4, 4, 4, 2), (4, 4, 4, 2),
                               (3, 3, 3, 2)]):
        res[i].x = r.standard_normal(shape).astype(F32)
        res[i].dzdx = r.standard_normal(shape).astype(F32)
    res[5].x = np.array(1.5, F32)
    res[5].dzdx = np.array(1, F32)
    res[0].dzdw = [r.standard_normal((3, 3, 1, 4)).astype(F32), r.standard_normal(4)]
    res[2].dzdw = [np.full(4, 3, F32), np.full(4, -1, F32), np.zeros((4, 2), F32)]
    res[3].dzdw = [np.zeros((2, 2, 4, 3), F32), None]
    return res


def plotted(ax):
    """(x, mean, low, high) of the errorbar drawn in ``ax``."""
    (container,) = ax.containers
    line, _, (bars,) = container.lines
    x, mean = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    low, high = np.full(len(x), np.nan), np.full(len(x), np.nan)
    segments = bars.get_segments()  # one per point, empty where nothing is drawn
    assert len(segments) == len(x)
    for k, segment in enumerate(segments):
        if len(segment):
            low[k], high[k] = segment[0][1], segment[1][1]
    return x, mean, low, high


def stats(a):
    a = np.asarray(a, np.float64)
    return a.mean(), a.min(), a.max()


class TestWithoutRes:
    def test_two_panels_with_labels(self, mpl):
        fig = vl_simplenn_diagnose(sample_net())
        assert isinstance(fig, mpl.figure.Figure)
        assert [ax.get_ylabel() for ax in fig.axes] == ["filters", "biases"]
        assert all(ax.get_xlabel() == "layer" for ax in fig.axes)
        assert fig.axes[0].get_title() == "coefficient ranges"
        assert fig.axes[1].get_title() == ""
        assert all(ax.xaxis.get_gridlines()[0].get_visible() for ax in fig.axes)

    def test_values_and_missing_layers(self, mpl):
        net = sample_net()
        fig = vl_simplenn_diagnose(net)
        x, mean, low, high = plotted(fig.axes[0])
        np.testing.assert_array_equal(x, [1, 2, 3, 4, 5])
        for i in (0, 2, 3):
            np.testing.assert_allclose((mean[i], low[i], high[i]),
                                       stats(net["layers"][i]["weights"][0]), rtol=1e-6)
        assert np.isnan(mean[[1, 4]]).all()
        x, mean, low, high = plotted(fig.axes[1])
        np.testing.assert_allclose((mean[0], low[0], high[0]), (1.5, 0, 3))
        np.testing.assert_array_equal(mean[2], 0)
        assert np.isnan(mean[[1, 3, 4]]).all()  # relu, no bias, loss

    def test_saves_a_png(self, mpl, tmp_path):
        path = tmp_path / "diagnose.png"
        fig = vl_simplenn_diagnose(sample_net(), path=path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(fig.axes) == 2

    def test_struct_and_legacy_nets(self, mpl):
        legacy = {"layers": [{"type": "conv", "filters": np.ones((2, 2, 1, 1), F32),
                              "biases": np.full(1, 5, F32)}, {"type": "relu"}]}
        for net in (legacy, struct(legacy)):
            fig = vl_simplenn_diagnose(net)
            np.testing.assert_array_equal(plotted(fig.axes[0])[1][0], 1)
            np.testing.assert_array_equal(plotted(fig.axes[1])[1][0], 5)

    def test_cells_as_object_arrays(self, mpl):
        cell = np.empty((1, 2), dtype=object)
        cell[0, 0], cell[0, 1] = np.full((2, 2, 1, 1), 4, F32), np.full((1, 1), -2, F32)
        fig = vl_simplenn_diagnose({"layers": [{"type": "conv", "weights": cell}]})
        np.testing.assert_array_equal(plotted(fig.axes[0])[1], [4])
        np.testing.assert_array_equal(plotted(fig.axes[1])[1], [-2])

    def test_a_net_without_parameters_draws_nothing_and_does_not_warn(self, mpl, tmp_path):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fig = vl_simplenn_diagnose({"layers": [{"type": "relu"}, {"type": "softmax"}]},
                                       path=tmp_path / "empty.png")
        assert all(np.isnan(plotted(ax)[1]).all() for ax in fig.axes)

    def test_nan_in_the_data(self, mpl):
        w = np.array([1, np.nan, 3], F32).reshape(1, 1, 1, 3)
        fig = vl_simplenn_diagnose({"layers": [{"type": "conv", "weights": [w, None]}]})
        # as MATLAB: the mean is NaN, min and max skip NaNs
        assert np.isnan(plotted(fig.axes[0])[1][0])


class TestWithRes:
    def test_six_panels_with_labels(self, mpl, tmp_path):
        net = sample_net()
        path = tmp_path / "diagnose6.png"
        fig = vl_simplenn_diagnose(net, sample_res(net), path=str(path))
        assert [ax.get_ylabel() for ax in fig.axes] == ["filters", "biases", "x", "dzdx",
                                                        "dfilters", "dbiases"]
        assert all(ax.get_xlabel() == "layer" for ax in fig.axes)
        assert [ax.get_title() for ax in fig.axes] == ["coefficient ranges"] + [""] * 5
        assert path.read_bytes()[:4] == b"\x89PNG"

    def test_values(self, mpl):
        net = sample_net()
        res = sample_res(net)
        fig = vl_simplenn_diagnose(net, res)
        panels = {ax.get_ylabel(): plotted(ax) for ax in fig.axes}
        for name, field in (("x", "x"), ("dzdx", "dzdx")):
            x, mean, low, high = panels[name]
            assert len(x) == 5  # res[5], the network output, is not plotted
            for i in range(5):
                np.testing.assert_allclose((mean[i], low[i], high[i]),
                                           stats(res[i][field]), rtol=1e-5)
        x, mean, low, high = panels["dfilters"]
        for i in (0, 2, 3):
            np.testing.assert_allclose((mean[i], low[i], high[i]), stats(res[i].dzdw[0]),
                                       rtol=1e-6, atol=1e-12)
        assert np.isnan(mean[[1, 4]]).all()
        x, mean, low, high = panels["dbiases"]
        np.testing.assert_allclose((mean[2], low[2], high[2]), (-1, -1, -1))
        assert np.isnan(mean[[1, 3, 4]]).all()  # relu, no bias derivative, loss

    def test_single_numbers_and_cleared_entries_are_nan(self, mpl):
        net = {"layers": [{"type": "relu"}, {"type": "softmaxloss"}]}
        res = [{"x": np.ones((2, 2, 1, 1), F32), "dzdx": None},
               {"x": np.array([[7.0]], F32), "dzdx": np.ones((2, 2, 1, 1), F32)},
               {"x": np.array(1.0, F32), "dzdx": np.array(1.0, F32)}]
        fig = vl_simplenn_diagnose(net, res)
        panels = {ax.get_ylabel(): plotted(ax)[1] for ax in fig.axes}
        np.testing.assert_array_equal(panels["x"], [1, np.nan])  # one number: not plotted
        np.testing.assert_array_equal(panels["dzdx"], [np.nan, 1])  # cleared: NaN
        # res records given as dicts with no dzdw at all: the relu has none anyway
        assert np.isnan(panels["dfilters"]).all() and np.isnan(panels["dbiases"]).all()

    def test_conv_without_recorded_derivatives(self, mpl):
        net = sample_net()
        res = sample_res(net)
        res[0].dzdw = []  # e.g. below backPropDepth
        panels = {ax.get_ylabel(): plotted(ax)[1]
                  for ax in vl_simplenn_diagnose(net, res).axes}
        assert np.isnan(panels["dfilters"][0]) and np.isnan(panels["dbiases"][0])

    def test_res_too_short(self, mpl):
        with pytest.raises(ValueError, match="res must have"):
            vl_simplenn_diagnose(sample_net(), [Struct(x=None)])


class TestFigure:
    def test_draws_into_a_given_figure_after_clearing_it(self, mpl):
        from matplotlib.figure import Figure

        fig = Figure()
        fig.add_subplot(3, 3, 1).plot([1, 2])
        net = sample_net()
        assert vl_simplenn_diagnose(net, figure=fig) is fig
        assert len(fig.axes) == 2
        vl_simplenn_diagnose(net, sample_res(net), figure=fig)
        assert len(fig.axes) == 6

    def test_a_figure_must_be_a_figure(self, mpl):
        with pytest.raises(TypeError, match="figure"):
            vl_simplenn_diagnose(sample_net(), figure=3)

    def test_pyplot_is_left_alone(self, mpl):
        already = "matplotlib.pyplot" in sys.modules
        vl_simplenn_diagnose(sample_net())
        assert ("matplotlib.pyplot" in sys.modules) == already


def test_missing_matplotlib_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match="needs matplotlib"):
        vl_simplenn_diagnose(sample_net())
