#!/usr/bin/env python
"""Scale-out benchmark: drain throughput of 1, 2 and 4 ``tandem worker`` processes on each store.

    .venv-3.14/bin/python bench/scale.py [--db sqlite postgres mariadb redis] [--processes 1 2 4]
        [--tasks 10000] [--repeat 3] [--workers 4]

For each store, each repetition and each process count P: N no-op tasks are stored in bulk, then
P ``tandem worker --burst`` processes are started together; the clock runs from the first spawn
to the last task's ``finished_at`` (same host clock). Reported: tasks/s, the steady-state rate
(first ``started_at`` → last ``finished_at``), start-up, and CPU ms per task (user + sys of every
worker process, from ``os.wait4``), with every task checked SUCCESSFUL after exactly one attempt
(no double claim). Results: a markdown table in ``bench/results/scale.md``, raw numbers in
``bench/results/raw/scale-<timestamp>.json``. ``bench/README.md`` explains the numbers.

The orchestrating process imports no Django (it reuses ``bench/run.py``'s helpers); the store side
runs in fresh processes as ``bench/scale.py ops CMD``, against ``bench/benchsite`` with
``BENCH_DB`` (sqlite, postgres, mariadb) or ``BENCH_STORE=redis``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from run import (
    DASH,
    PROTECTED_DATABASES,
    RESULTS,
    Failure,
    Store,
    epoch,
    log,
    machine_info,
    reap,
    summarize,
    write_results,
)

BENCH = Path(__file__).resolve().parent


STORES = ("sqlite", "postgres", "mariadb", "redis")
FILL_BATCH = 500


# -- the store side: ``bench/scale.py ops CMD`` in a fresh process, under Django ----------------


def _broker() -> Any:
    from django.tasks import task_backends

    return task_backends["default"].broker  # type: ignore[attr-defined]


def _redis_store() -> bool:
    from django.conf import settings

    return bool(settings.BENCH_STORE == "redis")


def _redis_task_keys(broker: Any) -> list[str]:
    return list(broker.client.scan_iter(match=f"{broker.prefix}:task:*", count=1000))


def ops_setup() -> dict[str, Any]:
    import platform

    import django
    from django.core.management import call_command
    from django.db import connection
    from django.tasks import task_backends

    import tandem

    call_command("migrate", verbosity=0, interactive=False)
    pools = task_backends["default"].tandem_options.pools  # type: ignore[attr-defined]
    info: dict[str, Any] = {
        "executor": ", ".join(sorted({pool.executor for pool in pools})),
        "poll_interval": ", ".join(sorted({f"{pool.poll_interval:g}" for pool in pools})),
        "python": platform.python_version(),
        "django": django.get_version(),
        "tandem": tandem.__version__,
    }
    if _redis_store():
        import redis

        client = _broker().client
        server = client.info("server")
        config = {**client.config_get("appendonly"), **client.config_get("appendfsync")}
        info["store"] = f"Redis {server['redis_version']} (redis-py {redis.__version__})"
        info["detail"] = (
            f"loopback TCP, appendonly={config.get('appendonly')}, "
            f"appendfsync={config.get('appendfsync')}"
        )
        return info
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            import sqlite3

            cursor.execute("PRAGMA journal_mode=WAL")
            journal = cursor.fetchone()[0]
            cursor.execute("PRAGMA synchronous")
            synchronous = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(cursor.fetchone()[0])
            info["store"] = f"SQLite {sqlite3.sqlite_version}"
            info["detail"] = f"journal_mode={journal}, synchronous={synchronous}"
        elif connection.vendor == "postgresql":
            import psycopg

            cursor.execute("SHOW server_version")
            server = cursor.fetchone()[0].split()[0]
            cursor.execute("SHOW synchronous_commit")
            info["store"] = f"PostgreSQL {server} (psycopg {psycopg.__version__})"
            info["detail"] = f"loopback TCP, synchronous_commit={cursor.fetchone()[0]}"
        else:
            import MySQLdb

            cursor.execute("SELECT VERSION(), @@innodb_flush_log_at_trx_commit, @@log_bin")
            version, flush, log_bin = cursor.fetchone()
            client = ".".join(map(str, MySQLdb.version_info[:3]))
            info["store"] = f"MariaDB {version.split('-')[0]} (mysqlclient {client})"
            info["detail"] = (
                f"loopback TCP, innodb_flush_log_at_trx_commit={flush}, log_bin={log_bin}"
            )
    return info


def ops_reset() -> dict[str, Any]:
    if _redis_store():
        broker = _broker()
        doomed = list(broker.client.scan_iter(match=f"{broker.prefix}:*", count=1000))
        for start in range(0, len(doomed), 1000):
            broker.client.delete(*doomed[start : start + 1000])
        return {"deleted_keys": len(doomed)}
    from django.db import connection

    from tandem.models import ScheduleTick, TaskRecord, WorkerRecord

    tables = [m._meta.db_table for m in (TaskRecord, WorkerRecord, ScheduleTick)]
    with connection.cursor() as cursor:
        for table in tables:
            if connection.vendor == "sqlite":
                cursor.execute(f"DELETE FROM {table}")
            else:
                cursor.execute(f"TRUNCATE TABLE {table}")
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"reset": True}


def ops_fill(count: int) -> dict[str, Any]:
    from benchsite.ops import push_noops
    from django.db import connection

    from tandem.models import TaskRecord

    broker = _broker()
    push_noops(broker, count, FILL_BATCH)
    if _redis_store():
        return {"filled": sum(queue.ready for queue in broker.stats())}
    with connection.cursor() as cursor:
        # What autovacuum / InnoDB's statistics would do soon after a table grew this much.
        table = TaskRecord._meta.db_table
        cursor.execute(
            f"ANALYZE TABLE {table}" if connection.vendor == "mysql" else f"ANALYZE {table}"
        )
        if connection.vendor == "mysql":
            cursor.fetchall()
    return {"filled": TaskRecord.objects.filter(status="READY").count()}


def ops_collect() -> dict[str, Any]:
    """Status counts, first started_at, last finished_at, tasks per worker, attempts per task."""
    from django.db.models import Count, Max, Min

    from tandem.models import TaskRecord

    statuses: Counter[str] = Counter()
    per_worker: Counter[str] = Counter()
    attempts: Counter[int] = Counter()
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    if _redis_store():
        broker = _broker()
        keys = _redis_task_keys(broker)
        for start in range(0, len(keys), 1000):
            pipe = broker.client.pipeline(transaction=False)
            for key in keys[start : start + 1000]:
                pipe.hmget(key, ["status", "started_at", "finished_at", "worker_ids"])
            for status, started, finished, worker_ids in pipe.execute():
                statuses[status] += 1
                ids = json.loads(worker_ids)
                per_worker.update(ids)
                attempts[len(ids)] += 1
                if started:
                    moment = dt.datetime.fromisoformat(started)
                    first = moment if first is None else min(first, moment)
                if finished:
                    moment = dt.datetime.fromisoformat(finished)
                    last = moment if last is None else max(last, moment)
    else:
        rows = TaskRecord.objects.values_list("status").annotate(n=Count("id"))
        statuses.update(dict(rows.values_list("status", "n")))
        for worker_ids in TaskRecord.objects.values_list("worker_ids", flat=True).iterator():
            per_worker.update(worker_ids)
            attempts[len(worker_ids)] += 1
        span = TaskRecord.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
        first, last = span["first"], span["last"]
    return {
        "statuses": dict(statuses),
        "first_started_at": first.isoformat() if first else None,
        "last_finished_at": last.isoformat() if last else None,
        "per_worker": dict(per_worker),
        "attempts": {str(k): v for k, v in sorted(attempts.items())},
    }


def ops_main(argv: Sequence[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")
    import django

    django.setup()
    command, *rest = argv
    if command == "setup":
        answer = ops_setup()
    elif command == "reset":
        answer = ops_reset()
    elif command == "fill":
        answer = ops_fill(int(rest[0]))
    elif command == "collect":
        answer = ops_collect()
    else:
        raise SystemExit(f"unknown ops command {command!r}")
    json.dump(answer, sys.stdout)
    sys.stdout.write("\n")


# -- the orchestrator ----------------------------------------------------------------------------


class ScaleStore(Store):
    """``run.Store`` for the four stores, its store side in ``bench/scale.py ops``."""

    def __init__(self, kind: str, args: argparse.Namespace) -> None:
        super().__init__("sqlite" if kind == "redis" else kind, args.executor, args)
        self.kind = self.label = kind
        if kind == "redis":
            self.env["BENCH_STORE"] = "redis"
            self.env["BENCH_REDIS_URL"] = args.redis_url
            self.env["BENCH_REDIS_PREFIX"] = f"tandem-bench-{os.getpid()}"
        else:
            self.env.pop("BENCH_STORE", None)
        if kind == "mariadb":
            self.env["BENCH_MARIADB_NAME"] = args.mariadb_name

    def __enter__(self) -> ScaleStore:
        if self.kind in ("sqlite", "redis"):  # Redis: SQLite holds Django's own tables only
            path = self.logs / "bench.sqlite3"
            self.env["BENCH_SQLITE_PATH"] = str(path)
        elif self.kind == "postgres":
            self.env["BENCH_PG_NAME"] = self.args.pg_name
            self._pg_admin(f'DROP DATABASE IF EXISTS "{self.args.pg_name}" WITH (FORCE)')
            self._pg_admin(f'CREATE DATABASE "{self.args.pg_name}"')
        else:
            self._mariadb_admin(f"DROP DATABASE IF EXISTS `{self.args.mariadb_name}`")
            self._mariadb_admin(f"CREATE DATABASE `{self.args.mariadb_name}` CHARACTER SET utf8mb4")
        self.info.update(self.ops("setup", timeout=300))
        if self.kind == "redis":
            self.ops("reset")  # this run's prefix starts empty
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.kind == "redis" and not self.args.keep_db:
                self.ops("reset")
            if self.kind == "mariadb" and not self.args.keep_db:
                self._mariadb_admin(f"DROP DATABASE IF EXISTS `{self.args.mariadb_name}`")
        finally:
            super().__exit__(*exc)  # drops the PostgreSQL database, removes the temp directory

    @staticmethod
    def _mariadb_admin(sql: str) -> None:
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", port=3306, user="root")
        try:
            conn.cursor().execute(sql)
        finally:
            conn.close()

    def ops(self, *args: str, timeout: float = 300) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, str(BENCH / "scale.py"), "ops", *args],
            cwd=BENCH,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise Failure(
                f"scale.py ops {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
            )
        answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return answer


def pid_of(worker_id: str) -> int:
    """The process id in a worker id (``host:pid:random``)."""
    return int(worker_id.rsplit(":", 2)[-2])


def phase_drain(
    store: ScaleStore, n: int, processes: int, workers: int, tag: str
) -> dict[str, Any]:
    store.ops("reset")
    filled = store.ops("fill", str(n), timeout=600)["filled"]
    if filled != n:
        raise Failure(f"filled {n} tasks but {filled} are READY")
    started_epoch, start = time.time(), time.perf_counter()
    children = [
        store.worker("--burst", "-w", str(workers), name=f"{tag}-{i}") for i in range(processes)
    ]
    cpu_by_pid: dict[int, float] = {}
    try:
        for proc, logfile in children:
            _, cpu_by_pid[proc.pid] = reap(proc, 900, logfile)
    finally:
        for proc, _ in children:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
    wall = time.perf_counter() - start
    collected = store.ops("collect", timeout=600)
    succeeded = collected["statuses"].get("SUCCESSFUL", 0)
    if succeeded != n or collected["statuses"] != {"SUCCESSFUL": n}:
        raise Failure(f"drain: {succeeded}/{n} SUCCESSFUL: {collected['statuses']}")
    if collected["attempts"] != {"1": n}:  # a task claimed twice has two worker ids
        raise Failure(f"drain: attempts per task {collected['attempts']} (expected 1 each)")
    per_pid = Counter({pid_of(w): count for w, count in collected["per_worker"].items()})
    if set(per_pid) - set(cpu_by_pid):
        raise Failure(f"tasks ran in unknown processes: {sorted(set(per_pid) - set(cpu_by_pid))}")
    last, first = epoch(collected["last_finished_at"]), epoch(collected["first_started_at"])
    cpu = sum(cpu_by_pid.values())
    per_process = [
        {
            "pid": pid,
            "tasks": per_pid.get(pid, 0),
            "cpu_seconds": cpu_by_pid[pid],
            "cpu_ms_per_task": cpu_by_pid[pid] * 1000 / per_pid[pid] if per_pid.get(pid) else None,
        }
        for pid in cpu_by_pid
    ]
    ran = [p["cpu_ms_per_task"] for p in per_process if p["cpu_ms_per_task"] is not None]
    return {
        "processes": processes,
        "drain_seconds": last - started_epoch,
        "per_second": n / (last - started_epoch),
        "span_per_second": n / (last - first) if last > first else None,
        "startup_seconds": first - started_epoch,
        "exit_seconds": wall,
        "cpu_seconds": cpu,
        "cpu_ms_per_task": cpu * 1000 / n,
        "process_cpu_ms_per_task_min": min(ran),
        "process_cpu_ms_per_task_max": max(ran),
        "processes_that_ran_tasks": len(ran),
        "per_process": per_process,
        "load_average": os.getloadavg()[0],
    }


def run_store(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": {str(p): [] for p in args.processes}, "load_averages": []}
    with ScaleStore(kind, args) as store:
        out["info"] = {**store.info, "label": kind}
        log(f"[{kind}] {store.info['store']}; {store.info['detail']}")
        if args.warmup:
            warm = min(args.tasks, 500)
            log(f"[{kind}] warm-up: drain {warm} tasks with 1 process (not reported) …")
            phase_drain(store, warm, 1, args.workers, "warmup")
        for rep in range(1, args.repeat + 1):
            for processes in args.processes:
                tag = f"[{kind} {rep}/{args.repeat}, {processes} process(es)]"
                out["load_averages"].append(os.getloadavg()[0])
                log(f"{tag} drain {args.tasks} …")
                r = phase_drain(
                    store, args.tasks, processes, args.workers, f"drain-p{processes}-{rep}"
                )
                log(
                    f"{tag}   {r['per_second']:,.0f} tasks/s ({r['drain_seconds']:.2f} s to the "
                    f"last task), steady {r['span_per_second'] or 0:,.0f} tasks/s; CPU "
                    f"{r['cpu_ms_per_task']:.2f} ms/task; start-up {r['startup_seconds']:.2f} s; "
                    f"{r['processes_that_ran_tasks']}/{processes} process(es) ran tasks"
                )
                out["runs"][str(processes)].append(r)
    return out


#: (table title, key in a run's result, number format)
METRICS: list[tuple[str, str, str]] = [
    ("Drain throughput, first process spawned → last task finished (tasks/s)", "per_second",
     "{:,.0f}"),
    ("Steady state, first task started → last task finished (tasks/s)", "span_per_second",
     "{:,.0f}"),
    ("Start-up, first process spawned → first task started (s)", "startup_seconds", "{:.2f}"),
    ("Worker CPU per task, user + sys of all processes (ms)", "cpu_ms_per_task", "{:.2f}"),
    ("Worker CPU per task of the least efficient process (ms)", "process_cpu_ms_per_task_max",
     "{:.2f}"),
]  # fmt: skip


def render(meta: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    m, p = meta["machine"], meta["params"]
    lines = [
        "# tandem scale-out benchmark — drain throughput by worker processes",
        "",
        f"- date: {meta['date']}",
        f"- machine: nproc {m['nproc']}, {m['cpu']}, {m['platform']}",
        f"- Python {m['python']}, Django {meta['django']}, tandem {meta['tandem']} at "
        f"{m['commit']}",
    ]
    for kind, result in results.items():
        if "error" in result:
            lines.append(f"- {kind}: FAILED ({result['error'].splitlines()[0]})")
            continue
        info = result["info"]
        lines.append(
            f"- {kind}: {info['store']}; {info['detail']}; executor {info['executor']}, "
            f"poll interval {info['poll_interval']} s"
        )
    loads = [x for r in results.values() for x in r.get("load_averages", [])]
    if loads:
        lines.append(
            f"- 1-minute load average when runs started: {min(loads):.2f}{DASH}{max(loads):.2f} "
            f"on {m['nproc']} CPUs (other work on the machine skews the numbers)"
        )
    lines += [
        f"- parameters: --tasks {p['tasks']} --repeat {p['repeat']} --workers {p['workers']} "
        f"(threads per process) --processes {' '.join(map(str, p['processes']))}; no-op tasks, "
        "stored in bulk before the processes start; every task checked SUCCESSFUL after one "
        "attempt",
        "- command: `" + meta["command"] + "`",
        "",
        f"Each cell: median of the repetitions (min{DASH}max). Columns: `tandem worker --burst` "
        "processes started together.",
    ]
    for title, key, fmt in METRICS:
        lines += [
            "",
            f"### {title}",
            "",
            "| store | " + " | ".join(f"{n} process{'es' if n > 1 else ''}" for n in p["processes"])
            + " |",
            "|---|" + "---:|" * len(p["processes"]),
        ]  # fmt: skip
        for kind, result in results.items():
            cells = []
            for n in p["processes"]:
                runs = result.get("runs", {}).get(str(n), [])
                cells.append(summarize([r[key] for r in runs if r.get(key) is not None], fmt))
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Raw numbers (every repetition, every process): `bench/results/raw/scale-*.json` (not "
        "committed). What each number measures: `bench/README.md`.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", nargs="+", choices=STORES, default=list(STORES))
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per drain (10000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--workers", type=int, default=4, help="threads per process, -w (4)")
    parser.add_argument(
        "--executor",
        choices=["thread", "subinterpreter", "process", "default"],
        default="thread",
        help="pool executor (default thread: the same on every store; 'default': tandem's "
        "default, which is thread on MariaDB/MySQL and subinterpreter elsewhere on 3.14)",
    )
    parser.add_argument("--poll-interval", type=float, default=None)
    parser.add_argument(
        "--sqlite-synchronous", choices=["OFF", "NORMAL", "FULL", "EXTRA"], default=None
    )
    parser.add_argument("--no-warmup", dest="warmup", action="store_false")
    parser.add_argument("--pg-name", default="tandem_bench_scale")
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--mariadb-name", default="tandem_bench_scale")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--keep-db", action="store_true", help="keep the stores afterwards")
    parser.add_argument("--output", type=Path, default=RESULTS / "scale.md")
    args = parser.parse_args(argv)
    if args.executor == "default":
        args.executor = None
    for name in ("pg_name", "mariadb_name"):
        if getattr(args, name).lower() in PROTECTED_DATABASES | {"mysql", "information_schema"}:
            parser.error(f"refusing to create and drop database {getattr(args, name)!r}")
    for name in ("tasks", "repeat", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if min(args.processes) < 1:
        parser.error("--processes must be >= 1")
    return args


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["ops"]:
        ops_main(argv[1:])
        return 0
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    results: dict[str, dict[str, Any]] = {}
    failed = False
    for kind in args.db:
        try:
            results[kind] = run_store(kind, args)
        except Failure as exc:
            log(f"[{kind}] FAILED: {exc}")  # keep going: the other stores are worth having
            results[kind] = {"error": str(exc), "info": {"label": kind}}
            failed = True
    infos = [r["info"] for r in results.values() if "store" in r["info"]]
    if not infos:
        return 1
    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "django": infos[0]["django"],
        "tandem": infos[0]["tandem"],
        "params": {
            "tasks": args.tasks,
            "repeat": args.repeat,
            "workers": args.workers,
            "processes": args.processes,
            "executor": args.executor,
        },
        "command": "bench/scale.py " + " ".join(argv) if argv else "bench/scale.py",
    }
    write_results(render(meta, results), meta, results, args.output, started, "scale-")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
