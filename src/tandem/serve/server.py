"""``tandem serve``: the HTTP server, the supervisor and every pool in one process.

The main interpreter owns the signals, the supervisor and the listening socket. The HTTP side is a
*front*: ``ThreadFront`` serves the project's ``WSGI_APPLICATION`` from the main interpreter (one
event loop holds the connections, a bounded pool of threads runs the requests: see
``tandem.serve.http``); ``InterpreterFront`` runs N web workers, each a subinterpreter with its own
Django and the same server, all accepting on the same socket. An enqueue from a view wakes
the supervisor directly after commit, so a task starts with no polling delay.

Shutdown: the first ``stop()`` stops accepting connections and lets in-flight requests and tasks
finish for up to ``grace`` seconds, then releases the tasks still running back to READY; a second
``stop()`` releases at once. Nothing waits without a limit: a request or a task that never ends
is abandoned, and ``Stopped.clean`` tells the caller that the interpreter must not be finalized
normally (a busy subinterpreter would crash or hang it) — see ``finish_process()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from tandem.serve.http import HttpOptions, HTTPServer, listen, serve
from tandem.serve.interpreters import interpreter_main, relay_wakeups
from tandem.worker.supervisor import Supervisor

if TYPE_CHECKING:
    from tandem.monitoring.health import SupervisorProbe

logger = logging.getLogger("tandem.serve")

RELEASE_TIMEOUT = 15.0  # how long a forced stop waits for the supervisor to release its tasks
# run() looks at its state at least this often, whatever wakes it (or fails to).
WAKE_AT_LEAST = 1.0


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--bind must be ADDRESS:PORT (e.g. 127.0.0.1:8000), got {bind!r}.")
    return host.strip("[]") or "127.0.0.1", int(port)


class Front(Protocol):
    """The HTTP side of ``tandem serve``."""

    failure: str | None

    def start(self, stop_fd: int, on_exit: Callable[[], None]) -> None:
        """Start serving; stop accepting when ``stop_fd`` becomes readable, then finish requests.

        ``on_exit`` is called (from any thread) whenever a server ends, expected or not.
        """

    def ended(self) -> bool:
        """Whether every server stopped accepting and finished its requests."""

    def in_flight(self) -> int:
        """Requests still running (-1 when unknown)."""

    def close(self) -> None:
        """Release what the servers shared; only called once ``ended()``."""


class ThreadFront:
    """The HTTP server in the main interpreter: its loop in one thread, requests in a pool."""

    name = "threads"

    def __init__(
        self,
        listening: Any,
        options: HttpOptions,
        supervisor_probe: SupervisorProbe | None = None,
    ) -> None:
        from tandem.serve import application

        sock = listening.dup()
        try:
            # /-/health/live, /-/health/ready and /-/metrics first; the rest to the project.
            app = application.build(options, supervisor_probe=supervisor_probe)
            # Daemon request threads: a request that never ends must not keep the process alive.
            # Listening from start() on: a client of a process still starting is refused.
            self.server = HTTPServer(sock, app, options, daemon=True, accepting=False)
        except BaseException:
            sock.close()
            raise
        self.failure: str | None = None
        self._ended = threading.Event()

    def start(self, stop_fd: int, on_exit: Callable[[], None]) -> None:
        self.server.accept_connections()  # listening from here on

        def run() -> None:
            try:
                try:
                    serve(self.server, stop_fd)
                    self.server.drain()
                finally:
                    self.server.finish(timeout=1.0)
            except BaseException as exc:
                logger.exception("the HTTP server failed")
                self.failure = f"the HTTP server failed: {type(exc).__name__}: {exc}"
            finally:
                self._ended.set()  # before on_exit(): whoever it wakes must see it
                on_exit()

        # A daemon thread: a request that never ends must not keep the process alive.
        threading.Thread(target=run, name="tandem-http", daemon=True).start()

    def ended(self) -> bool:
        return self._ended.is_set()

    def in_flight(self) -> int:
        return self.server.in_flight()

    def close(self) -> None:
        pass


class InterpreterFront:
    """N web workers, each a subinterpreter running Django and the same WSGI server.

    Every worker accepts on its own duplicate of the listening socket (the kernel hands each
    connection to one of them), so requests run in parallel on all cores, each interpreter with its
    own GIL. Enqueue wake-ups reach the supervisor through a pipe (``relay_wakeups``).
    """

    name = "interpreters"

    def __init__(self, listening: Any, workers: int, options: HttpOptions) -> None:
        from tandem.worker.pools.runner import worker_environment

        if workers < 1:
            raise ValueError(f"need at least one web interpreter, got {workers}")
        self.workers = workers
        # One accept per turn of each server's loop when several share the socket: they take
        # turns at a burst instead of one of them keeping it (``HTTPServer.handle_accept``).
        self.options = replace(options, accept_batch=1) if workers > 1 else options
        self._log_level = logging.getLogger("tandem").getEffectiveLevel()
        self.failure: str | None = None
        self._fds = [os.dup(listening.fileno()) for _ in range(workers)]
        self._environment = worker_environment()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._hosts: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._ended = 0
        self._relay = threading.Thread(
            target=relay_wakeups, args=(self._wake_r,), name="tandem-http-wakeups", daemon=True
        )

    def start(self, stop_fd: int, on_exit: Callable[[], None]) -> None:
        self._relay.start()
        for index, fd in enumerate(self._fds):
            host = threading.Thread(
                target=self._host,
                args=(fd, stop_fd, on_exit),
                name=f"tandem-http-interp{index}",
                # A web interpreter stuck in a request must not keep the process alive.
                daemon=True,
            )
            self._hosts.append(host)
            host.start()

    def _host(self, fd: int, stop_fd: int, on_exit: Callable[[], None]) -> None:
        from concurrent import interpreters  # type: ignore[attr-defined,unused-ignore]

        try:
            interp = interpreters.create()
        except BaseException as exc:
            os.close(fd)
            self._fail(f"could not create a web interpreter: {exc}", str(exc))
            self._end(on_exit)
            return
        try:
            interp.call(
                interpreter_main,
                fd,
                stop_fd,
                self._wake_w,
                self.options,
                self._log_level,
                *self._environment,
            )
        except interpreters.ExecutionFailed as exc:  # it ran (and owned the socket): it failed
            info = exc.excinfo
            self._fail(f"a web interpreter failed: {info.type.__name__}: {info.msg}", str(exc))
        except BaseException as exc:  # it never ran: the socket is still ours to close
            os.close(fd)
            self._fail(f"could not start a web interpreter: {exc}", str(exc))
        try:
            interp.close()
        except Exception as exc:
            logger.warning("could not close a web interpreter: %s", exc)
        self._end(on_exit)

    def _fail(self, summary: str, detail: str) -> None:
        """Record the first failure (one line) and log its details once."""
        with self._lock:
            first = self.failure is None
            if first:
                self.failure = summary
        if first:
            logger.error("%s", detail)

    def _end(self, on_exit: Callable[[], None]) -> None:
        with self._lock:
            self._ended += 1  # before on_exit(): whoever it wakes must see it
        on_exit()

    def ended(self) -> bool:
        return self._ended == self.workers

    def in_flight(self) -> int:
        return -1

    def close(self) -> None:
        os.close(self._wake_w)  # the relay reads EOF and ends
        self._relay.join(1.0)
        if not self._relay.is_alive():
            os.close(self._wake_r)


@dataclass(frozen=True, slots=True)
class Stopped:
    """How ``TandemServer.run()`` ended."""

    error: str | None  # why it stopped on its own (None: it was asked to stop)
    clean: bool  # False: something is still running; do not finalize the interpreter normally
    leftovers: tuple[str, ...] = ()


class TandemServer:
    def __init__(
        self,
        supervisor: Supervisor,
        bind: str,
        grace: float,
        *,
        web_interpreters: int = 0,
        http: HttpOptions | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.grace = grace
        self.http = http or HttpOptions()
        host, port = parse_bind(bind)
        # Bound now (a taken address fails before the start-up's work), listening only once
        # the HTTP side serves (``run()``): until then a client is refused, not left waiting.
        self.socket = listen(host, port, now=False)
        try:
            self.front: ThreadFront | InterpreterFront = (
                InterpreterFront(self.socket, web_interpreters, self.http)
                if web_interpreters
                else ThreadFront(self.socket, self.http, self._supervisor_problem)
            )
        except BaseException:
            self.socket.close()
            raise
        self._events_r, self._events_w = os.pipe()  # wakes run(): signals, thread exits
        os.set_blocking(self._events_r, False)
        os.set_blocking(self._events_w, False)
        self._stop_r, self._stop_w = os.pipe()  # readable = the HTTP servers stop accepting
        self._stops = 0
        self._supervisor_error: str | None = None
        self._supervisor_done = threading.Event()
        self._supervisor_thread = threading.Thread(
            target=self._run_supervisor, name="tandem-supervisor", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def stop_count(self) -> int:
        return self._stops

    def stop(self) -> None:
        """Signal-safe: only records the request and wakes ``run()``, which acts on it."""
        self._stops += 1
        self._poke()

    def _poke(self) -> None:
        # Full: run() has wake-ups pending anyway. Closed: run() is over.
        with contextlib.suppress(OSError):
            os.write(self._events_w, b"!")

    def _supervisor_problem(self) -> str | None:
        """Readiness (``/-/health/ready``): None while the supervisor runs and is not stopping."""
        if self._supervisor_done.is_set() or not self._supervisor_thread.is_alive():
            return "the supervisor is not running"
        if self._stops or self.supervisor.stopping:
            return "shutting down"
        return None

    def _run_supervisor(self) -> None:
        try:
            self.supervisor.run()
        except BaseException as exc:
            logger.exception("the supervisor failed")
            self._supervisor_error = f"the supervisor failed: {type(exc).__name__}: {exc}"
        finally:
            self._supervisor_done.set()  # before the poke: run() must see it when woken
            self._poke()

    def _wait(self, done: Callable[[], bool], deadline: float | None) -> bool:
        """Wait until ``done()`` or the deadline; returns ``done()``."""
        while not done():
            remaining = WAKE_AT_LEAST if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return False
            select.select([self._events_r], [], [], min(remaining, WAKE_AT_LEAST))
            try:
                while os.read(self._events_r, 512):
                    pass
            except BlockingIOError:
                pass
        return True

    def _failure(self) -> str | None:
        if self._supervisor_done.is_set():
            if self.supervisor.exit_code and not self._supervisor_error:
                # A pool that cannot go on in this process (too many stuck interpreters): the
                # supervisor released its tasks; the process must be restarted.
                return (
                    f"{self.supervisor.exit_reason or 'a pool cannot go on in this process'}; "
                    "its tasks were released: this process must be restarted"
                )
            return self._supervisor_error or "the supervisor stopped unexpectedly"
        if self.front.failure:
            return self.front.failure
        if self.front.ended():
            return "the HTTP server stopped unexpectedly"
        return None

    def run(self) -> Stopped:
        # A signal may land on any thread (request threads, pools); the wake-up fd makes it wake
        # run()'s select() in the main thread, which then runs the Python handler.
        previous_wakeup = _set_wakeup_fd(self._events_w)
        self._supervisor_thread.start()
        self.front.start(self._stop_r, self._poke)
        try:
            self._wait(lambda: bool(self._stops or self._failure()), None)
            error = None if self._stops else self._failure()
            if error:
                logger.error("%s; shutting down", error)
            return self._shutdown(error)
        finally:
            if previous_wakeup is not None:
                _set_wakeup_fd(previous_wakeup)
            for fd in (self._events_r, self._events_w):
                os.close(fd)

    def _shutdown(self, error: str | None) -> Stopped:
        deadline = time.monotonic() + self.grace
        logger.info(
            "stopping: no new connections; draining requests and tasks (grace %gs)", self.grace
        )
        os.write(self._stop_w, b"stop")  # every HTTP server stops accepting
        self.socket.close()  # each server closes its own duplicate when it stops
        if self._stops < 2:
            self.supervisor.request_stop()  # drain: no new claims, in-flight tasks finish
        self._wait(
            lambda: self._stops > 1 or (self._supervisor_done.is_set() and self.front.ended()),
            deadline,
        )
        if not self._supervisor_done.is_set():
            if self._stops < 2:
                logger.warning("grace period over: releasing in-flight tasks back to READY")
            self.supervisor.request_stop(force=True)
            # The release is one write; a third signal (or a store that hangs) gives up on it.
            stops = self._stops
            self._wait(
                lambda: self._supervisor_done.is_set() or self._stops > max(stops, 2),
                time.monotonic() + RELEASE_TIMEOUT,
            )
            if not self._supervisor_done.is_set():
                logger.error("the supervisor did not stop; in-flight tasks stay RUNNING")
        if self.front.ended():
            self.front.close()
            for fd in (self._stop_r, self._stop_w):
                os.close(fd)
        else:
            busy = self.front.in_flight()
            logger.warning(
                "abandoning %s HTTP request(s) still in flight",
                busy if busy >= 0 else "the",
            )
        found = leftovers()
        if not self._supervisor_done.is_set():
            found.append("the supervisor thread")
        return Stopped(
            error=error or self._supervisor_error, clean=not found, leftovers=tuple(found)
        )


def _set_wakeup_fd(fd: int) -> int | None:
    """``signal.set_wakeup_fd(fd)``; None (and nothing changed) off the main thread."""
    try:
        return signal.set_wakeup_fd(fd)
    except ValueError:
        return None


def leftovers() -> list[str]:
    """What would crash or hang interpreter finalization: open subinterpreters (busy or not),
    live non-daemon threads."""
    found = []
    try:
        from concurrent import interpreters  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        pass
    else:
        main = interpreters.get_main().id
        busy = [i for i in interpreters.list_all() if i.id != main]
        if busy:
            found.append(f"{len(busy)} subinterpreter(s)")
    threads = [
        t.name
        for t in threading.enumerate()
        if not t.daemon and t is not threading.main_thread() and t.is_alive()
    ]
    if threads:
        found.append(f"non-daemon thread(s) {', '.join(threads)}")
    return found


def finish_process(code: int) -> None:
    """End the process now, skipping interpreter finalization (which a busy subinterpreter would
    crash with SIGSEGV, or a stuck non-daemon thread would hang). Everything durable is already
    written: in-flight tasks were released to READY before this is called."""
    import multiprocessing

    for child in multiprocessing.active_children():  # process-pool workers of released tasks
        if child.daemon:
            child.kill()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
