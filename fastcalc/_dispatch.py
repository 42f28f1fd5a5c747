"""Backend registry, backend selection and thread control.

A kernel family (``"activations"``, ...) has one module per backend with the
same kernel names and signatures:

- ``"numpy"``: :mod:`fastcalc.reference.<family>`, always available;
- ``"numba"``: :mod:`fastcalc._numba.<family>`, when Numba imports;
- ``"cython"``: the compiled ``fastcalc._cython.<family>_<isa>``, when the
  extensions were built (the best instruction set for this CPU is loaded).

``"auto"`` picks, per kernel, the first available backend of the order the
public module declares (from the benchmarks).  Backends are imported lazily,
on first use, so ``import fastcalc`` stays fast.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import math
import os
import threading
import warnings
from collections.abc import Iterator

__all__ = [
    "BACKENDS",
    "MAX_KERNEL_THREADS",
    "available_backends",
    "backend_status",
    "enter_backend",
    "get_backend",
    "get_num_threads",
    "kernel",
    "kernel_threads",
    "leave_backend",
    "openmp_waits",
    "set_backend",
    "set_num_threads",
    "short_openmp_waits",
    "thread_setting",
    "usable_cores",
    "use_backend",
]

BACKENDS = ("numpy", "numba", "cython")
_NAMES = (*BACKENDS, "auto")

_default_backend = "auto"
_context_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "fastcalc_backend", default=None
)
_lock = threading.Lock()
_modules: dict[tuple[str, str], object] = {}
_unavailable: dict[tuple[str, str], str] = {}
_kernels: dict[tuple[str, str, str], object] = {}
# The order "auto" tries in every family with a Cython kernel (activations,
# convolution, rnn, fit; each public module declares its own): the backend
# get_num_threads("auto") answers for.
_THREADED_AUTO_ORDER = ("cython", "numba", "numpy")


def _check_name(name: object, *, allow_auto: bool = True) -> str:
    valid = _NAMES if allow_auto else BACKENDS
    if not isinstance(name, str) or name not in valid:
        raise ValueError(f"unknown backend {name!r}; valid names are {', '.join(map(repr, valid))}")
    return name


def set_backend(name: str) -> None:
    """Set the default backend of every kernel for the whole process.

    Parameters
    ----------
    name : {"auto", "numpy", "numba", "cython"}
        ``"auto"`` (the initial default) picks the fastest available backend
        per kernel.  :func:`use_backend` and the ``backend=`` keyword of each
        kernel take precedence.

    Raises
    ------
    ValueError
        If ``name`` is not a backend name.
    RuntimeError
        If the backend is not available here (the message says why).

    Examples
    --------
    >>> import fastcalc
    >>> fastcalc.set_backend("numpy")
    >>> fastcalc.get_backend()
    'numpy'
    >>> fastcalc.set_backend("auto")
    """
    global _default_backend
    _require_available(_check_name(name))
    _default_backend = name


def get_backend() -> str:
    """The backend kernels use when called without ``backend=``.

    That is the innermost :func:`use_backend` of the calling thread or task,
    else the process default of :func:`set_backend` (initially ``"auto"``).
    """
    return _context_backend.get() or _default_backend


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Use ``name`` as the backend inside a ``with`` block.

    The choice is local to the calling thread and asyncio task (it is a
    :mod:`contextvars` variable): other threads keep their own backend.

    Examples
    --------
    >>> import numpy as np, fastcalc
    >>> with fastcalc.use_backend("numpy"):
    ...     fastcalc.sigmoid(np.zeros(2))
    array([0.5, 0.5])
    """
    token = enter_backend(name)
    try:
        yield
    finally:
        leave_backend(token)


def enter_backend(name: str) -> contextvars.Token:
    """Select ``name`` for the calling thread or task, as :func:`use_backend` does on
    entry; :func:`leave_backend` undoes it.  A ``with`` block costs about a
    microsecond more, which a kernel's ``backend=`` keyword does not pay."""
    _require_available(_check_name(name))
    return _context_backend.set(name)


def leave_backend(token: contextvars.Token) -> None:
    """Undo the :func:`enter_backend` that returned ``token``."""
    _context_backend.reset(token)


