"""Numba's on-disk cache: ``fastcalc warmup`` fills it, later processes only load from it, and
no writable cache directory at all is a warning, not a crash."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba")


def run_python(code: str, cache_dir, **environment) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), **environment}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=600, check=False)


def cache_files(directory) -> dict[str, int]:
    return {str(path): path.stat().st_mtime_ns for path in directory.rglob("*")
            if path.is_file()}


def test_warmup_fills_the_cache_and_a_second_process_only_loads_it(tmp_path):
    warmup = ("from fastcalc.cli import main; "
              "raise SystemExit(main(['warmup', '--dtype', 'float64']))")
    first = run_python(warmup, tmp_path)
    assert first.returncode == 0, first.stderr
    families = ["sigmoid", "correlate2d", "conv2d", "rnn_forward", "fit_logistic"]
    assert all(family in first.stdout for family in families) and "total" in first.stdout
    filled = cache_files(tmp_path)
    # Every kernel module has cache entries, the activations' generated loops included (their
    # cache must not be keyed on anything that changes between processes).
    for module in ("activations.sigmoid_block", "activations.sigmoid_derivative_parallel",
                   "convolution.", "rnn.", "optim."):
        assert any(module in name for name in filled), module
    second = run_python(warmup, tmp_path)
    assert second.returncode == 0, second.stderr
    assert cache_files(tmp_path) == filled  # nothing compiled, nothing written: all loaded


def test_no_writable_cache_directory_is_a_warning_not_a_crash(tmp_path):
    # Every place Numba could cache in refuses, as on a read-only install with a read-only home.
    result = run_python("""
        import warnings
        import numba.core.caching as caching

        real = caching.UserProvidedCacheLocator.ensure_cache_path

        def read_only(self):
            if "fastcalc-numba-cache-" in self._cache_path:  # the fallback fastcalc picks
                return real(self)
            raise OSError("read-only file system")

        for locator in caching.CacheImpl._locator_classes:
            locator.ensure_cache_path = read_only
        import numpy as np
        import fastcalc
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            print(fastcalc.sigmoid(np.zeros(3), backend="numba"))
        print([str(w.message) for w in caught])
    """, tmp_path / "unused")
    assert result.returncode == 0, result.stderr
    assert "[0.5 0.5 0.5]" in result.stdout
    assert "Numba finds no writable cache directory" in result.stdout
    assert "NUMBA_CACHE_DIR" in result.stdout
