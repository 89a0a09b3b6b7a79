#!/usr/bin/env python
"""Drain of a backlog by ``tandem worker`` on the Redis store: tasks/s, the worker's CPU per task
and Redis's CPU per task.

    .venv-3.14/bin/python bench/redis_drain.py [--tasks 2000] [--rounds 3] [--slots 2]
        [--src PATH ...]

Per round and source tree: ``--tasks`` calls of ``mark.enqueue(stamp=0.0)`` from a process of
their own (benchsite, ``BENCH_STORE=redis``, Redis at ``--url``, default
``redis://127.0.0.1:6379/11``, a prefix of its own, deleted afterwards), then a fresh
``tandem worker -w SLOTS`` drains them. As in ``bench/compare``: the drain rate is the tasks over
the time from the first mark to the last, and the worker's CPU (user + sys of its process) is
counted from its first mark to its last, per task. "Redis" is the CPU the Redis server used over
the same span (``INFO cpu``), per task: every client of that Redis counts, so read it as an upper
bound where Redis has other users. ``--src`` alternates source trees (A, B, A, B...) as in
``bench/redis_enqueue.py``; the summary gives each tree's median and range over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import cpu_seconds
from redis_pickup import marks

BENCH = Path(__file__).resolve().parent
SRC = BENCH.parent / "src"


def child(count: int) -> None:
    """In the enqueuing process: the backlog."""
    import django

    django.setup()
    from benchsite.tasks import mark

    for _ in range(count):
        mark.enqueue(stamp=0.0)


def redis_cpu(client: Any) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"] + cpu["used_cpu_sys"])


def run_round(src: Path, args: argparse.Namespace) -> dict[str, float]:
    import redis

    client = redis.Redis.from_url(args.url)
    with tempfile.TemporaryDirectory(prefix="tandem-redis-drain-") as tmp:
        marks_file = Path(tmp) / "marks"
        prefix = f"tandem-drain-bench-{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "PYTHONPATH": f"{BENCH}{os.pathsep}{src}",
            "DJANGO_SETTINGS_MODULE": "benchsite.settings",
            "BENCH_DB": "sqlite",
            "BENCH_SQLITE_PATH": str(Path(tmp) / "django.sqlite3"),
            "BENCH_STORE": "redis",
            "BENCH_REDIS_URL": args.url,
            "BENCH_REDIS_PREFIX": prefix,
            "BENCH_MARKS": str(marks_file),
        }
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "-v", "0"], cwd=BENCH, env=env, check=True
        )
        subprocess.run(
            [sys.executable, __file__, "--child", str(args.tasks)], cwd=BENCH, env=env, check=True
        )
        worker = subprocess.Popen(
            [sys.executable, "-m", "django", "tandem", "worker", "-w", str(args.slots)],
            cwd=BENCH,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 300
            while not marks_file.exists() or not marks_file.stat().st_size:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise SystemExit("the worker ran no task")
                time.sleep(0.005)
            cpu_first, redis_first = cpu_seconds(worker.pid), redis_cpu(client)
            while len(marks(marks_file)) < args.tasks:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise SystemExit("the worker did not drain the backlog")
                time.sleep(0.01)
            cpu, server = cpu_seconds(worker.pid) - cpu_first, redis_cpu(client) - redis_first
            done = [at for at, _ in marks(marks_file)]
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
            doomed = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for start in range(0, len(doomed), 500):
                client.delete(*doomed[start : start + 500])
    span = max(done) - min(done)
    return {
        "tasks_per_s": (len(done) - 1) / span if span > 0 else 0.0,
        "cpu_ms": cpu / args.tasks * 1000,
        "redis_ms": server / args.tasks * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--src", type=Path, action="append", help="source trees (default: ours)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    sources = [p.resolve() for p in (args.src or [SRC])]
    results: dict[Path, list[dict[str, float]]] = {src: [] for src in sources}
    for n in range(args.rounds):
        for src in sources:
            r = run_round(src, args)
            results[src].append(r)
            print(
                f"round {n + 1} {src}: {r['tasks_per_s']:.0f} tasks/s  worker CPU "
                f"{r['cpu_ms']:.3f} ms/task  Redis {r['redis_ms']:.3f} ms/task",
                file=sys.stderr,
            )
    print(
        f"\nmark.enqueue() x {args.tasks}, then tandem worker -w {args.slots} drains them, "
        f"{args.rounds} rounds, median [min..max]\n"
    )
    print("| source | drain (tasks/s) | worker CPU (ms/task) | Redis CPU (ms/task) |")
    print("|---|---|---|---|")
    for src, rounds in results.items():
        cells = []
        for key, fmt in (("tasks_per_s", "{:.0f}"), ("cpu_ms", "{:.3f}"), ("redis_ms", "{:.3f}")):
            values = [r[key] for r in rounds]
            cells.append(
                f"{fmt.format(statistics.median(values))} "
                f"[{fmt.format(min(values))}..{fmt.format(max(values))}]"
            )
        print(f"| {src} | {' | '.join(cells)} |")
    print(json.dumps({str(k): v for k, v in results.items()}), file=sys.stderr)


if __name__ == "__main__":
    main()
