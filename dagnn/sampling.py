"""Sampling blocks: :class:`BilinearSampler` (``vl_nnbilinearsampler``),
:class:`ROIPooling` (``vl_nnroipool``) and the grid generators
:class:`AffineGridGenerator` and :class:`UniformScalingGridGenerator`
(MatConvNet's ``matlab/+dagnn/*.m`` of the same names).  The grid
generators are computed here, once for NumPy and CuPy."""

import numpy as np

from vlnn import vl_nnbilinearsampler, vl_nnroipool
from vlnn._backend import get_array_module

from ._common import size_row, vector_value
from .layer import Layer

__all__ = ["BilinearSampler", "ROIPooling", "AffineGridGenerator",
           "UniformScalingGridGenerator"]


class BilinearSampler(Layer):
    """Bilinear sampling of the first input at the grid of the second,
    ``vl_nnbilinearsampler``: ``dagnn.BilinearSampler()``.

    Inputs: the data ``H x W x C x N`` and the grid ``2 x HO x WO x N``
    (``(y, x)`` in ``[-1, 1]``); output ``HO x WO x C x N``.  Both inputs
    get derivatives.
    """

    def forward(self, inputs, params):
        return [vl_nnbilinearsampler(inputs[0], inputs[1])]

    def backward(self, inputs, params, derOutputs):
        dx, dgrid = vl_nnbilinearsampler(inputs[0], inputs[1], dzdy=derOutputs[0])
        return [dx, dgrid], []

    def getOutputSizes(self, inputSizes):
        """``[HO, WO, C, N]`` from the grid and the data sizes."""
        x_size, grid_size = inputSizes[0], inputSizes[1]
        return [size_row([grid_size[1], grid_size[2], x_size[2], x_size[3]])]


class ROIPooling(Layer):
    """Region-of-interest pooling, ``vl_nnroipool``.

    ``dagnn.ROIPooling('method', 'max', 'subdivisions', [6 6],
    'transform', 1/16)``.  Inputs: the data and the ROIs (``5 x R``:
    1-based image index, then ``x1 y1 x2 y2``); output
    ``SH x SW x C x R``, or ``1 x 1 x SH*SW*C x R`` with ``flatten`` (a
    column-major reshape).  The ROIs get no derivative (``None``).

    Properties
    ----------
    method : 'max' or 'avg', default 'max'
    subdivisions : [SH, SW], default [6, 6]
    transform : scalar, 2x3 or 6-element, default 1
        Maps ROI coordinates to data coordinates.
    flatten : bool, default False
    """

    PROPERTIES = {"method": "max", "subdivisions": [6, 6], "transform": 1, "flatten": False}

    def _set_subdivisions(self, value):
        return vector_value(value)

    def _set_transform(self, value):
        return value if hasattr(value, "ndim") and value.ndim > 1 else vector_value(value)

    def _options(self):
        return {"subdivisions": self.subdivisions, "transform": self.transform,
                "method": self.method}

    def forward(self, inputs, params):
        num_rois = inputs[1].size // 5
        y = vl_nnroipool(inputs[0], inputs[1], **self._options())
        if self.flatten:
            y = y.reshape((1, 1, -1, num_rois), order="F")
        return [y]

    def backward(self, inputs, params, derOutputs):
        num_rois = inputs[1].size // 5
        dy = derOutputs[0]
        if self.flatten:
            sub = self.subdivisions if isinstance(self.subdivisions, list) \
                else [self.subdivisions] * 2
            dy = dy.reshape((int(sub[0]), int(sub[1]), -1, num_rois), order="F")
        dx = vl_nnroipool(inputs[0], inputs[1], dzdy=dy, **self._options())
        return [dx, None], []

    def getOutputSizes(self, inputSizes):
        """``[SH, SW, C, R]`` (``[1, 1, SH*SW*C, R]`` with ``flatten``; MatConvNet
        gives the unflattened size there, which is not the output's)."""
        data, rois = inputSizes[0], inputSizes[1]
        count = 0 if len(data) == 0 else float(np.prod(np.asarray(rois, np.float64))) / 5
        sub = self.subdivisions if isinstance(self.subdivisions, list) \
            else [self.subdivisions] * 2
        if self.flatten:
            return [size_row([1, 1, sub[0] * sub[1] * data[2], count])]
        return [size_row([sub[0], sub[1], data[2], count])]


class _GridGenerator:
    """Mixed into the grid generators (not a block itself): the output size ``Ho x Wo``, and the
    cached constant grid ``xxyy`` (transient, float64 on the host; cleared
    when ``Ho`` or ``Wo`` change and by :meth:`reset`)."""

    PROPERTIES = {"Ho": 0, "Wo": 0}
    TRANSIENT = {"xxyy": None}

    def _set_Ho(self, value):
        object.__setattr__(self, "xxyy", None)
        return vector_value(value)

    def _set_Wo(self, value):
        object.__setattr__(self, "xxyy", None)
        return vector_value(value)

    def reset(self):
        """Forget the cached grid."""
        self.xxyy = None

    def getOutputSizes(self, inputSizes):
        """``[2, Ho, Wo, N]``."""
        return [size_row([2, self.Ho, self.Wo, inputSizes[0][3]])]

    def _grid(self, xp, dtype):
        if self.xxyy is None:
            self.initGrid()
        return xp.asarray(self.xxyy, dtype=dtype)