def _import_backend(backend: str, family: str):
    if backend == "numpy":
        return importlib.import_module(f"fastcalc.reference.{family}")
    if backend == "numba":
        return importlib.import_module(f"fastcalc._numba.{family}")
    from fastcalc import _cython

    with short_openmp_waits("cython"):
        return _cython.load(family)


def _module(backend: str, family: str):
    """The module of ``backend`` for ``family``; raises RuntimeError if unavailable."""
    key = (backend, family)
    module = _modules.get(key)
    if module is not None:
        return module
    if key in _unavailable:
        raise RuntimeError(f"backend {backend!r} is not available: {_unavailable[key]}")
    with _lock:
        try:
            module = _import_backend(backend, family)
        except (ImportError, OSError) as error:  # not installed, or its files unusable
            _unavailable[key] = _explain(backend, error)
            raise RuntimeError(
                f"backend {backend!r} is not available: {_unavailable[key]}"
            ) from error
        _modules[key] = module
    return module


def _first_available(order: tuple[str, ...], family: str) -> tuple[str, object]:
    """The first backend of ``order`` available here, and its ``family`` module."""
    for candidate in order:
        try:
            return candidate, _module(candidate, family)
        except RuntimeError:
            continue
    raise RuntimeError(f"none of the backends {order} is available")


def _explain(backend: str, error: ImportError | OSError) -> str:
    if backend == "numba" and isinstance(error, ImportError):
        return f"Numba cannot be imported ({error}); install it with `pip install numba`"
    if isinstance(error, OSError):
        return f"its kernels cannot be loaded ({type(error).__name__}: {error})"
    return str(error)


def _require_available(name: str) -> None:
    if name != "auto":
        _module(name, "activations")


def backend_status() -> dict[str, str | None]:
    """For each backend, ``None`` if usable here, else the reason it is not."""
    status: dict[str, str | None] = {}
    for backend in BACKENDS:
        try:
            _module(backend, "activations")
            status[backend] = None
        except RuntimeError:
            status[backend] = _unavailable[(backend, "activations")]
    return status


def available_backends() -> list[str]:
    """The backend names usable in this installation, ``"auto"`` included.

    Examples
    --------
    >>> import fastcalc
    >>> "numpy" in fastcalc.available_backends()
    True
    """
    return [name for name, reason in backend_status().items() if reason is None] + ["auto"]


def kernel(family: str, name: str, backend: str | None, auto_order: tuple[str, ...]):
    """The kernel ``name`` of ``family`` for ``backend`` (None: the current one).

    ``auto_order`` lists the backends in the order ``"auto"`` tries them; the
    first that is available is used, so a missing backend never is an error
    under ``"auto"``.
    """
    backend = get_backend() if backend is None else backend
    key = (family, name, backend)
    found = _kernels.get(key)
    if found is not None:
        return found
    if backend == "auto":
        found = getattr(_first_available(auto_order, family)[1], name)
    else:
        found = getattr(_module(_check_name(backend), family), name)
    _kernels[key] = found
    return found


# The variables by which a user chooses how OpenMP's idle threads wait
# (GNU's, and LLVM's and Intel's): where one is set, fastcalc sets none.
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
# What fastcalc sets instead while its runtimes load: a thread with nothing
# to do polls for 1000 rounds (GNU OpenMP counts 100,000 a millisecond:
# about 10 us, time for the other threads of a parallel loop to arrive or
# for the next call), then sleeps; LLVM's runtime, which has no spin count,
# sleeps at once.  benchmarks/bench_contention.py and the README's "Threads on
# a busy machine" give the measurements behind it.
_WAITS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"}
_WAITS_SET = "short: idle threads poll about 10 us, then sleep (set by fastcalc)"

# How the OpenMP runtime of each backend ("cython", "numba") waits: what
# short_openmp_waits found when it loaded.
openmp_waits: dict[str, str] = {}
# The OpenMP runtimes fastcalc loaded with short waits, by backend.
_short_wait_runtimes: dict[str, set[str]] = {}
_waits_lock = threading.RLock()


