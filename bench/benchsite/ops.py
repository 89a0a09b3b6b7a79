"""Helper commands the harness runs in fresh processes: ``python -m benchsite.ops CMD [...]``.

Each prints one JSON object on stdout (and nothing else there), so ``bench/run.py`` needs no Django
of its own and can switch stores between runs.

- ``setup``: migrate, switch SQLite to WAL; report store and library versions.
- ``reset``: remove every task and worker row.
- ``enqueue --count N [--interval S]``: enqueue N no-op tasks one by one with ``.enqueue()``
  (every S seconds when given) and time it; the clock starts just before the first enqueue, so
  Python start-up and ``django.setup()`` are not counted, the first connection is.
- ``fill --count N``: store N READY no-op tasks in bulk (the drain phase's starting point).
- ``wait-worker --timeout S``: block until a worker is registered in ``tandem_workerrecord``.
- ``wait-done --count N --timeout S``: block until N tasks are SUCCESSFUL or FAILED.
- ``collect``: status counts, first ``started_at``, last ``finished_at`` and every task's pickup
  (``started_at - enqueued_at``) in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import Count, Max, Min  # noqa: E402
from django.utils import timezone  # noqa: E402

from tandem.models import TaskRecord, WorkerRecord  # noqa: E402

TABLES = (TaskRecord._meta.db_table, WorkerRecord._meta.db_table)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return ordered[int(rank) - 1]


def setup(_: argparse.Namespace) -> dict[str, Any]:
    import platform

    from django.tasks import task_backends

    import tandem

    call_command("migrate", verbosity=0, interactive=False)
    pools = task_backends["default"].tandem_options.pools
    info: dict[str, Any] = {
        "executor": ", ".join(sorted({pool.executor for pool in pools})),
        "poll_interval": ", ".join(sorted({f"{pool.poll_interval:g}" for pool in pools})),
        "vendor": connection.vendor,
        "python": platform.python_version(),
        "django": django.get_version(),
        "tandem": tandem.__version__,
    }
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            import sqlite3

            cursor.execute("PRAGMA journal_mode=WAL")
            info["journal_mode"] = cursor.fetchone()[0]
            cursor.execute("PRAGMA synchronous")
            info["synchronous"] = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                cursor.fetchone()[0]
            )
            info["store"] = f"SQLite {sqlite3.sqlite_version}"
        else:
            import psycopg

            cursor.execute("SHOW server_version")
            server = cursor.fetchone()[0].split()[0]
            cursor.execute("SHOW synchronous_commit")
            info["synchronous_commit"] = cursor.fetchone()[0]
            impl = psycopg.pq.__impl__
            libpq = psycopg.pq.version()
            info["store"] = (
                f"PostgreSQL {server} (psycopg {psycopg.__version__} {impl}, "
                f"libpq {libpq // 10000}.{libpq % 10000})"
            )
    return info


def reset(_: argparse.Namespace) -> dict[str, Any]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(TABLES)}")
        else:
            for table in TABLES:
                cursor.execute(f"DELETE FROM {table}")
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"reset": True}


def enqueue(args: argparse.Namespace) -> dict[str, Any]:
    from benchsite.tasks import noop

    latencies: list[float] = []
    start = time.perf_counter()
    for i in range(args.count):
        if args.interval:
            delay = start + i * args.interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        before = time.perf_counter()
        noop.enqueue()
        latencies.append((time.perf_counter() - before) * 1000)
    elapsed = time.perf_counter() - start
    return {
        "count": args.count,
        "seconds": elapsed,
        "per_second": args.count / elapsed,
        "call_ms_p50": percentile(latencies, 50),
        "call_ms_p99": percentile(latencies, 99),
        "first_call_ms": latencies[0] if latencies else None,
    }


def push_noops(broker: Any, count: int, batch: int = 500) -> None:
    """Store ``count`` READY ``noop`` tasks through ``broker``, ``batch`` per push, in one
    transaction (on Redis: one script call per batch)."""
    import uuid

    from benchsite.tasks import noop
    from tandem.brokers.base import NewTask

    now = timezone.now()
    with transaction.atomic():
        for offset in range(0, count, batch):
            broker.push(
                [
                    NewTask(
                        id=str(uuid.uuid4()),
                        backend="default",
                        queue_name=noop.queue_name,
                        task_path=noop.module_path,
                        priority=noop.priority,
                        takes_context=False,
                        args=[],
                        kwargs={},
                        run_after=None,
                        enqueued_at=now,
                        max_attempts=1,
                    )
                    for _ in range(min(batch, count - offset))
                ]
            )


def fill(args: argparse.Namespace) -> dict[str, Any]:
    from django.tasks import task_backends

    push_noops(task_backends["default"].broker, args.count)
    with connection.cursor() as cursor:
        # What autovacuum would do soon after a table grew this much: fresh planner statistics.
        cursor.execute(f"ANALYZE {TABLES[0]}")
    return {"filled": TaskRecord.objects.filter(status="READY").count()}


def wait_worker(args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        workers = list(WorkerRecord.objects.values_list("id", flat=True))
        if workers:
            return {"workers": workers}
        time.sleep(0.01)
    raise SystemExit(f"no worker registered within {args.timeout:g}s")


def wait_done(args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.timeout
    done = 0
    while time.monotonic() < deadline:
        done = TaskRecord.objects.filter(status__in=["SUCCESSFUL", "FAILED"]).count()
        if done >= args.count:
            return {"done": done}
        time.sleep(0.05)
    raise SystemExit(f"only {done}/{args.count} tasks finished within {args.timeout:g}s")


def collect(_: argparse.Namespace) -> dict[str, Any]:
    statuses = dict(
        TaskRecord.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    span = TaskRecord.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
    pickups = [
        (started - enqueued).total_seconds() * 1000
        for enqueued, started in TaskRecord.objects.filter(started_at__isnull=False).values_list(
            "enqueued_at", "started_at"
        )
    ]
    span_seconds = (
        (span["last"] - span["first"]).total_seconds() if span["first"] and span["last"] else None
    )
    return {
        "statuses": statuses,
        "first_started_at": span["first"].isoformat() if span["first"] else None,
        "last_finished_at": span["last"].isoformat() if span["last"] else None,
        "span_seconds": span_seconds,
        "pickup_ms": pickups,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="benchsite.ops")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup").set_defaults(run=setup)
    sub.add_parser("reset").set_defaults(run=reset)
    p = sub.add_parser("enqueue")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--interval", type=float, default=0.0)
    p.set_defaults(run=enqueue)
    p = sub.add_parser("fill")
    p.add_argument("--count", type=int, required=True)
    p.set_defaults(run=fill)
    p = sub.add_parser("wait-worker")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(run=wait_worker)
    p = sub.add_parser("wait-done")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--timeout", type=float, default=120.0)
    p.set_defaults(run=wait_done)
    sub.add_parser("collect").set_defaults(run=collect)
    args = parser.parse_args(argv)
    json.dump(args.run(args), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
