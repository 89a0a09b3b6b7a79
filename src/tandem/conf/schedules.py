"""Cron schedules (``OPTIONS['schedule']``, and ``tandem.schedule()``) and result retention
(``OPTIONS['retention']``): their frozen settings and how they are parsed."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from django.core.exceptions import ImproperlyConfigured

from tandem.conf.defaults import CATCH_UP, MAX_SCHEDULE_NAME, RETENTION_KEYS, SCHEDULE_KEYS
from tandem.conf.reader import SettingsReader
from tandem.scheduler.cron import Cron, CronError, zone_named
from tandem.serialization import NotJSONError, to_json


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleConfig:
    """One cron schedule: enqueue ``task`` with ``args``/``kwargs`` at every tick of ``cron``."""

    name: str
    backend: str
    task: str  # the task's dotted path; resolved by the system check, not here (import cycles)
    cron: Cron
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    timezone: str | None = None  # None: settings.TIME_ZONE
    catch_up: str = "one"
    #: Where it was defined, for messages: a settings key or ``tandem.schedule() on …``.
    source: str = ""

    @property
    def zone(self) -> ZoneInfo:
        from django.conf import settings

        return zone_named(self.timezone or settings.TIME_ZONE or "UTC")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionConfig:
    """Seconds finished tasks are kept before supervisors delete them (None: kept)."""

    successful: float | None = None
    failed: float | None = None

    @property
    def enabled(self) -> bool:
        return self.successful is not None or self.failed is not None


def parse_schedules(alias: str, reader: SettingsReader) -> tuple[ScheduleConfig, ...]:
    raw = reader.mapping.get("schedule")
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(
            f"{reader.key('schedule')} must be a dict of schedule name -> schedule settings "
            f"({{'task': ..., 'cron': ...}}), got {raw!r}."
        )
    schedules = []
    for name, values in raw.items():
        if not isinstance(name, str) or not name or len(name) > MAX_SCHEDULE_NAME:
            raise ImproperlyConfigured(
                f"{reader.key('schedule')} has a schedule named {name!r}; a schedule name must "
                f"be a non-empty string of at most {MAX_SCHEDULE_NAME} characters."
            )
        entry = SettingsReader(values, f"{reader.key('schedule')}[{name!r}]", SCHEDULE_KEYS)
        schedules.append(
            parse_schedule(
                entry.mapping, name=name, backend=alias, key=entry.key, source=entry.prefix
            )
        )
    return tuple(schedules)


def parse_schedule(
    values: Mapping[str, Any],
    *,
    name: str,
    backend: str,
    key: Callable[[str], str],
    source: str,
) -> ScheduleConfig:
    """One schedule from ``values`` (the keys of ``SCHEDULE_KEYS``); ``key(field)`` names a field
    in error messages. The task path is checked by the system check (tandem.E010), not here."""
    task = values.get("task")
    parts = task.split(".") if isinstance(task, str) else []
    if len(parts) < 2 or not all(part.isidentifier() for part in parts):
        raise ImproperlyConfigured(
            f"{key('task')} must be the dotted path of a task, such as "
            f"'reports.tasks.nightly', got {task!r}."
        )
    try:
        cron = Cron.parse(values.get("cron"))
    except CronError as exc:
        raise ImproperlyConfigured(f"{key('cron')} = {values.get('cron')!r} {exc}.") from None
    args = values.get("args", ())
    if isinstance(args, str) or not isinstance(args, list | tuple):
        raise ImproperlyConfigured(f"{key('args')} must be a list of arguments, got {args!r}.")
    kwargs = values.get("kwargs", {})
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ImproperlyConfigured(
            f"{key('kwargs')} must be a dict of keyword arguments (str keys), got {kwargs!r}."
        )
    try:
        json_args = to_json(list(args), key("args"))
        json_kwargs = to_json(dict(kwargs), key("kwargs"))
    except NotJSONError as exc:
        raise ImproperlyConfigured(str(exc)) from None
    timezone = values.get("timezone")
    if timezone is not None:
        try:
            zone_named(timezone)
        except CronError as exc:
            raise ImproperlyConfigured(f"{key('timezone')} = {timezone!r} {exc}.") from None
    catch_up = values.get("catch_up", "one")
    if catch_up not in CATCH_UP:
        raise ImproperlyConfigured(
            f"{key('catch_up')} must be one of {', '.join(map(repr, CATCH_UP))}, got {catch_up!r}."
        )
    return ScheduleConfig(
        name=name,
        backend=backend,
        task=".".join(parts),
        cron=cron,
        args=tuple(json_args),
        kwargs=MappingProxyType(json_kwargs),
        timezone=timezone,
        catch_up=str(catch_up),
        source=source,
    )


def parse_retention(reader: SettingsReader) -> RetentionConfig:
    raw = reader.mapping.get("retention")
    if raw is None:
        return RetentionConfig()
    entry = SettingsReader(raw, reader.key("retention"), RETENTION_KEYS)
    kept: dict[str, float | None] = {}
    for status in sorted(RETENTION_KEYS):
        value = entry.mapping.get(status)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ImproperlyConfigured(
                f"{entry.key(status)} must be a number of seconds > 0 (how long finished tasks "
                f"are kept), or None to keep them, got {value!r}."
            )
        kept[status] = None if value is None else float(value)
    return RetentionConfig(successful=kept["successful"], failed=kept["failed"])


__all__ = [
    "RetentionConfig",
    "ScheduleConfig",
    "parse_retention",
    "parse_schedule",
    "parse_schedules",
]
