"""``manage.py tandem worker``: a standalone supervisor with its pools, until stopped.

SIGINT/SIGTERM drains (in-flight tasks finish); a second signal releases them back to READY.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tandem.cli import common, startup
from tandem.worker.supervisor import Supervisor

logger = logging.getLogger("tandem.worker")


def add_arguments(subparsers: Any) -> None:
    """Add the ``worker`` subcommand to ``manage.py tandem``'s subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker",
        help="Run a standalone supervisor with its pools (any number, on any host).",
        description="Claim and run tasks until stopped: SIGINT/SIGTERM drains, a second "
        "signal releases in-flight tasks back to READY.",
    )
    parser.add_argument(
        "-q",
        "--queue",
        dest="queues",
        action="append",
        default=None,
        help="Serve only this queue (repeatable). Default: every queue of the backend.",
    )
    common.add_workers(parser)
    parser.add_argument("--burst", action="store_true", help="Exit once the queues are empty.")
    parser.add_argument(
        "--max-tasks", type=int, default=None, help="Exit after claiming this many tasks."
    )
    common.add_backend(parser, "serve")
    common.add_no_schedule(parser)


@contextmanager
def stop_signals(supervisor: Supervisor, write: Callable[[str], Any]) -> Iterator[None]:
    """SIGINT/SIGTERM: first drains, second releases. Handlers only set state; restored after."""

    def handle(signum: int, frame: FrameType | None) -> None:
        supervisor.request_stop()
        name = signal.Signals(signum).name
        if supervisor.stopping == 1:
            write(
                f"{name}: draining — finishing {supervisor.in_flight} in-flight task(s); "
                "send it again to release them back to READY and exit now."
            )
        else:
            write(f"{name}: releasing in-flight tasks and exiting.")

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(
    command: BaseCommand,
    *,
    queues: list[str] | None,
    workers: int | None,
    burst: bool,
    max_tasks: int | None,
    backend: str,
    no_schedule: bool = False,
    **_: Any,
) -> None:
    """Serve until stopped (or, with ``--burst``/``--max-tasks``, done); exit with the
    supervisor's status."""
    if max_tasks is not None and max_tasks < 1:
        raise CommandError(f"--max-tasks must be >= 1, got {max_tasks}.")
    startup.preflight(backend)
    supervisor = startup.supervisor(
        backend,
        queues=queues,
        workers=workers,
        burst=burst,
        max_tasks=max_tasks,
        schedules=not no_schedule,
    )
    from tandem.serve.server import finish_process, leftovers

    # The handlers come first: a SIGTERM while the banner reads the store drains (there is
    # nothing to drain yet) instead of killing the process with SIGTERM's default action.
    with stop_signals(supervisor, command.stderr.write):
        startup.banner(command, "worker", supervisor, burst=burst, max_tasks=max_tasks)
        bar = _progress_bar(command, supervisor) if burst else None
        try:
            supervisor.run()
        except BaseException:
            if any("subinterpreter" in thing for thing in leftovers()):
                # An open interpreter would hang or crash finalization: exit now, non-zero.
                logger.exception("the worker failed; exiting without interpreter finalization")
                finish_process(1)
            raise
        finally:
            if bar is not None:
                bar.stop()
    command.stdout.write(
        f"tandem worker {supervisor.worker_id} stopped: {supervisor.settled} task(s) settled."
    )
    # After a forced stop, or a drain that left a retired interpreter stuck in a task: a
    # subinterpreter still running would crash interpreter finalization (SIGSEGV).
    still = leftovers()
    stuck = any("subinterpreter" in thing for thing in still)
    if still and (supervisor.stopping == 2 or stuck):
        logger.info(
            "exiting without interpreter finalization (still running: %s)", ", ".join(still)
        )
        finish_process(supervisor.exit_code)
    if supervisor.exit_code:
        sys.exit(supervisor.exit_code)


def _progress_bar(command: BaseCommand, supervisor: Supervisor) -> Any:
    """A progress bar on stderr for ``--burst``, only when stderr is a terminal."""
    if not command.stderr.isatty():
        return None
    from tandem.monitoring.progress import ProgressBar

    bar = ProgressBar(supervisor, getattr(command.stderr, "_out", sys.stderr))
    for handler in logging.getLogger("tandem").handlers:
        bar.attach(handler)
    bar.start()
    return bar


__all__ = ["add_arguments", "run", "stop_signals"]
