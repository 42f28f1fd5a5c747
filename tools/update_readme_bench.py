"""Regenerate the README's results table by running ``fastcalc bench``.

Usage: ``python tools/update_readme_bench.py`` (a few minutes).  The table
between the BENCH markers in README.md is replaced with the command's output,
so the README shows measured numbers, never hand-typed ones.
"""

import re
import subprocess
import sys
from pathlib import Path

COMMAND = ["fastcalc", "bench", "--sizes", "1000", "16777216", "--image-sizes", "2048",
           "--repeat", "9", "--quiet"]
README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- BENCH:START -->", "<!-- BENCH:END -->"


def main() -> int:
    output = subprocess.run(COMMAND, check=True, capture_output=True, text=True).stdout
    block = f"{START}\n`{' '.join(COMMAND[:-1])}`:\n\n{output.strip()}\n{END}"
    text = README.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        sys.exit(f"{README} has no {START} ... {END} block")
    README.write_text(pattern.sub(lambda _: block, text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
