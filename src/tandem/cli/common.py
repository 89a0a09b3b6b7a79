"""What several subcommands share: flags declared once, durations, the backend, logging."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from tandem.backends import tandem_backend
from tandem.backends.base import TandemBackend

NO_SCHEDULE_HELP = (
    "Do not run the cron schedules in this process (other supervisors still fire them)."
)
_AGE = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>[smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def add_backend(parser: argparse.ArgumentParser, purpose: str | None = None) -> None:
    """``--backend ALIAS``; ``purpose`` ("serve", "inspect"…) completes its help."""
    alias = f"The TASKS alias to {purpose}" if purpose else "The TASKS alias"
    parser.add_argument("--backend", default="default", help=f"{alias} (default: default).")


def add_workers(parser: argparse.ArgumentParser) -> None:
    """``-w/--workers N`` of ``worker`` and ``serve``."""
    parser.add_argument(
        "-w",
        "--workers",
        type=int,
        default=None,
        help="Workers per pool (overrides the pools' settings).",
    )


def add_no_schedule(parser: argparse.ArgumentParser) -> None:
    """``--no-schedule`` of ``worker`` and ``serve``."""
    parser.add_argument("--no-schedule", action="store_true", help=NO_SCHEDULE_HELP)


def add_dry_run(parser: argparse.ArgumentParser, text: str) -> None:
    """``--dry-run``: count, change nothing."""
    parser.add_argument("--dry-run", action="store_true", help=text)


def parse_age(value: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``45s`` or a number of seconds; ``ValueError`` otherwise."""
    match = _AGE.fullmatch(value.strip().lower())
    if match is None:
        raise ValueError(
            "--older-than must be a duration such as 7d, 12h, 30m or a number of seconds, "
            f"got {value!r}."
        )
    return timedelta(seconds=float(match["number"]) * _UNIT_SECONDS[match["unit"]])


def backend(alias: str) -> TandemBackend:
    """The tandem backend ``alias``; a ``CommandError`` saying why not otherwise."""
    try:
        return tandem_backend(alias)
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from exc


def configure_logging(verbosity: int) -> None:
    """tandem's (and Django's task) log lines on stderr in one plain format, unless the project
    configured logging itself."""
    tandem_logger = logging.getLogger("tandem")
    if not tandem_logger.handlers and not logging.getLogger().handlers:
        from tandem.logging import PlainFormatter

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(PlainFormatter())
        tandem_logger.addHandler(handler)
        tandem_logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
        # Django's task lines in the same format (timestamp, attempt fields), once.
        django_tasks = logging.getLogger("django.tasks")
        django_tasks.addHandler(handler)
        django_tasks.setLevel(tandem_logger.level)
        django_tasks.propagate = False


__all__ = [
    "NO_SCHEDULE_HELP",
    "add_backend",
    "add_dry_run",
    "add_no_schedule",
    "add_workers",
    "backend",
    "configure_logging",
    "parse_age",
]
