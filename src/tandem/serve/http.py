"""The HTTP server: waitress, with a header deadline, a stop pipe and a drain.

waitress keeps every connection in one ``poll()`` loop (no thread per connection) and hands complete
requests to a bounded pool of threads; it speaks HTTP/1.1 with keep-alive and chunked bodies, and
answers a ``Content-Length`` over ``max_request_body_size`` with 413 before reading the body. What
it lacks, added here:

- a **header deadline**: waitress only drops a connection after ``channel_timeout`` seconds
  *without activity*, so a client trickling one header byte at a time (slowloris) keeps its
  connection forever. ``Channel`` records when the request now being read began (at accept for a
  fresh connection), and ``HTTPServer.maintenance()`` (about once a second) drops a connection whose
  headers are not complete ``header_timeout`` seconds after that, an idle keep-alive connection
  after ``keep_alive_timeout`` seconds, and a request body that stalls for ``header_timeout``;
- **non-daemon request threads** where needed: waitress starts daemon threads, which a
  subinterpreter refuses (``Dispatcher(daemon=False)``);
- a **stop**: ``serve()`` runs the loop until a stop pipe becomes readable, then stops accepting;
  ``drain()`` closes idle connections and serves the ones in flight until none is left;
- a loop whose turns cost nothing per idle connection (``tandem.serve.loop``), and an accept of
  every waiting connection per turn;
- **no wake-up of the loop per request**: waitress's request thread already sends the response
  itself (``write_soon`` flushes as it goes), then pulls the server's trigger (a pipe) only so that
  the loop's thread watches the connection for its next request again. Here the request thread
  does that itself (``Loop.rearm``) when the response went out whole and the connection is
  plainly idle; otherwise (a response left to send, a close, a pipelined request) the trigger is
  pulled as before;
- **no body in reply to HEAD** (``Task``).
"""

from __future__ import annotations

import logging
import resource
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher, WSGITask

from tandem.serve.loop import Loop, SocketMap

logger = logging.getLogger("tandem.serve")

MAINTENANCE_INTERVAL = 1.0  # seconds between two sweeps for expired connections
ACCEPT_BATCH = 256  # connections accepted per turn of the loop, at most
FILES_RESERVE = 256  # descriptors kept for the database, logs, pools, ... above the connections


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpOptions:
    """How one HTTP server behaves (``tandem serve``'s HTTP flags)."""

    threads: int = 8  # request threads per server
    max_connections: int = 10_000  # open connections per server; more wait in the listen backlog
    header_timeout: float = 10.0  # from accept (or a request's first byte) to its last header
    keep_alive_timeout: float = 5.0  # an idle connection between requests is closed after this
    max_body_size: int = 100 * 1024 * 1024  # bytes; larger bodies are answered 413 unread
    forwarded_allow_ips: tuple[str, ...] = ()  # peers whose X-Forwarded-For/Proto are believed
    static: bool = True  # serve STATIC_URL (WhiteNoise)
    access_log: bool = True  # one INFO line per request on the ``tandem.access`` logger
    # Connections accepted per turn of the loop, at most. Several servers on one socket (web
    # interpreters) accept one each: a server that took a burst whole would serve every
    # kept-alive connection of it alone while the others idle (see ``handle_accept``).
    accept_batch: int = ACCEPT_BATCH


# Per request thread: the channel whose response was just written whole (``Task.service``), and
# whether waitress's service() then asked for the loop to be woken (``HTTPServer.pull_trigger``).
_finishing = threading.local()


class Task(WSGITask):  # type: ignore[misc]
    """waitress's WSGI task, sending no body in reply to ``HEAD``; tells the channel's
    ``service()`` when the response is complete.

    waitress sends whatever body the application returns, and Django returns the GET's body for
    a HEAD (its ``runserver`` and gunicorn drop it): on a kept-alive connection the client then
    reads that body as the start of the next response. The headers (``Content-Length`` included)
    stay those of the GET.
    """

    def write(self, data: bytes) -> None:
        super().write(b"" if self.request.command == "HEAD" else data)

    def finish(self) -> None:
        if self.request.command == "HEAD":
            self.chunked_response = False  # no last chunk either: there is no body
        super().finish()

    def service(self) -> None:
        super().service()
        _finishing.channel = self.channel


