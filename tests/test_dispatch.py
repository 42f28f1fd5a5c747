"""Backend selection, fallback, thread control, show_config and the version."""

import importlib.metadata
import sys
import threading
import time

import numpy as np
import pytest

import fastcalc
from fastcalc import _dispatch


@pytest.fixture
def fresh_registry(monkeypatch):
    """An empty backend cache, so a test can make a backend fail to import."""
    monkeypatch.setattr(_dispatch, "_modules", {})
    monkeypatch.setattr(_dispatch, "_unavailable", {})
    monkeypatch.setattr(_dispatch, "_kernels", {})


def test_available_backends_lists_usable_names_and_auto():
    names = fastcalc.available_backends()
    assert names[-1] == "auto" and "numpy" in names
    assert set(names) <= {"numpy", "numba", "cython", "auto"}


def test_default_is_auto_and_set_backend_changes_it():
    assert fastcalc.get_backend() == "auto"
    fastcalc.set_backend("numpy")
    assert fastcalc.get_backend() == "numpy"


@pytest.mark.parametrize("call", [
    lambda: fastcalc.set_backend("cuda"),
    lambda: fastcalc.use_backend("fortran").__enter__(),
    lambda: fastcalc.sigmoid(np.zeros(2), backend="tensorflow"),
], ids=["set_backend", "use_backend", "backend="])
def test_unknown_backend_is_a_value_error_listing_the_names(call):
    with pytest.raises(ValueError, match="'numpy', 'numba', 'cython', 'auto'"):
        call()


def test_use_backend_nests_and_restores():
    with fastcalc.use_backend("numpy"):
        assert fastcalc.get_backend() == "numpy"
        with fastcalc.use_backend("auto"):
            assert fastcalc.get_backend() == "auto"
        assert fastcalc.get_backend() == "numpy"
    assert fastcalc.get_backend() == "auto"


def test_use_backend_is_local_to_the_thread():
    seen = {}
    inside, done = threading.Event(), threading.Event()

    def other():
        inside.wait()
        seen["other"] = fastcalc.get_backend()
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with fastcalc.use_backend("numpy"):
        inside.set()
        done.wait()
        seen["this"] = fastcalc.get_backend()
    thread.join()
    assert seen == {"this": "numpy", "other": "auto"}


def test_backend_keyword_overrides_the_context(monkeypatch):
    calls = []
    numpy_sigmoid = _dispatch._module("numpy", "activations").sigmoid
    monkeypatch.setitem(_dispatch._kernels, ("activations", "sigmoid", "numpy"),
                        lambda *args: calls.append("numpy") or numpy_sigmoid(*args))
    with fastcalc.use_backend("auto"):
        fastcalc.sigmoid(np.zeros(3), backend="numpy")
    assert calls == ["numpy"]


@pytest.mark.parametrize("error", [ImportError, OSError])
@pytest.mark.parametrize("missing", ["cython", "numba"])
def test_auto_falls_back_when_a_backend_is_missing(monkeypatch, fresh_registry, missing, error):
    """Not installed (ImportError), or failing on the disk as it loads (OSError: Numba's cache
    once raised FileNotFoundError, and gradient_descent under auto did not fall back)."""
    real_import = _dispatch._import_backend

    def failing_import(backend, family):
        if backend == missing:
            raise error(f"simulated: {missing} is not installed")
        return real_import(backend, family)

    monkeypatch.setattr(_dispatch, "_import_backend", failing_import)
    x = np.linspace(-5, 5, 11)
    np.testing.assert_allclose(fastcalc.sigmoid(x), fastcalc.sigmoid(x, backend="numpy"),
                               rtol=1e-14)
    assert missing not in fastcalc.available_backends()
    with pytest.raises(RuntimeError, match=f"{missing}.*not available.*simulated"):
        fastcalc.sigmoid(x, backend=missing)
    with pytest.raises(RuntimeError, match="simulated"):
        fastcalc.set_backend(missing)
    assert f"simulated: {missing} is not installed" in _dispatch.backend_status()[missing]


def test_missing_extensions_explain_how_to_build(monkeypatch, fresh_registry):
    """Without compiled modules the reason says the extensions were not compiled."""
    from fastcalc import _cython

    monkeypatch.setattr(_cython, "_compiled", lambda family, isa: False)
    monkeypatch.setattr(_cython, "_loaded", {})
    with pytest.raises(RuntimeError, match="not compiled"):
        fastcalc.sigmoid(np.zeros(2), backend="cython")


