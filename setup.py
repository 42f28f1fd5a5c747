"""Build fastcalc's Cython extensions (all other metadata is in pyproject.toml).

Wheels must run on any CPU of their platform, so nothing is built with
-march=native.  Instead every kernel module ``src_cython/<stem>.pyx`` is
compiled once per instruction set, as ``fastcalc._cython.<stem>_<isa>``, and
:func:`fastcalc._cython.load` imports the best variant the CPU runs.  Each
variant needs its own module name (its own ``PyInit_`` function), so each is
a generated stub ``build/cython_isa/<stem>_<isa>.pyx`` that includes the
shared source.

OpenMP (for ``prange``) is used when the compiler can build and link a small
OpenMP program; otherwise the extensions are built without it and run
single-threaded, rather than failing to install (Apple's clang, without
libomp, is such a compiler).  Without a working C compiler at all the build
stops with a message saying so: fastcalc is not installed half-built.

Never -ffast-math: a shared object built with it sets flush-to-zero for the
whole process when it is loaded.
"""

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError, ExecError, LinkError, PlatformError

SOURCE_DIR = Path("src_cython")
STUB_DIR = Path("build", "cython_isa")
ISAS = ("baseline", "avx2", "avx512")

# Flags per compiler family and ISA, for GCC and Clang ("unix") and MSVC:
# -O3: -O2 vectorizes only loops that need no runtime alias check.
# -fno-trapping-math: without it GCC will not turn a select whose branches hold
#   floating-point operations into a SIMD blend (an operation might trap), and
#   the sigmoid loops stay scalar on SSE2 and AVX2.  It only declares that
#   nothing traps on floating-point exceptions; results, rounding and
#   subnormals are unchanged and, unlike -ffast-math, no FPU mode is set.
# -ffp-contract=fast: a * b + c may become one FMA (one rounding instead of two),
#   GCC's default in GNU mode; Clang's default fuses only within an expression.
BASE_FLAGS = {"unix": ["-O3", "-fno-trapping-math", "-ffp-contract=fast"], "msvc": []}
# -mprefer-vector-width=512: GCC's generic tuning would use 256-bit vectors
# for most loops; 512-bit ones ran the sigmoid 1.9x faster on one core (Zen 5).
ISA_FLAGS = {
    "unix": {
        "baseline": [],
        "avx2": ["-mavx2", "-mfma"],
        "avx512": [
            "-mavx512f",
            "-mavx512dq",
            "-mavx512bw",
            "-mavx512vl",
            "-mavx2",
            "-mfma",
            "-mprefer-vector-width=512",
        ],
    },
    "msvc": {"baseline": [], "avx2": ["/arch:AVX2"], "avx512": ["/arch:AVX512"]},
}
OPENMP_FLAGS = {"unix": (["-fopenmp"], ["-fopenmp"]), "msvc": (["/openmp"], [])}

PLAIN_TEST = """
int fastcalc_compiler_test(int x) { return x + 1; }
"""
NO_COMPILER = """
fastcalc: no working C compiler ({error}).

fastcalc's Cython kernels are compiled when it is installed from source.
Install a C compiler (gcc or clang on Linux, the Xcode command line tools on
macOS, Microsoft C++ Build Tools on Windows) and try again, or install a
binary wheel instead: pip install --only-binary fastcalc fastcalc
"""
OPENMP_TEST = """
#include <omp.h>
int fastcalc_openmp_test(void)
{
    int threads = 0;
    #pragma omp parallel reduction(+: threads)
    threads += 1;
    return threads + omp_get_max_threads();
}
"""


def write_if_changed(path, text):
    """Write ``text`` to ``path`` unless it already holds it (keeps the mtime for cythonize)."""
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def isa_of(extension):
    """The ISA of a kernel extension: its name's suffix (cythonize copies Extensions)."""
    return extension.name.rsplit("_", 1)[1]


def kernel_extensions():
    """One Extension per kernel module and ISA, each compiled from its own stub."""
    extensions = []
    support = [str(p) for p in sorted(SOURCE_DIR.glob("*.pxd")) + sorted(SOURCE_DIR.glob("*.h"))]
    for source in sorted(SOURCE_DIR.glob("*.pyx")):
        for isa in ISAS:
            stub = STUB_DIR / f"{source.stem}_{isa}.pyx"
            # The stub repeats the source's docstring: an included one is no module docstring.
            docstring = re.match(r'\s*(""".*?""")', source.read_text(), re.DOTALL)
            header = f"{docstring.group(1)}\n\n" if docstring else ""
            write_if_changed(stub, f'{header}include "{source.name}"\n')
            extensions.append(
                Extension(
                    f"fastcalc._cython.{source.stem}_{isa}",
                    sources=[str(stub)],
                    include_dirs=[str(SOURCE_DIR), numpy.get_include()],
                    # numpy >= 2.0 at run time: its ArrayMethod API (the
                    # activations' ufunc loops) may be used.
                    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                                   ("NPY_TARGET_VERSION", "NPY_2_0_API_VERSION")],
                    # npymath: numpy's float16 conversions.
                    library_dirs=[str(Path(numpy.get_include()).parent / "lib")],
                    libraries=["npymath"],
                    depends=[str(source), *support],
                )
            )
    return extensions


def targets_x86_64(plat_name):
    """Whether ``plat_name`` (build_ext's target, e.g. "linux-x86_64", "win-amd64") is x86-64.

    macOS "universal2" builds arm64 and x86_64 in one compile, where x86 flags
    would break the arm64 half: baseline only, like every other target.
    """
    return re.search(r"(x86_64|amd64)$", plat_name.lower()) is not None


class BuildExt(build_ext):
    """build_ext with per-ISA flags and OpenMP when the compiler supports it."""

    def finalize_options(self):
        super().finalize_options()
        if not targets_x86_64(self.plat_name):
            self.extensions = [e for e in self.extensions if isa_of(e) == "baseline"]

    def build_extensions(self):
        family = "msvc" if self.compiler.compiler_type == "msvc" else "unix"
        error = self.compile_error(PLAIN_TEST, [], [])
        if error is not None:
            raise SystemExit(NO_COMPILER.format(error=error))
        openmp_compile, openmp_link = OPENMP_FLAGS[family]
        if self.compile_error(OPENMP_TEST, openmp_compile, openmp_link) is not None:
            print("fastcalc: the compiler cannot build OpenMP; kernels will run single-threaded")
            openmp_compile, openmp_link = [], []
        for extension in self.extensions:
            extension.extra_compile_args = [
                *BASE_FLAGS[family],
                *ISA_FLAGS[family][isa_of(extension)],
                *openmp_compile,
            ]
            extension.extra_link_args = list(openmp_link)
        super().build_extensions()

    def compile_error(self, code, compile_flags, link_flags):
        """Why C ``code`` does not compile and link as a shared library with these flags.

        None when it does.
        """
        directory = tempfile.mkdtemp(prefix="fastcalc-compiler-test-")
        try:
            source = os.path.join(directory, "test.c")
            with open(source, "w") as file:
                file.write(code)
            objects = self.compiler.compile(
                [source], output_dir=directory, extra_postargs=compile_flags
            )
            self.compiler.link_shared_object(
                objects, os.path.join(directory, "test.so"), extra_postargs=link_flags
            )
        except (CompileError, LinkError, ExecError, PlatformError) as error:
            return str(error) or type(error).__name__
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return None


setup(
    ext_modules=cythonize(
        kernel_extensions(),
        include_path=[str(SOURCE_DIR)],
        compiler_directives={"language_level": 3, "embedsignature": True},
    ),
    cmdclass={"build_ext": BuildExt},
)
