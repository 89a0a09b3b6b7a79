#!/usr/bin/env python
"""Pickup latency of an idle ``tandem worker`` on the Redis store: the time from just before
``enqueue()`` to the task's own completion mark, one task at a time.

    .venv-3.14/bin/python bench/redis_pickup.py [--tasks 100] [--interval 0.05] [--rounds 3]
        [--slots 2] [--src PATH ...]

Per round and source tree: a fresh ``tandem worker -w SLOTS`` (benchsite, ``BENCH_STORE=redis``,
Redis at ``--url``, default ``redis://127.0.0.1:6379/11``, a prefix of its own, deleted
afterwards) is started and given a probe task; once that has run, ``--tasks`` calls of
``mark.enqueue(stamp=time.time())`` are made ``--interval`` seconds apart from this process, and
each task's pickup is its mark's time minus its stamp (``bench/contenders/marks.py``). Also the
worker's CPU (user + sys of its process) over the paced phase, per task: what an idle worker
costs around each pickup. ``--src`` alternates source trees (A, B, A, B...) as in
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

from common import cpu_seconds, percentile, wait_until_quiet

BENCH = Path(__file__).resolve().parent
SRC = BENCH.parent / "src"


def child(count: int, interval: float) -> None:
    """In the enqueuing process: pace the enqueues, print the stamps' JSON."""
    import django

    django.setup()
    from benchsite.tasks import mark

    mark.enqueue(stamp=0.0)  # connects; the probe
    print("ready", flush=True)
    sys.stdin.readline()  # the harness saw the probe run
    start = time.perf_counter()
    for i in range(count):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        mark.enqueue(stamp=time.time())
    print("done", flush=True)


def marks(path: Path) -> list[tuple[float, float]]:
    if not path.exists():
        return []
    return [
        (float(done), float(stamp))
        for done, stamp in (line.split() for line in path.read_text().splitlines() if line)
    ]


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def run_round(src: Path, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tandem-redis-pickup-") as tmp:
        marks_file = Path(tmp) / "marks"
        prefix = f"tandem-pickup-bench-{uuid.uuid4().hex[:8]}"
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
        worker = subprocess.Popen(
            [sys.executable, "-m", "django", "tandem", "worker", "-w", str(args.slots)],
            cwd=BENCH,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        enqueuer = subprocess.Popen(
            [sys.executable, __file__, "--child", str(args.tasks), str(args.interval)],
            cwd=BENCH,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert enqueuer.stdout is not None and enqueuer.stdin is not None
            assert enqueuer.stdout.readline().strip() == "ready"
            wait_for(lambda: len(marks(marks_file)) >= 1, 60, "the probe task")
            wait_until_quiet(worker.pid)  # started pools, settled into idle
            cpu_before = cpu_seconds(worker.pid)
            enqueuer.stdin.write("go\n")
            enqueuer.stdin.flush()
            assert enqueuer.stdout.readline().strip() == "done"
            wait_for(lambda: len(marks(marks_file)) >= args.tasks + 1, 60, "the tasks")
            cpu = cpu_seconds(worker.pid) - cpu_before
            enqueuer.wait(10)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
            if enqueuer.poll() is None:
                enqueuer.kill()
            import redis

            client = redis.Redis.from_url(args.url)
            doomed = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for start in range(0, len(doomed), 500):
                client.delete(*doomed[start : start + 500])
        pickups = [(done - stamp) * 1000 for done, stamp in marks(marks_file) if stamp > 0]
    return {
        "p50_ms": percentile(pickups, 50),
        "p99_ms": percentile(pickups, 99),
        "cpu_ms": cpu / args.tasks * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--src", type=Path, action="append", help="source trees (default: ours)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), float(args.child[1]))
        return
    sources = [p.resolve() for p in (args.src or [SRC])]
    results: dict[Path, list[dict[str, float]]] = {src: [] for src in sources}
    for n in range(args.rounds):
        for src in sources:
            r = run_round(src, args)
            results[src].append(r)
            print(
                f"round {n + 1} {src}: pickup p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms"
                f"  worker CPU {r['cpu_ms']:.2f} ms/task",
                file=sys.stderr,
            )
    print(
        f"\nmark.enqueue() x {args.tasks}, {args.interval}s apart, tandem worker -w {args.slots}, "
        f"{args.rounds} rounds, median [min..max]\n"
    )
    print("| source | pickup p50 (ms) | pickup p99 (ms) | worker CPU (ms/task) |")
    print("|---|---|---|---|")
    for src, rounds in results.items():
        cells = []
        for key in ("p50_ms", "p99_ms", "cpu_ms"):
            values = [r[key] for r in rounds]
            cells.append(f"{statistics.median(values):.2f} [{min(values):.2f}..{max(values):.2f}]")
        print(f"| {src} | {' | '.join(cells)} |")
    print(json.dumps({str(k): v for k, v in results.items()}), file=sys.stderr)


if __name__ == "__main__":
    main()