def _cython_has_openmp() -> bool:
    return bool(_dispatch._module("cython", "activations").OPENMP)


def test_num_threads_default_and_setting():
    import os

    requested = os.environ.get("OMP_NUM_THREADS", "").split(",")[0]
    cores = int(requested) if requested.isdigit() else _dispatch.usable_cores()
    assert _dispatch.thread_setting() == cores
    if "numba" in fastcalc.available_backends():
        import numba

        assert fastcalc.get_num_threads("numba") == min(cores, numba.config.NUMBA_NUM_THREADS)
    if "cython" in fastcalc.available_backends():
        assert fastcalc.get_num_threads("cython") == (cores if _cython_has_openmp() else 1)
    fastcalc.set_num_threads(1)
    assert _dispatch.thread_setting() == 1
    for backend in fastcalc.available_backends():
        assert fastcalc.get_num_threads(backend) == 1


def test_num_threads_of_the_current_backend_and_of_auto(monkeypatch):
    """No argument: the current backend's count; "auto": that of its first choice."""
    monkeypatch.setattr(_dispatch, "_num_threads", 3)
    first_choice = next(name for name in ("cython", "numba", "numpy")
                        if name in fastcalc.available_backends())
    assert fastcalc.get_num_threads("auto") == fastcalc.get_num_threads(first_choice)
    for backend in fastcalc.available_backends():
        with fastcalc.use_backend(backend):
            assert fastcalc.get_num_threads() == fastcalc.get_num_threads(backend)
    assert fastcalc.get_num_threads("numpy") == 1


def test_cython_without_openmp_says_it_runs_single_threaded(monkeypatch):
    """A build without OpenMP (macOS): get_num_threads and show_config say so."""
    if "cython" not in fastcalc.available_backends():
        pytest.skip("the Cython extensions are not built")
    monkeypatch.setattr(_dispatch._module("cython", "activations"), "OPENMP", 0)
    monkeypatch.setattr(_dispatch, "_num_threads", 2)
    assert fastcalc.get_num_threads("cython") == 1
    assert fastcalc.get_num_threads() == fastcalc.get_num_threads("auto") == 1
    text = _show_config_text()
    assert "cython 1" in text and "OpenMP: no (kernels run single-threaded)" in text
    if "numba" in fastcalc.available_backends():
        assert fastcalc.get_num_threads("numba") == 2 and "numba 2" in text


def test_num_threads_of_an_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        fastcalc.get_num_threads("cuda")


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_bad_thread_count_is_a_value_error(bad):
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        fastcalc.set_num_threads(bad)


def _show_config_text() -> str:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()) as output:
        fastcalc.show_config()
    return output.getvalue()


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_is_the_smallest_from_the_process_cgroup_up(tmp_path):
    proc = tmp_path / "cgroup"
    _write(proc, "0::/machine/app\n")
    root = tmp_path / "fs"
    _write(root / "cpu.max", "max 100000\n")
    _write(root / "machine" / "cpu.max", "250000 100000\n")
    _write(root / "machine" / "app" / "cpu.max", "max 100000\n")
    assert _dispatch._cgroup_cpu_limit(str(root), str(proc)) == 2.5
    _write(root / "machine" / "app" / "cpu.max", "150000 100000\n")
    assert _dispatch._cgroup_cpu_limit(str(root), str(proc)) == 1.5


def test_cgroup_v1_quota_and_no_quota(tmp_path):
    proc = tmp_path / "cgroup"
    _write(proc, "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n0::/\n")
    root = tmp_path / "fs"
    # A container sees its own cgroup at the root of the hierarchy, not at /docker/abc.
    _write(root / "cpu" / "cpu.cfs_quota_us", "50000\n")
    _write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert _dispatch._cgroup_cpu_limit(str(root), str(proc)) == 0.5
    _write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    assert _dispatch._cgroup_cpu_limit(str(root), str(proc)) is None
    assert _dispatch._cgroup_cpu_limit(str(tmp_path / "none"), str(tmp_path / "none")) is None


@pytest.mark.parametrize(("affinity", "limit", "usable"),
                         [(64, None, 64), (64, 1.5, 2), (64, 0.5, 1), (2, 8.0, 2), (3, 2.0, 2)])