class Channel(HTTPChannel):  # type: ignore[misc]
    """One connection; knows since when it waits for the headers of its current request."""

    task_class = Task

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
        super().__init__(server, sock, addr, adj, map=map)
        self.request_started = self.creation_time  # a fresh connection: its headers are due
        self.begun = False  # has any byte of a request arrived yet?

    def received(self, data: bytes) -> bool:
        if data:
            if self.request is None and self.begun:
                self.request_started = time.time()  # the first byte of a keep-alive request
            self.begun = True
        return bool(super().received(data))

    def service(self) -> None:
        """waitress's ``service()`` (in a request thread), without the wake-up of the loop at its
        end when this thread can watch the connection for its next request itself."""
        _finishing.channel = None
        _finishing.woken = False
        try:
            super().service()
            deferred = _finishing.woken
        finally:
            _finishing.channel = None
            _finishing.woken = False
        if deferred and not self.server.loop.rearm(self):
            self.server.pull_trigger()

    def busy(self) -> bool:
        """A request is being served, or its response is still being sent."""
        return bool(self.requests or self.total_outbufs_len or self.close_when_flushed)

    def expired(self, now: float, header_timeout: float, keep_alive_timeout: float) -> bool:
        if self.will_close or self.busy():
            return False
        request = self.request
        if request is None:
            if not self.begun:  # connected, never sent a byte
                return bool(now - self.creation_time > header_timeout)
            return bool(now - self.last_activity > keep_alive_timeout)  # idle between requests
        if not request.headers_finished:
            return bool(now - self.request_started > header_timeout)
        return bool(now - self.last_activity > header_timeout)  # a request body that stalls


class Dispatcher(ThreadedTaskDispatcher):  # type: ignore[misc]
    """waitress's bounded thread pool, with daemon threads only where allowed."""

    def __init__(self, *, daemon: bool) -> None:
        super().__init__()
        self.daemon = daemon

    def start_new_thread(self, target: Any, thread_no: int) -> None:
        threading.Thread(
            target=target, name=f"tandem-http-{thread_no}", args=(thread_no,), daemon=self.daemon
        ).start()

    def busy(self) -> int:
        """Requests being served or waiting for a thread."""
        with self.lock:
            return int(max(self.active_count, 0) + len(self.queue))


