"""The numpy ufuncs behind :func:`fastcalc.sigmoid` and :func:`fastcalc.sigmoid_derivative`.

``fastcalc.ufuncs.sigmoid``, ``fastcalc.ufuncs.sigmoid_derivative`` and
``fastcalc.ufuncs.sigmoid_derivative_from_output`` are :class:`numpy.ufunc`
objects, for code that needs the ufunc itself (``isinstance(f, np.ufunc)``,
a registry of ufuncs); :func:`fastcalc.sigmoid` calls them and adds the
``backend=`` keyword.  They run the backend :func:`fastcalc.get_backend`
names (:func:`fastcalc.use_backend` selects one): the Cython kernels under
``"auto"``.  Their loops come from :data:`LOOP_TYPES`.

They are built by fastcalc's Cython extension the first time they are read
(``import fastcalc`` does not load it).  pickle finds a ufunc by its name in
a module that holds it: this one, so a ufunc in a Dask graph is found again
on a worker.

Examples
--------
>>> import numpy as np
>>> from fastcalc import ufuncs
>>> isinstance(ufuncs.sigmoid, np.ufunc)
True
>>> ufuncs.sigmoid(np.array([0.0, np.inf]))
array([0.5, 1. ])
"""

from __future__ import annotations

import threading

from fastcalc import _dispatch

# The ufuncs are made on first read, by __getattr__.
__all__ = ["LOOP_TYPES", "sigmoid", "sigmoid_derivative",  # noqa: F822
           "sigmoid_derivative_from_output"]

_NAMES = ("sigmoid", "sigmoid_derivative", "sigmoid_derivative_from_output")

# The loops of every ufunc, as numpy's ``ufunc.types`` writes them (numpy
# does not list loops made with its ArrayMethod API there): bool and integers
# give float64, float16 is computed in float32.
LOOP_TYPES = ("?->d", "b->d", "B->d", "h->d", "H->d", "i->d", "I->d", "l->d", "L->d",
              "q->d", "Q->d", "e->e", "f->f", "d->d")

_DOCS = {
    "sigmoid": "Logistic sigmoid 1 / (1 + exp(-x)), numerically stable: the ufunc of "
               "fastcalc.sigmoid (which adds backend=).",
    "sigmoid_derivative": "Derivative of the sigmoid, sigmoid(x) * sigmoid(-x): the ufunc of "
                          "fastcalc.sigmoid_derivative (which adds backend=).",
    "sigmoid_derivative_from_output": "Derivative of the sigmoid from its output s, "
                                      "s * (1 - s): the ufunc of "
                                      "fastcalc.sigmoid_derivative(s, from_output=True).",
}

_lock = threading.Lock()


def _cython_module():
    """The Cython activations module; RuntimeError if it cannot be loaded."""
    return _dispatch._module("cython", "activations")


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from fastcalc import activations

    module = _cython_module()
    with _lock:
        ufunc = globals().get(name)
        if ufunc is None:
            ufunc = module.make_ufunc(
                name, _DOCS[name], LOOP_TYPES, _dispatch._context_backend, vars(_dispatch),
                _dispatch.kernel_threads, activations.run_backend)
            globals()[name] = ufunc
    return ufunc
