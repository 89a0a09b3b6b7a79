"""System checks: tandem's settings are validated by ``manage.py check`` (backends run theirs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core import checks


@checks.register(checks.Tags.compatibility)
def check_sqlite_returning(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """The claim needs ``UPDATE … RETURNING``: SQLite >= 3.35 (only checked when SQLite is used)."""
    import sqlite3

    from django.db import connections

    uses_sqlite = any(connections[alias].vendor == "sqlite" for alias in connections)
    if uses_sqlite and sqlite3.sqlite_version_info < (3, 35):
        return [
            checks.Error(
                f"tandem needs SQLite >= 3.35 for UPDATE … RETURNING; this Python links "
                f"SQLite {sqlite3.sqlite_version}.",
                hint="Use a Python built against a newer SQLite, or PostgreSQL.",
                id="tandem.E002",
            )
        ]
    return []


@checks.register()  # reads settings only (a database tag would hide it from `manage.py check`)
def check_sqlite_transaction_mode(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """tandem.W003: the database a tandem backend writes to is SQLite in Django's default
    (deferred) transaction mode. A view's ``atomic()`` block that reads and then writes fails at
    once with ``database is locked`` whenever a worker holds the write lock (SQLite cannot make a
    reader wait for it); with ``"transaction_mode": "IMMEDIATE"`` it waits its turn."""
    return [
        checks.Warning(message, hint=hint, obj=alias, id="tandem.W003")
        for alias, message, hint in sqlite_transaction_mode_warnings()
    ]


def sqlite_transaction_mode_warnings() -> list[tuple[str, str, str]]:
    """(backend alias, message, hint) for each way a tandem backend's store is set up to hurt
    (``Broker.setup_warnings``: today, SQLite without ``transaction_mode: "IMMEDIATE"``)."""
    from django.core.exceptions import ImproperlyConfigured
    from django.tasks import task_backends

    from tandem.backends import tandem_backend

    found: list[tuple[str, str, str]] = []
    for alias in task_backends.settings:
        try:  # another backend (NotATandemBackend) has no store to warn about
            backend = tandem_backend(alias)
            warnings = backend.broker.setup_warnings()
        except (ImproperlyConfigured, KeyError):
            continue  # a bad backend: reported by the other checks
        found.extend((alias, message, hint) for message, hint in warnings)
    return found


@checks.register()
def check_schedules(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Every schedule names a task that resolves and that its backend accepts (tandem.E010), no
    schedule name is used twice in a backend (E011), and ``@tandem.schedule`` names only
    backends in ``settings.TASKS`` (E012)."""
    from django.core.exceptions import ImproperlyConfigured
    from django.tasks import task_backends
    from django.tasks.exceptions import InvalidTask

    from tandem.backends import tandem_backend
    from tandem.backends.base import resolve_task
    from tandem.exceptions import TaskNotRunnable
    from tandem.scheduler.registry import ScheduleClash, registered_backends, schedules_for

    messages: list[checks.CheckMessage] = []
    for alias in sorted(registered_backends() - set(task_backends.settings)):
        messages.append(
            checks.Error(
                f"@tandem.schedule registered schedules for backend {alias!r}, which is not in "
                "settings.TASKS.",
                hint="Pass backend= with an alias of settings.TASKS, or add that alias.",
                id="tandem.E012",
            )
        )
    for alias in task_backends.settings:
        try:
            backend = tandem_backend(alias)  # NotATandemBackend: skipped below
            schedules = schedules_for(backend.tandem_options)
        except ScheduleClash as exc:
            messages.append(checks.Error(str(exc), obj=alias, id="tandem.E011"))
            continue
        except ImproperlyConfigured:
            continue  # a bad backend or bad OPTIONS: reported by Django and tandem.E001
        for config in schedules:
            try:
                task = resolve_task(config.task)
                backend.validate_task(task)
            except (TaskNotRunnable, InvalidTask) as exc:
                messages.append(
                    checks.Error(
                        f"{config.source}: the task {config.task!r} cannot be scheduled: {exc}",
                        obj=alias,
                        id="tandem.E010",
                    )
                )
                continue
            if task.backend != alias:
                messages.append(
                    checks.Error(
                        f"{config.source}: the task {config.task!r} belongs to backend "
                        f"{task.backend!r}, not {alias!r}.",
                        hint=f"Schedule it in TASKS[{task.backend!r}] instead.",
                        obj=alias,
                        id="tandem.E010",
                    )
                )
    return messages
