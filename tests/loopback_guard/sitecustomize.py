"""Guards every Python process the tests start (tests/support.py puts this directory first on
PYTHONPATH): see loopback_guard.py. Another ``sitecustomize`` further on the path still runs."""

import importlib.machinery
import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _here)
try:
    import loopback_guard
finally:
    sys.path.remove(_here)

if os.environ.get(loopback_guard.RECORD_ENV):
    loopback_guard.install()

_others = [p for p in sys.path if os.path.abspath(p or ".") != _here]
_spec = importlib.machinery.PathFinder.find_spec("sitecustomize", _others)
if _spec is not None and _spec.loader is not None:
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
