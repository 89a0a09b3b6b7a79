"""The selection ``tandem retry`` and ``tandem cancel`` share, and how they act on it.

Both select this backend's tasks with ``Broker.find`` (``--id``, repeatable; ``--queue``;
``--task``; ``--since``) and act in batches of ``BATCH``, drawing ``retrying: 500/2000`` on a
terminal's stderr as they go. ``--dry-run`` counts and acts on nothing.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import DatabaseError
from django.utils import timezone

from tandem.backends.base import TandemBackend
from tandem.cli import common

#: Tasks per batch (one retry transaction, one progress step).
BATCH = 500

#: ``action(command, backend, selection, since, dry_run)``: what retry or cancel does.
type Action = Callable[[BaseCommand, TandemBackend, dict[str, Any], datetime | None, bool], None]


def add_selection(parser: argparse.ArgumentParser, since: str) -> None:
    """``--id``, ``--queue``, ``--task``, ``--since`` (tasks ``since`` within that long),
    ``--dry-run`` and ``--backend``."""
    parser.add_argument(
        "--id",
        dest="ids",
        action="append",
        default=None,
        metavar="ID",
        help="This task (repeatable).",
    )
    parser.add_argument("--queue", default=None, help="Only tasks of this queue.")
    parser.add_argument(
        "--task", default=None, metavar="PATH", help="Only tasks of this dotted task path."
    )
    parser.add_argument(
        "--since",
        default=None,
        metavar="AGE",
        help=f"Only tasks {since} within this long: 2h, 30m, 7d, 45s or seconds.",
    )
    common.add_dry_run(parser, "Count what would change; change nothing.")
    common.add_backend(parser)


def since_moment(value: str | None) -> datetime | None:
    """``--since AGE`` as the moment that long ago (None without the flag)."""
    if value is None:
        return None
    try:
        return timezone.now() - common.parse_age(value)
    except ValueError:
        raise CommandError(
            f"--since must be a duration such as 2h, 30m, 7d or a number of seconds, got {value!r}."
        ) from None


def task_ids(values: list[str] | None) -> list[str] | None:
    """``--id`` values as canonical UUID strings (None without the flag)."""
    if values is None:
        return None
    ids = []
    for value in values:
        try:
            ids.append(str(uuid.UUID(value)))
        except ValueError:
            raise CommandError(f"--id must be a task id (a UUID), got {value!r}.") from None
    return ids


def run(
    command: BaseCommand,
    action: Action,
    *,
    subcommand: str,
    backend: str,
    ids: list[str] | None,
    queue: str | None,
    task: str | None,
    since: str | None,
    dry_run: bool,
    **_: Any,
) -> None:
    """Check the selection, then ``action`` on it; store errors as one CommandError."""
    chosen = {"ids": task_ids(ids), "queue": queue, "task_path": task}
    moment = since_moment(since)
    instance = common.backend(backend)
    try:
        action(command, instance, chosen, moment, dry_run)
    except (DatabaseError, ConnectionError, OSError) as exc:
        raise CommandError(
            f"Cannot {subcommand} tasks of backend {backend!r}: the task store answered: {exc}"
        ) from exc


class Progress:
    """``retrying: 500/2000`` redrawn in place on a terminal's stderr; nothing elsewhere."""

    def __init__(self, stream: OutputWrapper, verb: str, total: int) -> None:
        self.stream = stream
        self.verb = verb
        self.total = total
        self.shown = stream.isatty() and total > 0
        self.draw(0)

    def draw(self, done: int) -> None:
        if self.shown:
            self.stream.write(
                f"\r\x1b[K{self.verb}: {done}/{self.total}", style_func=str, ending=""
            )
            self.stream.flush()

    def end(self) -> None:
        if self.shown:
            self.stream.write("")


__all__ = ["BATCH", "Progress", "add_selection", "run", "since_moment", "task_ids"]
