import os
import sys

# let the tests import the shared helpers as `_checks`
sys.path.insert(0, os.path.dirname(__file__))
