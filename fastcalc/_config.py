"""``show_config``: what a bug report needs to say about this installation."""

from __future__ import annotations

import platform
import sys

__all__ = ["config", "show_config"]

# The SIMD features that decide which compiled code runs, in ascending order.
_SIMD_FEATURES = (
    "SSE2", "SSE41", "AVX", "AVX2", "FMA3", "AVX512F", "AVX512BW", "AVX512DQ", "AVX512VL",
    "ASIMD", "SVE",
)


def _simd_features() -> list[str]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        return []
    return [name for name in _SIMD_FEATURES if __cpu_features__.get(name)]


def config() -> dict[str, object]:
    """The facts :func:`show_config` prints, as a dictionary."""
    import numpy

    from fastcalc import __version__, _cython, _dispatch

    status = _dispatch.backend_status()
    info: dict[str, object] = {
        "fastcalc": __version__,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "numpy": numpy.__version__,
        "numba": None,
        "backends": status,
        "num_threads": _dispatch.thread_setting(),
        "usable_cores": _dispatch.usable_cores(),
        "threads_per_backend": {
            backend: _dispatch.get_num_threads(backend)
            for backend, reason in status.items() if reason is None
        },
        "cython_isa": None,
        "cython_isas_here": [],
        "openmp": None,
        "openmp_waits": {},
        "cpu_simd": _simd_features(),
    }
    if status["numba"] is None:
        import numba

        info["numba"] = numba.__version__
        try:
            info["numba_threading_layer"] = numba.threading_layer()
        except ValueError:  # none could be loaded: Numba says why on a parallel call
            info["numba_threading_layer"] = "none loaded"
    if status["cython"] is None:
        module = _cython.load("activations")
        info["cython_isa"] = _cython.selected_isa()
        info["cython_isas_here"] = _cython.available_isas("activations")
        info["openmp"] = bool(module.OPENMP)
    info["openmp_waits"] = dict(_dispatch.openmp_waits)
    return info


def threads_summary(info: dict[str, object]) -> str:
    """The thread count of :func:`config`'s ``info`` and what each backend runs on."""
    counts = info["threads_per_backend"]
    per_backend = ", ".join(f"{name} {count}" for name, count in counts.items())
    cores = info["usable_cores"]
    usable = (f"more than the {cores} usable cores: oversubscribed"
              if info["num_threads"] > cores else f"{cores} usable cores")
    return f"{info['num_threads']} (fastcalc.set_num_threads; {per_backend}; {usable})"


def show_config() -> None:
    """Print versions, backends, threads and CPU features for a bug report.

    Examples
    --------
    >>> import fastcalc
    >>> fastcalc.show_config()  # doctest: +SKIP
    fastcalc 0.1.0 ...
    """
    info = config()
    lines = [
        f"fastcalc {info['fastcalc']}",
        f"python {info['python']} on {info['platform']}",
        f"numpy {info['numpy']}",
        f"numba {info['numba'] or 'not available'}",
        "backends:",
    ]
    for backend, reason in info["backends"].items():
        state = "available" if reason is None else f"unavailable: {reason}"
        lines.append(f"  {backend:<7} {state}")
    lines.append(f"threads: {threads_summary(info)}")
    if info["numba"]:
        lines.append(f"numba threading layer: {info['numba_threading_layer']}")
    if info["cython_isa"]:
        lines.append(
            f"cython extensions: {info['cython_isa']} variant loaded "
            f"(this CPU can run: {', '.join(info['cython_isas_here'])}); "
            f"OpenMP: {'yes' if info['openmp'] else 'no (kernels run single-threaded)'}"
        )
    for backend, waits in info["openmp_waits"].items():
        lines.append(f"{backend} idle threads: {waits}")
    lines.append(f"CPU SIMD: {' '.join(info['cpu_simd']) or 'unknown'}")
    print("\n".join(lines))