def test_usable_cores_are_the_affinity_capped_by_the_quota_rounded_up(
        monkeypatch, affinity, limit, usable):
    monkeypatch.setattr(_dispatch.os, "sched_getaffinity", lambda pid: set(range(affinity)),
                        raising=False)
    monkeypatch.setattr(_dispatch, "_cgroup_cpu_limit", lambda: limit)
    assert _dispatch.usable_cores() == usable


def _threads_in_child(prefix=(), **environment):
    import os
    import subprocess
    import sys

    code = ("import fastcalc; print(*(fastcalc.get_num_threads(b) for b in "
            "fastcalc.available_backends()))")
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    result = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True,
                            text=True, env={**env, **environment}, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    return dict(zip(fastcalc.available_backends(), map(int, result.stdout.split()), strict=True))


@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("3,2", 3), (" 2 ", 2)])
def test_omp_num_threads_sets_the_default_for_every_backend(value, expected):
    """A Dask nanny sets OMP_NUM_THREADS=1: get_num_threads() was still 2 for Cython and Numba."""
    threads = _threads_in_child(OMP_NUM_THREADS=value)
    if "numba" in threads:
        import numba

        assert threads["numba"] == min(expected, numba.config.NUMBA_NUM_THREADS)
    if "cython" in threads:
        assert threads["cython"] == (expected if _cython_has_openmp() else 1)


def test_an_unusable_omp_num_threads_is_ignored():
    assert _threads_in_child(OMP_NUM_THREADS="many") == _threads_in_child()


def test_the_affinity_mask_sets_the_default():
    import shutil

    if not shutil.which("taskset"):
        pytest.skip("no taskset here")
    assert set(_threads_in_child(prefix=("taskset", "-c", "0")).values()) == {1}


def test_a_real_cgroup_quota_sets_the_default(tmp_path):
    """A process in a cgroup of half a CPU runs its kernels on one thread (cgroup v1 or v2,
    as root; skipped where no cgroup can be made)."""
    import os
    import shutil
    import uuid

    name = f"fastcalc-test-{uuid.uuid4().hex[:8]}"
    v1, v2 = "/sys/fs/cgroup/cpu", "/sys/fs/cgroup"
    if os.path.exists(os.path.join(v1, "cpu.cfs_quota_us")):
        group, files = os.path.join(v1, name), {"cpu.cfs_period_us": "100000",
                                                "cpu.cfs_quota_us": "50000"}
    elif os.path.exists(os.path.join(v2, "cgroup.controllers")):
        group, files = os.path.join(v2, name), {"cpu.max": "50000 100000"}
    else:
        pytest.skip("no cgroup hierarchy here")
    try:
        os.mkdir(group)
        for file, value in files.items():
            with open(os.path.join(group, file), "w") as handle:
                handle.write(value)
    except OSError as error:
        shutil.rmtree(group, ignore_errors=True)
        pytest.skip(f"cannot make a cgroup here: {error}")
    try:
        join = ("sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh")
        assert set(_threads_in_child(prefix=join).values()) == {1}
    finally:
        os.rmdir(group)


def test_show_config_says_when_threads_exceed_the_usable_cores():
    fastcalc.set_num_threads(_dispatch.usable_cores() + 1)
    assert "oversubscribed" in _show_config_text()
    fastcalc.set_num_threads(_dispatch.usable_cores())
    assert f"{_dispatch.usable_cores()} usable cores" in _show_config_text()


def test_show_config_reports_what_a_bug_report_needs():
    text = _show_config_text()
    for needle in (f"fastcalc {fastcalc.__version__}", f"numpy {np.__version__}", "python 3.",
                   "numba", "backends:", "threads: ", "CPU SIMD:"):
        assert needle in text
    if "cython" in fastcalc.available_backends():
        assert "OpenMP: " in text


def test_version_matches_the_installed_metadata():
    try:
        installed = importlib.metadata.version("fastcalc")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fastcalc is not installed, only importable from the source tree")
    assert fastcalc.__version__ == installed


ISA_FALLBACK = """
import warnings
import numpy as np
import fastcalc
from fastcalc import _cython
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert "cython" in fastcalc.available_backends()
    fastcalc.show_config()
    fastcalc.sigmoid(np.zeros(3))
    fastcalc.correlate2d(np.ones((3, 3)), np.ones((2, 2)))  # a second family: no second warning
    print("selected", _cython.selected_isa())
    print("best", _cython.available_isas("activations")[-1])
for warning in caught:
    print(warning.category.__name__, warning.message)
"""


