#!/usr/bin/env python3
"""conv -> relu -> conv, forward and backward by hand, checked numerically.

The classic MatConvNet exercise: build a tiny two-layer network out of
``vl_nnconv`` and ``vl_nnrelu``, back-propagate through it by calling each
block with its derivative argument, and confirm the derivatives with
central differences.  Run it from the repository root::

    python3 examples/conv_relu_conv.py

It prints the shapes at every step, the analytic and numerical derivatives
side by side, and a final PASS or FAIL line; the exit status is 1 on a
mismatch.

Layout.  Every array is MatConvNet's ``H x W x C x N``: height, width,
channels, images, in that order of dimensions, exactly as in MATLAB (missing
trailing dimensions are 1).  A ``5 x 7 x 3 x 2`` array holds two 5-pixel-high,
7-pixel-wide images with 3 channels each; ``x[:, :, :, 0]`` is the first
image.  Filters for ``vl_nnconv`` are ``FH x FW x C x K``: ``K`` filters, each
as deep as the data.  The memory order (C or Fortran) does not matter; only
the shape does.

Forward and backward.  A block called without the derivative argument is
the forward pass; passing the derivative of a scalar objective with respect
to the block's output (``dzdy``, in the position MatConvNet puts it)
switches the same call to backward mode and returns the derivatives with
respect to the block's inputs, each shaped like its input::

    y          = vl_nnconv(x, w, b)          # forward
    dx, dw, db = vl_nnconv(x, w, b, dzdy)    # backward
    z          = vl_nnrelu(y)                # forward
    dy         = vl_nnrelu(y, dzdz)          # backward
"""

import sys

import numpy as np

from vlnn import vl_nnconv, vl_nnrelu

# Everything is float64 so that central differences are accurate to ~1e-10;
# the blocks accept float32 just the same.
DTYPE = np.float64
EPS = 1e-6        # central-difference step
RTOL = 1e-6       # tolerance on |analytic - numerical| / max(|analytic|, |numerical|, 1)


def inner(a, b):
    """``<a, b>``: the sum of the element-wise products."""
    return float(np.sum(np.asarray(a) * np.asarray(b)))


def shape_str(a):
    return " x ".join(str(s) for s in a.shape)


def show(call, **arrays):
    """Print a call and the shapes of what it returned."""
    shapes = ", ".join(f"{name} {shape_str(a)}" for name, a in arrays.items())
    print(f"{call:<48}{shapes}")


class Checker:
    """Compares analytic and numerical derivatives and remembers failures."""

    def __init__(self):
        self.failures = 0
        self.checks = 0

    def compare(self, label, analytic, numerical):
        error = abs(analytic - numerical) / max(abs(analytic), abs(numerical), 1.0)
        ok = error <= RTOL
        self.checks += 1
        self.failures += not ok
        print(f"  {label:<28} analytic {analytic: .10e}   numerical {numerical: .10e}"
              f"   rel. error {error:.1e}  {'ok' if ok else 'MISMATCH'}")


