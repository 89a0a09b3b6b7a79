"""``tandem serve``: the HTTP server and the supervisor in one process.

The HTTP side is a threaded WSGI server in the main interpreter serving the project's
``WSGI_APPLICATION``; the supervisor runs its pools beside it. An enqueue from a view wakes the
supervisor directly after commit, so a task starts with no polling delay.

Shutdown: the first ``stop()`` stops accepting connections, lets in-flight requests finish and
drains in-flight tasks for up to ``grace`` seconds, then releases what is left back to READY; a
second ``stop()`` releases at once.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from django.core.servers.basehttp import get_internal_wsgi_application

from tandem.worker.supervisor import Supervisor

logger = logging.getLogger("tandem.serve")


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)


class ThreadedWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = False  # in-flight requests finish on shutdown (server_close joins them)
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 128


def server_class(host: str) -> type[ThreadedWSGIServer]:
    if ":" not in host:
        return ThreadedWSGIServer
    return type("ThreadedWSGIServerV6", (ThreadedWSGIServer,), {"address_family": socket.AF_INET6})


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--bind must be ADDRESS:PORT (e.g. 127.0.0.1:8000), got {bind!r}.")
    return host.strip("[]") or "127.0.0.1", int(port)


class TandemServer:
    def __init__(self, supervisor: Supervisor, bind: str, grace: float) -> None:
        self.supervisor = supervisor
        self.grace = grace
        host, port = parse_bind(bind)
        self.httpd = server_class(host)((host, port), QuietHandler)
        self.httpd.set_app(get_internal_wsgi_application())
        self._stops = 0
        self._stop_requested = threading.Event()
        self._http_thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="tandem-http"
        )
        self._supervisor_thread = threading.Thread(
            target=self.supervisor.run, name="tandem-supervisor"
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    @property
    def stop_count(self) -> int:
        return self._stops

    def stop(self) -> None:
        """Signal-safe: only records the request; ``run()`` acts on it."""
        self._stops += 1
        if self._stops > 1:
            self.supervisor.request_stop(force=True)
        self._stop_requested.set()

    def run(self) -> None:
        self.supervisor.start()
        self._supervisor_thread.start()
        self._http_thread.start()
        while not self._stop_requested.wait(0.5):
            if not self._supervisor_thread.is_alive():
                logger.error("the supervisor stopped unexpectedly; shutting down")
                break
        self._shutdown()

    def _shutdown(self) -> None:
        logger.info(
            "stopping: no new connections; draining requests and tasks (grace %gs)", self.grace
        )
        self.httpd.shutdown()  # stop accepting
        self.supervisor.request_stop()  # drain tasks (a second stop() forces)
        self._supervisor_thread.join(self.grace)
        if self._supervisor_thread.is_alive():
            logger.warning("grace period over: releasing in-flight tasks back to READY")
            self.supervisor.request_stop(force=True)
            self._supervisor_thread.join()
        self.httpd.server_close()  # joins in-flight request threads
        self._http_thread.join()
