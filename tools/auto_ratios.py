"""Auto's time over the best of fastcalc's other choices, per group of bench_auto.py.

Usage::

    pytest benchmarks/bench_auto.py --benchmark-json=auto1.json
    pytest benchmarks/bench_auto.py --benchmark-json=auto2.json
    python tools/auto_ratios.py auto1.json auto2.json [--limit 1.2]

Prints one line per group: auto's median, the fastest other member and its
median, their ratio and auto's interquartile range; a ratio above
``--limit`` is flagged with ``!``.  Exits 1 if any group is flagged.  With
several runs, each member's time is the lowest of its medians: pytest-benchmark
times the members of a group one after another, and on a shared machine a slow
phase can fall on any one of them in a run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

from fastcalc._bench import format_time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="pytest-benchmark's --benchmark-json outputs")
    parser.add_argument("--limit", type=float, default=1.2,
                        help="flag groups where auto takes more than this times the best")
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
    flagged = 0
    width = max(map(len, groups))
    for group, members in groups.items():
        auto = members.pop("auto", None)
        if auto is None or not members:
            continue
        best, stats = min(members.items(), key=lambda item: item[1]["median"])
        ratio = auto["median"] / stats["median"]
        flag = "!" if ratio > args.limit else " "
        flagged += flag == "!"
        print(f"{flag} {group:<{width}}  auto {format_time(auto['median']):>9} "
              f"(IQR {format_time(auto['iqr']):>8})  best {best:<13} "
              f"{format_time(stats['median']):>9}  {ratio:.2f}x")
    print(f"{flagged} of {len(groups)} groups above {args.limit}x")
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
