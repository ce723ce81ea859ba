"""vlnn.rng: the random state of the blocks (set_random_seed, MATLAB's rng)."""

import doctest
from types import SimpleNamespace

import numpy as np
import pytest

import vlnn
import vlnn.rng
from vlnn import get_random_generator, set_random_generator, set_random_seed, vl_nndropout


@pytest.fixture(autouse=True)
def keep_state():
    previous = get_random_generator()
    yield
    set_random_generator(previous)


X = np.ones((6, 5, 3, 2), np.float32)


def test_seed_reproduces_the_masks_and_installs_default_rng():
    set_random_seed(3)
    first = [vl_nndropout(X)[1] for _ in range(2)]
    assert not np.array_equal(first[0], first[1])   # the state advances
    set_random_seed(3)
    again = [vl_nndropout(X)[1] for _ in range(2)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    u = np.random.default_rng(3).random(X.shape, dtype=np.float32)
    np.testing.assert_array_equal(first[0], 2 * (u >= np.float32(0.5)).astype(np.float32))


def test_different_seeds_differ():
    set_random_seed(1)
    a = vl_nndropout(X)[1]
    set_random_seed(2)
    assert not np.array_equal(a, vl_nndropout(X)[1])


@pytest.mark.parametrize("seed, same_as", [(3.0, 3), (np.int64(3), 3), (np.array([[3]]), 3),
                                           ([1, 2, 3], [1, 2, 3]), ((4, 0), [4, 0]),
                                           (np.array([1.0, 2.0]), [1, 2]),
                                           (2 ** 70, 2 ** 70)])
def test_seed_forms(seed, same_as):
    set_random_seed(seed)
    got = get_random_generator().random(4)
    np.testing.assert_array_equal(got, np.random.default_rng(same_as).random(4))


@pytest.mark.parametrize("seed, match", [(-1, "seed must be >= 0"), (1.5, "seed must be integral"),
                                         ("3", "seed must be numeric"), ([], "seed must not be empty"),
                                         (None, "seed must be numeric"),
                                         ([1, -2], "seed must be >= 0")])
def test_bad_seeds(seed, match):
    with pytest.raises(ValueError, match=f"set_random_seed: {match}"):
        set_random_seed(seed)


def test_set_and_get_generator_return_the_previous_one():
    mine = np.random.default_rng(5)
    before = get_random_generator()
    assert set_random_generator(mine) is before
    assert get_random_generator() is mine
    assert vlnn.rng.random_generator_for(np) is mine
    m = vl_nndropout(X)[1]
    np.testing.assert_array_equal(
        m, 2 * (np.random.default_rng(5).random(X.shape, dtype=np.float32) >= 0.5))
    assert set_random_seed(0) is mine


@pytest.mark.parametrize("value", [5, None, np.random.RandomState(0)])
def test_set_generator_needs_a_generator(value):
    with pytest.raises(TypeError, match="set_random_generator: generator must be a "
                                        "numpy.random.Generator"):
        set_random_generator(value)


def test_device_state_is_seeded_from_the_generator_and_reset_by_seeding():
    made = []

    class FakeRandomState:                      # stands in for cupy.random.RandomState
        def __init__(self, seed):
            made.append(seed)

    fake = SimpleNamespace(random=SimpleNamespace(RandomState=FakeRandomState))
    set_random_seed(11)
    state = vlnn.rng.random_generator_for(fake)
    assert vlnn.rng.random_generator_for(fake) is state          # cached
    assert made == [int(np.random.default_rng(11).integers(2 ** 63 - 1))]
    set_random_seed(11)
    assert vlnn.rng.random_generator_for(fake) is not state      # rebuilt, same seed
    assert made[1] == made[0]


def test_docstring_examples():
    result = doctest.testmod(vlnn.rng)
    assert result.attempted > 0 and result.failed == 0
