"""Measure fastcalc's cold start: import time, Numba compile times, first calls from the cache.

Usage: ``python tools/cold_start.py`` (about 2 minutes).  Prints a Markdown
table for the README.  Every figure comes from fresh processes:

- ``import fastcalc``: the median of 7 processes.
- Per kernel family (``fastcalc warmup``'s, float64): the first call with an
  empty Numba cache (the compile time), then, with the cache that call
  filled, the first call in a new process (median of 5): alone (it also
  imports Numba and initializes its compiler, once per process) and after
  another family's first call (the kernel's own load time).
- Numba's own floor, for comparison: importing Numba and the first call of
  a one-line ``@numba.njit(cache=True)`` function from a warm cache (median
  of 5 processes).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent("""
    import sys, time
    start = time.perf_counter()
    import fastcalc
    imported = begin = time.perf_counter()
    from fastcalc import _warmup
    calls = dict(_warmup._calls("float64"))  # imports Numba: timed, unless `before`
    family, before = sys.argv[1], sys.argv[2]
    if before:
        calls[before]()
        begin = time.perf_counter()
    calls[family]()
    print(imported - start, time.perf_counter() - begin)
""")


# Numba's floor: the least any cached Numba function costs on its process's first call.
ONE_LINE_FUNCTION = textwrap.dedent("""
    import numba

    @numba.njit(cache=True)
    def add_one(x):
        return x + 1.0
""")
ONE_LINE_CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    begin = time.perf_counter()
    import one_line
    one_line.add_one(1.0)
    print(0.0, time.perf_counter() - begin)
""")


def child(code: str, cache: str, *args: str) -> tuple[float, float]:
    environment = {**os.environ, "NUMBA_CACHE_DIR": cache}
    output = subprocess.run([sys.executable, "-c", code, *args], env=environment,
                            capture_output=True, text=True, check=True).stdout.split()
    return float(output[0]), float(output[1])


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e3:.0f} ms"


def main() -> int:
    from fastcalc import _warmup

    families = [name for name, _ in _warmup._calls("float64")]
    with tempfile.TemporaryDirectory() as scratch:
        imports = [child(CHILD, scratch, families[0], "")[0] for _ in range(7)]
        print(f"`import fastcalc`: {median_ms(imports)} (median of 7 processes)\n")
        print("| kernels (float64) | compile, empty cache | first call from the cache, "
              "first Numba call of the process | first call from the cache, after another |")
        print("|---|---|---|---|")
        for index, family in enumerate(families):
            cache = os.path.join(scratch, family.replace(", ", "-"))
            other = families[index - 1]
            child(CHILD, cache, other, "")  # the other family compiled and cached: not timed
            _, compile_seconds = child(CHILD, cache, family, "")
            alone = [child(CHILD, cache, family, "")[1] for _ in range(5)]
            after = [child(CHILD, cache, family, other)[1] for _ in range(5)]
            print(f"| {family} | {compile_seconds:.2f} s | {median_ms(alone)} | "
                  f"{median_ms(after)} |")
        with open(os.path.join(scratch, "one_line.py"), "w") as module:
            module.write(ONE_LINE_FUNCTION)
        child(ONE_LINE_CHILD, scratch, scratch)  # compiles and caches: not timed
        floor = [child(ONE_LINE_CHILD, scratch, scratch)[1] for _ in range(5)]
        print(f"| for comparison: a one-line `@numba.njit(cache=True)` function | | "
              f"{median_ms(floor)} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
