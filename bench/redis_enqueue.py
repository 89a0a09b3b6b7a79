#!/usr/bin/env python
"""One-at-a-time ``.enqueue()`` on the Redis store: calls/s, p50 and p99 call time, the client's
CPU per call and Redis round trips per call.

    .venv-3.14/bin/python bench/redis_enqueue.py [--tasks 5000] [--rounds 5] [--task noop]
        [--src PATH ...] [--profile]

Each round runs in a fresh process (benchsite, ``BENCH_STORE=redis``) against Redis at
``--url`` (default ``redis://127.0.0.1:6379/11``) under a prefix of its own, deleted afterwards:
200 untimed enqueues (connection, script load), then ``--tasks`` calls of ``<task>.enqueue()``,
each timed with ``perf_counter_ns``, the whole loop with ``process_time`` (the client's CPU, which
other processes on the machine do not inflate the way they inflate wall time). Round trips are
counted after the timed loop, over 500 more calls, by wrapping the connection's
``send_packed_command`` (one call per request written: a pipeline is one). "Redis" is the CPU the
Redis server used during the loop (``INFO cpu``: commands, scripts and its network I/O), per
call: it counts every client of that Redis, so run it where nothing else uses Redis or read it
as an upper bound. (``INFO commandstats`` would count a script's commands twice: in the
script's time and again as themselves; likewise ``EXEC``'s.)

``--src`` runs the rounds against other source trees too (e.g. ``git archive <commit> src`` of
an older commit), alternating A, B, A, B... so that load from elsewhere hits both alike; the
summary gives each tree's median and range over the rounds. ``--profile`` runs one round under
cProfile and prints the top of the client's profile instead.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
SRC = BENCH.parent / "src"


def child(task_name: str, count: int, profile: bool) -> dict[str, float]:
    import django

    django.setup()
    import redis.connection
    from benchsite import tasks
    from django.tasks import task_backends

    task = getattr(tasks, task_name)
    # ``mark`` as bench/compare enqueues it: one keyword argument.
    kwargs = {"stamp": 0.0} if task_name == "mark" else {}
    backend = task_backends["default"]
    client = backend.broker.client
    try:
        for _ in range(200):
            task.enqueue(**kwargs)
        if profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(count):
                task.enqueue(**kwargs)
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
            return {}
        # Redis's CPU (all its clients: other load on this Redis counts too).
        server_before = _server_usec(client)
        times = [0] * count
        clock = time.perf_counter_ns
        enqueue = functools.partial(task.enqueue, **kwargs)
        cpu_started = time.process_time()
        started = time.perf_counter()
        for i in range(count):
            before = clock()
            enqueue()
            times[i] = clock() - before
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        server = _server_usec(client) - server_before
        sent = 0
        original = redis.connection.AbstractConnection.send_packed_command

        def counted(self: object, *args: object, **kwargs: object) -> None:
            nonlocal sent
            sent += 1
            original(self, *args, **kwargs)  # type: ignore[arg-type]

        redis.connection.AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
        try:
            for _ in range(500):
                enqueue()
        finally:
            redis.connection.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
        times.sort()
        return {
            "calls_per_s": count / wall,
            "p50_us": times[len(times) // 2] / 1000,
            "p99_us": times[int(len(times) * 0.99)] / 1000,
            "cpu_us": cpu / count * 1e6,
            "round_trips": sent / 500,
            "server_us": server / count,
        }
    finally:
        prefix = backend.broker.prefix
        for keys in _batches(client.scan_iter(match=f"{prefix}:*", count=1000), 1000):
            client.delete(*keys)


def _server_usec(client: Any) -> float:
    """The CPU Redis's process has used so far (user + sys, µs): commands, scripts, network."""
    cpu = client.info("cpu")
    return (cpu["used_cpu_user"] + cpu["used_cpu_sys"]) * 1e6


def _batches(items: object, size: int) -> object:
    batch: list[str] = []
    for item in items:  # type: ignore[attr-defined]
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_round(src: Path, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tandem-redis-enqueue-") as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": f"{BENCH}{os.pathsep}{src}",
            "DJANGO_SETTINGS_MODULE": "benchsite.settings",
            "BENCH_DB": "sqlite",
            "BENCH_SQLITE_PATH": str(Path(tmp) / "unused.sqlite3"),
            "BENCH_STORE": "redis",
            "BENCH_REDIS_URL": args.url,
            "BENCH_REDIS_PREFIX": f"tandem-enqueue-bench-{uuid.uuid4().hex[:8]}",
        }
        command = [sys.executable, __file__, "--child", args.task, "--tasks", str(args.tasks)]
        if args.profile:
            command.append("--profile")
        done = subprocess.run(
            command, cwd=BENCH, env=env, capture_output=not args.profile, text=True, check=True
        )
    if args.profile:
        return {}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--task", default="noop", help="a task of benchsite.tasks (mark: with stamp=0.0)"
    )
    parser.add_argument("--url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--src", type=Path, action="append", help="source trees (default: ours)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.tasks, args.profile)))
        return
    sources = [p.resolve() for p in (args.src or [SRC])]
    if args.profile:
        run_round(sources[0], args)
        return
    results: dict[Path, list[dict[str, float]]] = {src: [] for src in sources}
    for n in range(args.rounds):
        for src in sources:
            r = run_round(src, args)
            results[src].append(r)
            print(
                f"round {n + 1} {src}: {r['calls_per_s']:7.0f}/s  p50 {r['p50_us']:6.1f} us  "
                f"p99 {r['p99_us']:6.1f} us  cpu {r['cpu_us']:6.1f} us/call  "
                f"redis {r['server_us']:5.1f} us/call  "
                f"{r['round_trips']:.2f} round trips/call",
                file=sys.stderr,
            )
    print(
        f"\n{args.task}.enqueue() x {args.tasks}, {args.rounds} rounds, median [min..max], "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores\n"
    )
    print(
        "| source | calls/s | p50 (us) | p99 (us) | client CPU (us/call) | Redis (us/call) "
        "| round trips/call |"
    )
    print("|---|---|---|---|---|---|---|")
    for src, rounds in results.items():
        cells = []
        for key, fmt in (
            ("calls_per_s", "{:.0f}"),
            ("p50_us", "{:.1f}"),
            ("p99_us", "{:.1f}"),
            ("cpu_us", "{:.1f}"),
            ("server_us", "{:.1f}"),
            ("round_trips", "{:.2f}"),
        ):
            values = [r[key] for r in rounds]
            cells.append(
                f"{fmt.format(statistics.median(values))} "
                f"[{fmt.format(min(values))}..{fmt.format(max(values))}]"
            )
        print(f"| {src} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
