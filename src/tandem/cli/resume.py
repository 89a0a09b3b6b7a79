"""``manage.py tandem resume``: resume paused queues; the workers serving them are woken."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand

from tandem.cli import pause


def add_arguments(subparsers: Any) -> None:
    """Add the ``resume`` subcommand to ``manage.py tandem``'s subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "resume",
        help="Resume paused queues: workers start their tasks again.",
        description="Resume paused QUEUE(s); the workers serving them are woken at once.",
    )
    pause.add_queues(parser)


def run(command: BaseCommand, **options: Any) -> None:
    """Resume the queues; one line per queue says whether it was paused."""
    pause.run(command, **options)


__all__ = ["add_arguments", "run"]
