"""``manage.py tandem retry``: FAILED tasks back to READY, many at once.

Each goes back to READY in place (``Broker.retry_failed``) with a fresh attempt budget — its
attempts so far plus the ``max_attempts`` its task (or its pool) has now — and its error history
kept. ``--since``: failed within that long.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from tandem.backends.base import TandemBackend, resolve_task
from tandem.brokers.base import FAILED, StoredTask
from tandem.cli import selection


def add_arguments(subparsers: Any) -> None:
    """Add the ``retry`` subcommand to ``manage.py tandem``'s subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "retry",
        help="Put FAILED tasks back to READY, each with a fresh attempt budget.",
        description="Retry the FAILED tasks selected by --id/--queue/--task/--since (all of "
        "them when none is given): each goes back to READY in place, keeps its error history "
        "and gets its task's max_attempts again on top of the attempts it made.",
    )
    selection.add_selection(parser, "failed")


def run(command: BaseCommand, **options: Any) -> None:
    """Retry the selected FAILED tasks (or, with ``--dry-run``, count them)."""
    selection.run(command, retry, **options)


def fresh_max_attempts(backend: TandemBackend, stored: StoredTask) -> int:
    """The attempts ``stored`` made plus the budget its task (or its pool) gives now."""
    budget = None
    try:
        budget = getattr(resolve_task(stored.task_path), "max_attempts", None)
    except Exception:  # a task that no longer imports: its pool's budget; it fails when run
        budget = None
    if budget is None:
        pool = backend.tandem_options.pool_for_queue(stored.queue_name)
        budget = pool.max_attempts if pool else 1
    return stored.attempts + int(budget)


def retry(
    command: BaseCommand,
    backend: TandemBackend,
    chosen: dict[str, Any],
    since: datetime | None,
    dry_run: bool,
) -> None:
    """Retry the FAILED tasks ``chosen`` (finished ``since``), in batches."""
    broker = backend.broker
    found = broker.find([FAILED], finished_since=since, **chosen)
    where = f"of backend {backend.alias!r}"
    if dry_run:
        command.stdout.write(f"Would retry {len(found)} failed task(s) {where}.")
        return
    progress = selection.Progress(command.stderr, "retrying", len(found))
    retried = 0
    for start in range(0, len(found), selection.BATCH):
        budgets = {}
        for task_id in found[start : start + selection.BATCH]:
            stored = broker.get(task_id)
            if stored is not None and stored.status == FAILED:
                budgets[task_id] = fresh_max_attempts(backend, stored)
        retried += len(broker.retry_failed(budgets, timezone.now()))
        progress.draw(min(start + selection.BATCH, len(found)))
    progress.end()
    command.stdout.write(
        f"Retried {retried} failed task(s) {where}: READY again, each with a fresh attempt "
        "budget and its errors kept."
    )
    if retried < len(found):
        command.stdout.write(f"{len(found) - retried} task(s) had changed meanwhile: left alone.")


__all__ = ["add_arguments", "fresh_max_attempts", "retry", "run"]
