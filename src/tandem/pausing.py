"""Paused queues: ``tandem.pause/resume/is_paused``, ``manage.py tandem pause|resume`` (``cli``).

A paused queue keeps accepting tasks (they wait READY) and lets running ones finish, but no
worker on any host starts another until it is resumed. The pause is stored with the tasks (a
``tandem_queuepause`` row, or a Redis hash), so it outlives restarts of every worker; each
claim reads it (see ``Broker.pause_queues``).
"""

from __future__ import annotations

from collections.abc import Sequence

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


__all__ = ["is_paused", "pause_queues", "resume_queues"]
