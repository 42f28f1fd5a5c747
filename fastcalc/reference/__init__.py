"""Pure-numpy reference implementations: readable, and the definition of truth.

Every compiled kernel in :mod:`fastcalc._numba` and the Cython extensions has
a twin here with the same name and signature; the tests compare them.
"""