class AffineGridGenerator(_GridGenerator, Layer):
    """An affine sampling grid for :class:`BilinearSampler`.

    ``dagnn.AffineGridGenerator('Ho', HO, 'Wo', WO)`` maps ``1 x 1 x 6 x N``
    affine transforms to ``2 x HO x WO x N`` grids.  The six numbers of an
    image, read column-major as the ``2 x 3`` matrix ``A = [L t]``
    (``A(:) = [c1 .. c6]``), map the normalised output coordinates
    ``(u, v)`` in ``[-1, 1]`` (``u = linspace(-1, 1, HO)`` down the rows,
    ``v = linspace(-1, 1, WO)`` across) to::

        grid(k, i, j, n) = u_i L(1, k) + v_j L(2, k) + t(k)      k = 1, 2

    (MatConvNet's code: ``[u v] * L + t'``).

    Properties
    ----------
    Ho, Wo : int, default 0
        The grid size.
    """

    def initGrid(self):
        """Compute ``xxyy``: the ``HO*WO x 2`` coordinates ``[u, v]``,
        ``v`` varying fastest."""
        u = np.linspace(-1, 1, int(self.Ho))
        v = np.linspace(-1, 1, int(self.Wo))
        self.xxyy = np.stack([np.repeat(u, len(v)), np.tile(v, len(u))], axis=1)

    def forward(self, inputs, params):
        a = inputs[0]
        xp = get_array_module(a)
        n = a.shape[3] if a.ndim > 3 else 1
        ho, wo = int(self.Ho), int(self.Wo)
        affine = a.reshape((2, 3, n), order="F")
        linear = affine[:, :2, :].reshape((2, 2 * n), order="F")
        shift = affine[:, 2, :].reshape((1, 2 * n), order="F")
        g = self._grid(xp, a.dtype) @ linear + shift          # (WO*HO) x 2N
        g = g.reshape((wo, ho, 2, n), order="F").transpose(2, 1, 0, 3)
        return [xp.ascontiguousarray(g)]

    def backward(self, inputs, params, derOutputs):
        dy = derOutputs[0]
        xp = get_array_module(dy)
        ho, wo = int(self.Ho), int(self.Wo)
        n = dy.shape[3] if dy.ndim > 3 else 1
        dy = dy.reshape((2, ho, wo, n), order="F").transpose(2, 1, 0, 3)
        dy = dy.reshape((ho * wo, 2 * n), order="F")
        da = xp.zeros((2, 3, n), dtype=dy.dtype)
        da[:, :2, :] = (self._grid(xp, dy.dtype).T @ dy).reshape((2, 2, n), order="F")
        da[:, 2, :] = dy.sum(axis=0).reshape((2, n), order="F")
        return [da.reshape(inputs[0].shape, order="F")], []


class UniformScalingGridGenerator(_GridGenerator, Layer):
    """An isotropic scaling and translation grid for :class:`BilinearSampler`.

    ``dagnn.UniformScalingGridGenerator('Ho', HO, 'Wo', WO)`` maps
    ``1 x 1 x 3 x N`` parameters ``[s, ty, tx]`` to ``2 x HO x WO x N``
    grids::

        grid(1, i, j, n) = s u_i + ty,   grid(2, i, j, n) = s v_j + tx

    with ``u = linspace(-1, 1, HO)``, ``v = linspace(-1, 1, WO)``.

    Properties
    ----------
    Ho, Wo : int, default 0
        The grid size.
    """

    def initGrid(self):
        """Compute ``xxyy``: the ``2 x HO*WO`` coordinates ``[u; v]``,
        ``u`` varying fastest."""
        u = np.linspace(-1, 1, int(self.Ho))
        v = np.linspace(-1, 1, int(self.Wo))
        self.xxyy = np.stack([np.tile(u, len(v)), np.repeat(v, len(u))], axis=0)

    def forward(self, inputs, params):
        t = inputs[0]
        shape = tuple(t.shape) + (1,) * (4 - t.ndim)
        if shape[:3] != (1, 1, 3):
            raise ValueError(
                f"UniformScalingGridGenerator: transforms have incorrect shape "
                f"{tuple(t.shape)}; expected 1 x 1 x 3 x N")
        xp = get_array_module(t)
        n = shape[3]
        t = t.reshape((3, n), order="F")
        g = self._grid(xp, t.dtype)[:, :, None] * t[0][None, None, :] + t[1:, None, :]
        return [g.reshape((2, int(self.Ho), int(self.Wo), n), order="F")]

    def backward(self, inputs, params, derOutputs):
        dy = derOutputs[0]
        xp = get_array_module(dy)
        n = dy.shape[3] if dy.ndim > 3 else 1
        dy = dy.reshape((2, int(self.Ho) * int(self.Wo), n), order="F")
        da = xp.zeros((1, 1, 3, n), dtype=dy.dtype)
        da[0, 0, 0, :] = (self._grid(xp, dy.dtype)[:, :, None] * dy).sum(axis=(0, 1))
        da[0, 0, 1:, :] = dy.sum(axis=1)
        return [da.reshape(inputs[0].shape)], []
