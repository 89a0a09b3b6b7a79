"""The start ``worker`` and ``serve`` share: the store's preflight, the supervisor, the banner."""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from tandem.backends import tandem_backend
from tandem.worker.supervisor import Supervisor

logger = logging.getLogger("tandem.worker")


def preflight(backend: str) -> None:
    """Stop before the banner when the store cannot serve: it does not answer, a driver is
    missing, or tandem's migrations are not applied — one message, exit status 1."""
    from tandem.diagnosis import missing_extra, store_problem

    try:
        instance = tandem_backend(backend)
    except ImproperlyConfigured as exc:
        raise CommandError(missing_extra(exc) or str(exc)) from exc
    if problem := store_problem(instance):
        raise CommandError(problem)


def supervisor(backend: str, **kwargs: Any) -> Supervisor:
    """The supervisor of ``backend``; its refusals (``--workers``, ``--queue``) as CommandError."""
    workers = kwargs.get("workers")
    if workers is not None and workers < 1:
        raise CommandError(f"--workers must be >= 1, got {workers}.")
    try:
        return Supervisor(backend, **kwargs)
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from exc


def paused_queues(supervisor: Supervisor) -> set[str]:
    """The paused queues for the banner, read under the store watch like every store call of
    a worker: on a connection gone silent it is cut after a lease instead of blocking the
    start for good; a store that fails leaves the line out (the claim loop waits for it)."""
    from tandem.worker.store_watch import STORE_ERRORS

    supervisor.store_watch.start()
    try:
        with supervisor.store_watch.guard("the banner"):
            return set(supervisor.broker.paused_queues())
    except STORE_ERRORS as exc:
        logger.warning("the banner could not read the paused queues (%s); starting anyway", exc)
        return set()


def banner(
    command: BaseCommand,
    what: str,
    supervisor: Supervisor,
    *,
    burst: bool,
    max_tasks: int | None,
) -> None:
    """``tandem worker|serve <id>`` and what it serves: store, pools, queues, lease, cron."""
    supervisor.choose_executors()  # the banner shows the executors really in use
    store = supervisor.broker.describe()
    pools = ", ".join(
        f"{s.config.name}[{s.config.executor} x{s.config.workers}: {','.join(s.config.queues)}]"
        + (
            f" (not {s.configured_executor}: {s.startup_error.refused or s.startup_error.error}"
            f"{' refused' if s.startup_error.refused else ''})"
            if s.startup_error
            else ""
        )
        for s in supervisor.pools
    )
    mode = " burst" if burst else ""
    if max_tasks:
        mode += f" max-tasks={max_tasks}"
    command.stdout.write(
        f"tandem {what} {supervisor.worker_id}{mode}\n"
        f"  store:  {store}, backend {supervisor.backend.alias!r}\n"
        f"  python: {sys.version.split()[0]}\n"
        f"  pools:  {pools}\n"
        f"  queues: {', '.join(supervisor.queues)}\n"
        f"  lease:  {supervisor.options.lease_seconds:g}s"
    )
    paused_now = paused_queues(supervisor)
    paused = [q for q in supervisor.queues if q in paused_now]
    if paused:
        command.stdout.write(
            f"  paused: {', '.join(paused)} (their tasks wait; python manage.py tandem resume "
            f"{' '.join(paused)} starts them)"
        )
    if supervisor.scheduler is not None:
        names = ", ".join(config.name for config in supervisor.scheduler.schedules)
        command.stdout.write(f"  cron:   {names}")
    from tandem.checks import sqlite_transaction_mode_warnings

    for alias, message, hint in sqlite_transaction_mode_warnings():
        if alias == supervisor.backend.alias:
            command.stdout.write(f"  sqlite: WARNING (tandem.W003): {message} {hint}")


__all__ = ["banner", "paused_queues", "preflight", "supervisor"]
