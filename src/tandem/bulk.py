"""``manage.py tandem retry`` and ``manage.py tandem cancel``: many tasks at once.

Both select this backend's tasks with ``Broker.find`` (``--id``, repeatable; ``--queue``;
``--task``; ``--since``) and act in batches of ``BATCH``, drawing ``retrying: 500/2000`` on a
terminal's stderr as they go. ``--dry-run`` counts and acts on nothing.

- *retry*: FAILED tasks back to READY (``Broker.retry_failed``), each with a fresh attempt
  budget — its attempts so far plus the ``max_attempts`` its task (or its pool) has now — and its
  error history kept. ``--since``: failed within that long.
- *cancel*: READY tasks end FAILED with ``Cancelled``; RUNNING ones are asked to stop, exactly as
  ``tandem.cancel()`` does. ``--since``: enqueued within that long.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import DatabaseError
from django.utils import timezone

from tandem.backends.base import TandemBackend, resolve_task
from tandem.brokers.base import FAILED, READY, RUNNING, StoredTask
from tandem.cancellation import CancelOutcome

#: Tasks per batch (one retry transaction, one progress step).
BATCH = 500


def add_arguments(subparsers: Any) -> None:
    """Add the ``retry`` and ``cancel`` subcommands to ``manage.py tandem``'s subparsers."""
    retry: argparse.ArgumentParser = subparsers.add_parser(
        "retry",
        help="Put FAILED tasks back to READY, each with a fresh attempt budget.",
        description="Retry the FAILED tasks selected by --id/--queue/--task/--since (all of "
        "them when none is given): each goes back to READY in place, keeps its error history "
        "and gets its task's max_attempts again on top of the attempts it made.",
    )
    cancel: argparse.ArgumentParser = subparsers.add_parser(
        "cancel",
        help="Cancel READY and RUNNING tasks: ready ones fail at once, running ones are asked "
        "to stop.",
        description="Cancel the READY and RUNNING tasks selected by --id/--queue/--task/--since "
        "(all of them when none is given), as tandem.cancel() does for one.",
    )
    for parser, since in ((retry, "failed"), (cancel, "enqueued")):
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
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would change; change nothing."
        )
        parser.add_argument(
            "--backend", default="default", help="The TASKS alias (default: default)."
        )


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    from tandem.prune import parse_age

    try:
        return timezone.now() - parse_age(value)
    except ValueError:
        raise CommandError(
            f"--since must be a duration such as 2h, 30m, 7d or a number of seconds, got {value!r}."
        ) from None


def _ids(values: list[str] | None) -> list[str] | None:
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
    from tandem.backends import tandem_backend

    selection = {"ids": _ids(ids), "queue": queue, "task_path": task}
    moment = _since(since)
    try:
        instance = tandem_backend(backend)
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from exc
    try:
        if subcommand == "retry":
            _retry(command, instance, selection, moment, dry_run)
        else:
            _cancel(command, instance, selection, moment, dry_run)
    except (DatabaseError, ConnectionError, OSError) as exc:
        raise CommandError(
            f"Cannot {subcommand} tasks of backend {backend!r}: the task store answered: {exc}"
        ) from exc


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


def _retry(
    command: BaseCommand,
    backend: TandemBackend,
    selection: dict[str, Any],
    since: datetime | None,
    dry_run: bool,
) -> None:
    broker = backend.broker
    found = broker.find([FAILED], finished_since=since, **selection)
    where = f"of backend {backend.alias!r}"
    if dry_run:
        command.stdout.write(f"Would retry {len(found)} failed task(s) {where}.")
        return
    progress = _Progress(command.stderr, "retrying", len(found))
    retried = 0
    for start in range(0, len(found), BATCH):
        budgets = {}
        for task_id in found[start : start + BATCH]:
            stored = broker.get(task_id)
            if stored is not None and stored.status == FAILED:
                budgets[task_id] = fresh_max_attempts(backend, stored)
        retried += len(broker.retry_failed(budgets, timezone.now()))
        progress.draw(min(start + BATCH, len(found)))
    progress.end()
    command.stdout.write(
        f"Retried {retried} failed task(s) {where}: READY again, each with a fresh attempt "
        "budget and its errors kept."
    )
    if retried < len(found):
        command.stdout.write(f"{len(found) - retried} task(s) had changed meanwhile: left alone.")


def _cancel(
    command: BaseCommand,
    backend: TandemBackend,
    selection: dict[str, Any],
    since: datetime | None,
    dry_run: bool,
) -> None:
    broker = backend.broker
    where = f"of backend {backend.alias!r}"
    if dry_run:
        ready = broker.find([READY], enqueued_since=since, **selection)
        running = broker.find([RUNNING], enqueued_since=since, **selection)
        command.stdout.write(
            f"Would cancel {len(ready) + len(running)} task(s) {where}: {len(ready)} ready "
            f"(they would fail at once), {len(running)} running (they would be asked to stop)."
        )
        return
    found = broker.find([READY, RUNNING], enqueued_since=since, **selection)
    progress = _Progress(command.stderr, "cancelling", len(found))
    counts = {CancelOutcome.CANCELLED: 0, CancelOutcome.REQUESTED: 0, False: 0}
    for done, task_id in enumerate(found, start=1):
        counts[backend.cancel(task_id)] += 1
        if done % BATCH == 0 or done == len(found):
            progress.draw(done)
    progress.end()
    command.stdout.write(
        f"Cancelled {counts[CancelOutcome.CANCELLED]} ready task(s) {where} (FAILED now); "
        f"asked {counts[CancelOutcome.REQUESTED]} running task(s) to stop."
    )
    if counts[False]:
        command.stdout.write(f"{counts[False]} task(s) had finished meanwhile: left alone.")


class _Progress:
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


__all__ = ["BATCH", "add_arguments", "fresh_max_attempts", "run"]
