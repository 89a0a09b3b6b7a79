#!/usr/bin/env python
"""The cost of ``tandem.enqueue_many``: one call of N ``mark`` tasks on a fresh store, timed.

    .venv-3.14/bin/python bench/bulk_enqueue.py [--db sqlite] [--tasks 2000 10000] [--rounds 5]
        [--items stamp|empty] [--src DIR ...] [--profile] [--no-otel]

Each round of each size runs in a fresh process on a fresh SQLite file (benchsite: WAL, SQLite's
default ``synchronous=FULL``, as ``bench/compare``'s "bulk enqueue"), or on an emptied
PostgreSQL/MariaDB database (``--db postgres|mariadb``, the database ``tandem_bulk_bench``,
created here and dropped at the end) or Redis (``--db redis``: db 9, keys under a prefix of their
own, deleted before each round). Migrations, ``django.setup()`` and the first connection are
outside the clock; the clock covers the one ``enqueue_many(mark, items)`` call. Items are
``((), {"stamp": 0.0})`` as in ``bench/compare`` (``--items stamp``) or ``((), {})``
(``--items empty``).

Reported per size: tasks/s (wall clock) and CPU µs per task (``time.process_time``: the
process's own CPU, so other work on the machine does not count), the median of the rounds and,
in brackets, the lowest and highest. Compare two source trees with ``--src OLD --src NEW`` (each
a directory holding the ``tandem`` package, e.g. ``src`` of a ``git archive`` of the base
commit): their rounds alternate, so drift on the machine spreads over both. ``--profile`` runs
one round of the first size under cProfile and prints the top functions by own time.
``--no-otel`` blocks ``opentelemetry``'s import, as in bench/compare's venv, which lacks it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PG_NAME = "tandem_bulk_bench"


def child(count: int, items_kind: str, profile: bool, no_otel: bool) -> dict[str, float]:
    if no_otel:  # as if OpenTelemetry were not installed (bench/compare's venv)
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from benchsite.tasks import mark

    import tandem

    if os.environ.get("BENCH_STORE") == "redis":
        import redis  # a client of its own: the broker is made inside the clock, as in compare

        client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
        keys = list(client.scan_iter(f"{os.environ['BENCH_REDIS_PREFIX']}*"))
        if keys:
            client.delete(*keys)
    else:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM tandem_taskrecord")
        connection.ensure_connection()
    kwargs = {"stamp": 0.0} if items_kind == "stamp" else {}
    items = [((), dict(kwargs)) for _ in range(count)]
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        tandem.enqueue_many(mark, items)
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime")
        stats.print_stats(30)
        return {}
    wall, cpu = time.perf_counter(), time.process_time()
    results = tandem.enqueue_many(mark, items)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert len(results) == count
    return {"wall": wall, "cpu": cpu}


def run_round(
    src: str, db: str, count: int, items: str, profile: bool = False, no_otel: bool = False
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tandem-bulk-") as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([src, str(BENCH), str(REPO)]),
            "DJANGO_SETTINGS_MODULE": "benchsite.settings",
            "BENCH_DB": "sqlite" if db == "redis" else db,
            "BENCH_SQLITE_PATH": str(Path(tmp) / "bulk.sqlite3"),
            "BENCH_PG_NAME": PG_NAME,
            "BENCH_MARIADB_NAME": PG_NAME,
            "BENCH_MARKS": str(Path(tmp) / "marks"),
            # Byte code cached (as in a deployment), outside the source trees and the venv.
            "PYTHONPYCACHEPREFIX": os.environ.get(
                "PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "tandem-bulk-pycache")
            ),
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        if db == "redis":
            env |= {
                "BENCH_STORE": "redis",
                "BENCH_REDIS_URL": "redis://127.0.0.1:6379/9",
                "BENCH_REDIS_PREFIX": "tandem-bulk-bench",
            }
        argv = [sys.executable, __file__, "--child", str(count), "--items", items]
        if profile:
            argv.append("--profile")
        if no_otel:
            argv.append("--no-otel")
        out = subprocess.run(argv, env=env, check=True, capture_output=not profile, text=True)
        return {} if profile else json.loads(out.stdout.strip().splitlines()[-1])


def database(db: str, action: str) -> None:
    """Create (``action="create"``) or drop the PostgreSQL/MariaDB database of the run."""
    if db == "postgres":
        import psycopg

        with psycopg.connect(
            "host=127.0.0.1 user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_NAME}")
            if action == "create":
                conn.execute(f"CREATE DATABASE {PG_NAME}")
    elif db == "mariadb":
        import MySQLdb  # type: ignore[import-not-found]

        conn = MySQLdb.connect(host="127.0.0.1", user="root")
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {PG_NAME}")
        if action == "create":
            conn.cursor().execute(f"CREATE DATABASE {PG_NAME} CHARACTER SET utf8mb4")
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db", choices=("sqlite", "postgres", "mariadb", "redis"), default="sqlite"
    )
    parser.add_argument("--tasks", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--items", choices=("stamp", "empty"), default="stamp")
    parser.add_argument("--src", action="append", help="a directory holding tandem (repeatable)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-otel", action="store_true", help="block opentelemetry's import")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.items, args.profile, args.no_otel)))
        return
    sources = args.src or [str(REPO / "src")]
    if args.db in ("postgres", "mariadb"):
        database(args.db, "create")
    try:
        if args.profile:
            run_round(sources[0], args.db, args.tasks[0], args.items, True, args.no_otel)
            return
        runs: dict[tuple[str, int], list[dict[str, float]]] = {}
        for rnd in range(args.rounds):
            for count in args.tasks:
                for src in sources:
                    runs.setdefault((src, count), []).append(
                        run_round(src, args.db, count, args.items, no_otel=args.no_otel)
                    )
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        for (src, count), rounds in runs.items():
            rates = [count / r["wall"] for r in rounds]
            cpus = [r["cpu"] / count * 1e6 for r in rounds]
            print(
                f"{args.db} {count:>6} tasks  {src}\n"
                f"    {statistics.median(rates):>8,.0f} tasks/s "
                f"[{min(rates):,.0f}-{max(rates):,.0f}]   "
                f"CPU {statistics.median(cpus):6.1f} µs/task [{min(cpus):.1f}-{max(cpus):.1f}]"
            )
    finally:
        if args.db in ("postgres", "mariadb"):
            database(args.db, "drop")


if __name__ == "__main__":
    main()
