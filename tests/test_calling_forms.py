"""One calling form for every block (API.md, "Calling convention").

The derivative is the first extra positional argument that is not a string
(MatConvNet's rule) or the keyword-only ``dzdy=``; options are MATLAB-style
pairs and flags or keywords.  For every ``vl_nn*`` function, one table of
sample calls checks that::

    f(*fixed, dy, *pairs) == f(*fixed, *pairs, dzdy=dy) == f(*fixed, dzdy=dy, **kw)
    f(*fixed, *pairs)     == f(*fixed, **kw)            == f(*fixed, None, *pairs)

and that a derivative given both positionally and as ``dzdy=`` is a
``TypeError`` saying so.
"""

import numpy as np
import pytest

import vlnn


def _rand(rng, *shape):
    return rng.standard_normal(shape)


def _samples():
    """name -> (fixed positional arguments, pairs tuple, keyword dict).

    Each pairs tuple and keyword dict give the same options (non-default
    values, so an option lost on the way changes the result)."""
    rng = np.random.default_rng(0)
    x = _rand(rng, 5, 5, 3, 2)
    mask = (rng.random(x.shape) >= 0.3) / 0.7
    labels = np.array([[[1, 3]]]).reshape(1, 1, 1, 2)
    pos = 1 + rng.random((5, 5, 1, 2)) * 0.5
    grid = np.clip(_rand(rng, 2, 4, 3, 2) * 0.5, -1, 1)
    rois = np.array([[1, 1, 1, 4, 5], [2, 2, 1, 5, 3]], float).T
    a, b = _rand(rng, 5, 5, 2, 2), _rand(rng, 5, 5, 1, 2)
    return {
        "vl_nnconv": ((x, _rand(rng, 3, 3, 3, 4), _rand(rng, 4)),
                      ("pad", 1, "Stride", 2, "NoCudnn"), {"pad": 1, "stride": 2, "no_cudnn": True}),
        "vl_nnconvt": ((x, _rand(rng, 3, 3, 2, 3), _rand(rng, 2)),
                       ("upsample", 2, "crop", [1, 0, 0, 1]), {"Upsample": 2, "crop": [1, 0, 0, 1]}),
        "vl_nnpool": ((x, [2, 3]), ("method", "avg", "pad", 1), {"method": "avg", "pad": 1}),
        "vl_nnrelu": ((x,), ("leak", 0.2), {"Leak": 0.2}),
        "vl_nnsigmoid": ((x,), (), {}),
        "vl_nnsoftmax": ((x,), (), {}),
        "vl_nnsoftmaxloss": ((x, labels), (), {}),
        "vl_nnloss": ((x, labels), ("loss", "mhinge", "instanceWeights", np.array([2.0, 0.5]).reshape(1, 1, 1, 2)),
                      {"loss": "mhinge", "instance_weights": np.array([2.0, 0.5]).reshape(1, 1, 1, 2)}),
        "vl_nnnormalize": ((x, [3, 2, 0.1, 0.75]), ("Cudnn",), {"cudnn": True}),
        "vl_nnnormalizelp": ((x,), ("p", 4, "spatial", "epsilon", 0.5),
                             {"p": 4, "spatial": True, "epsilon": 0.5}),
        "vl_nnspnorm": ((x, [3, 3, 0.5, 0.75]), (), {}),
        "vl_nnnoffset": ((pos, [0.5, 0.75]), (), {}),
        "vl_nnbnorm": ((x, 1 + _rand(rng, 3), _rand(rng, 3)), ("epsilon", 0.5), {"Epsilon": 0.5}),
        "vl_nndropout": ((x,), ("mask", mask, "rate", 0.3), {"mask": mask, "rate": 0.3}),
        "vl_nnpdist": ((x, _rand(rng, 1, 1, 3, 2), 2), ("noRoot", True, "epsilon", 0.1),
                       {"no_root": True, "epsilon": 0.1}),
        "vl_nnconcat": (([a, b], 3), ("inputSizes", [[5, 5, 2, 2], [5, 5, 1, 2]]),
                        {"inputSizes": [[5, 5, 2, 2], [5, 5, 1, 2]]}),
        "vl_nncrop": ((x, [1, 0, 2, 1]), (), {}),
        "vl_nnbilinearsampler": ((x, grid), ("NoCudnn", "CudnnWorkspaceLimit", 1024),
                                 {"nocudnn": True, "cudnnWorkspaceLimit": 1024}),
        "vl_nnroipool": ((x, rois), ("method", "avg", "subdivisions", [2, 3]),
                         {"Method": "avg", "Subdivisions": [2, 3]}),
    }


