"""``manage.py tandem pause``: pause queues on every worker of the backend, until resumed."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from tandem import pausing
from tandem.backends import tandem_backend
from tandem.cli import common


def add_queues(parser: argparse.ArgumentParser) -> None:
    """The ``QUEUE...`` and ``--backend`` of ``pause`` and ``resume``."""
    parser.add_argument("queues", nargs="+", metavar="QUEUE", help="A queue name.")
    common.add_backend(parser)


def add_arguments(subparsers: Any) -> None:
    """Add the ``pause`` subcommand to ``manage.py tandem``'s subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "pause",
        help="Pause queues: their tasks wait READY, running ones finish, none starts.",
        description="Pause QUEUE(s) on every worker of the backend, until `tandem resume`. "
        "The pause is stored, so it survives restarts; enqueueing goes on as usual.",
    )
    add_queues(parser)


def run(
    command: BaseCommand, *, subcommand: str, backend: str, queues: list[str], **_: Any
) -> None:
    """Pause (or, as ``resume``, resume) ``queues``; one line per queue says what changed."""
    try:
        instance = tandem_backend(backend)
        if subcommand == "pause":
            changed = pausing.pause_queues(instance, queues)
        else:
            changed = pausing.resume_queues(instance, queues)
    except (ImproperlyConfigured, TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    except (DatabaseError, ConnectionError, OSError) as exc:
        raise CommandError(
            f"Cannot {subcommand} queues of backend {backend!r}: the task store answered: {exc}"
        ) from exc
    done = "paused" if subcommand == "pause" else "resumed"
    for queue in dict.fromkeys(queues):
        if queue in changed:
            command.stdout.write(f"Queue {queue!r} of backend {backend!r}: {done}.")
        else:
            already = "already paused" if subcommand == "pause" else "was not paused"
            command.stdout.write(f"Queue {queue!r} of backend {backend!r}: {already}.")


__all__ = ["add_arguments", "add_queues", "run"]