class HTTPServer(TcpWSGIServer):  # type: ignore[misc]
    """waitress's TCP server on a socket that is already listening (possibly shared)."""

    channel_class = Channel

    def __init__(
        self,
        sock: socket.socket,
        application: Any,
        options: HttpOptions,
        *,
        daemon: bool,
        accepting: bool = True,
    ) -> None:
        """``accepting=False``: the socket listens only at ``accept_connections()``."""
        self.options = options
        adjustments = Adjustments(
            sockets=[sock],
            threads=options.threads,
            connection_limit=options.max_connections,
            channel_timeout=max(options.header_timeout, options.keep_alive_timeout),
            cleanup_interval=MAINTENANCE_INTERVAL,
            asyncore_use_poll=True,  # select() cannot watch descriptors above 1023
            asyncore_loop_timeout=MAINTENANCE_INTERVAL,
            max_request_body_size=options.max_body_size,
            clear_untrusted_proxy_headers=False,  # tandem.serve.proxies does it, when asked
            log_socket_errors=False,  # a client that goes away is no error of ours
            ident="tandem",
            backlog=1024,
        )
        dispatcher = Dispatcher(daemon=daemon)
        dispatcher.set_thread_count(options.threads)
        try:
            super().__init__(
                application,
                map=SocketMap(),
                _sock=sock,
                dispatcher=dispatcher,
                adj=adjustments,
                bind_socket=False,
                sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()),
                _start=accepting,
            )
        except BaseException:
            dispatcher.shutdown(timeout=1)
            raise
        self.dispatcher = dispatcher
        self.loop = Loop(self._map)

    def pull_trigger(self) -> None:
        """Wake the loop's thread; deferred to the end of ``Channel.service()`` when it is the
        wake-up after a complete response (the channel then re-arms itself, or wakes the loop)."""
        channel = getattr(_finishing, "channel", None)
        if channel is not None and not channel.requests:
            _finishing.woken = True
            return
        super().pull_trigger()

    def handle_accept(self) -> None:
        """Accept every waiting connection (up to ``options.accept_batch``), not waitress's one
        per turn of the loop: a turn costs time in proportion to the open connections, so a burst
        of thousands would otherwise sit in the listen backlog, and a full backlog drops the next
        client's SYN (a second's wait, then three).

        Servers sharing a socket (``--web-interpreters``) accept one per turn: a connection is
        kept alive, so whoever accepts it serves all its requests, and a server that took a
        burst of 16 whole would serve them on one core while the others idle. One at a time,
        they take turns (and a busy server turns less often, so takes fewer)."""
        for _ in range(self.options.accept_batch):
            if len(self._map) >= self.adj.connection_limit:
                return
            accepted = len(self.active_channels)
            super().handle_accept()
            if len(self.active_channels) == accepted:  # nothing waiting (or a bad socket)
                return

    def maintenance(self, now: float) -> None:
        header, keep_alive = self.options.header_timeout, self.options.keep_alive_timeout
        for channel in list(self.active_channels.values()):
            if channel.expired(now, header, keep_alive):
                channel.will_close = True  # the loop closes it (waitress's own way)
                self.loop.touch(channel._fileno)

    def in_flight(self) -> int:
        return self.dispatcher.busy()

    def stop_accepting(self) -> None:
        """Close the listening socket (this server's copy) and stop watching it."""
        self.accepting = False
        wasyncore.dispatcher.close(self)  # not self.close(): the trigger is still needed

    def drain(self) -> None:
        """Serve the requests in flight to the end, closing every connection as it turns idle.

        Returns once no connection is left: a request that never ends keeps it waiting (the
        caller decides how long it waits for this).
        """
        while self.active_channels:
            for channel in list(self.active_channels.values()):
                if not channel.busy() and not channel.will_close:
                    channel.will_close = True
                    self.loop.touch(channel._fileno)
            self.loop.turn(0.2)

    def finish(self, timeout: float = 5.0) -> None:
        """End the request threads (waiting up to ``timeout`` seconds for them) and release the
        loop's descriptors; after ``drain()``, when no request runs any more."""
        self.dispatcher.shutdown(cancel_pending=True, timeout=timeout)
        wasyncore.close_all(self._map)
        self.loop.close()


class _StopWatcher(wasyncore.file_dispatcher):  # type: ignore[misc]
    """Watches the stop pipe without reading it (every server of the process watches it)."""

    fired = False

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.fired = True


def serve(server: HTTPServer, stop_fd: int) -> None:
    """Run the server's loop until ``stop_fd`` is readable, then stop accepting connections.

    The requests in flight go on: call ``server.drain()`` next.
    """
    watcher = _StopWatcher(stop_fd, server._map)
    try:
        while not watcher.fired:
            server.loop.turn(MAINTENANCE_INTERVAL)
    finally:
        watcher.close()
        server.stop_accepting()


def listen(host: str, port: int, backlog: int = 1024, *, now: bool = True) -> socket.socket:
    """A listening TCP socket (IPv6 when ``host`` is an IPv6 address), SO_REUSEADDR set.

    ``now=False``: only bound (the address is taken, a bad one fails at once); it listens when
    its server starts accepting (``HTTPServer.accept_connections``). Until then a client is
    refused at once, never left waiting in the backlog while the process is still starting."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        if now:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def raise_open_files_limit(connections: int) -> int:
    """Raise this process's soft limit of open files towards what ``connections`` need (never
    past the hard limit); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + FILES_RESERVE
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            logger.warning("could not raise the open files limit to %d: %s", wanted, exc)
    return int(soft)


def quiet_waitress() -> None:
    """waitress warns on every request that waits for a thread ("Task queue depth is N"): under
    load that is every request. Keep its warnings above that, unless the project set a level."""
    queue_logger = logging.getLogger("waitress.queue")
    if queue_logger.level == logging.NOTSET:
        queue_logger.setLevel(logging.ERROR)


__all__ = [
    "Channel",
    "Dispatcher",
    "HTTPServer",
    "HttpOptions",
    "listen",
    "raise_open_files_limit",
    "serve",
]
