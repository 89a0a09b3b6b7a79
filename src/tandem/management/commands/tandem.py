"""``manage.py tandem <subcommand>``: run and inspect tandem workers."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from tandem.worker.supervisor import Supervisor

logger = logging.getLogger("tandem.worker")


@contextmanager
def stop_signals(supervisor: Supervisor, write: Any) -> Iterator[None]:
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


NO_SCHEDULE_HELP = (
    "Do not run the cron schedules in this process (other supervisors still fire them)."
)


class Command(BaseCommand):
    help = "Run tandem task workers."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        worker = sub.add_parser(
            "worker",
            help="Run a standalone supervisor with its pools (any number, on any host).",
            description="Claim and run tasks until stopped: SIGINT/SIGTERM drains, a second "
            "signal releases in-flight tasks back to READY.",
        )
        worker.add_argument(
            "-q",
            "--queue",
            dest="queues",
            action="append",
            default=None,
            help="Serve only this queue (repeatable). Default: every queue of the backend.",
        )
        worker.add_argument(
            "-w",
            "--workers",
            type=int,
            default=None,
            help="Workers per pool (overrides the pools' settings).",
        )
        worker.add_argument("--burst", action="store_true", help="Exit once the queues are empty.")
        worker.add_argument(
            "--max-tasks", type=int, default=None, help="Exit after claiming this many tasks."
        )
        worker.add_argument(
            "--backend", default="default", help="The TASKS alias to serve (default: default)."
        )
        worker.add_argument("--no-schedule", action="store_true", help=NO_SCHEDULE_HELP)
        serve = sub.add_parser(
            "serve",
            help="Run the HTTP server and every worker pool in ONE process.",
            description="Serve the project's WSGI application and run its tasks in the same "
            "process. SIGINT/SIGTERM: stop accepting, finish in-flight requests and tasks within "
            "--grace seconds, release the rest to READY; a second signal releases at once.",
        )
        serve.add_argument(
            "--bind",
            default="127.0.0.1:8000",
            help="ADDRESS:PORT to listen on (default: %(default)s).",
        )
        serve.add_argument(
            "--grace",
            type=float,
            default=30.0,
            help="Seconds in-flight tasks get to finish on shutdown (default: %(default)s).",
        )
        serve.add_argument(
            "-w",
            "--workers",
            type=int,
            default=None,
            help="Workers per pool (overrides the pools' settings).",
        )
        serve.add_argument(
            "--backend", default="default", help="The TASKS alias to serve (default: default)."
        )
        serve.add_argument("--no-schedule", action="store_true", help=NO_SCHEDULE_HELP)
        serve.add_argument(
            "--web-interpreters",
            type=int,
            default=0,
            metavar="N",
            help="Serve HTTP from N subinterpreters sharing the socket (Python >= 3.14) instead "
            "of threads of the main interpreter (default: 0, threads).",
        )
        from tandem.serve import options as http_options

        http_options.add_arguments(serve)
        serve.add_argument(
            "--supervise",
            action="store_true",
            help="Run the server as the child of a small parent process that forwards "
            "SIGTERM/SIGINT to it and restarts it when it crashes.",
        )
        from tandem.monitoring import report

        report.add_arguments(sub)
        from tandem import prune
        from tandem.scheduler import report as schedule_report

        schedule_report.add_arguments(sub)
        prune.add_arguments(sub)
        from tandem import pausing

        pausing.add_arguments(sub)
        from tandem import bulk

        bulk.add_arguments(sub)

    def check(self, *args: Any, **kwargs: Any) -> None:
        """The system checks, with a backend that cannot even be loaded (a bad BACKEND path, a
        missing package) said in one message instead of a traceback."""
        try:
            super().check(*args, **kwargs)
        except ImproperlyConfigured as exc:
            from tandem.diagnosis import missing_extra

            raise CommandError(missing_extra(exc) or str(exc)) from exc

    def _preflight(self, backend: str) -> None:
        """Stop before the banner when the store cannot serve: it does not answer, a driver is
        missing, or tandem's migrations are not applied — one message, exit status 1."""
        from tandem.backends import tandem_backend
        from tandem.diagnosis import missing_extra, store_problem

        try:
            instance = tandem_backend(backend)
        except ImproperlyConfigured as exc:
            raise CommandError(missing_extra(exc) or str(exc)) from exc
        if problem := store_problem(instance):
            raise CommandError(problem)

    def handle(self, *args: Any, **options: Any) -> None:
        self._configure_logging(options["verbosity"])
        if options["subcommand"] == "worker":
            self.worker(**options)
        elif options["subcommand"] == "serve":
            self.serve(**options)
        elif options["subcommand"] == "status":
            from tandem.monitoring import report

            report.run(self, **options)
        elif options["subcommand"] == "schedule":
            from tandem.scheduler import report as schedule_report

            schedule_report.run(self, **options)
        elif options["subcommand"] == "prune":
            from tandem import prune

            prune.run(self, **options)
        elif options["subcommand"] in ("pause", "resume"):
            from tandem import pausing

            pausing.run(self, **options)
        elif options["subcommand"] in ("retry", "cancel"):
            from tandem import bulk

            bulk.run(self, **options)

    def _configure_logging(self, verbosity: int) -> None:
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

    def worker(
        self,
        *,
        queues: list[str] | None,
        workers: int | None,
        burst: bool,
        max_tasks: int | None,
        backend: str,
        no_schedule: bool = False,
        **_: Any,
    ) -> None:
        if max_tasks is not None and max_tasks < 1:
            raise CommandError(f"--max-tasks must be >= 1, got {max_tasks}.")
        self._preflight(backend)
        supervisor = self._supervisor(
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
        with stop_signals(supervisor, self.stderr.write):
            self._banner("worker", supervisor, burst=burst, max_tasks=max_tasks)
            bar = self._progress_bar(supervisor) if burst else None
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
        self.stdout.write(
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

    def serve(
        self,
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
        from tandem.serve.http import quiet_waitress, raise_open_files_limit
        from tandem.serve.server import TandemServer, finish_process

        if grace < 0:
            raise CommandError(f"--grace must be >= 0, got {grace:g}.")
        from tandem.serve import options as http_options

        try:
            http = http_options.from_command_line(options)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if web_interpreters < 0:
            raise CommandError(f"--web-interpreters must be >= 0, got {web_interpreters}.")
        if web_interpreters and sys.version_info < (3, 14):
            raise CommandError("--web-interpreters needs Python 3.14 or later.")
        self._preflight(backend)
        if supervise:
            from tandem.serve import supervise as supervising

            connections.close_all()  # the preflight's: the parent about to exec holds none

            try:
                argv = supervising.child_argv()
            except RuntimeError as exc:
                raise CommandError(str(exc)) from exc
            supervising.exec_parent(argv)  # does not return
        supervisor = self._supervisor(
            backend, queues=None, workers=workers, schedules=not no_schedule
        )
        if web_interpreters and (reason := supervisor.backend.subinterpreter_blocker()):
            raise CommandError(f"--web-interpreters cannot be used: {reason}.")
        try:
            server = TandemServer(
                supervisor, bind, grace, web_interpreters=web_interpreters, http=http
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(
                f"Cannot listen on {bind}: {exc.strerror or exc}. Choose another --bind."
            ) from exc
        files = raise_open_files_limit(http.max_connections * max(web_interpreters, 1))
        quiet_waitress()
        host, port = server.address
        self._banner("serve", supervisor, burst=False, max_tasks=None)
        web = (
            f"{web_interpreters} subinterpreter(s) x {http.threads} threads"
            if web_interpreters
            else f"{http.threads} threads"
        )
        self.stdout.write(
            f"  http:   http://{host}:{port}/ ({web}; Ctrl-C to stop, grace {grace:g}s)\n"
            f"          header timeout {http.header_timeout:g}s, keep-alive "
            f"{http.keep_alive_timeout:g}s, max body {http.max_body_size} bytes, up to "
            f"{http.max_connections} connections (open files limit {files})"
        )
        if http.forwarded_allow_ips:
            self.stdout.write(
                f"  proxy:  X-Forwarded-For/Proto trusted from {','.join(http.forwarded_allow_ips)}"
            )
        self.stdout.write(f"  static: {http_options.static_line(http)}")
        if not web_interpreters:
            self.stdout.write(
                f"  ops:    http://{host}:{port}/-/health/live, /-/health/ready, /-/metrics"
            )
        self.stdout.flush()

        def write(message: str) -> None:
            self.stderr.write(message)

        previous = {
            sig: signal.signal(
                sig, lambda signum, frame: self._on_serve_signal(server, signum, write)
            )
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            stopped = server.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write(f"tandem serve stopped: {supervisor.settled} task(s) settled.")
        # A pool that asked for a restart (``EXIT_POOL_BROKEN``, 75) exits with that status:
        # ``--supervise`` (or systemd's Restart=on-failure) starts the process again.
        code = supervisor.exit_code or (1 if stopped.error else 0)
        if stopped.error:
            self.stderr.write(f"tandem serve failed: {stopped.error}")
        if supervisor.exit_code:
            self.stderr.write(
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

    @staticmethod
    def _on_serve_signal(server: Any, signum: int, write: Any) -> None:
        server.stop()
        name = signal.Signals(signum).name
        if server.stop_count == 1:
            write(
                f"{name}: stopping — finishing in-flight requests and tasks; send it again "
                "to release tasks back to READY and exit now."
            )
        else:
            write(f"{name}: releasing in-flight tasks and exiting.")

    def _progress_bar(self, supervisor: Supervisor) -> Any:
        """A progress bar on stderr for ``--burst``, only when stderr is a terminal."""
        if not self.stderr.isatty():
            return None
        from tandem.monitoring.progress import ProgressBar

        bar = ProgressBar(supervisor, getattr(self.stderr, "_out", sys.stderr))
        for handler in logging.getLogger("tandem").handlers:
            bar.attach(handler)
        bar.start()
        return bar

    def _supervisor(self, backend: str, **kwargs: Any) -> Supervisor:
        workers = kwargs.get("workers")
        if workers is not None and workers < 1:
            raise CommandError(f"--workers must be >= 1, got {workers}.")
        try:
            return Supervisor(backend, **kwargs)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc

    @staticmethod
    def _paused_queues(supervisor: Supervisor) -> set[str]:
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

    def _banner(
        self, what: str, supervisor: Supervisor, *, burst: bool, max_tasks: int | None
    ) -> None:
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
        self.stdout.write(
            f"tandem {what} {supervisor.worker_id}{mode}\n"
            f"  store:  {store}, backend {supervisor.backend.alias!r}\n"
            f"  python: {sys.version.split()[0]}\n"
            f"  pools:  {pools}\n"
            f"  queues: {', '.join(supervisor.queues)}\n"
            f"  lease:  {supervisor.options.lease_seconds:g}s"
        )
        paused_now = self._paused_queues(supervisor)
        paused = [q for q in supervisor.queues if q in paused_now]
        if paused:
            self.stdout.write(
                f"  paused: {', '.join(paused)} (their tasks wait; python manage.py tandem resume "
                f"{' '.join(paused)} starts them)"
            )
        if supervisor.scheduler is not None:
            names = ", ".join(config.name for config in supervisor.scheduler.schedules)
            self.stdout.write(f"  cron:   {names}")
        from tandem.checks import sqlite_transaction_mode_warnings

        for alias, message, hint in sqlite_transaction_mode_warnings():
            if alias == supervisor.backend.alias:
                self.stdout.write(f"  sqlite: WARNING (tandem.W003): {message} {hint}")
