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