def _mapped_openmp_runtimes() -> set[str] | None:
    """The OpenMP runtimes (GNU, LLVM) mapped into this process, by path; None if unknown."""
    try:
        with open("/proc/self/maps") as maps:  # Linux
            return {line.split()[-1] for line in maps
                    if "/libgomp" in line or "/libomp" in line}
    except OSError:
        return None


@contextlib.contextmanager
def short_openmp_waits(backend: str) -> Iterator[None]:
    """Load ``backend``'s OpenMP runtime with idle threads that soon sleep.

    By default GNU OpenMP lets a thread with nothing to do spin for 300,000
    rounds (milliseconds) before it sleeps.  On an idle machine that saves
    waking it for the next parallel loop; on a busy one the spinning threads
    take the time slices the working thread needs, and a call of 0.2 ms took
    8-20 ms.  Inside this block, the first time it runs for ``backend``, the
    environment holds ``_WAITS`` (about 10 us of polling, then sleep), which
    a runtime reads once, when it is loaded; the variables are removed after,
    so child processes and runtimes loaded later do not see them.  A user's
    own ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` or ``KMP_BLOCKTIME`` is left
    to decide.  A runtime loaded before (by another library sharing the
    system's libgomp) keeps its own policy.  :data:`openmp_waits` records
    which case applies, and ``show_config()`` prints it.
    """
    with _waits_lock:  # one runtime at a time: each must see the user's environment
        if backend in openmp_waits:
            yield
            return
        chosen = [f"{name}={os.environ[name]}" for name in _WAIT_VARIABLES
                  if name in os.environ]
        if chosen:
            openmp_waits[backend] = f"as the environment sets ({', '.join(chosen)})"
            yield
            return
        before = _mapped_openmp_runtimes()
        os.environ.update(_WAITS)
        try:
            yield
        finally:
            for name in _WAITS:
                del os.environ[name]
        _record_waits(backend, before, _mapped_openmp_runtimes())


def _record_waits(backend: str, before: set[str] | None, after: set[str] | None) -> None:
    """Say in :data:`openmp_waits` how ``backend``'s runtime waits, from the OpenMP
    runtimes mapped before and after it loaded with fastcalc's settings."""
    ours = {path for paths in _short_wait_runtimes.values() for path in paths}
    if before is None or after is None:
        openmp_waits[backend] = f"{_WAITS_SET}, unless the runtime was loaded before"
    elif after - before:
        _short_wait_runtimes[backend] = after - before
        openmp_waits[backend] = _WAITS_SET
    elif after and after <= ours:
        openmp_waits[backend] = _WAITS_SET
    elif after:
        openmp_waits[backend] = (
            "the runtime's default (idle threads spin for milliseconds): it was loaded "
            "before fastcalc; set GOMP_SPINCOUNT=1000 to shorten that")
    else:
        openmp_waits[backend] = "no OpenMP runtime"


def _read_cpu_quota(directory: str, version: int) -> float | None:
    """The CPU quota over its period in one cgroup ``directory``, or None if it has none."""
    try:
        if version == 2:
            with open(os.path.join(directory, "cpu.max")) as file:
                quota, period = file.read().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        with open(os.path.join(directory, "cpu.cfs_quota_us")) as file:
            quota = int(file.read())
        with open(os.path.join(directory, "cpu.cfs_period_us")) as file:
            period = int(file.read())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _cgroup_cpu_limit(root: str = "/sys/fs/cgroup", proc: str = "/proc/self/cgroup"
                      ) -> float | None:
    """The CPUs this process's cgroups let it use at a time, or None without a quota.

    The smallest quota over period (cgroup v2's ``cpu.max``, v1's
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) from the process's own
    cgroup, as ``/proc/self/cgroup`` names it, up to the root; a container,
    which sees its own cgroup at the root, is read there.
    """
    hierarchies = {2: (root, "/"), 1: (os.path.join(root, "cpu"), "/")}
    try:
        with open(proc) as lines:
            for line in lines:
                _, controllers, path = line.strip().split(":", 2)
                if not controllers:
                    hierarchies[2] = (root, path)
                elif "cpu" in controllers.split(","):
                    hierarchies[1] = (os.path.join(root, "cpu"), path)
    except (OSError, ValueError):
        pass
    limits = []
    for version, (base, path) in hierarchies.items():
        parts = [part for part in path.split("/") if part]
        for depth in range(len(parts), -1, -1):
            limit = _read_cpu_quota(os.path.join(base, *parts[:depth]), version)
            if limit is not None:
                limits.append(limit)
    return min(limits) if limits else None


