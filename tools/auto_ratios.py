"""Auto's time over the best of fastcalc's other choices, per group of bench_auto.py.

Usage::

    pytest benchmarks/bench_auto.py --benchmark-json=auto1.json
    pytest benchmarks/bench_auto.py --benchmark-json=auto2.json
    python tools/auto_ratios.py auto1.json auto2.json [--limit 1.2] [--recheck]

Prints one line per group: auto's median, the fastest other member and its
median, their ratio and auto's interquartile range; a ratio above
``--limit`` is flagged with ``!``.  Exits 1 if any group is flagged.  With
several runs, each member's time is the lowest of its medians: pytest-benchmark
times the members of a group one after another, and on a shared machine a slow
phase can fall on any one of them in a run.  ``--recheck`` times the members
of each flagged group again, taking turns (:func:`fastcalc._bench.run`), so a
slow phase falls on all of them, and flags only what is still above the limit.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
from collections import defaultdict
from pathlib import Path

from fastcalc import _bench
from fastcalc._bench import format_time

BENCH_AUTO = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_auto.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="pytest-benchmark's --benchmark-json outputs")
    parser.add_argument("--limit", type=float, default=1.2,
                        help="flag groups where auto takes more than this times the best")
    parser.add_argument("--recheck", action="store_true",
                        help="time the members of flagged groups again, taking turns")
    args = parser.parse_args(argv)
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for path in args.json:
        with open(path) as handle:
            benchmarks = json.load(handle)["benchmarks"]
        for entry in benchmarks:
            members = groups[entry["group"]]
            member, stats = entry["extra_info"]["member"], entry["stats"]
            if member not in members or stats["median"] < members[member]["median"]:
                members[member] = stats
    width = max(map(len, groups))
    flagged = [group for group, members in groups.items()
               if _report(group, members, args.limit, width)]
    print(f"{len(flagged)} of {len(groups)} groups above {args.limit}x")
    if flagged and args.recheck:
        print("Rechecked, the members taking turns:")
        flagged = [group for group in flagged if _report(group, _retime(group), args.limit, width)]
        print(f"{len(flagged)} of {len(groups)} groups above {args.limit}x")
    return 1 if flagged else 0


def _report(group: str, members: dict[str, dict], limit: float, width: int) -> bool:
    """Print auto's line of ``group``; whether auto is above ``limit`` times the best."""
    members = dict(members)
    auto = members.pop("auto", None)
    if auto is None or not members:
        return False
    best, stats = min(members.items(), key=lambda item: item[1]["median"])
    ratio = auto["median"] / stats["median"]
    flag = "!" if ratio > limit else " "
    print(f"{flag} {group:<{width}}  auto {format_time(auto['median']):>9} "
          f"(IQR {format_time(auto['iqr']):>8})  best {best:<13} "
          f"{format_time(stats['median']):>9}  {ratio:.2f}x")
    return ratio > limit


@functools.cache
def _bench_auto_groups() -> dict:
    """bench_auto.py's GROUPS, its module run once (it builds every group's inputs)."""
    spec = importlib.util.spec_from_file_location("bench_auto", BENCH_AUTO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.GROUPS


def _retime(group: str, repeat: int = 21) -> dict[str, dict]:
    """``{member: {"median", "iqr"}}`` of ``group`` of bench_auto.py, timed taking turns."""
    cases = [_bench.Case(group, "", 0, member, function, 0)
             for member, function in _bench_auto_groups()[group].items()]
    return {result.implementation: {"median": result.median_s, "iqr": result.iqr_s}
            for result in _bench.run(cases, repeat=repeat, min_time=0.02)}


if __name__ == "__main__":
    sys.exit(main())
