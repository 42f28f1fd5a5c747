"""tools/update_readme_bench.py: the README's results and quoted numbers come from one run."""

import importlib.util
from pathlib import Path

import pytest

from fastcalc import cli

TOOL = Path(__file__).resolve().parent.parent / "tools" / "update_readme_bench.py"
if not TOOL.exists():  # the tests also run from a copy, against an installed wheel
    pytest.skip("no tools/ next to the tests", allow_module_level=True)
spec = importlib.util.spec_from_file_location("update_readme_bench", TOOL)
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)

README = """# Project

Small arrays: <!-- bench: sigmoid | float32 | 1000 | fastcalc auto -->9 us<!-- /bench -->, torch
<!-- bench: sigmoid | float32 | 1000 | torch.sigmoid -->8 us<!-- /bench -->.

<!-- BENCH:START -->
an old table, 7 us
<!-- BENCH:END -->

Descent: <!-- bench: descent x 100 steps | float64 | 10 | fastcalc numba -->1 s<!-- /bench -->.
"""


def record(kernel, dtype, size, implementation, median_s):
    return {"kernel": kernel, "dtype": dtype, "size": size, "implementation": implementation,
            "median_s": median_s, "iqr_s": 0.0}


RECORDS = [record("sigmoid", "float32", 1000, "fastcalc auto", 1.94e-6),
           record("sigmoid", "float32", 1000, "torch.sigmoid", 1.33e-6),
           record("sigmoid", "float64", 1000, "fastcalc auto", 2.5e-6),
           record("descent x 100 steps", "float64", 10, "fastcalc numba", 0.00669)]


def test_render_writes_the_block_and_every_quoted_number_from_the_run():
    text = tool.render(README, ["fastcalc", "bench", "--repeat", "9"], "the table\n1.94 us\n",
                       RECORDS)
    assert "an old table" not in text and "9 us" not in text and "8 us" not in text
    block = text[text.index(tool.START):text.index(tool.END)]
    assert "`fastcalc bench --repeat 9`:\n\n```text\nthe table\n1.94 us\n```" in block
    assert f"![Speed-ups over the numpy reference]({tool.PLOT})" in block
    assert ("<!-- bench: sigmoid | float32 | 1000 | fastcalc auto -->1.94 us<!-- /bench -->"
            in text)
    assert "<!-- bench: sigmoid | float32 | 1000 | torch.sigmoid -->1.33 us<!-- /bench -->" in text
    assert "fastcalc numba -->6.69 ms<!-- /bench -->." in text
    # Run again on its own output: the markers stay, with the new run's numbers.
    faster = [dict(r, median_s=r["median_s"] / 2) for r in RECORDS]
    again = tool.render(text, ["fastcalc", "bench"], "new", faster)
    assert "fastcalc auto -->970 ns<!-- /bench -->" in again and "```text\nnew\n```" in again


def test_render_refuses_a_readme_quoting_a_result_the_run_lacks():
    without_torch = [r for r in RECORDS if r["implementation"] != "torch.sigmoid"]
    with pytest.raises(ValueError, match=r"sigmoid \| float32 \| 1000 \| torch.sigmoid"):
        tool.render(README, ["fastcalc", "bench"], "out", without_torch)


@pytest.mark.parametrize("readme", [
    "no block <!-- bench: sigmoid | float32 | 1000 | fastcalc auto -->1 us<!-- /bench -->",
    "<!-- BENCH:START -->\n<!-- BENCH:END -->\n<!-- bench: sigmoid | 1000 -->1 us<!-- /bench -->",
    "<!-- BENCH:START -->\n<!-- BENCH:END -->\n<!-- bench: k | f | big | n -->1 us<!-- /bench -->",
])
def test_check_refuses_a_readme_without_block_or_with_a_bad_marker(readme):
    with pytest.raises(ValueError):
        tool.check(readme)


def test_the_readme_quotes_only_results_its_command_times():
    """Every marker of README.md names a case of COMMAND (its peer's when installed)."""
    readme = (TOOL.parent.parent / "README.md").read_text()
    tool.check(readme)
    keys = {tool._key(match["key"]) for match in tool.QUOTE.finditer(readme)}
    assert keys
    arguments = ["bench", *(word for word in tool.COMMAND[2:] if word != tool.PLOT)]
    arguments.remove("--plot")
    cases = cli._cases(cli._parser().parse_args(arguments))
    timed = {(case.kernel, case.dtype, case.size, case.implementation) for case in cases}
    for key in keys:
        assert key in timed or not key[3].startswith("fastcalc "), key