def usable_cores() -> int:
    """How many cores this process may really run on.

    The CPUs of its affinity mask (``os.sched_getaffinity``; all of them where
    there is none), fewer under a cgroup CPU quota (a container given 1.5
    CPUs may use 2 cores at a time: the quota rounded up, as joblib does).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, max(1, math.ceil(limit)))
    return cores


def _default_num_threads() -> int:
    """``OMP_NUM_THREADS`` where it is set (its first level, as OpenMP reads it; a Dask
    nanny sets 1), else every usable core."""
    requested = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if requested.isdigit() and int(requested) >= 1:
        return int(requested)
    return usable_cores()


# The most threads a kernel is handed, whatever set_num_threads asked for:
# more can be asked (as PyTorch allows), but past this many every machine
# fastcalc runs on is oversubscribed, and each thread reserves a stack, so a
# count like 2**31 could never start (nor fit the C int of the kernels).
MAX_KERNEL_THREADS = max(256, os.cpu_count() or 1)

_num_threads = _default_num_threads()
# What kernel_threads hands the kernels: _num_threads capped, kept here
# because it is read on every call.
_kernel_thread_count = min(_num_threads, MAX_KERNEL_THREADS)
_threads_used = False
# True in a process forked from one whose kernels had already run: GNU OpenMP
# cannot start threads there, so its kernels run on one thread.
_forked_after_threads = False
_fork_warned = False
_FORKED_WARNING = (
    "fastcalc: this process was forked from one that had already run fastcalc's kernels; "
    "GNU OpenMP cannot start threads in such a process (it hangs or aborts), so the kernels "
    "stay on one thread here.  Start worker processes with the 'spawn' or 'forkserver' "
    "method (multiprocessing.get_context) to run them on threads."
)


def set_num_threads(n: int) -> None:
    """Set how many threads the parallel kernels (Numba and OpenMP) use.

    Parameters
    ----------
    n : int
        At least 1.  The default is ``OMP_NUM_THREADS`` where that is set
        (as a Dask nanny sets it to 1), else the cores this process may use:
        those of its affinity mask, fewer under a cgroup CPU quota (a
        container's, rounded up).  Any count is accepted and kept (:func:`thread_setting`
        returns it; ``show_config()`` says when it is more than the usable
        cores), but a kernel starts at most ``MAX_KERNEL_THREADS`` (256, or
        the machine's CPU count if larger) threads, and Numba at most
        ``NUMBA_NUM_THREADS`` (its default: the number of cores).

    Raises
    ------
    ValueError
        If ``n`` is not an integer >= 1.

    Warns
    -----
    RuntimeWarning
        Once, when ``n > 1`` in a process forked from one that had already run
        fastcalc's kernels: GNU OpenMP cannot start threads there (it hangs or
        aborts the process), so the kernels stay on one thread, as PyTorch's
        do.  Processes started with ``"spawn"`` or ``"forkserver"`` have no
        such limit.
    """
    global _num_threads, _kernel_thread_count, _fork_warned
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    _num_threads = n
    if _forked_after_threads:
        if n > 1 and not _fork_warned:
            _fork_warned = True
            warnings.warn(_FORKED_WARNING, RuntimeWarning, stacklevel=2)
        return
    _kernel_thread_count = min(n, MAX_KERNEL_THREADS)


def get_num_threads(backend: str | None = None) -> int:
    """How many threads the kernels of ``backend`` run on.

    Parameters
    ----------
    backend : {None, "auto", "numpy", "numba", "cython"}, optional
        None (the default) is the current backend, :func:`get_backend`.
        ``"auto"`` answers for its first choice: Cython where it was built,
        else Numba (``gradient_descent``, which has no Cython kernel, runs on
        Numba under ``"auto"``).

    Returns
    -------
    int
        The count of :func:`set_num_threads` (initially ``OMP_NUM_THREADS``
        or the usable cores)
        up to ``MAX_KERNEL_THREADS``, and at most the calling thread's OpenMP
        limit where something lowered it (``omp_set_num_threads``, as
        ``threadpoolctl.threadpool_limits`` does: fastcalc's kernels follow it
        on every backend); 1 in a process forked from one that had
        already run fastcalc's kernels (see :func:`set_num_threads`); 1 for
        ``"numpy"`` (the reference kernels are serial numpy code; numpy's
        BLAS may use threads of its own, which fastcalc does not control); at
        most ``NUMBA_NUM_THREADS`` for ``"numba"``; and 1 for ``"cython"``
        when its kernels were compiled without OpenMP (the macOS wheels are):
        they then run single-threaded.

    Raises
    ------
    ValueError
        If ``backend`` is not a backend name.
    RuntimeError
        If the backend is not available here (the message says why).

    Examples
    --------
    >>> import fastcalc
    >>> fastcalc.get_num_threads("numpy")
    1
    """
    name = get_backend() if backend is None else _check_name(backend)
    if name == "auto":
        name, module = _first_available(_THREADED_AUTO_ORDER, "activations")
    else:
        module = _module(name, "activations")
    if name == "numpy" or (name == "cython" and not module.OPENMP):
        return 1
    count = min(_kernel_thread_count, _openmp_limit())
    if name == "numba":
        import numba

        return min(count, numba.config.NUMBA_NUM_THREADS)
    return count


def thread_setting() -> int:
    """The count of :func:`set_num_threads` (kernels start at most ``MAX_KERNEL_THREADS``)."""
    return _num_threads


def kernel_threads() -> int:
    """The thread count to hand a kernel now; records that threads may start.

    :func:`set_num_threads`'s count, capped by the calling thread's OpenMP
    limit where something lowered it (``threadpoolctl.threadpool_limits``,
    see :func:`get_num_threads`).
    """
    global _threads_used
    _threads_used = True
    return min(_kernel_thread_count, _openmp_limit())


# The OpenMP runtime of the Cython kernels, once they are loaded (False: none
# here), and the thread limit it had then.
_openmp_module: object = None
_openmp_default_limit = 0


def _openmp_limit() -> int:
    """The calling thread's OpenMP thread limit where something lowered it, else no limit.

    ``omp_set_num_threads``, which ``threadpoolctl.threadpool_limits`` calls on
    every OpenMP runtime loaded, sets a per-thread limit; below the value the
    runtime started with (``OMP_NUM_THREADS`` or the CPUs), it caps every
    backend's kernels called from that thread.
    """
    global _openmp_module, _openmp_default_limit
    if _openmp_module is None:
        try:
            module = _module("cython", "activations")
        except RuntimeError:
            _openmp_module = False
        else:
            # The limit the runtime started with is what a thread that never
            # set one reads: this thread may be inside a threadpool_limits block.
            reader = threading.Thread(target=lambda: limits.append(module.openmp_max_threads()))
            limits: list[int] = []
            reader.start()
            reader.join()
            _openmp_default_limit, _openmp_module = limits[0], module
    if _openmp_module is False:
        return MAX_KERNEL_THREADS
    limit = _openmp_module.openmp_max_threads()
    return limit if limit < _openmp_default_limit else MAX_KERNEL_THREADS


def _after_fork_in_child() -> None:
    # GNU OpenMP cannot start threads in a process forked from one that already
    # used its thread pool (it deadlocks; Numba's omp layer terminates the
    # child).  Like PyTorch, a forked child of such a process runs the kernels
    # on one thread.  A lock some other thread of the parent held at the fork
    # stays held forever in the child: start with a fresh one.
    global _forked_after_threads, _kernel_thread_count, _lock, _waits_lock
    _lock = threading.Lock()
    _waits_lock = threading.RLock()
    if _threads_used:
        _forked_after_threads = True
        _kernel_thread_count = 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
