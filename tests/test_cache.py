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


NO_DISK_CALLS = """
    import warnings
    import numpy as np
    import fastcalc
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        print(fastcalc.sigmoid(np.zeros(3), backend="numba"))
        print(fastcalc.correlate2d(np.ones((3, 3)), np.ones((2, 2)), backend="numba")[0, 0])
        result = fastcalc.gradient_descent(lambda x: 2 * x, np.ones(2), lr=0.25, n_iter=3)
        print(result.x)
    print([str(w.message) for w in caught])
"""


def assert_compiled_in_memory_with_one_warning(result):
    assert result.returncode == 0, result.stderr
    assert "[0.5 0.5 0.5]" in result.stdout and "\n1.0\n" in result.stdout
    assert "[0.125 0.125]" in result.stdout  # 1 * (1 - 2 * 0.25) ** 3, under auto
    warned = [line for line in result.stdout.splitlines() if "no writable cache" in line]
    assert len(warned) == 1 and warned[0].count("Numba finds no writable cache directory") == 1
    assert "compile in memory" in warned[0] and "NUMBA_CACHE_DIR" in warned[0]


def test_no_writable_cache_directory_is_a_warning_not_a_crash(tmp_path):
    # Every place Numba could cache in refuses, as on a read-only install with a read-only home.
    result = run_python(textwrap.dedent("""
        import numba.core.caching as caching

        def read_only(self):
            raise OSError("read-only file system")

        for locator in caching.CacheImpl._locator_classes:
            locator.ensure_cache_path = read_only
    """) + textwrap.dedent(NO_DISK_CALLS), tmp_path / "unused")
    assert_compiled_in_memory_with_one_warning(result)
    assert not (tmp_path / "unused").exists()


def _unprivileged_user() -> str:
    """A user with no home directory: ``nobody``, else one made with useradd."""
    import pwd

    for name in ("nobody", "fastcalc-test"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                    "fastcalc-test"], check=True, capture_output=True)
    return "fastcalc-test"


def _reachable_by_others(paths, keep) -> list[str]:
    """Shell lines making every one of ``paths`` reachable by any user inside a private mount
    namespace, at its own path.

    Each directory on the way that others cannot enter (``/root``, where pyenv lives, or the
    ``mktemp -d`` directory holding CI's virtual environment) is covered by a tmpfs they can
    enter, holding only binds of its children on the way to ``paths``: their originals are
    first bound under ``keep`` (a directory only root uses). Outer directories are covered
    before inner ones, which are then reached through the binds.
    """
    import shlex
    import stat

    children: dict[str, set[str]] = {}
    for path in paths:
        parts = os.path.realpath(path).split(os.sep)[1:]
        for depth in range(1, len(parts)):
            directory = os.sep + os.path.join(*parts[:depth])
            if not os.stat(directory).st_mode & stat.S_IXOTH:
                children.setdefault(directory, set()).add(os.path.join(directory, parts[depth]))
    lines = [f"mkdir -p {shlex.quote(str(keep))}"]
    kept: dict[str, str] = {}
    for directory in sorted(children, key=lambda name: name.count(os.sep)):
        inside = [(shlex.quote(child), "mkdir" if os.path.isdir(child) else "touch")
                  for child in sorted(children[directory])]
        for child, make in inside:
            kept[child] = shlex.quote(str(keep / str(len(kept))))
            lines += [f"{make} {kept[child]}", f"mount --bind {child} {kept[child]}"]
        lines.append(f"mount -t tmpfs -o mode=755 tmpfs {shlex.quote(directory)}")
        for child, make in inside:
            lines += [f"{make} {child}", f"mount --bind {kept[child]} {child}"]
    return lines


def _read_only(path: str, recursive: bool = False) -> list[str]:
    """Shell lines making ``path`` read-only for everyone, root too (the mounts below it, with
    ``recursive``, stay visible as they are)."""
    import shlex

    path = shlex.quote(path)
    return [f"mount {'--rbind' if recursive else '--bind'} {path} {path}",
            f"mount -o remount,bind,ro {path}"]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mount namespaces on Linux only")
def test_no_writable_directory_at_all_as_an_unprivileged_user(tmp_path):
    """A read-only install, no home and read-only temporary directories, as a user that is
    not root (root writes anywhere): Numba compiles in memory, ``fastcalc warmup`` fails."""
    import shlex
    import shutil

    import fastcalc

    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("runuser"):
        pytest.skip("needs root (to mount and to switch to an unprivileged user)")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.decode().strip()}")
    user = _unprivileged_user()
    package = os.path.dirname(os.path.dirname(os.path.abspath(fastcalc.__file__)))
    environment = {"HOME": "/nonexistent", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                   "PYTHONPATH": package, "PYTHONDONTWRITEBYTECODE": "1"}

    def as_user(code):
        command = ["env", "-i", *(f"{k}={v}" for k, v in environment.items()),
                   sys.executable, "-c", textwrap.dedent(code)]
        return shlex.join(["runuser", "-u", user, "--", *command])

    script = [
        "set -e", "mount --make-rprivate /",
        # The interpreter, the virtual environment (CI's lies in a mktemp -d directory) and
        # the package, wherever they are.
        *_reachable_by_others([sys.executable, sys.base_prefix, sys.prefix, package],
                              tmp_path / "kept"),
        # Every temporary directory read-only (its contents, perhaps the environment, kept),
        # then the install, even for root.
        *(line for directory in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(directory)
          for line in _read_only(directory, recursive=True)),
        *_read_only(package),
        "cd /", "set +e",
        as_user("""
            import os, tempfile
            try:
                print("temporary directory:", tempfile.gettempdir())
            except FileNotFoundError as error:
                print(error)
        """),
        as_user(NO_DISK_CALLS),
        as_user("from fastcalc.cli import main; raise SystemExit(main(['warmup']))")
        + '; echo "warmup exit status $?"',
    ]
    result = subprocess.run(["unshare", "--mount", "sh", "-c", "\n".join(script)],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    assert "No usable temporary directory" in result.stdout, result.stdout + result.stderr
    assert_compiled_in_memory_with_one_warning(result)
    assert "warmup exit status 1" in result.stdout
    assert "fastcalc warmup: cached nothing" in result.stderr
