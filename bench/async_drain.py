#!/usr/bin/env python
"""``async def`` tasks against sync ones: N tasks that each wait, drained by ONE worker.

    .venv-3.14/bin/python bench/async_drain.py [--tasks 1000] [--seconds 0.1]
        [--executor thread process subinterpreter] [--sync-tasks 100] [--db sqlite|postgres]

For each executor: store N ``benchsite.tasks.async_sleep(seconds)`` tasks, start a real
``tandem worker --burst -w 1`` and time it from its start to its exit (its start-up — Django,
the pool, the event loop's interpreter or process — included). Then the same with the sync
``benchsite.tasks.sleep`` (``--sync-tasks`` of them: one at a time, so 1,000 x 0.1 s would take
100 s; the table gives the measured time and the per-task pace). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BENCH, in_django

FILL = """
import sys
from benchsite import tasks
from tandem import enqueue_many
task = getattr(tasks, sys.argv[1])
for start in range(0, int(sys.argv[2]), 500):
    count = min(500, int(sys.argv[2]) - start)
    enqueue_many(task, [((float(sys.argv[3]),), {}) for _ in range(count)])
"""
COUNT = """
from tandem.models import TaskRecord
print(TaskRecord.objects.filter(status="SUCCESSFUL").count(), TaskRecord.objects.count())
TaskRecord.objects.all().delete()
"""


def drain(env: dict[str, str], task: str, count: int, seconds: float) -> tuple[float, str]:
    in_django(env, FILL, task, str(count), str(seconds))
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "django", "tandem", "worker", "--burst", "-w", "1"],
        cwd=BENCH,
        env=env,
        capture_output=True,
        check=True,
    )
    took = time.perf_counter() - started
    done, total = in_django(env, COUNT).split()
    return took, f"{done}/{total}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--sync-tasks", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=0.1)
    parser.add_argument("--executor", nargs="+", default=["thread", "process", "subinterpreter"])
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tandem-async-bench-") as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": str(BENCH),
            "DJANGO_SETTINGS_MODULE": "benchsite.settings",
            "BENCH_DB": args.db,
            "BENCH_SQLITE_PATH": str(Path(tmp) / "bench.sqlite3"),
        }
        in_django(
            env,
            "from django.core.management import call_command; call_command('migrate', verbosity=0)",
        )
        rows = []
        for executor in args.executor:
            env["BENCH_EXECUTOR"] = executor
            for task, count in (("async_sleep", args.tasks), ("sleep", args.sync_tasks)):
                took, done = drain(env, task, count, args.seconds)
                rows.append((executor, task, count, done, took))
                print(
                    f"{executor:15} {task:12} {count:5} tasks: {took:7.2f} s ({done} done)",
                    file=sys.stderr,
                )
    print(
        f"\n{args.tasks} async / {args.sync_tasks} sync tasks each waiting {args.seconds:g} s, "
        f"ONE worker, {args.db}, Python {sys.version.split()[0]}, {os.cpu_count()} cores\n"
    )
    print("| executor | task | tasks | done | drain (s) | per task (ms) | tasks/s |")
    print("|---|---|---|---|---|---|---|")
    for executor, task, count, done, took in rows:
        print(
            f"| {executor} | `{task}` | {count} | {done} | {took:.2f} | "
            f"{took / count * 1000:.1f} | {count / took:.0f} |"
        )


if __name__ == "__main__":
    main()
