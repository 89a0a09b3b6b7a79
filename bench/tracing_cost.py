#!/usr/bin/env python
"""The per-task cost of OpenTelemetry tracing: enqueue and run N tasks in one process, with
OpenTelemetry absent, installed without a tracer provider, and enabled (the SDK's provider).

    .venv-3.14/bin/python bench/tracing_cost.py [--tasks 5000] [--repeat 3]

Each mode runs in a fresh process on a fresh SQLite file (benchsite, WAL, synchronous=NORMAL):
``add.enqueue()`` N times (timed), then every task claimed and run with
``tandem.execution.execute`` (timed) — the enqueue span and the attempt span, without the worker
loop around them. "absent" blocks the import of ``opentelemetry`` (as if not installed);
"enabled" sets an SDK ``TracerProvider`` with a ``SimpleSpanProcessor`` and an exporter that
drops the spans (the SDK's own cost, no I/O); "enabled+batch" a ``BatchSpanProcessor`` with the
same exporter. Prints the best of ``--repeat`` per mode, in microseconds per task.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
MODES = ("absent", "no-provider", "enabled", "enabled+batch")


def child(mode: str, count: int) -> dict[str, float]:
    if mode == "absent":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if mode.startswith("enabled"):
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SimpleSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Drop(SpanExporter):
            def export(self, spans: object) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        processor = (
            BatchSpanProcessor(Drop()) if mode == "enabled+batch" else SimpleSpanProcessor(Drop())
        )
        provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
    from datetime import timedelta

    from benchsite.tasks import noop
    from django.tasks import task_backends
    from django.utils import timezone

    from tandem.execution import execute

    broker = task_backends["default"].broker
    started = time.perf_counter()
    for _ in range(count):
        noop.enqueue()
    enqueued = time.perf_counter() - started
    now = timezone.now()
    claimed = []
    while batch := broker.claim(["default"], 500, "bench", now + timedelta(minutes=5), now):
        claimed += batch
    started = time.perf_counter()
    for stored in claimed:
        outcome = execute(stored)
        assert outcome.succeeded
    ran = time.perf_counter() - started
    # The tracing calls alone, around nothing (no store, no task): what tandem adds per task.
    from tandem import tracing

    new = task_backends["default"]._new_task(noop, (), {})
    started = time.perf_counter()
    for stored in claimed:
        with tracing.producer(new), tracing.consumer(stored):
            pass
    spans = time.perf_counter() - started
    traced = "opentelemetry" in sys.modules and sys.modules["opentelemetry"] is not None
    return {
        "enqueue_us": enqueued / count * 1e6,
        "run_us": ran / len(claimed) * 1e6,
        "spans_us": spans / len(claimed) * 1e6,
        "imported": traced,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=MODES)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.tasks)))
        return
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.repeat):
        for mode in MODES:
            with tempfile.TemporaryDirectory(prefix="tandem-tracing-bench-") as tmp:
                env = {
                    **os.environ,
                    "PYTHONPATH": str(BENCH),
                    "DJANGO_SETTINGS_MODULE": "benchsite.settings",
                    "BENCH_DB": "sqlite",
                    "BENCH_SQLITE_PATH": str(Path(tmp) / "bench.sqlite3"),
                    "BENCH_SQLITE_SYNCHRONOUS": "NORMAL",
                }
                done = subprocess.run(
                    [sys.executable, __file__, "--child", mode, "--tasks", str(args.tasks)],
                    cwd=BENCH,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"{mode:14} enqueue {result['enqueue_us']:7.1f} us  run {result['run_us']:7.1f} us"
                f"  tracing calls {result['spans_us']:6.2f} us",
                file=sys.stderr,
            )
            kept = best.setdefault(mode, dict(result))
            for key in ("enqueue_us", "run_us", "spans_us"):
                kept[key] = min(kept[key], result[key])
    print(
        f"\n{args.tasks} tasks per mode, best of {args.repeat} (each column on its own), SQLite "
        f"(synchronous=NORMAL), Python {sys.version.split()[0]}, {os.cpu_count()} cores\n"
    )
    print(
        "| OpenTelemetry | imported | enqueue (us/task) | run (us/task) | "
        "tracing calls alone (us/task) |"
    )
    print("|---|---|---|---|---|")
    for mode in MODES:
        r = best[mode]
        print(
            f"| {mode} | {'yes' if r['imported'] else 'no'} | {r['enqueue_us']:.1f} | "
            f"{r['run_us']:.1f} | {r['spans_us']:.2f} |"
        )


if __name__ == "__main__":
    main()
