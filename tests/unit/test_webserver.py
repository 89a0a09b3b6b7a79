"""The HTTP server of ``tandem serve``: request threads are reused (so are their database
connections, as ``CONN_MAX_AGE`` allows) and end when released."""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Iterable
from typing import Any

from tandem.webserver import Server, listen, serve


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(threading.get_ident()).encode()]


def get(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def test_request_threads_are_reused_then_released() -> None:
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = Server(sock, app, daemon_threads=False)
    stop_r, stop_w = os.pipe()
    accepting = threading.Thread(target=serve, args=(server, stop_r))
    accepting.start()
    try:
        threads = []
        for _ in range(5):
            threads.append(get(port))
            assert server.wait_idle(10)  # the thread is waiting for the next request by now
        assert len(set(threads)) == 1, threads  # one thread served all five
        assert server.served == 5
    finally:
        os.write(stop_w, b"stop")
        accepting.join(10)
        sock.close()
        os.close(stop_r)
        os.close(stop_w)
    assert server.wait_idle(10)
    server.release_threads(10)
    alive = [t for t in threading.enumerate() if t.name == "tandem-http-request"]
    assert not alive, alive
