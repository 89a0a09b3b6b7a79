"""``manage.py tandem schedule``: each schedule, where it stopped and when it runs next."""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils import timezone

from tandem.backends import tandem_backend
from tandem.cli import common
from tandem.conf import ScheduleConfig
from tandem.scheduler.report import ScheduleView, views


def add_arguments(subparsers: Any) -> None:
    """Add the ``schedule`` subcommand to ``manage.py tandem``'s subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "schedule",
        help="List the cron schedules: task, cron, time zone, last tick and next runs.",
        description="List each schedule of OPTIONS['schedule'] and @tandem.schedule with its "
        "task, cron expression, time zone, the last tick recorded in the store and the next "
        "run times.",
    )
    parser.add_argument(
        "--count", type=int, default=5, help="How many next run times to show (default: 5)."
    )
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead.")
    common.add_backend(parser, "inspect")


def run(command: BaseCommand, *, backend: str, count: int, **options: Any) -> None:
    if count < 1:
        raise CommandError(f"--count must be >= 1, got {count}.")
    try:
        instance = tandem_backend(backend)
        shown = views(instance, timezone.now(), count)
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from exc
    except (DatabaseError, ConnectionError, OSError) as exc:
        raise CommandError(f"Cannot read the task store of backend {backend!r}: {exc}") from exc
    running = instance.tandem_options.run_schedules
    if options.get("json"):
        document = {
            "backend": backend,
            "run_schedules": running,
            "schedules": [view.as_json() for view in shown],
        }
        command.stdout.write(json.dumps(document, indent=2))
    else:
        command.stdout.write(text(backend, shown, running))


def text(backend: str, shown: list[ScheduleView], running: bool = True) -> str:
    """The human listing: one block per schedule, times in the schedule's own zone."""
    if not shown:
        return f"No schedules for backend {backend!r}."
    lines = []
    if not running:
        lines.append(
            f"OPTIONS['run_schedules'] is False for TASKS[{backend!r}]: no supervisor of this "
            "configuration fires these schedules."
        )
    for view in shown:
        config = view.config
        zone = config.zone
        last = view.last_tick.astimezone(zone).isoformat(" ") if view.last_tick else "never"
        lines += [
            config.name,
            f"  task:      {config.task}{_call(config)}",
            f"  cron:      {config.cron.expression}  ({zone.key}, catch_up={config.catch_up})",
            f"  last tick: {last}",
        ]
        for index, moment in enumerate(view.next_runs):
            label = "  next:      " if index == 0 else "             "
            lines.append(f"{label}{moment.astimezone(zone).isoformat(' ')}")
    return "\n".join(lines)


def _call(config: ScheduleConfig) -> str:
    if not config.args and not config.kwargs:
        return ""
    parts = [json.dumps(arg) for arg in config.args]
    parts += [f"{key}={json.dumps(value)}" for key, value in config.kwargs.items()]
    return f"({', '.join(parts)})"


__all__ = ["add_arguments", "run", "text"]
