"""Collection rules for the whole tree (the doctests of ``fastcalc/`` included)."""

import importlib.util

# fastcalc.dask needs dask, an optional dependency: without it, its doctests are skipped
# (tests/test_dask.py skips itself).
collect_ignore = [] if importlib.util.find_spec("dask") else ["fastcalc/dask.py"]
