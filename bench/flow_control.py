#!/usr/bin/env python
"""What flow control costs: 2,000 no-op tasks drained by one worker with 2 slots, plain, under a
concurrency key whose limit never binds (the slot's rows alone), under a rate limit that never
binds (the shared window alone), and under both.

    .venv-3.14/bin/python bench/flow_control.py [--tasks 2000] [--repeat 3]
        [--store sqlite postgres] [--task noop noop_keyed noop_rated noop_keyed_rated]

For each store and task: store N tasks (``enqueue_many``), start a real ``tandem worker --burst
-w 2`` (thread executor: the cost measured is the store's, not the pool's) and time it from its
start to its exit; the drain rate counts from the worker's first completed task (its start-up
is reported apart). Median (min-max) of ``--repeat`` runs, interleaved. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    enqueue_many(task, [((), {}) for _ in range(count)])
"""
SPAN = """
from django.db.models import Max, Min
from tandem.models import TaskRecord
span = TaskRecord.objects.aggregate(first=Min("finished_at"), last=Max("finished_at"))
done = TaskRecord.objects.filter(status="SUCCESSFUL").count()
print(done, TaskRecord.objects.count(), (span["last"] - span["first"]).total_seconds())
TaskRecord.objects.all().delete()
"""


def drain(env: dict[str, str], task: str, count: int) -> tuple[float, float, str]:
    """(whole run incl. start-up, first-to-last completion, done/total) of one burst worker."""
    in_django(env, FILL, task, str(count))
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "django", "tandem", "worker", "--burst", "-w", "2"],
        cwd=BENCH,
        env=env,
        capture_output=True,
        check=True,
    )
    took = time.perf_counter() - started
    done, total, span = in_django(env, SPAN).split()
    return took, float(span), f"{done}/{total}"


def psql(sql: str, *, check: bool) -> None:
    """One statement on the local PostgreSQL server, as ``postgres``."""
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", sql], check=check)


def store_env(store: str, tmp: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(BENCH),
        "DJANGO_SETTINGS_MODULE": "benchsite.settings",
        "BENCH_EXECUTOR": "thread",
        "BENCH_SQLITE_PATH": str(Path(tmp) / f"{store}.sqlite3"),
    }
    if store == "postgres":
        env["BENCH_DB"] = "postgres"
        env["BENCH_PG_NAME"] = f"tandem_bench_flow_{os.getpid()}"
    else:
        env["BENCH_DB"] = "sqlite"
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument(
        "--task", nargs="+", default=["noop", "noop_keyed", "noop_rated", "noop_keyed_rated"]
    )
    args = parser.parse_args()
    results: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
    with tempfile.TemporaryDirectory(prefix="tandem-flow-bench-") as tmp:
        envs = {store: store_env(store, tmp) for store in args.store}
        for store, env in envs.items():
            if store == "postgres":
                psql(f"CREATE DATABASE {env['BENCH_PG_NAME']}", check=True)
            in_django(
                env,
                "from django.core.management import call_command\n"
                "call_command('migrate', verbosity=0)",
            )
        try:
            for repeat in range(args.repeat):
                for store, env in envs.items():
                    for task in args.task:
                        took, span, done = drain(env, task, args.tasks)
                        results.setdefault((store, task), []).append((took, span, done))
                        print(
                            f"run {repeat + 1}: {store:8} {task:12} {done}: {took:6.2f} s in all, "
                            f"{args.tasks / span:7.0f} tasks/s after the first",
                            file=sys.stderr,
                        )
        finally:
            for store, env in envs.items():
                if store == "postgres":
                    psql(f"DROP DATABASE IF EXISTS {env['BENCH_PG_NAME']}", check=False)
    print(
        f"\n{args.tasks} no-op tasks, one `tandem worker --burst -w 2` (thread executor), "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, median (min-max) of "
        f"{args.repeat}\n"
    )
    print("| store | task | done | tasks/s after the first | whole run (s) |")
    print("|---|---|---|--:|--:|")
    for (store, task), runs in results.items():
        rates = [args.tasks / span for _, span, _ in runs]
        whole = [took for took, _, _ in runs]
        print(
            f"| {store} | `{task}` | {runs[-1][2]} | {statistics.median(rates):.0f} "
            f"({min(rates):.0f}-{max(rates):.0f}) | {statistics.median(whole):.2f} "
            f"({min(whole):.2f}-{max(whole):.2f}) |"
        )


if __name__ == "__main__":
    main()
