"""Options common to cnn_train and cnn_train_dag (MatConvNet's ``opts``).

Each trainer passes its own table of defaults; the options both have are
checked here once, with errors that name the trainer and the option.
"""

import inspect
import math
import os
import tempfile
from collections.abc import Mapping

import numpy as np

from vlnn._options import as_float, as_int, numbers_of, parse_options

from ..struct import Struct

__all__ = ["COMMON_OPTIONS", "parse_training_options", "learning_rates", "image_subset",
           "as_bool"]

#: The options both trainers take, with MatConvNet's defaults.
COMMON_OPTIONS = {
    "expDir": os.path.join("data", "exp"),
    "continue": True,
    "batchSize": 256,
    "numSubBatches": 1,
    "train": None,
    "val": None,
    "gpus": None,
    "epochSize": math.inf,
    "prefetch": False,
    "numEpochs": 300,
    "learningRate": 0.001,
    "weightDecay": 0.0005,
    "solver": None,
    "solverOpts": None,
    "momentum": 0.9,
    "saveSolverState": True,
    "saveMomentum": None,
    "nesterovUpdate": False,
    "randomSeed": 0,
    "memoryMapFile": os.path.join(tempfile.gettempdir(), "matconvnet.bin"),
    "profile": False,
    "parameterServer": None,
    "plotStatistics": True,
    "postEpochFn": None,
    "verbose": True,
}

_FLAGS = ("continue", "prefetch", "saveSolverState", "nesterovUpdate", "profile",
          "conserveMemory", "sync", "cudnn", "plotDiagnostics", "plotStatistics", "verbose")


def _expand_structs(args):
    """``'name', value`` pairs with the fields of any mapping standing where a
    name would (MatConvNet's trainers call ``vl_argparse``, which takes
    ``cnn_train(net, imdb, getBatch, 'expDir', d, net.meta.trainOpts,
    opts.train)``)."""
    args, out, i = list(args), [], 0
    while i < len(args):
        if isinstance(args[i], Mapping):
            for name, value in args[i].items():
                out += [name, value]
            i += 1
        else:
            out += args[i:i + 2]
            i += 2
    return out


def parse_training_options(fname, args, opts, defaults):
    """Parse and check a trainer's options (``defaults``: its full table);
    ``args`` are pairs, mappings of options, or a mix of both."""
    o = Struct(parse_options(fname, _expand_structs(args), opts, defaults))
    o.batchSize = as_int(o.batchSize, fname, "batchSize", minimum=1)
    o.numSubBatches = as_int(o.numSubBatches, fname, "numSubBatches", minimum=1)
    o.numEpochs = as_int(o.numEpochs, fname, "numEpochs", minimum=0)
    o.randomSeed = as_int(o.randomSeed, fname, "randomSeed", minimum=0)
    o.epochSize = _count_or_inf(o.epochSize, fname, "epochSize")
    o.learningRate = learning_rates(o.learningRate, fname)
    o.weightDecay = as_float(o.weightDecay, fname, "weightDecay")
    o.momentum = as_float(o.momentum, fname, "momentum")
    for name in _FLAGS:
        if name in o:
            o[name] = as_bool(o[name], fname, name)
    if o.saveMomentum is not None:
        o.saveSolverState = as_bool(o.saveMomentum, fname, "saveMomentum")
    if o.expDir is None or not isinstance(o.expDir, (str, os.PathLike)):
        raise ValueError(f"{fname}: expDir must be a folder name, got {o.expDir!r}")
    if o.solver is not None and not callable(o.solver):
        raise TypeError(f"{fname}: solver must be a callable w, state = solver(w, state, grad, "
                        f"opts, lr) or None (SGD), got {type(o.solver).__name__}")
    if o.solver is None:
        if o.solverOpts is not None:
            raise TypeError(f"{fname}: solverOpts is valid only together with a solver")
    else:
        o.solverOpts = _solver_options(o.solver, o.solverOpts, fname)
    if o.postEpochFn is not None and not callable(o.postEpochFn):
        raise TypeError(f"{fname}: postEpochFn must be callable, got "
                        f"{type(o.postEpochFn).__name__}")
    if o.parameterServer is None:
        o.parameterServer = Struct(method="mmap", prefix="mcn")
    return o


