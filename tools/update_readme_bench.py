"""Regenerate the README's benchmark results, and every number its prose quotes, from one run.

Usage: ``python tools/update_readme_bench.py`` (a few minutes).  It runs
``fastcalc bench`` once (``COMMAND``, with ``--json``) in the repository's
root, whatever the current directory, and rewrites README.md from that run
alone, so no number in it disagrees with another:

- the block between the BENCH markers becomes the command, its output (the
  full table and the summary) and, under them, the chart of speed-ups it
  draws (``--plot``) into ``docs/bench.png``;
- every number the prose quotes from the results is written between an
  inline marker, which names the result (kernel, dtype, size and
  implementation, as in the JSON, separated by ``|``), and an end marker, on
  one line::

      <!-- bench: sigmoid | float32 | 1000 | fastcalc auto -->1.94 us<!-- /bench -->

  and become its median time per call, formatted as the table formats it.

A marker naming a result the run does not have stops the script before it
writes anything (install the peer it names, or change the marker).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PLOT = "docs/bench.png"  # relative to ROOT, as the README's link is
# Every implementation (--full): the README's prose compares backends the compact table omits.
COMMAND = ["fastcalc", "bench", "--full", "--sizes", "1000", "16777216", "--image-sizes", "2048",
           "--repeat", "9", "--plot", PLOT]  # shown in the README
START, END = "<!-- BENCH:START -->", "<!-- BENCH:END -->"
BLOCK = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
# A quoted number: on one line, between a marker naming the result and the end marker.
QUOTE = re.compile(r"<!-- bench: (?P<key>[^>\n]*?) -->(?P<value>[^<\n]*)<!-- /bench -->")


def _key(text: str) -> tuple[str, str, int, str]:
    """(kernel, dtype, size, implementation) of a marker's ``kernel | dtype | size | name``."""
    parts = [part.strip() for part in text.split("|")]
    if len(parts) != 4 or not parts[2].isdigit():
        raise ValueError(f"a bench marker names kernel | dtype | size | implementation, "
                         f"got {text!r}")
    kernel, dtype, size, implementation = parts
    return kernel, dtype, int(size), implementation


def check(readme: str) -> None:
    """Raise ValueError unless ``readme`` has the BENCH block and well-formed markers."""
    if not BLOCK.search(readme):
        raise ValueError(f"README.md has no {START} ... {END} block")
    for match in QUOTE.finditer(readme):
        _key(match["key"])


def render(readme: str, command: Sequence[str], output: str, records: Sequence[dict]) -> str:
    """``readme`` with its BENCH block and every quoted number taken from one run.

    Parameters
    ----------
    readme : str
        The README's text.
    command : sequence of str
        The command that ran, shown above its output.
    output : str
        What it printed.
    records : sequence of dict
        Its results, as ``fastcalc bench --json`` writes them.

    Returns
    -------
    str
        The new README text.

    Raises
    ------
    ValueError
        When the README has no BENCH block, or a marker is malformed or names
        a result that ``records`` does not have.
    """
    from fastcalc._bench import format_time

    check(readme)
    medians = {(r["kernel"], r["dtype"], r["size"], r["implementation"]): r["median_s"]
               for r in records}
    missing = sorted({match["key"] for match in QUOTE.finditer(readme)
                      if _key(match["key"]) not in medians})
    if missing:
        raise ValueError("the run has no result for the README's markers: " + "; ".join(missing))
    block = (f"{START}\n`{' '.join(command)}`:\n\n```text\n{output.strip()}\n```\n\n"
             f"![Speed-ups over the numpy reference]({PLOT})\n{END}")
    readme = BLOCK.sub(lambda _: block, readme)
    return QUOTE.sub(lambda match: (f"<!-- bench: {match['key']} -->"
                                    f"{format_time(medians[_key(match['key'])])}<!-- /bench -->"),
                     readme)


def main() -> int:
    try:
        check(README.read_text())  # before the minutes of benchmarks
    except ValueError as error:
        sys.exit(f"{README}: {error}")
    (ROOT / PLOT).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as directory:
        results = Path(directory) / "bench.json"
        output = subprocess.run([*COMMAND, "--quiet", "--json", str(results)], check=True,
                                capture_output=True, text=True, cwd=ROOT).stdout
        records = json.loads(results.read_text())["results"]
    try:  # the README again: it may have been edited meanwhile
        text = render(README.read_text(), COMMAND, output, records)
    except ValueError as error:
        sys.exit(f"{README}: {error}")
    README.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
