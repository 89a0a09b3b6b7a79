"""``tandem serve``'s HTTP side as a client meets it: keep-alive, 2,000 clients that never finish
their headers (bounded threads, normal requests still answered, the header deadline dropping
them), 413 without reading the body, proxy headers believed only from allowed peers, static files
(DEBUG finders, and ``collectstatic`` output with caching headers and compressed variants), the
access log, and a SIGTERM that lets the request in flight finish."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support import oversized_post
from tests.support.processes import ROOT
from tests.support.serving import ARRANGEMENTS, Servers, serve_env, wait_until

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]
arrangements = pytest.mark.parametrize("arrangement", ARRANGEMENTS)

SLOW_CLIENTS = 2000
MAX_THREADS = 64  # the bound for the whole process under slow clients


def request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    """One request on a fresh connection; the response is read (``.data``) and closed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        response.data = response.read()  # type: ignore[attr-defined]
        return response
    finally:
        connection.close()


def proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def open_sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd).startswith("socket:")
    return count


class SlowClients:
    """``count`` connections that send a request line and then one header byte per second,
    never finishing their headers (slowloris); bounded: they stop when ``close()`` is called."""

    def __init__(self, port: int, count: int) -> None:
        self.sockets = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(b"GET /ping/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sock.setblocking(False)
            self.sockets.append(sock)
        self.dropped: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.wait(1.0):
            for index, sock in enumerate(self.sockets):
                if index in self.dropped:
                    continue
                try:
                    if sock.recv(1024) == b"":
                        self.dropped.add(index)
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    self.dropped.add(index)
                    continue
                try:
                    sock.send(b"x")
                except OSError:
                    self.dropped.add(index)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for sock in self.sockets:
            sock.close()


@arrangements
def test_two_requests_share_one_kept_alive_connection(servers: Servers, arrangement: str) -> None:
    server, port = servers.serve(arrangement=arrangement)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.connect()
    client_port = connection.sock.getsockname()[1]
    answers = []
    for _ in range(2):
        connection.request("GET", "/ping/")
        response = connection.getresponse()
        answers.append((response.version, response.status, response.read()))
        assert connection.sock is not None  # http.client keeps the socket: not closed
        assert connection.sock.getsockname()[1] == client_port
    connection.close()

    assert answers == [(11, 200, b"running=0")] * 2
    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.output()
    # The access log, in tandem's log format, names the request.
    assert ' INFO tandem.access 127.0.0.1 "GET /ping/ HTTP/1.1" 200 9 ' in server.stderr


@arrangements
def test_slow_clients_hold_no_thread_and_are_dropped_at_the_header_deadline(
    servers: Servers, arrangement: str
) -> None:
    server, port = servers.serve("--header-timeout", "8", arrangement=arrangement)
    slow = SlowClients(port, SLOW_CLIENTS)
    try:
        wait_until(
            lambda: open_sockets(server.pid) >= SLOW_CLIENTS,
            "the server to hold every slow connection",
            alive=[server],
        )
        threads = proc_status(server.pid, "Threads")
        # Normal requests, each on a fresh connection, are answered meanwhile ...
        answers = [request(port, "GET", "/ping/").status for _ in range(10)]
        # ... while the slow clients are still connected (they were accepted, not left queued).
        still_held = open_sockets(server.pid)

        assert answers == [200] * 10
        assert still_held >= SLOW_CLIENTS
        assert threads <= MAX_THREADS, threads
        # The header deadline drops every one of them, though each keeps sending.
        wait_until(
            lambda: len(slow.dropped) == SLOW_CLIENTS,
            "the header deadline to drop the slow clients",
            alive=[server],
        )
    finally:
        slow.close()
    assert request(port, "GET", "/ping/").status == 200
    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.output()


def test_a_body_over_the_limit_is_answered_413_unread(servers: Servers) -> None:
    server, port = servers.serve("--max-body-size", "1K")
    answer = oversized_post(port, "/ping/")

    assert answer.startswith(b"HTTP/1.1 413 Request Entity Too Large"), answer
    assert request(port, "GET", "/ping/").status == 200
    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.output()


@arrangements
def test_chunked_bodies_both_ways_on_one_kept_alive_connection(
    servers: Servers, arrangement: str
) -> None:
    """A request body sent chunked (no Content-Length) reaches the application whole and the
    connection stays open for the next request; a streaming response of unknown length goes back
    chunked."""
    server, port = servers.serve(arrangement=arrangement)
    parts = [b"x" * 1000, b"y" * 10, b"z" * 4000]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    # An iterable body without Content-Length: http.client sends it chunked.
    connection.request(
        "POST",
        "/echo/",
        body=iter(parts),
        encode_chunked=True,
        headers={"Transfer-Encoding": "chunked", "Content-Type": "application/octet-stream"},
    )
    echoed = connection.getresponse()
    body = echoed.read()
    client_port = connection.sock.getsockname()[1]
    connection.request("GET", "/stream/?count=4")
    reused = connection.sock.getsockname()[1] == client_port  # the kept-alive connection
    streamed = connection.getresponse()
    chunked = streamed.getheader("Transfer-Encoding")
    streamed_body = streamed.read()
    connection.close()

    assert (echoed.status, body) == (200, b"5010 " + b"".join(parts))
    assert (streamed.status, chunked) == (200, "chunked")
    assert streamed_body == b"part 0;part 1;part 2;part 3;"
    assert reused
    # A response of unknown length ends its connection after the last chunk (waitress's rule).
    assert streamed.getheader("Connection") == "close"
    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.output()


FORWARDED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


@pytest.mark.parametrize(
    ("flags", "seen"),
    [
        (("--forwarded-allow-ips", "127.0.0.1"), "203.0.113.7 https 203.0.113.7"),
        (("--forwarded-allow-ips", "10.0.0.0/8,192.0.2.1"), "127.0.0.1 http -"),
        ((), "127.0.0.1 http 203.0.113.7"),
    ],
    ids=["trusted-peer", "untrusted-peer", "off"],
)
def test_proxy_headers_are_believed_only_from_allowed_peers(
    servers: Servers, flags: tuple[str, ...], seen: str
) -> None:
    server, port = servers.serve(*flags)

    response = request(port, "GET", "/whoami/", FORWARDED)

    # trusted: applied; untrusted: removed before the application; off: passed through as sent.
    assert (response.status, response.data.decode()) == (200, seen)  # type: ignore[attr-defined]
    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.output()


@arrangements
def test_debug_serves_static_files_from_the_finders(servers: Servers, arrangement: str) -> None:
    server, port = servers.serve(arrangement=arrangement, TANDEM_TEST_DEBUG="1")

    own = request(port, "GET", "/static/serve-tests/hello.css")
    admin = request(port, "GET", "/static/admin/css/base.css")

    assert own.status == 200, own.data  # type: ignore[attr-defined]
    assert own.getheader("Content-Type") == 'text/css; charset="utf-8"'
    assert b"color: rgb(1, 2, 3)" in own.data  # type: ignore[attr-defined]
    assert admin.status == 200
    assert request(port, "GET", "/static/serve-tests/missing.css").status == 404
    assert "  static: /static/ from the finders (DEBUG)" in server.stdout
    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.output()


def collectstatic(root: Path) -> dict[str, str]:
    """``collectstatic`` into ``root`` with the serve tests' settings; the manifest's paths."""
    subprocess.run(
        [sys.executable, "-m", "django", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=serve_env(TANDEM_TEST_STATIC_ROOT=str(root)),
        check=True,
        timeout=120,
    )
    return dict(json.loads((root / "staticfiles.json").read_text())["paths"])


def test_collected_static_files_are_served_with_caching_headers_and_compression(
    servers: Servers, tmp_path: Path
) -> None:
    root = tmp_path / "static"
    hashed = collectstatic(root)["serve-tests/hello.css"]
    assert (root / f"{hashed}.gz").exists()  # a compressed variant is there to be served
    server, port = servers.serve(TANDEM_TEST_STATIC_ROOT=str(root))

    versioned = request(port, "GET", f"/static/{hashed}", {"Accept-Encoding": "gzip"})
    plain = request(port, "GET", "/static/serve-tests/hello.css")

    assert versioned.status == 200
    assert versioned.getheader("Content-Encoding") == "gzip"
    assert versioned.getheader("Cache-Control") == "max-age=315360000, public, immutable"
    assert plain.status == 200
    assert plain.getheader("Content-Encoding") is None  # not asked for
    assert plain.getheader("Cache-Control") == "max-age=60, public"
    assert b"color: rgb(1, 2, 3)" in plain.data  # type: ignore[attr-defined]
    assert f"  static: /static/ from STATIC_ROOT ({root})" in server.stdout
    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.output()


def test_no_static_leaves_static_urls_to_the_application(servers: Servers, tmp_path: Path) -> None:
    root = tmp_path / "static"
    collectstatic(root)
    server, port = servers.serve("--no-static", TANDEM_TEST_STATIC_ROOT=str(root))

    assert request(port, "GET", "/static/serve-tests/hello.css").status == 404
    assert "  static: not served (--no-static)" in server.stdout
    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.output()


@arrangements
def test_sigterm_lets_the_request_in_flight_finish(
    servers: Servers, tmp_path: Path, arrangement: str
) -> None:
    marker, flag = tmp_path / "in-view", tmp_path / "finish"
    server, port = servers.serve(arrangement=arrangement, grace=60)
    outcome: list[object] = []

    def hang() -> None:
        try:
            response = request(port, "GET", f"/hang/?marker={marker}&flag={flag}")
            outcome.append((response.status, response.data))  # type: ignore[attr-defined]
        except OSError as exc:
            outcome.append(exc)

    client = threading.Thread(target=hang, daemon=True)
    client.start()
    wait_until(marker.exists, "the request to reach its view", alive=[server])

    server.send(signal.SIGTERM)
    wait_until(lambda: "stopping" in server.stderr, "the server to start stopping", alive=[server])
    refused = socket.socket()
    wait_until(
        lambda: refused.connect_ex(("127.0.0.1", port)) != 0, "the port to close", alive=[server]
    )
    refused.close()
    flag.touch()

    assert server.wait() == 0, server.output()
    client.join(30)
    assert outcome == [(200, b"released")]