def main():
    rng = np.random.default_rng(0)

    # ---------------------------------------------------------------- data
    # 2 images of 8 x 8 pixels with 3 channels, H x W x C x N
    x = rng.standard_normal((8, 8, 3, 2)).astype(DTYPE)
    # layer 1: 5 filters of 3 x 3 x 3 (FH x FW x C x K), "same" padding
    w1 = rng.standard_normal((3, 3, 3, 5)).astype(DTYPE)
    b1 = rng.standard_normal(5).astype(DTYPE)
    # layer 2: 4 filters of 3 x 3 x 5, no padding
    w2 = rng.standard_normal((3, 3, 5, 4)).astype(DTYPE)
    b2 = rng.standard_normal(4).astype(DTYPE)
    pad1 = 1

    print("Shapes are H x W x C x N (data) and FH x FW x C x K (filters).")
    show("input", x=x)
    show("layer 1", w1=w1, b1=b1)
    show("layer 2", w2=w2, b2=b2)

    # ------------------------------------------------------------- forward
    # HO = floor((H + TOP + BOTTOM - FH) / STRIDE) + 1: 8 + 2 - 3 + 1 = 8
    y = vl_nnconv(x, w1, b1, pad=pad1)
    z = vl_nnrelu(y)
    # 8 - 3 + 1 = 6
    y1 = vl_nnconv(z, w2, b2)
    print("\nforward (no derivative argument)")
    show("y = vl_nnconv(x, w1, b1, pad=1)", y=y)
    show("z = vl_nnrelu(y)", z=z)
    show("y1 = vl_nnconv(z, w2, b2)", y1=y1)

    # The same call written as in MATLAB: trailing 'Name', value pairs.
    # Keyword names are matched case-insensitively, so Pad=1 works too.
    y_matlab = vl_nnconv(x, w1, b1, 'pad', 1)
    same = np.array_equal(y_matlab, y)
    print(f"vl_nnconv(x, w1, b1, 'pad', 1) gives the same y: {same}")

    # A random projection p of y1 turns the network into one scalar,
    # f = <p, y1>, whose derivative with respect to y1 is p itself.
    p = rng.standard_normal(y1.shape).astype(DTYPE)

    def f(x_, w1_=w1, b1_=b1):
        y_ = vl_nnconv(x_, w1_, b1_, pad=pad1)
        return inner(p, vl_nnconv(vl_nnrelu(y_), w2, b2))

    show("p = random projection of y1", p=p)
    print(f"f = <p, y1> = {f(x):.10f}")

    # ------------------------------------------------------------ backward
    # Walk the chain in reverse, each block called with the derivative of
    # f with respect to its output.  Every block returns derivatives shaped
    # exactly like its inputs.  Options (pad) must be the same as forward.
    dz, dw2, db2 = vl_nnconv(z, w2, b2, p)     # df/dz, df/dw2, df/db2
    dy = vl_nnrelu(y, dz)                      # df/dy  (passes dz where y > 0)
    dx, dw1, db1 = vl_nnconv(x, w1, b1, dy, pad=pad1)   # df/dx, df/dw1, df/db1
    print("\nbackward (derivative argument given)")
    show("dz, dw2, db2 = vl_nnconv(z, w2, b2, p)", dz=dz, dw2=dw2, db2=db2)
    show("dy = vl_nnrelu(y, dz)", dy=dy)
    show("dx, dw1, db1 = vl_nnconv(x, w1, b1, dy, pad=1)", dx=dx, dw1=dw1, db1=db1)

    # -------------------------------------------------------------- check
    # f is piecewise linear in x, w1 and b1 (the ReLU has a kink at 0), so a
    # central difference is exact up to rounding as long as no entry of y
    # crosses 0 within the step; with random data none comes that close.
    print(f"\nnumerical check: central differences, step {EPS:g}, float64")
    check = Checker()

    # Along a random direction v: <df/dx, v> = (f(x + e v) - f(x - e v)) / 2e
    v = rng.standard_normal(x.shape)
    check.compare("dx  along random v", inner(dx, v),
                  (f(x + EPS * v) - f(x - EPS * v)) / (2 * EPS))
    v = rng.standard_normal(w1.shape)
    check.compare("dw1 along random v", inner(dw1, v),
                  (f(x, w1 + EPS * v) - f(x, w1 - EPS * v)) / (2 * EPS))

    # A few individual entries (indices are 0-based Python indices).
    def entry(array, index):
        bump = np.zeros_like(array)
        bump[index] = EPS
        return bump

    for index in [(0, 0, 0, 0), (3, 4, 1, 1), (7, 7, 2, 1)]:
        bump = entry(x, index)
        check.compare(f"dx{list(index)}", dx[index],
                      (f(x + bump) - f(x - bump)) / (2 * EPS))
    for index in [(0, 0, 0, 0), (1, 2, 2, 3), (2, 1, 1, 4)]:
        bump = entry(w1, index)
        check.compare(f"dw1{list(index)}", dw1[index],
                      (f(x, w1 + bump) - f(x, w1 - bump)) / (2 * EPS))
    for index in [(0,), (4,)]:
        bump = entry(b1, index)
        check.compare(f"db1{list(index)}", db1[index],
                      (f(x, w1, b1 + bump) - f(x, w1, b1 - bump)) / (2 * EPS))

    print()
    if check.failures or not same:
        problems = []
        if check.failures:
            problems.append(f"{check.failures} of {check.checks} derivative checks mismatched")
        if not same:
            problems.append("the MATLAB-style call gave a different y")
        print("FAIL: " + "; ".join(problems))
        return 1
    print(f"PASS: all {check.checks} derivatives match central differences "
          f"(relative error <= {RTOL:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
