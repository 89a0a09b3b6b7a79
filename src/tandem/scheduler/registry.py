"""``@tandem.schedule``: schedules declared on tasks, merged with ``OPTIONS["schedule"]``.

The decorator validates at once (cron expression, time zone, JSON arguments) with the same
messages as the settings, and registers the schedule in this module. A supervisor, the system
check and ``tandem schedule`` read a backend's schedules with ``schedules_for()``: the settings'
first, then the decorators'; one name used twice for one backend is an error.

Before reading them, each installed app's ``tasks`` module is imported (as the admin does with
``admin`` modules): a worker imports task modules only to run their tasks, and a schedule declared
in one it has not imported yet would never fire.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.tasks import Task as DjangoTask
from django.utils.module_loading import module_has_submodule

from tandem.conf import MAX_SCHEDULE_NAME, BackendOptions, ScheduleConfig, parse_schedule


class ScheduleClash(ImproperlyConfigured):
    """Two schedules of one backend share a name."""


logger = logging.getLogger("tandem.scheduler")
_lock = threading.Lock()
#: backend alias -> schedule name -> schedule, in registration order.
_schedules: dict[str, dict[str, ScheduleConfig]] = {}
_discovered = threading.Event()


def discover() -> None:
    """Import every installed app's ``tasks`` module once, registering its schedules.

    A module that fails to import is logged and skipped (its tasks fail when they run, with the
    same error): discovering schedules must not stop a worker that serves other apps' tasks.
    """
    if _discovered.is_set():
        return
    for app in apps.get_app_configs():
        if not module_has_submodule(app.module, "tasks"):
            continue
        try:
            import_module(f"{app.name}.tasks")
        except Exception as exc:
            logger.warning(
                "could not import %s.tasks (%s: %s); schedules declared there will not fire",
                app.name,
                type(exc).__name__,
                exc,
            )
    _discovered.set()


def schedule[T: DjangoTask[Any, Any]](
    cron: str,
    *,
    name: str | None = None,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    timezone: str | None = None,
    catch_up: str = "one",
    backend: str | None = None,
) -> Callable[[T], T]:
    """Enqueue the decorated task at every tick of ``cron`` (put it above ``@task``).

    ``name`` defaults to the task's dotted path; ``backend`` to the task's backend; ``timezone``
    to ``settings.TIME_ZONE``. ``catch_up``: what a supervisor does with ticks missed while none
    ran — ``"one"`` (default) runs the task once, ``"none"`` skips them, ``"all"`` runs every
    one (at most 100). The task is returned unchanged.
    """

    def register(task: T) -> T:
        if not isinstance(task, DjangoTask):
            raise TypeError(
                f"tandem.schedule({cron!r}) applies to a task: put it above @task, got {task!r}."
            )
        path = task.module_path
        where = f"tandem.schedule() on {path!r}"
        schedule_name = path if name is None else name
        if (
            not isinstance(schedule_name, str)
            or not schedule_name
            or len(schedule_name) > MAX_SCHEDULE_NAME
        ):
            raise ImproperlyConfigured(
                f"{where}: name = {schedule_name!r}; a schedule name must be a non-empty string "
                f"of at most {MAX_SCHEDULE_NAME} characters (pass name=...)."
            )
        config = parse_schedule(
            {
                "task": path,
                "cron": cron,
                "args": list(args) if isinstance(args, tuple) else args,
                "kwargs": {} if kwargs is None else kwargs,
                "timezone": timezone,
                "catch_up": catch_up,
            },
            name=schedule_name,
            backend=task.backend if backend is None else backend,
            key=lambda field: f"{where}: {field}",
            source=where,
        )
        with _lock:
            known = _schedules.setdefault(config.backend, {})
            existing = known.get(schedule_name)
            if existing is not None and existing != config:
                raise ScheduleClash(_clash(config, existing))
            known[schedule_name] = config
        return task

    return register


def registered(backend: str) -> tuple[ScheduleConfig, ...]:
    """The schedules ``@tandem.schedule`` registered for ``backend``."""
    with _lock:
        return tuple(_schedules.get(backend, {}).values())


def registered_backends() -> set[str]:
    """The backend aliases ``@tandem.schedule`` registered schedules for."""
    discover()
    with _lock:
        return {alias for alias, known in _schedules.items() if known}


def schedules_for(options: BackendOptions) -> tuple[ScheduleConfig, ...]:
    """Every schedule of a backend: its settings', then its decorators'.

    Raises ``ScheduleClash`` (an ImproperlyConfigured) when two share a name.
    """
    discover()
    merged: dict[str, ScheduleConfig] = {}
    for config in (*options.schedules, *registered(options.alias)):
        existing = merged.get(config.name)
        if existing is not None:
            raise ScheduleClash(_clash(config, existing))
        merged[config.name] = config
    return tuple(merged.values())


def _clash(config: ScheduleConfig, existing: ScheduleConfig) -> str:
    return (
        f"Schedule {config.name!r} of TASKS[{config.backend!r}] is defined twice: by "
        f"{existing.source} and by {config.source}; give one of them another name."
    )


__all__ = [
    "ScheduleClash",
    "discover",
    "registered",
    "registered_backends",
    "schedule",
    "schedules_for",
]
