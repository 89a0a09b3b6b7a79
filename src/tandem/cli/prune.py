"""``manage.py tandem prune``: delete finished tasks older than ``--older-than``.

Through ``broker.prune`` (the database store deletes in batches of 1,000 rows, one short
transaction each, so workers are never held up for long). On a terminal, a progress line on
stderr counts the deleted tasks as the batches commit.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import DatabaseError, connections
from django.utils import timezone

from tandem.brokers.base import FAILED, SUCCESSFUL, Broker
from tandem.cli import common

STATUSES = {"successful": (SUCCESSFUL,), "failed": (FAILED,), "all": (SUCCESSFUL, FAILED)}


def add_arguments(subparsers: Any) -> None:
    """Add the ``prune`` subcommand to ``manage.py tandem``'s subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "prune",
        help="Delete finished tasks older than --older-than.",
        description="Delete SUCCESSFUL and/or FAILED tasks that finished more than --older-than "
        "ago, in batches, and print how many. READY and RUNNING tasks are never deleted.",
    )
    parser.add_argument(
        "--older-than",
        default="7d",
        metavar="AGE",
        help="Finished longer ago than this: 7d, 12h, 30m, 45s or seconds (default: 7d).",
    )
    parser.add_argument(
        "--status",
        choices=sorted(STATUSES),
        default="all",
        help="Which finished tasks (default: all).",
    )
    common.add_dry_run(parser, "Count what would be deleted; delete nothing.")
    common.add_backend(parser, "prune")


def run(
    command: BaseCommand,
    *,
    backend: str,
    older_than: str,
    status: str,
    dry_run: bool,
    **_: Any,
) -> None:
    try:
        age = common.parse_age(older_than)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    broker = common.backend(backend).broker
    before = timezone.now() - age
    statuses = STATUSES[status]
    what = "finished" if status == "all" else status
    cutoff = before.isoformat(timespec="seconds")
    try:
        if dry_run:
            count = broker.count_finished(before, statuses)
            command.stdout.write(
                f"Would delete {count} {what} task(s) of backend {backend!r} that finished "
                f"before {cutoff}."
            )
            return
        progress = _Progress.start(command, broker, before, statuses)
        deleted: int | None = None
        try:
            deleted = broker.prune(before, statuses)
        finally:
            if progress is not None:
                progress.stop(deleted)
    except (DatabaseError, ConnectionError, OSError) as exc:
        raise CommandError(f"Cannot prune the task store of backend {backend!r}: {exc}") from exc
    command.stdout.write(
        f"Deleted {deleted} {what} task(s) of backend {backend!r} that finished before {cutoff}."
    )


class _Progress:
    """``deleted 3000/12000`` on a terminal's stderr, re-counted from its own thread while
    ``prune`` deletes (each batch commits, so the count falls as it goes)."""

    def __init__(
        self,
        stream: OutputWrapper,
        broker: Broker,
        before: datetime,
        statuses: Sequence[str],
        total: int,
        interval: float,
    ) -> None:
        self.stream = stream
        self.broker = broker
        self.before = before
        self.statuses = statuses
        self.total = total
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tandem-prune-progress")

    @classmethod
    def start(
        cls,
        command: BaseCommand,
        broker: Broker,
        before: datetime,
        statuses: Sequence[str],
        interval: float = 0.5,
    ) -> _Progress | None:
        """A running progress line, or None when stderr is no terminal."""
        if not command.stderr.isatty():
            return None
        total = broker.count_finished(before, statuses)
        progress = cls(command.stderr, broker, before, statuses, total, interval)
        progress._draw(0)
        progress._thread.start()
        return progress

    def stop(self, deleted: int | None) -> None:
        """Stop counting; draw the final count (``deleted``; None: the prune failed)."""
        self._stop.set()
        self._thread.join()
        if deleted is None:
            self.stream.write("")  # end the line
        else:
            self.total = max(self.total, deleted)
            self._draw(deleted, end="\n")

    def _draw(self, deleted: int, end: str = "") -> None:
        line = f"\r\x1b[Kpruning: deleted {deleted}/{self.total}"
        self.stream.write(line, style_func=str, ending=end)
        self.stream.flush()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    remaining = self.broker.count_finished(self.before, self.statuses)
                except Exception:  # the prune itself reports store trouble
                    continue
                self._draw(max(self.total - remaining, 0))
        finally:
            for connection in connections.all(initialized_only=True):
                connection.close()  # this thread's own connections


__all__ = ["STATUSES", "add_arguments", "run"]
