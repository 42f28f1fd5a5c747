"""Measure fastcalc's cold start: import time, Numba compile times, first calls from the cache.

Usage: ``python tools/cold_start.py`` (about 2 minutes).  Prints a Markdown
table for the README.  Every figure comes from fresh processes:

- ``import fastcalc``: the median of 7 processes.
- Per kernel family (``fastcalc warmup``'s, float64): the first call with an
  empty Numba cache (the compile time), then, with the cache that call
  filled, the first call in a new process: alone (it also imports Numba and
  starts LLVM, once per process) and after another family's first call (the
  kernel's own load time).
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
    imported = time.perf_counter()
    from fastcalc import _warmup
    calls = dict(_warmup._calls("float64"))
    family, before = sys.argv[1], sys.argv[2]
    if before:
        calls[before]()
    begin = time.perf_counter()
    calls[family]()
    print(imported - start, time.perf_counter() - begin)
""")


def measure(family: str, cache: str, before: str = "") -> tuple[float, float]:
    environment = {**os.environ, "NUMBA_CACHE_DIR": cache}
    output = subprocess.run([sys.executable, "-c", CHILD, family, before], env=environment,
                            capture_output=True, text=True, check=True).stdout.split()
    return float(output[0]), float(output[1])


def main() -> int:
    from fastcalc import _warmup

    families = [name for name, _ in _warmup._calls("float64")]
    with tempfile.TemporaryDirectory() as scratch:
        imports = [measure(families[0], scratch)[0] for _ in range(7)]
        print(f"`import fastcalc`: {statistics.median(imports) * 1e3:.0f} ms (median of 7 "
              "processes)\n")
        print("| kernels (float64) | compile, empty cache | first call from the cache, "
              "first Numba call of the process | first call from the cache, after another |")
        print("|---|---|---|---|")
        for index, family in enumerate(families):
            cache = os.path.join(scratch, family.replace(", ", "-"))
            other = families[index - 1]
            measure(other, cache)  # the other family compiled and cached: not timed
            _, compile_seconds = measure(family, cache)
            _, alone = measure(family, cache)
            _, after = measure(family, cache, other)
            print(f"| {family} | {compile_seconds:.2f} s | {alone * 1e3:.0f} ms | "
                  f"{after * 1e3:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
