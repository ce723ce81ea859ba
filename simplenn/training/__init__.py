"""The training engine shared by ``cnn_train`` and ``cnn_train_dag``.

``loop``         :class:`Trainer`, MatConvNet's epoch loop over a model
                 object that holds what a network type does differently
``update``       :class:`ParamSlot` and :func:`update_parameters` (SGD with
                 momentum, the :mod:`simplenn.solvers`, moving averages)
``options``      the options both trainers take, parsed and checked once
``checkpoints``  ``net-epoch-N.mat``: find, resume, write atomically, clean
``output``       messages, the progress line, the ``net-train.png`` figure
``device``       the CPU or one GPU, and the dropout random streams
``comm``         the workers of a data-parallel (MPI) run
"""

from .checkpoints import (checkpoint_path, last_checkpoint, remove_stale_temporaries, resume,
                          stats_from_variable, stats_variable, write_checkpoint)
from .comm import MPICommunicator, SingleProcess, get_communicator, world_size_from_environment
from .device import Device, dropout_generator, seeded_dropout, to_host
from .loop import Trainer, allreduce_derivatives, combine_statistics
from .options import COMMON_OPTIONS, as_bool, image_subset, learning_rates, parse_training_options
from .output import Printer, Progress, figure_tools, per_statistic, plot_statistics, save_figure
from .update import ParamSlot, update_parameters

__all__ = [
    "Trainer", "ParamSlot", "update_parameters", "COMMON_OPTIONS", "parse_training_options",
    "image_subset", "learning_rates", "as_bool", "checkpoint_path", "last_checkpoint",
    "resume", "write_checkpoint", "remove_stale_temporaries", "stats_variable",
    "stats_from_variable", "Printer", "Progress", "figure_tools", "save_figure",
    "plot_statistics", "per_statistic", "Device", "to_host", "seeded_dropout",
    "dropout_generator", "get_communicator", "world_size_from_environment", "SingleProcess",
    "MPICommunicator", "allreduce_derivatives", "combine_statistics",
]
