"""Loader of the compiled Cython kernels.

setup.py builds every kernel family ``<family>`` once per instruction set, as
``fastcalc._cython.<family>_<isa>`` (``ISAS``, ascending).  :func:`load`
imports the best variant this CPU runs.  The environment variable
``FASTCALC_CYTHON_ISA`` (one of ``ISAS``) caps that choice, to test or debug
a lower level on a capable CPU; a value that is not one of ``ISAS``, or names
a variant this CPU cannot run or that was not compiled, warns once and is
ignored (the best variant runs).

This module imports nothing heavy: numpy (for the CPU features) and the
compiled modules are imported on the first :func:`load`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import threading
import warnings
from types import ModuleType

__all__ = ["ISAS", "ISA_ENV_VAR", "available_isas", "load", "selected_isa"]

ISAS = ("baseline", "avx2", "avx512")
ISA_ENV_VAR = "FASTCALC_CYTHON_ISA"

# The numpy CPU features (numpy's names) each ISA's code needs.
_REQUIRED_FEATURES = {
    "baseline": (),
    "avx2": ("AVX2", "FMA3"),
    "avx512": ("AVX512F", "AVX512BW", "AVX512DQ", "AVX512VL", "AVX2", "FMA3"),
}

_BUILD_HINT = (
    "the Cython extensions of fastcalc were not compiled; build them by installing "
    "fastcalc from source with a C compiler available (`pip install .`, or "
    "`pip install -e .` for development)"
)

_lock = threading.Lock()
_loaded: dict[tuple[str, str], ModuleType] = {}


def _new_lock() -> None:
    # A load another thread of the parent was in at fork time never ends in the
    # child: its lock would stay held forever.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock)


@functools.cache
def _cpu_isas() -> tuple[str, ...]:
    """The ISAS this CPU can run, ascending (baseline only if features are unknown)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy's private layout changed: stay safe
        features = {}
    return tuple(
        isa for isa in ISAS if all(features.get(name, False) for name in _REQUIRED_FEATURES[isa])
    )


def _compiled(family: str, isa: str) -> bool:
    # find_spec locates the extension file without loading it.
    return importlib.util.find_spec(f"{__name__}.{family}_{isa}") is not None


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    # selected_isa runs on every family's first load: one warning per cause.
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _cap(family: str, candidates: list[str]) -> str | None:
    """The variant ``FASTCALC_CYTHON_ISA`` asks for among ``candidates`` (None: no usable cap).

    A value that is not one of ``ISAS``, that this CPU cannot run, or whose
    variant was not compiled, warns once and is ignored.
    """
    requested = os.environ.get(ISA_ENV_VAR, "").strip().lower()
    if not requested:
        return None
    if requested in candidates:
        return requested
    if requested not in ISAS:
        reason = f"is not an instruction set level (valid values: {', '.join(ISAS)})"
    elif requested not in _cpu_isas():
        reason = "asks for an instruction set this CPU does not support"
    else:
        reason = f"asks for fastcalc._cython.{family}_{requested}, which was not compiled"
    fallback = f"using {candidates[-1]}, the best variant available" if candidates else "ignored"
    _warn_once(f"{ISA_ENV_VAR}={os.environ[ISA_ENV_VAR]!r} {reason}; {fallback}")
    return None


def available_isas(family: str) -> list[str]:
    """The compiled variants of ``family`` this CPU can run, ascending.

    Ignores ``FASTCALC_CYTHON_ISA``: tests run every variant listed here.
    """
    return [isa for isa in _cpu_isas() if _compiled(family, isa)]


def selected_isa(family: str = "activations") -> str:
    """The variant :func:`load` uses for ``family``.

    That is the best one this CPU runs, or the one ``FASTCALC_CYTHON_ISA``
    names.  A value of ``FASTCALC_CYTHON_ISA`` that is not one of ``ISAS``,
    names a variant this CPU cannot run or that was not compiled warns once
    (a RuntimeWarning) and is ignored.

    Raises
    ------
    ImportError
        If no usable variant is compiled.
    """
    candidates = available_isas(family)
    cap = _cap(family, candidates)
    if cap is not None:
        return cap
    if not candidates:
        raise ImportError(f"{_BUILD_HINT} (no module fastcalc._cython.{family}_*)")
    return candidates[-1]


def load(family: str, isa: str | None = None) -> ModuleType:
    """The compiled kernel module of ``family`` (``"activations"``, ...).

    Parameters
    ----------
    family : str
        The kernel family.
    isa : str, optional
        A variant from :func:`available_isas`; default :func:`selected_isa`.

    Raises
    ------
    ImportError
        If the requested or selected variant is not compiled or not usable.
    """
    isa = selected_isa(family) if isa is None else isa
    key = (family, isa)
    module = _loaded.get(key)
    if module is not None:
        return module
    available = available_isas(family)
    if not available:
        raise ImportError(f"{_BUILD_HINT} (no module fastcalc._cython.{family}_*)")
    if isa not in available:
        raise ImportError(
            f"fastcalc._cython.{family}_{isa} is not compiled or this CPU cannot run it; "
            f"available here: {', '.join(available)}"
        )
    with _lock:
        module = _loaded.get(key)
        if module is None:
            module = importlib.import_module(f"{__name__}.{family}_{isa}")
            _loaded[key] = module
    return module