SAMPLES = _samples()
BLOCKS = sorted(SAMPLES)


def test_the_table_covers_every_block():
    exported = {name for name in vlnn.__all__ if name.startswith("vl_nn")}
    assert exported == set(SAMPLES)


def _equal(a, b):
    """Same structure, shapes, dtypes and values (NaN nowhere expected)."""
    if isinstance(a, (tuple, list)):
        return (isinstance(b, (tuple, list)) and len(a) == len(b)
                and all(_equal(u, v) for u, v in zip(a, b)))
    if a is None or b is None:
        return a is b
    return (isinstance(b, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype
            and np.array_equal(a, b))


def _forward_output(name, fixed, kw):
    y = getattr(vlnn, name)(*fixed, **kw)
    return y[0] if name == "vl_nndropout" else y


@pytest.mark.parametrize("name", BLOCKS)
def test_three_forms_are_one_call(name):
    f = getattr(vlnn, name)
    fixed, pairs, kw = SAMPLES[name]
    y = _forward_output(name, fixed, kw)
    dy = np.random.default_rng(1).standard_normal(np.shape(y))

    forward = [f(*fixed, *pairs), f(*fixed, **kw), f(*fixed, None, *pairs),
               f(*fixed, *pairs, dzdy=None)]
    assert all(_equal(forward[0], other) for other in forward[1:])

    backward = [f(*fixed, dy, *pairs), f(*fixed, *pairs, dzdy=dy), f(*fixed, dzdy=dy, **kw),
                f(*fixed, dy, **kw)]
    assert all(_equal(backward[0], other) for other in backward[1:])
    assert not _equal(backward[0], forward[0])  # the derivative did select backward mode


@pytest.mark.parametrize("name", BLOCKS)
@pytest.mark.parametrize("positional", ["array", "none"])
def test_derivative_both_positional_and_keyword_is_a_type_error(name, positional):
    f = getattr(vlnn, name)
    fixed, pairs, kw = SAMPLES[name]
    dy = np.ones(np.shape(_forward_output(name, fixed, kw)))
    given = dy if positional == "array" else None
    with pytest.raises(TypeError, match=rf"{name}: the derivative was given both positionally "
                                        r"and as dzdy="):
        f(*fixed, given, *pairs, dzdy=dy)


def test_crop_input_size_positionally_or_by_keyword():
    x = np.arange(24.0).reshape(4, 3, 2)
    dy = np.ones((2, 2, 2, 1))
    expected = vlnn.vl_nncrop(x, [1, 1, 0, 1], dy)
    for dx in (vlnn.vl_nncrop(None, [1, 1, 0, 1], dy, [4, 3, 2]),
               vlnn.vl_nncrop(None, [1, 1, 0, 1], dzdy=dy, input_size=[4, 3, 2]),
               vlnn.vl_nncrop(None, [1, 1, 0, 1], dy, input_size=[4, 3, 2])):
        assert _equal(expected, dx)
    with pytest.raises(TypeError, match="vl_nncrop: expected at most"):
        vlnn.vl_nncrop(None, [1, 1, 0, 1], dy, [4, 3, 2], input_size=[4, 3, 2])
    with pytest.raises(TypeError, match="vl_nncrop: expected at most"):
        vlnn.vl_nncrop(None, [1, 1, 0, 1], dy, [4, 3, 2], 5)
    with pytest.raises(TypeError, match="vl_nncrop: takes no options, got 'pad'"):
        vlnn.vl_nncrop(x, 1, "pad", 1)


def test_derivative_after_the_options_is_not_taken():
    # MatConvNet reads the derivative only right after the fixed arguments
    x = np.ones((3, 3, 1, 1))
    with pytest.raises(TypeError, match="vl_nnrelu: expected an option name, got ndarray"):
        vlnn.vl_nnrelu(x, "leak", 0.1, np.ones((3, 3, 1, 1)))
