#!/usr/bin/env python
"""Workflow benchmark: store a group of N items with a ``then`` callback, then run it.

    .venv-3.14/bin/python bench/workflows.py [--db sqlite postgres redis] [--items N] [--repeat R]

For each store and repetition, in a fresh database: ``tandem.group()`` of N ``noop`` items plus a
``then`` task is stored (timed: "store"), then a burst supervisor in this process (thread pool,
4 workers) runs everything; "callback" is the time from the end of the store to the callback's
``finished_at``. Checked: every item SUCCESSFUL, the callback stored once, claimed once
(one attempt) and SUCCESSFUL with the group id as its argument. Numbers are printed as a
markdown table; nothing here is asserted about speed beyond reporting it.

SQLite uses a temporary file (WAL); PostgreSQL a database ``tandem_bench_workflows`` on
127.0.0.1:5432 that this script creates and drops; ``redis`` keeps the tasks in Redis on
127.0.0.1:6379 under a prefix of its own, deleted afterwards.
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

BENCH = Path(__file__).resolve().parent
PG_NAME = "tandem_bench_workflows"


def one_run(items: int) -> dict[str, float]:
    """Runs in a fresh process (``bench/workflows.py run N``) with the store chosen by env."""
    import django

    django.setup()
    from benchsite import tasks
    from django.conf import settings
    from django.core.management import call_command
    from django.tasks import task_backends
    from django.utils import timezone

    import tandem
    from tandem.models import TaskRecord
    from tandem.worker.supervisor import Supervisor

    call_command("migrate", verbosity=0)
    steps = [(tasks.noop, [], None)] * items
    started = time.perf_counter()
    group = tandem.group(steps, then=tasks.group_report)
    stored = time.perf_counter()
    stored_at = timezone.now()
    supervisor = Supervisor(workers=4, burst=True, listen=False, schedules=False)
    supervisor.run()
    ran = time.perf_counter()
    then = group.then_result
    assert then is not None and then.status == "SUCCESSFUL", then
    assert then.attempts == 1, then.attempts
    assert then.args == [group.id], then.args
    if settings.BENCH_STORE == "redis":
        broker = task_backends["default"].broker  # type: ignore[attr-defined]
        copies = [
            key
            for key in broker.client.scan_iter(match=f"{broker.prefix}:task:*", count=1000)
            if broker.client.hget(key, "task_path") == then.task.module_path
        ]
        assert len(copies) == 1, copies
    else:
        assert TaskRecord.objects.filter(task_path=then.task.module_path).count() == 1
    fresh = tandem.get_group(group.id)
    assert fresh.finished and fresh.successful
    assert then.finished_at is not None
    return {
        "store": stored - started,
        "callback": (then.finished_at - stored_at).total_seconds(),
        "all": ran - started,
    }


def settle_cost(count: int = 3000, batch: int = 10) -> dict[str, float]:
    """What the workflow hook adds to ``settle()`` when no workflow is in use: ``count`` tasks
    settled in batches of ``batch``, with the hook and with it switched off (3 rounds each)."""
    import django

    django.setup()
    import uuid
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from tandem.brokers.base import NewTask, Settlement
    from tandem.brokers.database import DatabaseBroker

    call_command("migrate", verbosity=0)

    def one(hook: bool) -> float:
        broker = DatabaseBroker("default", store_clock=False)
        if not hook:
            broker._parents_finished = lambda *args, **kwargs: None  # type: ignore[method-assign]
        now = timezone.now()
        broker.push(
            [
                NewTask(
                    id=str(uuid.uuid4()),
                    backend="default",
                    queue_name="settle",
                    task_path="benchsite.tasks.noop",
                    priority=0,
                    takes_context=False,
                    args=[],
                    kwargs={},
                    run_after=None,
                    enqueued_at=now,
                )
                for _ in range(count)
            ]
        )
        claimed = []
        while more := broker.claim(
            ["settle"], 500, "w", now + timedelta(seconds=600), now + timedelta(seconds=1)
        ):
            claimed += more
        started = time.perf_counter()
        for start in range(0, len(claimed), batch):
            broker.settle(
                [
                    Settlement(
                        id=t.id,
                        worker_id="w",
                        attempt_token=t.attempt_token,
                        status="SUCCESSFUL",
                        finished_at=now + timedelta(seconds=2),
                    )
                    for t in claimed[start : start + batch]
                ]
            )
        return (time.perf_counter() - started) / (len(claimed) / batch) * 1000

    rounds: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(3):
        for hook in (False, True):
            rounds[hook].append(one(hook))
    return {"without": statistics.median(rounds[False]), "with": statistics.median(rounds[True])}


def run_store(kind: str, items: int, mode: str = "run") -> dict[str, float]:
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH), str(BENCH.parent / "src")])
    env["DJANGO_SETTINGS_MODULE"] = "benchsite.settings"
    env["BENCH_DB"] = kind
    env["BENCH_EXECUTOR"] = "thread"
    if kind == "redis":  # tasks in Redis; Django's own tables in a temporary SQLite file
        env["BENCH_DB"] = "sqlite"
        env["BENCH_STORE"] = "redis"
        env["BENCH_REDIS_PREFIX"] = f"tandem-bench-workflows-{os.getpid()}"
    with tempfile.TemporaryDirectory() as directory:
        if kind in ("sqlite", "redis"):
            env["BENCH_SQLITE_PATH"] = str(Path(directory) / "bench.sqlite3")
        else:
            env["BENCH_PG_NAME"] = PG_NAME
            _pg(f"DROP DATABASE IF EXISTS {PG_NAME}")
            _pg(f"CREATE DATABASE {PG_NAME}")
        try:
            out = subprocess.run(
                [sys.executable, __file__, mode, str(items)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        finally:
            if kind == "postgres":
                _pg(f"DROP DATABASE IF EXISTS {PG_NAME}")
            if kind == "redis":
                _redis_delete(env["BENCH_REDIS_PREFIX"])
    if mode == "settle":
        without, with_hook = (float(x) for x in out.split())
        return {"without": without, "with": with_hook}
    store, callback, total = (float(x) for x in out.split())
    return {"store": store, "callback": callback, "all": total}


def _redis_delete(prefix: str) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


def _pg(statement: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres") as conn:
        conn.autocommit = True
        conn.execute(statement)  # type: ignore[arg-type]


def main(argv: list[str]) -> int:
    if argv[:1] == ["run"]:
        numbers = one_run(int(argv[1]))
        print(numbers["store"], numbers["callback"], numbers["all"])
        return 0
    if argv[:1] == ["settle"]:
        cost = settle_cost()
        print(cost["without"], cost["with"])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--settle-cost",
        action="store_true",
        help="measure what the workflow hook adds to settle() when no workflow is in use",
    )
    args = parser.parse_args(argv)
    if args.settle_cost:
        print("settle() of 10 tasks, ms per call (median of 3 rounds of 300 calls)")
        print("| store | without the workflow hook | with it |")
        print("|---|---|---|")
        for kind in args.db:
            if kind == "redis":
                continue  # the hook is inside the Lua script: nothing to switch off
            cost = run_store(kind, 0, mode="settle")
            print(f"| {kind} | {cost['without']:.2f} | {cost['with']:.2f} |", flush=True)
        return 0
    print(f"group of {args.items:,} items + then, {args.repeat} runs each (median [min-max], s)")
    print("| store | store the group | callback finished after store | whole run |")
    print("|---|---|---|---|")
    for kind in args.db:
        runs = [run_store(kind, args.items) for _ in range(args.repeat)]

        def cell(key: str, runs: list[dict[str, float]] = runs) -> str:
            values = [r[key] for r in runs]
            return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"

        print(f"| {kind} | {cell('store')} | {cell('callback')} | {cell('all')} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
