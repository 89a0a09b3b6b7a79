"""Paused queues: ``tandem.pause/resume/is_paused`` and ``manage.py tandem pause|resume``.

A paused queue keeps accepting tasks (they wait READY) and lets running ones finish, but no
worker on any host starts another until it is resumed. The pause is stored with the tasks (a
``tandem_queuepause`` row, or a Redis hash), so it outlives restarts of every worker; each
claim reads it (see ``Broker.pause_queues``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils import timezone

from tandem.backends.base import TandemBackend


def _checked(backend: TandemBackend, queue: object, *, paused: Sequence[str] = ()) -> str:
    """``queue`` when it names a queue of ``backend`` (or one still ``paused``); else why not."""
    if not isinstance(queue, str) or not queue:
        raise TypeError(f"A queue name must be a non-empty string, got {queue!r}.")
    if backend.queues and queue not in backend.queues and queue not in paused:
        raise ValueError(
            f"Queue {queue!r} is not one of TASKS[{backend.alias!r}]['QUEUES'] "
            f"({', '.join(sorted(backend.queues))})."
        )
    return queue


def pause_queues(backend: TandemBackend, queues: Sequence[object]) -> list[str]:
    """Pause ``queues``; returns those that were not paused already."""
    names = [_checked(backend, q) for q in queues]
    return backend.broker.pause_queues(names, timezone.now())


def resume_queues(backend: TandemBackend, queues: Sequence[object]) -> list[str]:
    """Resume ``queues`` (wakes the workers serving them); returns those that were paused.

    A queue removed from ``QUEUES`` while paused can still be resumed."""
    paused = list(backend.broker.paused_queues()) if backend.queues else []
    names = [_checked(backend, q, paused=paused) for q in queues]
    return backend.broker.resume_queues(names)


def is_paused(backend: TandemBackend, queue: object) -> bool:
    if not isinstance(queue, str) or not queue:
        raise TypeError(f"A queue name must be a non-empty string, got {queue!r}.")
    return queue in backend.broker.paused_queues()


# -- manage.py tandem pause | resume ---------------------------------------------------------


def add_arguments(subparsers: Any) -> None:
    """Add the ``pause`` and ``resume`` subcommands to ``manage.py tandem``'s subparsers."""
    pause: argparse.ArgumentParser = subparsers.add_parser(
        "pause",
        help="Pause queues: their tasks wait READY, running ones finish, none starts.",
        description="Pause QUEUE(s) on every worker of the backend, until `tandem resume`. "
        "The pause is stored, so it survives restarts; enqueueing goes on as usual.",
    )
    resume: argparse.ArgumentParser = subparsers.add_parser(
        "resume",
        help="Resume paused queues: workers start their tasks again.",
        description="Resume paused QUEUE(s); the workers serving them are woken at once.",
    )
    for parser in (pause, resume):
        parser.add_argument("queues", nargs="+", metavar="QUEUE", help="A queue name.")
        parser.add_argument(
            "--backend", default="default", help="The TASKS alias (default: default)."
        )


def run(
    command: BaseCommand, *, subcommand: str, backend: str, queues: list[str], **_: Any
) -> None:
    from tandem.backends import tandem_backend

    try:
        instance = tandem_backend(backend)
        if subcommand == "pause":
            changed = pause_queues(instance, queues)
        else:
            changed = resume_queues(instance, queues)
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


__all__ = ["add_arguments", "is_paused", "pause_queues", "resume_queues", "run"]
