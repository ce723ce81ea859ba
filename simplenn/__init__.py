"""simplenn: MatConvNet's vl_simplenn and companions (chains of vlnn blocks).

A network is a mapping with ``layers`` (a list of layer mappings) and
``meta``; ``res = vl_simplenn(net, x, dzdy)`` runs it forward (and backward
when ``dzdy`` is given).  Networks saved by MatConvNet load with
``load_net``; ``cnn_train`` trains them with SGD or one of
``simplenn.solvers``.  This package depends on :mod:`vlnn`, never the other
way round.
"""

from . import solvers
from .diagnose import vl_simplenn_diagnose
from .display import vl_simplenn_display
from .io import load_net, save_net
from .move import vl_simplenn_move
from .simplenn import vl_simplenn
from .struct import Struct, struct
from .tidy import vl_simplenn_tidy
from .train import cnn_train

__all__ = [
    "vl_simplenn", "vl_simplenn_tidy", "vl_simplenn_display", "vl_simplenn_move",
    "vl_simplenn_diagnose", "load_net", "save_net", "cnn_train", "solvers",
    "Struct", "struct",
]