def _isa_fallback(value):
    import os
    import subprocess
    import sys

    env = {**os.environ, "FASTCALC_CYTHON_ISA": value}
    result = subprocess.run([sys.executable, "-c", ISA_FALLBACK], capture_output=True, text=True,
                            env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    selected = next(line.split()[1] for line in lines if line.startswith("selected"))
    best = next(line.split()[1] for line in lines if line.startswith("best"))
    return selected, best, [line for line in lines if line.startswith("RuntimeWarning")]


def _isa_cases():
    from fastcalc import _cython

    cases = [("avx-512", "is not an instruction set level (valid values: baseline, avx2, "
              "avx512)")]
    cases += [(isa, "this CPU does not support") for isa in _cython.ISAS
              if isa not in _cython._cpu_isas()]
    cases += [(isa, "which was not compiled") for isa in _cython._cpu_isas()
              if not _cython._compiled("activations", isa)]
    return cases


@pytest.mark.parametrize(("value", "reason"), _isa_cases())
def test_a_bad_isa_variable_warns_once_and_falls_back_to_the_best(value, reason):
    """A mistyped FASTCALC_CYTHON_ISA made every auto call and show_config raise ValueError."""
    if "cython" not in fastcalc.available_backends():
        pytest.skip("the Cython extensions are not built")
    selected, best, warned = _isa_fallback(value)
    assert selected == best
    assert len(warned) == 1, warned
    assert f"FASTCALC_CYTHON_ISA={value!r}" in warned[0] and reason in warned[0]
    assert f"using {best}" in warned[0]


def test_a_valid_isa_variable_caps_the_variant_without_a_warning():
    from fastcalc import _cython

    if "cython" not in fastcalc.available_backends():
        pytest.skip("the Cython extensions are not built")
    lowest = _cython.available_isas("activations")[0]
    selected, _, warned = _isa_fallback(lowest.upper())
    assert selected == lowest and not warned


HUGE_THREAD_COUNTS = [2**31, 2**63, 10**30]


@pytest.mark.parametrize("n", HUGE_THREAD_COUNTS)
def test_a_huge_thread_count_is_kept_and_capped_for_the_kernels(backend, n):
    """set_num_threads(2**31) made every Cython call raise OverflowError (its C int)."""
    fastcalc.set_num_threads(n)
    assert _dispatch.thread_setting() == n
    assert _dispatch.kernel_threads() == _dispatch.MAX_KERNEL_THREADS
    assert 1 <= fastcalc.get_num_threads(backend) <= _dispatch.MAX_KERNEL_THREADS
    x = np.linspace(-5, 5, 1000)  # serial: this test starts no thread
    np.testing.assert_allclose(fastcalc.sigmoid(x, backend=backend),
                               fastcalc.sigmoid(x, backend="numpy"), rtol=1e-14)


def test_a_huge_thread_count_runs_threaded_kernels_on_capped_threads():
    """Every backend, above the parallel threshold, in a child (it may start many threads)."""
    import subprocess
    import sys

    code = """
import numpy as np, fastcalc
x = np.linspace(-50, 50, 300_000)
expected = fastcalc.sigmoid(x, backend="numpy")
fastcalc.set_num_threads(2**31)
for backend in fastcalc.available_backends():
    np.testing.assert_allclose(fastcalc.sigmoid(x, backend=backend), expected, rtol=1e-14)
    np.testing.assert_allclose(fastcalc.correlate2d(np.ones((300, 300)), np.ones((5, 5)),
                                                    backend=backend)[2, 2], 9.0)
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0 and result.stdout.split() == ["ok"], result.stderr


def _run_child(code, **environment):
    """Run ``code`` in a fresh interpreter; the lines it prints (it must exit 0)."""
    import os
    import subprocess
    import sys
    import textwrap

    env = {key: value for key, value in os.environ.items()
           if key not in _dispatch._WAIT_VARIABLES and key != "OMP_NUM_THREADS"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, env={**env, **environment}, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


_IDLE_CPU = """
    import os, subprocess, sys, time
    import numpy as np, fastcalc
    from fastcalc import _dispatch
    x = np.linspace(-5, 5, 2**22)
    for backend in fastcalc.available_backends():
        fastcalc.sigmoid(x, backend=backend)  # threaded: starts the OpenMP threads
    start = time.process_time()
    time.sleep(1.0)  # no kernel runs: what the idle threads burn
    print(time.process_time() - start)
    print(any(name in os.environ for name in _dispatch._WAITS))
    child = ("import os; "
             "print(any(name in os.environ for name in ['OMP_WAIT_POLICY', 'GOMP_SPINCOUNT']))")
    print(subprocess.run([sys.executable, "-c", child], capture_output=True,
                         text=True).stdout.strip())
    print(*sorted(_dispatch.openmp_waits.values()), sep="|")
"""


def test_idle_openmp_threads_sleep_and_the_setting_stays_inside_fastcalc():
    """Threads spinning in OpenMP's barrier took the time slices of the thread doing the work:
    a 0.2 ms sigmoid took 8-20 ms on a busy machine.  Idle, they now soon sleep."""
    if _dispatch.usable_cores() < 2 or not _cython_has_openmp():
        pytest.skip("needs two cores and OpenMP")
    seconds, in_environment, in_child, waits = _run_child(_IDLE_CPU)
    print("idle threads' CPU seconds in 1 s of sleep:", seconds)
    assert float(seconds) < 0.02, f"idle threads used {seconds} s of CPU in 1 s"
    assert (in_environment, in_child) == ("False", "False")  # fastcalc's runtime only
    assert waits.startswith("short"), waits
    # The test can fail: threads told to spin keep a core busy while nothing runs (a
    # whole core when it is free; a tenth is the margin for a busy machine).
    seconds, _, _, waits = _run_child(_IDLE_CPU, OMP_WAIT_POLICY="ACTIVE")
    print("spinning threads' CPU seconds in 1 s of sleep:", seconds)
    assert float(seconds) > 0.1 and "OMP_WAIT_POLICY=ACTIVE" in waits, (seconds, waits)


def test_threadpoolctl_sees_and_limits_fastcalcs_threads():
    """threadpoolctl lists the OpenMP runtime of the kernels and its limit caps every backend."""
    pytest.importorskip("threadpoolctl")
    if _dispatch.usable_cores() < 2 or not _cython_has_openmp():
        pytest.skip("needs two cores and OpenMP")
    lines = _run_child("""
        import os
        import numpy as np, threadpoolctl, fastcalc
        from fastcalc import _dispatch

        def os_threads():
            return len(os.listdir("/proc/self/task"))

        x = np.linspace(-5, 5, 2**22)
        expected = fastcalc.sigmoid(x, backend="numpy")
        backends = [b for b in ("cython", "numba") if b in fastcalc.available_backends()]
        fastcalc.set_num_threads(1)
        for backend in backends:  # loads, compiles; Numba starts a thread of its own
            fastcalc.sigmoid(x, backend=backend)
        fastcalc.set_num_threads(_dispatch.usable_cores())
        runtimes = _dispatch._short_wait_runtimes["cython"]
        listed = {info["filepath"] for info in threadpoolctl.threadpool_info()
                  if info["user_api"] == "openmp"}
        print(bool(runtimes & {os.path.realpath(path) for path in listed}))
        with threadpoolctl.threadpool_limits(limits=1):
            print(*(fastcalc.get_num_threads(b) for b in ["auto", *backends]))
            before = os_threads()
            for backend in backends:
                np.testing.assert_allclose(fastcalc.sigmoid(x, backend=backend), expected,
                                           rtol=1e-14)
            print(os_threads() - before)  # threads started under the limit
        print(*(fastcalc.get_num_threads(b) for b in ["auto", *backends]))
        before = os_threads()
        fastcalc.sigmoid(x, backend="cython")
        print(os_threads() - before)
    """)
    listed, limited, started_limited, free, started_free = lines
    assert listed == "True"  # visible: the runtime fastcalc's kernels run on
    assert set(limited.split()) == {"1"} and started_limited == "0"  # limited
    assert set(free.split()) == {str(_dispatch.usable_cores())} and int(started_free) >= 1


_AFFINITY = """
    import os, time

    if os.environ["CPUS"] == "one":
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # before any thread starts
    import numpy as np, fastcalc

    mask = os.sched_getaffinity(0)
    fastcalc.set_num_threads(2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(2**20).astype(np.float32)
    image, kernel = rng.standard_normal((512, 512)), rng.standard_normal((5, 5))
    expected = (fastcalc.sigmoid(x, backend="numpy"),
                fastcalc.correlate2d(image, kernel, "same", backend="numpy"))
    for _ in range(40):
        time.sleep(0.01)  # the caller sleeps and may wake on a worker's CPU
        results = (fastcalc.sigmoid(x, backend="cython"),
                   fastcalc.correlate2d(image, kernel, "same", backend="cython"))
        for result, want in zip(results, expected):
            np.testing.assert_allclose(result, want, rtol=1e-5, atol=1e-9)
    masks = {tid: os.sched_getaffinity(int(tid)) for tid in os.listdir("/proc/self/task")}
    print(len(masks), all(thread_mask == mask for thread_mask in masks.values()))
"""


@pytest.mark.parametrize("cpus", ["all", "one"])
def test_workers_moved_off_the_callers_cpu_keep_their_affinity(cpus):
    """A worker woken on the caller's CPU narrows its affinity to move, then sets it back
    (openmp_threads.h): after many calls, each after a pause, every thread still has the
    process's mask, and the results are right; with one CPU allowed there is nowhere to go."""
    import os

    if not hasattr(os, "sched_getaffinity") or not _cython_has_openmp():
        pytest.skip("needs Linux's affinity calls and OpenMP")
    if cpus == "all" and _dispatch.usable_cores() < 2:
        pytest.skip("needs two cores")
    threads, same = _run_child(_AFFINITY, CPUS=cpus)[0].split()
    assert int(threads) >= 2 and same == "True"


def _sigmoid_call():
    x = np.random.default_rng(0).standard_normal(1 << 24).astype("f4")
    return lambda backend: fastcalc.sigmoid(x, backend=backend)


def _correlate2d_call():
    image = np.random.default_rng(0).standard_normal((2048, 2048)).astype("f4")
    return lambda backend: fastcalc.correlate2d(image, np.ones((9, 9), "f4"), "same",
                                                method="direct", backend=backend)


def _conv2d_call():
    batch = np.random.default_rng(0).standard_normal((32, 16, 64, 64)).astype("f4")
    return lambda backend: fastcalc.conv2d(batch, np.ones((16, 16, 3, 3), "f4"), padding=1,
                                           backend=backend)


def _rnn_forward_call():
    T, B, I, H = 200, 64, 64, 128  # noqa: E741 (the RNN's names)
    sequences = np.random.default_rng(0).standard_normal((T, B, I)).astype("f4")
    weights = (np.full((H, I), 0.01, "f4"), np.full((H, H), 0.01, "f4"),
               np.full((8, H), 0.01, "f4"))
    return lambda backend: fastcalc.rnn_forward(sequences, None, *weights, backend=backend)


def _fit_logistic_call():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((400, 256, 8)), (rng.random((400, 256)) < 0.5) * 1.0
    return lambda backend: fastcalc.fit_logistic(X, y, n_iter=30, backend=backend)


# Each compiled family's kernel on work of tens of milliseconds.
_GIL_FREE_CALLS = {"sigmoid": _sigmoid_call, "correlate2d": _correlate2d_call,
                   "conv2d": _conv2d_call, "rnn_forward": _rnn_forward_call,
                   "fit_logistic": _fit_logistic_call}


@pytest.mark.parametrize("backend", [name for name in ("numba", "cython")
                                     if name in fastcalc.available_backends()])
@pytest.mark.parametrize("family", sorted(_GIL_FREE_CALLS))
def test_compiled_kernels_let_other_python_threads_run(family, backend):
    # A Python thread counts while it holds the GIL.  With a switch interval far
    # longer than a call, it can take the GIL from the caller only when the
    # caller releases it: it counts during a call only if the kernel released
    # the GIL (a kernel holding it gives 0 every time).
    call = _GIL_FREE_CALLS[family]()
    fastcalc.set_num_threads(1)
    call(backend)  # compiled and warm
    state = {"count": 0, "run": True}

    def count():
        while state["run"]:
            state["count"] += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.5)
    counter = threading.Thread(target=count)
    counter.start()
    try:
        for _ in range(5):  # the counter may not be scheduled in time on a busy machine
            time.sleep(0.01)  # the counter runs; the caller takes the GIL back
            before = state["count"]
            call(backend)
            during = state["count"] - before
            if during:
                break
    finally:
        state["run"] = False
        counter.join()
        sys.setswitchinterval(interval)
    assert during > 0, f"{family} on {backend} held the GIL"
