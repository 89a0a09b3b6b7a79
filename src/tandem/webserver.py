"""The HTTP side of ``tandem serve``: a threaded WSGI server that knows its in-flight requests.

``Server`` is wsgiref's server with a thread per concurrent request, made on a listening socket
opened elsewhere. A request thread that finishes waits for the next request instead of ending
(up to ``MAX_IDLE_THREADS`` of them), so its database connections live on as ``CONN_MAX_AGE``
allows: a thread per request meant a new connection per request (~1.5 ms on SQLite, more on
PostgreSQL) inside every view that touches the database. ``serve()`` accepts connections until a
stop pipe becomes readable; ``wait_idle()`` then waits, with a limit, for the requests still
running. The server never joins its request threads
without a limit, so a hung request cannot keep the process from exiting.

Nothing here imports Django at module level: ``interpreter_main()`` runs the same server inside a
subinterpreter (no signals, no daemon threads there), sharing the listening socket by file
descriptor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import selectors
import socket
import socketserver
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import WSGIApplication

logger = logging.getLogger("tandem.serve")

#: Request threads kept waiting for the next request; more end when their request is done.
MAX_IDLE_THREADS = 32


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)


class Server(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request; counts the requests in flight instead of keeping their threads."""

    block_on_close = False  # never join request threads without a limit: see wait_idle()

    def __init__(
        self, sock: socket.socket, app: WSGIApplication, *, daemon_threads: bool = True
    ) -> None:
        super().__init__(sock.getsockname()[:2], QuietHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()
        host, port = self.server_address[:2]
        self.server_name = socket.getfqdn(str(host))
        self.server_port = port
        self.setup_environ()
        self.set_app(app)
        # Daemon threads are not allowed in a subinterpreter; in the main interpreter they let
        # the process exit past a request that never ends.
        self.daemon_threads = daemon_threads
        self._idle = threading.Condition()
        self.in_flight = 0
        self.served = 0
        self._jobs: queue.SimpleQueue[tuple[Any, Any] | None] = queue.SimpleQueue()
        self._pool_lock = threading.Lock()
        self._waiting = 0  # request threads idle in self._jobs.get()
        self._threads: set[threading.Thread] = set()

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = self.socket.accept()
        connection.setblocking(True)  # the listening socket is non-blocking (shared accept)
        return connection, address

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._idle:
            self.in_flight += 1
        with self._pool_lock:
            if self._waiting:  # an idle request thread takes it
                self._waiting -= 1
                self._jobs.put((request, client_address))
                return
            thread = threading.Thread(
                target=self._serve_requests,
                args=((request, client_address),),
                name="tandem-http-request",
                daemon=self.daemon_threads,
            )
            self._threads.add(thread)
        try:
            thread.start()
        except BaseException:
            with self._pool_lock:
                self._threads.discard(thread)
            self._done()
            self.shutdown_request(request)
            raise

    def _serve_requests(self, job: tuple[Any, Any] | None) -> None:
        """A request thread: serve ``job``, then wait for the next one (None: end)."""
        while job is not None:
            try:
                self.process_request_thread(*job)
            except BaseException:
                # (socketserver handles Exception itself) this thread ends: never count it
                # as waiting, or a request handed to it would wait forever
                with self._pool_lock:
                    self._threads.discard(threading.current_thread())
                self._done()
                raise
            # Waiting is recorded before the request counts as done, so that once wait_idle()
            # returns, release_threads() sees every thread still alive.
            with self._pool_lock:
                keep = self._waiting < MAX_IDLE_THREADS
                if keep:
                    self._waiting += 1
                else:
                    self._threads.discard(threading.current_thread())
            self._done()
            if not keep:
                return
            job = self._jobs.get()
        with self._pool_lock:
            self._threads.discard(threading.current_thread())

    def release_threads(self, timeout: float | None = None) -> None:
        """End the idle request threads and wait for them (a subinterpreter can close only
        once its threads are gone). Call after ``wait_idle()``."""
        with self._pool_lock:
            idle, self._waiting = self._waiting, 0
            threads = list(self._threads)
        for _ in range(idle):
            self._jobs.put(None)
        for thread in threads:
            thread.join(timeout)

    def _done(self) -> None:
        with self._idle:
            self.in_flight -= 1
            self.served += 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (None: forever) for no request in flight."""
        with self._idle:
            return self._idle.wait_for(lambda: self.in_flight == 0, timeout)


def listen(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A listening TCP socket (IPv6 when ``host`` is an IPv6 address), SO_REUSEADDR set."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def serve(server: Server, stop_fd: int) -> None:
    """Accept connections until ``stop_fd`` is readable; requests in flight go on afterwards.

    Several servers (in several interpreters) may accept on the same listening socket: it is made
    non-blocking, and a server that loses the race for a connection just waits again.
    """
    server.socket.setblocking(False)
    with selectors.DefaultSelector() as selector:
        selector.register(server.socket, selectors.EVENT_READ, "accept")
        selector.register(stop_fd, selectors.EVENT_READ, "stop")
        while True:
            events = selector.select()
            if any(key.data == "stop" for key, _ in events):
                return
            try:
                request, client_address = server.get_request()
            except OSError:  # another server took it, or the client gave up already
                continue
            try:
                server.process_request(request, client_address)
            except Exception:
                server.handle_error(request, client_address)
                server.shutdown_request(request)


def forward_wakeups(aliases: Sequence[str], wake_fd: int) -> None:
    """In a web interpreter: pass this interpreter's enqueue wake-ups on to the main one.

    ``tandem.wakeup`` is per interpreter, and the supervisor lives in the main interpreter, so
    every after-commit wake-up is written to a pipe (``alias<TAB>queue``, one line) that
    ``relay_wakeups()`` reads there. The pipe is non-blocking: a full pipe drops the hint, and
    the supervisor's poll (or the store's own wake-up) still finds the task.
    """
    from tandem import wakeup

    def forwarder(alias: str) -> wakeup.Listener:
        def forward(queue: str) -> None:
            with contextlib.suppress(OSError):
                os.write(wake_fd, f"{alias}\t{queue}\n".encode())

        return forward

    for alias in aliases:
        wakeup.subscribe(alias, forwarder(alias))


def relay_wakeups(read_fd: int) -> None:
    """In the main interpreter: turn lines from ``forward_wakeups()`` into ``wakeup.notify()``.

    Returns when every write end of the pipe is closed.
    """
    from tandem import wakeup

    pending = b""
    while chunk := os.read(read_fd, 4096):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            alias, _, queue = line.decode(errors="replace").partition("\t")
            wakeup.notify(alias, queue)


def interpreter_main(
    listen_fd: int,
    stop_fd: int,
    wake_fd: int,
    sys_path: Sequence[str],
    environ: Mapping[str, str],
    databases: Mapping[str, Any],
) -> int:
    """A web worker inside a subinterpreter: set Django up, serve until stopped and idle.

    ``listen_fd`` is this worker's own duplicate of the listening socket: it is closed here,
    whatever happens. Returns the number of requests served. No signals and no daemon threads
    here; the main interpreter owns both and says "stop" through ``stop_fd``.
    """
    with socket.socket(fileno=listen_fd) as sock:
        from tandem.worker.pools.runner import setup

        setup(sys_path, environ, databases)
        from django.conf import settings
        from django.core.servers.basehttp import get_internal_wsgi_application

        application = get_internal_wsgi_application()
        forward_wakeups(list(getattr(settings, "TASKS", {})), wake_fd)
        server = Server(sock, application, daemon_threads=False)
        serve(server, stop_fd)
        sock.close()  # stop accepting: the port closes once every worker has closed its copy
        server.wait_idle(None)  # the main interpreter gives up on us after its grace period
        server.release_threads()
        return server.served
