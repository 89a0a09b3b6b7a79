"""``manage.py tandem serve``: the HTTP server and every worker pool in ONE process.

SIGINT/SIGTERM: stop accepting, finish in-flight requests and tasks within ``--grace`` seconds,
release the rest to READY; a second signal releases at once.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from tandem.cli import common, startup
from tandem.serve import options as http_options


def add_arguments(subparsers: Any) -> None:
    """Add the ``serve`` subcommand to ``manage.py tandem``'s subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="Run the HTTP server and every worker pool in ONE process.",
        description="Serve the project's WSGI application and run its tasks in the same "
        "process. SIGINT/SIGTERM: stop accepting, finish in-flight requests and tasks within "
        "--grace seconds, release the rest to READY; a second signal releases at once.",
    )
    parser.add_argument(
        "--bind",
        default="127.0.0.1:8000",
        help="ADDRESS:PORT to listen on (default: %(default)s).",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="Seconds in-flight tasks get to finish on shutdown (default: %(default)s).",
    )
    common.add_workers(parser)
    common.add_backend(parser, "serve")
    common.add_no_schedule(parser)
    parser.add_argument(
        "--web-interpreters",
        type=int,
        default=0,
        metavar="N",
        help="Serve HTTP from N subinterpreters sharing the socket (Python >= 3.14) instead "
        "of threads of the main interpreter (default: 0, threads).",
    )
    http_options.add_arguments(parser)
    parser.add_argument(
        "--supervise",
        action="store_true",
        help="Run the server as the child of a small parent process that forwards "
        "SIGTERM/SIGINT to it and restarts it when it crashes.",
    )


def run(
    command: BaseCommand,
    *,
    bind: str,
    grace: float,
    workers: int | None,
    backend: str,
    web_interpreters: int,
    supervise: bool,
    no_schedule: bool = False,
    **options: Any,
) -> None:
    """Serve until stopped; exit with the status a restart needs, if one does."""
    from tandem.serve.http import quiet_waitress, raise_open_files_limit
    from tandem.serve.server import TandemServer, finish_process

    if grace < 0:
        raise CommandError(f"--grace must be >= 0, got {grace:g}.")
    try:
        http = http_options.from_command_line(options)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    if web_interpreters < 0:
        raise CommandError(f"--web-interpreters must be >= 0, got {web_interpreters}.")
    if web_interpreters and sys.version_info < (3, 14):
        raise CommandError("--web-interpreters needs Python 3.14 or later.")
    startup.preflight(backend)
    if supervise:
        from tandem.serve import supervise as supervising

        connections.close_all()  # the preflight's: the parent about to exec holds none

        try:
            argv = supervising.child_argv()
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        supervising.exec_parent(argv)  # does not return
    supervisor = startup.supervisor(
        backend, queues=None, workers=workers, schedules=not no_schedule
    )
    if web_interpreters and (reason := supervisor.backend.subinterpreter_blocker()):
        raise CommandError(f"--web-interpreters cannot be used: {reason}.")
    try:
        server = TandemServer(supervisor, bind, grace, web_interpreters=web_interpreters, http=http)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    except OSError as exc:
        raise CommandError(
            f"Cannot listen on {bind}: {exc.strerror or exc}. Choose another --bind."
        ) from exc
    files = raise_open_files_limit(http.max_connections * max(web_interpreters, 1))
    quiet_waitress()
    host, port = server.address
    startup.banner(command, "serve", supervisor, burst=False, max_tasks=None)
    web = (
        f"{web_interpreters} subinterpreter(s) x {http.threads} threads"
        if web_interpreters
        else f"{http.threads} threads"
    )
    command.stdout.write(
        f"  http:   http://{host}:{port}/ ({web}; Ctrl-C to stop, grace {grace:g}s)\n"
        f"          header timeout {http.header_timeout:g}s, keep-alive "
        f"{http.keep_alive_timeout:g}s, max body {http.max_body_size} bytes, up to "
        f"{http.max_connections} connections (open files limit {files})"
    )
    if http.forwarded_allow_ips:
        command.stdout.write(
            f"  proxy:  X-Forwarded-For/Proto trusted from {','.join(http.forwarded_allow_ips)}"
        )
    command.stdout.write(f"  static: {http_options.static_line(http)}")
    if not web_interpreters:
        command.stdout.write(
            f"  ops:    http://{host}:{port}/-/health/live, /-/health/ready, /-/metrics"
        )
    command.stdout.flush()

    def write(message: str) -> None:
        command.stderr.write(message)

    previous = {
        sig: signal.signal(sig, lambda signum, frame: _on_signal(server, signum, write))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        stopped = server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    command.stdout.write(f"tandem serve stopped: {supervisor.settled} task(s) settled.")
    # A pool that asked for a restart (``EXIT_POOL_BROKEN``, 75) exits with that status:
    # ``--supervise`` (or systemd's Restart=on-failure) starts the process again.
    code = supervisor.exit_code or (1 if stopped.error else 0)
    if stopped.error:
        command.stderr.write(f"tandem serve failed: {stopped.error}")
    if supervisor.exit_code:
        command.stderr.write(
            f"tandem serve: exiting with status {code} for a restart (`tandem serve "
            "--supervise` restarts it; so does a process manager that restarts on failure)."
        )
    if not stopped.clean:
        # A busy subinterpreter would crash interpreter finalization (SIGSEGV), a stuck
        # non-daemon thread would hang it; tasks are already released, output is flushed.
        logging.getLogger("tandem.serve").info(
            "exiting without interpreter finalization (still running: %s)",
            ", ".join(stopped.leftovers),
        )
        finish_process(code)
    if code:
        sys.exit(code)


def _on_signal(server: Any, signum: int, write: Callable[[str], None]) -> None:
    """The first SIGINT/SIGTERM stops gracefully, the second releases the tasks at once."""
    server.stop()
    name = signal.Signals(signum).name
    if server.stop_count == 1:
        write(
            f"{name}: stopping — finishing in-flight requests and tasks; send it again "
            "to release tasks back to READY and exit now."
        )
    else:
        write(f"{name}: releasing in-flight tasks and exiting.")


__all__ = ["add_arguments", "run"]
