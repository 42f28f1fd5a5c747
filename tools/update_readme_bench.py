"""Regenerate the README's results table and chart by running ``fastcalc bench``.

Usage: ``python tools/update_readme_bench.py`` (a few minutes).  The block
between the BENCH markers in README.md is replaced with the command's output
and, under the table, the chart of speed-ups it draws (``--plot``) into
``docs/bench.png``, so the README shows measured numbers, never hand-typed
ones.  The command runs in the repository's root, whatever the current
directory.
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PLOT = "docs/bench.png"  # relative to ROOT, as the README's link is
COMMAND = ["fastcalc", "bench", "--sizes", "1000", "16777216", "--image-sizes", "2048",
           "--repeat", "9", "--plot", PLOT]  # shown in the README as the command to reproduce
START, END = "<!-- BENCH:START -->", "<!-- BENCH:END -->"


def main() -> int:
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(README.read_text()):  # before the minutes of benchmarks
        sys.exit(f"{README} has no {START} ... {END} block")
    (ROOT / PLOT).parent.mkdir(parents=True, exist_ok=True)
    output = subprocess.run([*COMMAND, "--quiet"], check=True, capture_output=True, text=True,
                            cwd=ROOT).stdout
    block = (f"{START}\n`{' '.join(COMMAND)}`:\n\n{output.strip()}\n\n"
             f"![Speed-ups over the numpy reference]({PLOT})\n{END}")
    text = README.read_text()  # again: the README may have been edited meanwhile
    if not pattern.search(text):
        sys.exit(f"{README} has no {START} ... {END} block")
    README.write_text(pattern.sub(lambda _: block, text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
