"""vlnn: MatConvNet's vl_nn* blocks for numpy (and CuPy).

Data are ``H x W x C x N`` arrays; passing the derivative argument switches
a block to backward mode: ``y = vl_nnconv(x, w, b)``,
``dx, dw, db = vl_nnconv(x, w, b, dzdy)``.
"""

from ._im2col import get_workspace_limit, set_workspace_limit
from .activations import vl_nnrelu
from .conv import vl_nnconv, vl_nnconvt
from .loss import vl_nnsoftmaxloss
from .pool import vl_nnpool

__all__ = [
    "vl_nnconv", "vl_nnconvt", "vl_nnpool", "vl_nnrelu", "vl_nnsoftmaxloss",
    "set_workspace_limit", "get_workspace_limit",
]
