"""``manage.py tandem <subcommand>``: run and inspect tandem workers.

Only dispatches: each subcommand is a module of ``tandem.cli`` (its arguments, its work, its
output).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tandem import cli
from tandem.cli.common import configure_logging


class Command(BaseCommand):
    help = "Run tandem task workers."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        for name in cli.SUBCOMMANDS:
            cli.subcommand(name).add_arguments(sub)

    def run_from_argv(self, argv: list[str]) -> None:
        """From the command line: a ``serve`` or ``worker`` whose pool runs on subinterpreters
        starts setting its first worker interpreter up now, on another core, while this
        interpreter parses the arguments, runs the checks and builds the supervisor
        (``tandem.worker.pools.warmup``)."""
        from tandem.worker.pools import warmup

        warmup.begin_for_command(argv[2:])
        super().run_from_argv(argv)

    def check(self, *args: Any, **kwargs: Any) -> None:
        """The system checks, with a backend that cannot even be loaded (a bad BACKEND path, a
        missing package) said in one message instead of a traceback."""
        try:
            super().check(*args, **kwargs)
        except ImproperlyConfigured as exc:
            from tandem.diagnosis import missing_extra

            raise CommandError(missing_extra(exc) or str(exc)) from exc

    def handle(self, *args: Any, **options: Any) -> None:
        configure_logging(options["verbosity"])
        cli.subcommand(options["subcommand"]).run(self, **options)
