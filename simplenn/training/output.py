"""What a trainer shows: messages, the per-batch progress line and the
``net-train.png`` figure.  Each is a small piece the epoch loop calls."""

import contextlib
import math
import os
import sys
import tempfile

from ..struct import Struct

__all__ = ["Printer", "Progress", "figure_tools", "save_figure", "plot_statistics",
           "per_statistic"]


class Printer:
    """``say(text)``: print a line when ``verbose``."""

    def __init__(self, verbose):
        self.verbose = verbose

    def __call__(self, text):
        if self.verbose:
            print(text, flush=True)


class Progress:
    """One line per batch: a tqdm bar when tqdm is installed, plain text
    otherwise (MatConvNet's format:
    ``<mode>: epoch NN: b/B: avg (current) Hz name: value ...``)."""

    def __init__(self, say, mode, epoch, total):
        self.say, self.mode, self.epoch, self.total = say, mode, epoch, total
        self.bar = None
        if say.verbose and total > 0:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=f"{mode}: epoch {epoch:02d}", unit="batch",
                                file=sys.stdout, leave=True, dynamic_ncols=True)

    def update(self, batch, average_speed, current_speed, stats):
        if not self.say.verbose:
            return
        values = " ".join(f"{name}: {stats[name]:.3f}" for name in sorted(stats)
                          if name not in ("num", "time"))
        text = f"{average_speed:.1f} ({current_speed:.1f}) Hz {values}"
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        else:
            self.say(f"{self.mode}: epoch {self.epoch:02d}: {batch:3d}/{self.total:3d}: {text}")

    def close(self):
        if self.bar is not None:
            self.bar.close()


def figure_tools(notice, say, fname):
    """matplotlib's Figure and Agg canvas classes, or ``None`` (after a
    one-time notice: ``notice`` is a one-element list, cleared once told)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        if notice[0]:
            say(f"{fname}: matplotlib is not installed; no figures are drawn "
                "(pip install matplotlib)")
            notice[0] = False
        return None
    return Figure, FigureCanvasAgg


def save_figure(figure, canvas_class, path):
    """Render with the Agg canvas and replace ``path`` atomically."""
    canvas_class(figure)
    folder = os.path.dirname(path) or "."
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                         dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            figure.savefig(stream, format="png")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def per_statistic(records):
    """Per-epoch records -> one list per statistic (NaN where missing)."""
    names = []
    for record in records:
        names.extend(name for name in record if name not in names)
    return Struct({name: [record.get(name, math.nan) for record in records] for name in names})


def plot_statistics(stats, path, notice, say, fname):
    """One panel per statistic (not ``num`` or ``time``), train and val
    curves against the epoch, saved as a PNG at ``path``."""
    tools = figure_tools(notice, say, fname)
    if tools is None:
        return
    figure_class, canvas_class = tools
    from matplotlib.ticker import MaxNLocator

    curves = {mode: per_statistic(stats[mode]) for mode in ("train", "val")}
    plots = sorted({name for mode in curves for name in curves[mode]} - {"num", "time"})
    if not plots:
        return
    figure = figure_class(figsize=(4 * len(plots), 3.5), layout="constrained")
    for k, name in enumerate(plots):
        axes = figure.add_subplot(1, len(plots), k + 1)
        for mode in ("train", "val"):
            if name in curves[mode]:
                values = curves[mode][name]
                axes.plot(range(1, len(values) + 1), values, "o-", label=mode)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(name)
        axes.legend()
        axes.grid(True)
    save_figure(figure, canvas_class, path)
