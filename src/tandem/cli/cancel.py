"""``manage.py tandem cancel``: READY and RUNNING tasks, many at once.

READY tasks end FAILED with ``Cancelled``; RUNNING ones are asked to stop, exactly as
``tandem.cancel()`` does. ``--since``: enqueued within that long.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand

from tandem.backends.base import TandemBackend
from tandem.brokers.base import READY, RUNNING
from tandem.cancellation import CancelOutcome
from tandem.cli import selection


def add_arguments(subparsers: Any) -> None:
    """Add the ``cancel`` subcommand to ``manage.py tandem``'s subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cancel",
        help="Cancel READY and RUNNING tasks: ready ones fail at once, running ones are asked "
        "to stop.",
        description="Cancel the READY and RUNNING tasks selected by --id/--queue/--task/--since "
        "(all of them when none is given), as tandem.cancel() does for one.",
    )
    selection.add_selection(parser, "enqueued")


def run(command: BaseCommand, **options: Any) -> None:
    """Cancel the selected tasks (or, with ``--dry-run``, count them)."""
    selection.run(command, cancel, **options)


def cancel(
    command: BaseCommand,
    backend: TandemBackend,
    chosen: dict[str, Any],
    since: datetime | None,
    dry_run: bool,
) -> None:
    """Cancel the READY and RUNNING tasks ``chosen`` (enqueued ``since``), one by one."""
    broker = backend.broker
    where = f"of backend {backend.alias!r}"
    if dry_run:
        ready = broker.find([READY], enqueued_since=since, **chosen)
        running = broker.find([RUNNING], enqueued_since=since, **chosen)
        command.stdout.write(
            f"Would cancel {len(ready) + len(running)} task(s) {where}: {len(ready)} ready "
            f"(they would fail at once), {len(running)} running (they would be asked to stop)."
        )
        return
    found = broker.find([READY, RUNNING], enqueued_since=since, **chosen)
    progress = selection.Progress(command.stderr, "cancelling", len(found))
    counts = {CancelOutcome.CANCELLED: 0, CancelOutcome.REQUESTED: 0, False: 0}
    for done, task_id in enumerate(found, start=1):
        counts[backend.cancel(task_id)] += 1
        if done % selection.BATCH == 0 or done == len(found):
            progress.draw(done)
    progress.end()
    command.stdout.write(
        f"Cancelled {counts[CancelOutcome.CANCELLED]} ready task(s) {where} (FAILED now); "
        f"asked {counts[CancelOutcome.REQUESTED]} running task(s) to stop."
    )
    if counts[False]:
        command.stdout.write(f"{counts[False]} task(s) had finished meanwhile: left alone.")


__all__ = ["add_arguments", "cancel", "run"]
