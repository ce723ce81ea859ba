"""Checkpoints ``expDir/net-epoch-N.mat``: finding, reading back, writing.

The trainer says what a checkpoint holds (MatConvNet's variables ``net``,
``state``, ``stats``); these functions find the newest one that reads
completely, write one atomically (:func:`simplenn.matfile.write_mat`:
a temporary file renamed over the checkpoint) and clear the temporary
files a killed run left behind.
"""

import math
import os
import re
import time
import warnings
from collections.abc import Mapping

import numpy as np

from .. import matfile
from ..struct import Struct

__all__ = ["checkpoint_path", "last_checkpoint", "resume", "write_checkpoint",
           "remove_stale_temporaries", "stats_variable", "stats_from_variable",
           "solver_states"]

_CHECKPOINT = re.compile(r"net-epoch-(\d+)\.mat")
# write_mat's temporaries: ".net-epoch-N.mat.<random>.tmp"
_TEMPORARY = re.compile(r"\.net-epoch-\d+\.mat\.[A-Za-z0-9_]+\.tmp")


def checkpoint_path(exp_dir, epoch):
    return os.path.join(exp_dir, f"net-epoch-{epoch}.mat")


def last_checkpoint(exp_dir):
    """The largest ``N`` among the files ``net-epoch-N.mat`` (0 if none)."""
    epochs = [int(m.group(1)) for m in map(_CHECKPOINT.fullmatch, os.listdir(exp_dir)) if m]
    return max(epochs, default=0)


def remove_stale_temporaries(exp_dir, min_age_s=0.0):
    """Delete the hidden ``.net-epoch-N.mat.*.tmp`` files that a run killed
    while writing a checkpoint left in ``exp_dir``; returns their names.

    Only files older than ``min_age_s`` seconds go (a checkpoint being
    written by another live process is younger).
    """
    removed = []
    now = time.time()
    for name in os.listdir(exp_dir):
        if not _TEMPORARY.fullmatch(name):
            continue
        path = os.path.join(exp_dir, name)
        try:
            if now - os.path.getmtime(path) >= min_age_s:
                os.remove(path)
                removed.append(name)
        except OSError:  # gone already, or not ours to remove
            pass
    return removed


def resume(exp_dir, last, load, fname):
    """``(epoch, loaded)`` of the newest checkpoint that ``load(path)``
    reads, trying ``last``, ``last - 1``, ...; ``(0, None)`` if none.

    A checkpoint that fails to read (truncated, corrupt, lacking a
    variable) is skipped with a ``RuntimeWarning``.
    """
    for epoch in range(last, 0, -1):
        path = checkpoint_path(exp_dir, epoch)
        if not os.path.exists(path):
            continue
        try:
            return epoch, load(path)
        except Exception as exc:  # any reading failure: try the previous epoch
            warnings.warn(f"{fname}: skipping checkpoint {path}, which cannot be read "
                          f"completely ({exc}); trying the previous epoch", RuntimeWarning,
                          stacklevel=4)
    warnings.warn(f"{fname}: no readable checkpoint in {exp_dir}; training from the start",
                  RuntimeWarning, stacklevel=4)
    return 0, None


def write_checkpoint(path, variables, fname):
    """Write the MATLAB ``variables`` to ``path`` atomically, uncompressed
    (the weights of a network do not compress: zlib costs ~0.3 s per
    LeNet checkpoint to save ~7%)."""
    matfile.write_mat(path, variables, fname, compress=False)


def stats_variable(stats):
    """MatConvNet's ``stats`` variable: ``train`` and ``val``, each a
    ``1 x epochs`` struct array."""
    return matfile.struct_value({name: _struct_array(stats[name], f"stats.{name}")
                                 for name in ("train", "val")}, "stats")


def stats_from_variable(raw, path):
    """The ``stats`` variable read back: ``Struct(train=[...], val=[...])``."""
    raw = matfile.to_python(raw, "stats")
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: 'stats' is not a struct")
    return Struct(train=_epoch_records(raw.get("train")), val=_epoch_records(raw.get("val")))


def _struct_array(records, where):
    """A ``1 x E`` MATLAB struct array of per-epoch statistics (fields
    missing in an epoch are NaN)."""
    names = []
    for record in records:
        names.extend(name for name in record if name not in names)
    if not records or not names:
        return np.zeros((0, 0))
    out = np.empty((1, len(records)), dtype=[(name, object) for name in names])
    for e, record in enumerate(records):
        for name in names:
            out[name][0, e] = matfile.to_mat(record.get(name, math.nan), f"{where}.{name}")
    return out


def _epoch_records(value):
    if value is None:
        return []
    records = [value] if isinstance(value, Mapping) else list(value)
    out = []
    for record in records:
        out.append(Struct({name: (int(v) if name == "num" else float(v))
                           if isinstance(v, (int, float, np.number)) else v
                           for name, v in record.items()}))
    return out


def solver_states(saved, count, where):
    """``count`` solver states (one per parameter) as read back from a
    checkpoint, or ``None`` when ``saved`` does not hold that many.

    MATLAB stores a cell of numbers as a numeric array and a 1 x 1 cell
    as its item; both are undone here.  Arrays (also inside a solver's
    struct state) come back C-ordered, as the update keeps them.
    """
    if isinstance(saved, list) and len(saved) == count:
        values = saved
    elif count == 1 and not isinstance(saved, list):
        values = [saved]
    elif isinstance(saved, np.ndarray) and saved.dtype.kind == "f" and saved.size == count:
        values = [float(v) for v in saved.ravel(order="F")]
    else:
        return None

    def c_order(value):
        return np.ascontiguousarray(value) if isinstance(value, np.ndarray) else value

    return [Struct({k: c_order(v) for k, v in value.items()}) if isinstance(value, Mapping)
            else c_order(value) for value in values]
