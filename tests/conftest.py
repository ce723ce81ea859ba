import os
import sys

_TESTS = os.path.dirname(os.path.abspath(__file__))
# This tree's packages first (a plain checkout runs its tests, whether pytest
# is started as `python -m pytest` or as `pytest`), then tests/ itself so that
# the tests import the shared helpers as `_checks` and `fakecupy`.
for _path in (os.path.dirname(_TESTS), _TESTS):
    while _path in sys.path:
        sys.path.remove(_path)
    sys.path.insert(0, _path)


import zlib  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _reproducible_vlnn_generator(request):
    """Each test starts vlnn's generator (dropout masks, DagNN's initParams,
    the trainers' shuffles) from a seed of its own name, so that a failure
    reproduces whatever ran before; the previous generator is restored."""
    import vlnn
    previous = vlnn.get_random_generator()
    vlnn.set_random_seed(zlib.crc32(request.node.nodeid.encode()))
    yield
    vlnn.set_random_generator(previous)