def as_bool(value, fname, name):
    """A MATLAB logical: a number or bool, not a string."""
    if isinstance(value, str) or value is None:
        raise ValueError(f"{fname}: {name} must be true or false, got {value!r}")
    return as_float(value, fname, name) != 0


def _count_or_inf(value, fname, name):
    try:
        if np.size(value) == 1 and np.isposinf(np.asarray(value, dtype=np.float64)).all():
            return math.inf
    except (TypeError, ValueError):
        pass
    return as_int(value, fname, name, minimum=1)


def learning_rates(value, fname):
    """``learningRate`` as a float64 vector (one rate, or one per epoch)."""
    if np.size(value) == 0:
        raise ValueError(f"{fname}: learningRate must be a number or a non-empty sequence of "
                         f"numbers (one per epoch), got {value!r}")
    rates = numbers_of(value, fname, "learningRate", (np.size(value),))
    if np.any(rates < 0):
        raise ValueError(f"{fname}: learningRate must be >= 0, got {value!r}")
    return rates


def _solver_options(solver, given, fname):
    """MatConvNet's ``opts.solverOpts = opts.solver()`` with the given
    options merged over the defaults (names matched case-insensitively)."""
    try:
        inspect.signature(solver).bind()
        callable_without_arguments = True
    except (TypeError, ValueError):
        callable_without_arguments = False
    defaults = None
    if callable_without_arguments:
        try:
            defaults = solver()
        except Exception:  # a solver that cannot report its defaults
            defaults = None
    merged = Struct(defaults) if isinstance(defaults, Mapping) else Struct()
    if given is None:
        return merged
    if not isinstance(given, Mapping):
        raise ValueError(f"{fname}: solverOpts must be a mapping, got {type(given).__name__}")
    canonical = {key.lower().replace("_", ""): key for key in merged if isinstance(key, str)}
    for key, value in given.items():
        name = canonical.get(key.lower().replace("_", "")) if isinstance(key, str) else None
        if name is None:
            if isinstance(defaults, Mapping):
                raise TypeError(f"{fname}: unknown solverOpts entry {key!r}; the solver's "
                                f"options are: {', '.join(map(str, merged)) or '(none)'}")
            name = key
        merged[name] = value
    return merged


def _get(obj, name):
    if isinstance(obj, Mapping):
        return obj[name]
    return getattr(obj, name)


def _is_nan_marker(value):
    """MATLAB's ``NaN`` for "no images"."""
    if isinstance(value, (str, bytes)) or value is None:
        return False
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return array.size == 1 and bool(np.isnan(array).all())


def image_subset(value, imdb, set_code, name, fname):
    """The 0-based positions of the ``train`` (set 1) or ``val`` (set 2)
    images: ``value`` itself, ``imdb.images.set == set_code`` when it is
    ``None`` or empty, none when it is ``nan``."""
    if _is_nan_marker(value):
        return np.zeros(0, dtype=np.int64)
    if value is not None and np.size(value) > 0:
        try:
            positions = np.asarray(value)
        except (TypeError, ValueError):
            raise ValueError(f"{fname}: {name} must be an array of 0-based image positions, "
                             f"got {value!r}") from None
        positions = positions.ravel(order="F")
        if positions.dtype == bool or not np.issubdtype(positions.dtype, np.number) or \
                np.iscomplexobj(positions):
            raise ValueError(f"{fname}: {name} must be an array of 0-based image positions "
                             f"(integers), got {value!r}")
        if np.any(~np.isfinite(positions)) or np.any(positions != np.round(positions)) or \
                np.any(positions < 0):
            raise ValueError(f"{fname}: {name} must hold non-negative integers (0-based image "
                             f"positions), got {value!r}")
        return positions.astype(np.int64)
    try:
        sets = _get(_get(imdb, "images"), "set")
    except (KeyError, AttributeError, TypeError):
        raise ValueError(f"{fname}: {name} was not given and imdb has no images.set to take "
                         f"it from (images with set == {set_code})") from None
    return np.flatnonzero(np.asarray(sets).ravel(order="F") == set_code).astype(np.int64)
