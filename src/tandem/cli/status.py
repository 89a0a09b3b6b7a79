"""``manage.py tandem status``: queues, pools and live workers; a non-zero exit when unhealthy.

Exit status: 0 healthy; 1 unhealthy (each problem is printed to stderr with what to do); the
command's usual 1 with ``CommandError: …`` for an unknown or non-tandem backend or a store that
cannot be read. Meant for people and for container health probes alike.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from tandem.backends import tandem_backend
from tandem.backends.base import TandemBackend
from tandem.cli import common
from tandem.monitoring import status

UNHEALTHY = 1


def add_arguments(subparsers: Any) -> None:
    """Add the ``status`` subcommand to ``manage.py tandem``'s subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status",
        help="Show queues, pools and live workers; exit 1 when a queue is unserved or starving.",
        description="Print each queue's ready, running and failed counts and the age of its "
        "oldest ready task, and the live workers with their pools. Exits 1 when a configured "
        "queue has no live worker, or (with --max-age) its oldest ready task waited too long.",
    )
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead.")
    parser.add_argument(
        "--max-age",
        type=float,
        default=None,
        metavar="SECONDS",
        help="Unhealthy when a queue's oldest ready task has waited longer than this.",
    )
    common.add_backend(parser, "inspect")


def run(command: BaseCommand, *, backend: str, max_age: float | None, **options: Any) -> None:
    """Print the status of ``backend``; ``SystemExit(1)`` when it is unhealthy."""
    if max_age is not None and max_age <= 0:
        raise CommandError(f"--max-age must be > 0, got {max_age:g}.")
    try:
        snapshot = status.take(backend, max_age=max_age)
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from exc
    except (DatabaseError, ConnectionError, OSError) as exc:
        from tandem.diagnosis import store_problem

        # The one-line fix when there is one (e.g. "Run `python manage.py migrate` first.").
        problem = store_problem(tandem_backend(backend))
        if problem is None:
            problem = f"Cannot read the task store of backend {backend!r}: {exc}"
        raise CommandError(problem) from exc
    if options.get("json"):
        from tandem.monitoring.workflows import groups_json

        data = snapshot.as_json()
        data["groups"] = groups_json(tandem_backend(backend))  # workflows: done/total
        command.stdout.write(json.dumps(data, indent=2))
    else:
        command.stdout.write(text(snapshot))
        if watch := running_text(tandem_backend(backend), snapshot):
            command.stdout.write(watch)
    if snapshot.problems:
        for problem in snapshot.problems:
            command.stderr.write(f"UNHEALTHY: {problem}")
        raise SystemExit(UNHEALTHY)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def text(snapshot: status.Snapshot) -> str:
    """The human report: a queue table, then one line per worker and pool."""
    rows = [("queue", "pool", "ready", "running", "failed", "oldest ready", "live workers")]
    for q in snapshot.queues:
        rows.append(
            (
                q.name
                + ("" if q.configured else " (not configured)")
                + (" PAUSED" if q.paused else ""),
                q.pool or "-",
                str(q.ready),
                str(q.running),
                str(q.failed),
                _age(q.oldest_ready_age),
                str(q.live_workers),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        f"tandem status: backend {snapshot.backend!r} at {snapshot.taken_at:%Y-%m-%d %H:%M:%S} UTC"
        f" (lease {snapshot.lease_seconds:g}s)",
        "",
    ]
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(widths[i + 2]) for i, cell in enumerate(row[2:])]
        lines.append("  ".join(cells).rstrip())
    if snapshot.rate_limited:
        lines += ["", "rate limited (their tasks wait READY; none is dropped):"]
        lines += [f"  {wait.label}" for wait in snapshot.rate_limited]
    live = snapshot.live_workers
    lines += ["", f"workers: {len(live)} live, {len(snapshot.workers) - len(live)} silent"]
    for w in snapshot.workers:
        state = "live" if w.live else "SILENT"
        lines.append(
            f"  {w.id} {state}, heartbeat {_age(w.heartbeat_age)} ago, "
            f"{w.tasks_done} task(s) done, queues {','.join(w.queues) or '-'}"
        )
        for name, pool in w.pools.items():
            lines.append(
                f"    pool {name}: {pool.get('executor', '?')} x{pool.get('workers', '?')}, "
                f"{pool.get('in_flight', 0)} busy, {pool.get('restarts', 0)} restart(s), "
                f"queues {','.join(pool.get('queues', [])) or '-'}"
            )
            lines += [f"      {note}" for note in status.pool_notes(pool)]
    lines += [
        "",
        "healthy" if snapshot.healthy else f"UNHEALTHY: {len(snapshot.problems)} problem(s)",
    ]
    return "\n".join(lines)


def running_text(backend: TandemBackend, snapshot: status.Snapshot) -> str:
    """RUNNING tasks whose worker is lost or that were asked to cancel."""
    from tandem.monitoring import attention

    notes = attention.running_notes(backend, snapshot.taken_at)
    if not notes:
        return ""
    lines = ["", "running tasks to watch:"]
    for item in notes:
        task = item.task
        lines.append(f"  {task.id} {task.task_path} ({task.queue_name}): {item.note}")
    return "\n".join(lines)


__all__ = ["UNHEALTHY", "add_arguments", "run", "running_text", "text"]
