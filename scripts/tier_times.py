"""Seconds per test tier, from the JUnit XML reports of a run (``TANDEM_TEST_REPORTS=DIR``).

Usage: python3 scripts/tier_times.py DIR/junit-*.xml
One column per report (database run), one row per tier (``tests/<tier>/``), slowest first: the
sum of the tests' own times (set-up, call and tear-down), which under pytest-xdist is more than
the wall time of the run.
"""

from __future__ import annotations

import collections
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def tiers(path: Path) -> tuple[collections.Counter[str], collections.Counter[str]]:
    seconds: collections.Counter[str] = collections.Counter()
    counts: collections.Counter[str] = collections.Counter()
    for case in ET.parse(path).iter("testcase"):
        parts = case.get("classname", "").split(".")
        tier = parts[1] if len(parts) > 2 and parts[0] == "tests" else "(top)"
        seconds[tier] += float(case.get("time", 0) or 0)
        counts[tier] += 1
    return seconds, counts


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    runs = {Path(p).stem.removeprefix("junit-"): tiers(Path(p)) for p in paths}
    total: collections.Counter[str] = collections.Counter()
    for seconds, _ in runs.values():
        total.update(seconds)
    print(f"{'tier':<14}" + "".join(f"{name:>18}" for name in runs))
    for tier, _ in total.most_common():
        cells = "".join(
            f"{seconds[tier]:>10.1f}s {counts[tier]:>5}t" if tier in counts else f"{'-':>18}"
            for seconds, counts in runs.values()
        )
        print(f"{tier:<14}{cells}")
    sums = "".join(
        f"{sum(seconds.values()):>10.1f}s {sum(counts.values()):>5}t"
        for seconds, counts in runs.values()
    )
    print(f"{'all':<14}{sums}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
