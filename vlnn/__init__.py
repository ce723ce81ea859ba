"""vlnn: MatConvNet's vl_nn* blocks for numpy (and CuPy).

Data are ``H x W x C x N`` arrays; passing the derivative argument switches
a block to backward mode: ``y = vl_nnconv(x, w, b)``,
``dx, dw, db = vl_nnconv(x, w, b, dzdy)``.  The derivative is the first
extra positional argument that is not a string, or the keyword ``dzdy=``;
options are keywords or MATLAB-style pairs, so
``vl_nnconv(x, w, b, dy, 'pad', 1)``, ``vl_nnconv(x, w, b, 'pad', 1, dzdy=dy)``
and ``vl_nnconv(x, w, b, dzdy=dy, pad=1)`` are one call.

MatConvNet's porting helpers live here too: :func:`vl_argparse`,
:func:`vl_imreadjpeg` and :func:`set_random_seed` (MATLAB's ``rng``).
"""

from .argparse import vl_argparse
from ._im2col import get_workspace_limit, set_workspace_limit
from .activations import vl_nnrelu, vl_nnsigmoid, vl_nnsoftmax
from .conv import vl_nnconv, vl_nnconvt
from .distance import vl_nnpdist
from .imread import vl_imreadjpeg
from .dropout import vl_nndropout
from .loss import vl_nnloss, vl_nnsoftmaxloss
from .normalization import (vl_nnbnorm, vl_nnnoffset, vl_nnnormalize, vl_nnnormalizelp,
                            vl_nnspnorm)
from .pool import vl_nnpool
from ._threads import get_num_threads, set_num_threads
from .rng import get_random_generator, set_random_generator, set_random_seed
from .sampling import vl_nnbilinearsampler, vl_nnroipool
from .tensors import vl_nnconcat, vl_nncrop, vl_taccum

__all__ = [
    "vl_nnconv", "vl_nnconvt", "vl_nnpool", "vl_nnrelu", "vl_nnsoftmaxloss",
    "vl_nnsigmoid", "vl_nnsoftmax", "vl_nnloss", "vl_nnnormalize", "vl_nnnormalizelp",
    "vl_nnbnorm", "vl_nnspnorm", "vl_nnnoffset", "vl_nndropout",
    "vl_nnbilinearsampler", "vl_nnroipool", "vl_nnpdist", "vl_nnconcat", "vl_nncrop", "vl_taccum",
    "set_workspace_limit", "get_workspace_limit",
    "vl_argparse", "vl_imreadjpeg", "set_random_seed", "get_random_generator", "set_random_generator",
    "set_num_threads", "get_num_threads",
]
