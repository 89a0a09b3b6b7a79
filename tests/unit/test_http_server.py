"""The HTTP server of ``tandem serve`` (waitress, plus tandem's header deadline, stop and drain),
in this process on a port the OS picks: keep-alive (re-armed by the request thread, without waking
the loop), pipelined requests answered in order, large and chunked bodies, HEAD and
``Connection: close``, the header deadline against a client that trickles its headers, the idle
keep-alive timeout, 413 without reading the body, bounded threads, and a stop that lets the
request in flight finish."""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from tandem.serve.http import HttpOptions, HTTPServer, listen, serve
from tests.support import oversized_post

BOUND = 30.0  # generous bound for "it happened" waits; never a speed assertion


BIG = 8 * 1024 * 1024  # bytes: more than the sockets' buffers hold


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path.startswith("/path/"):
        body = path.encode()
    elif path == "/big/":
        body = b"x" * BIG
    elif path == "/stream/":  # no length: waitress sends it chunked, then closes
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (part for part in (b"one ", b"two ", b"three"))
    elif path == "/django/":
        return DJANGO_APP(environ, start_response)
    else:
        body = b""
    if body:
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/wait/":
        environ_gate = GATES[environ["QUERY_STRING"]]
        environ_gate[0].set()
        environ_gate[1].wait(BOUND)
    body = f"{environ['REMOTE_PORT']} {threading.current_thread().name}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


GATES: dict[str, tuple[threading.Event, threading.Event]] = {}


def django_app(environ: dict[str, Any], start_response: Any) -> Any:
    """Answers like Django's handler: an ``HttpResponse`` without a ``Content-Length``."""
    from django.http import HttpResponse

    response = HttpResponse(f"django {environ['REQUEST_METHOD']}")
    start_response("200 OK", list(response.items()))
    return response


def _django_app() -> Any:
    from tandem.serve.lengths import ContentLength

    return ContentLength(django_app)


DJANGO_APP = _django_app()


class Running:
    def __init__(self, server: HTTPServer, port: int, stop_w: int, thread: threading.Thread):
        self.server, self.port, self._stop_w, self.thread = server, port, stop_w, thread

    def stop(self) -> None:
        os.write(self._stop_w, b"stop")


@contextmanager
def running(**options: Any) -> Iterator[Running]:
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = HTTPServer(sock, app, HttpOptions(**options), daemon=True)
    stop_r, stop_w = os.pipe()

    def run() -> None:
        serve(server, stop_r)
        server.drain()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    handle = Running(server, port, stop_w, thread)
    try:
        yield handle
    finally:
        handle.stop()
        thread.join(BOUND)
        server.finish(timeout=5)
        os.close(stop_r)
        os.close(stop_w)
    assert not thread.is_alive()


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (reads EOF or a reset), without blocking."""
    sock.setblocking(False)
    try:
        return sock.recv(1024) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_two_requests_share_one_kept_alive_connection() -> None:
    with running() as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        answers = []
        for _ in range(2):
            connection.request("GET", "/")
            response = connection.getresponse()
            assert (response.status, response.version) == (200, 11)
            assert response.getheader("Connection") != "close"
            answers.append(response.read().decode().split()[0])
        connection.close()

    assert answers[0] == answers[1]  # the same client port: one TCP connection


def test_kept_alive_requests_do_not_wake_the_loop() -> None:
    """The request thread sends a small response and watches the connection for the next request
    itself: the loop's trigger is not pulled per request."""
    with running() as server:
        pulls: list[int] = []
        trigger = server.server.trigger
        pull = trigger.pull_trigger
        trigger.pull_trigger = lambda *args: (pulls.append(1), pull(*args))
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        ports = set()
        for n in range(20):
            connection.request("GET", f"/path/{n}")
            response = connection.getresponse()
            assert response.read() == f"/path/{n}".encode()
            connection.request("GET", "/")
            ports.add(connection.getresponse().read().decode().split()[0])
        connection.close()

    assert len(ports) == 1  # one connection
    # Woken once per request before (40); none is the rule now. A loaded machine may still hand
    # the odd request back to the loop (seen: 1 and 2 in 40, the connection not yet idle when its
    # thread finished), so some are allowed, never one per request.
    assert len(pulls) <= 10, pulls


def read_response(sock: socket.socket) -> tuple[bytes, bytes, bytes]:
    """One response with a ``Content-Length`` from ``sock``: (status line, headers, body); what
    follows it stays unread."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"closed after {head!r}"
        head += byte
    status, _, headers = head.partition(b"\r\n")
    length = int(headers.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    body = b""
    while len(body) < length:
        chunk = sock.recv(min(65536, length - len(body)))
        assert chunk, "closed in the body"
        body += chunk
    return status, headers, body


def test_pipelined_requests_are_answered_in_order_on_the_same_connection() -> None:
    with running() as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(
            b"".join(f"GET /path/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in range(5))
        )
        bodies = [read_response(sock)[2] for _ in range(5)]
        sock.sendall(b"GET /path/after HTTP/1.1\r\nHost: x\r\n\r\n")
        last = read_response(sock)[2]
        sock.close()

    assert bodies == [f"/path/{n}".encode() for n in range(5)]
    assert last == b"/path/after"


def test_a_large_response_then_another_request_on_the_same_connection() -> None:
    with running() as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.sendall(b"GET /big/ HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)  # the server fills the socket; the loop's thread sends the rest
        status, _, body = read_response(sock)
        sock.sendall(b"GET /path/next HTTP/1.1\r\nHost: x\r\n\r\n")
        after = read_response(sock)
        sock.close()

    assert status == b"HTTP/1.1 200 OK" and len(body) == BIG and body == b"x" * BIG
    assert after[2] == b"/path/next"


def test_a_chunked_response_and_connection_close_end_the_connection() -> None:
    with running() as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/stream/")
        response = connection.getresponse()
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert response.read() == b"one two three"
        assert response.will_close  # waitress closes after a body of unknown length
        connection.close()

        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"GET /path/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_response(sock)[2] == b"/path/last"
        assert sock.recv(1) == b""  # closed by the server
        sock.close()


def test_django_responses_keep_the_connection_and_head_sends_no_body() -> None:
    with running() as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.connect()
        port = connection.sock.getsockname()[1]
        answers = []
        for method in ("GET", "HEAD", "GET"):
            connection.request(method, "/django/")
            response = connection.getresponse()
            body = response.read()
            answers.append((response.status, response.getheader("Content-Length"), body))
            assert not response.will_close
        assert connection.sock is not None and connection.sock.getsockname()[1] == port
        connection.close()

    # HEAD: the GET's length, no body (a stray body would be read as the next response).
    assert answers == [(200, "10", b"django GET"), (200, "11", b""), (200, "10", b"django GET")]


def test_head_is_answered_without_a_body_and_keeps_the_connection() -> None:
    with running() as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"HEAD /path/abc HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += sock.recv(1)
        sock.sendall(b"GET /path/next HTTP/1.1\r\nHost: x\r\n\r\n")
        # The next bytes are the next response's (the HEAD's body was not sent).
        status, _, body = read_response(sock)
        sock.close()

        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("HEAD", "/stream/")  # no length: chunked, but not even a last chunk
        response = connection.getresponse()
        assert response.status == 200 and response.read() == b""
        connection.close()

    assert b"Content-Length: 9\r\n" in head  # the GET's length
    assert (status, body) == (b"HTTP/1.1 200 OK", b"/path/next")


def test_a_client_trickling_its_headers_is_dropped_at_the_header_deadline() -> None:
    with running(header_timeout=1.0) as server:
        slow = socket.create_connection(("127.0.0.1", server.port))
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        # One byte every 0.2 s: waitress's inactivity timeout alone would never fire.
        while not closed_by_peer(slow):
            assert time.monotonic() - started < BOUND, "never dropped"
            slow.setblocking(True)
            try:
                slow.sendall(b"X")
            except OSError:
                break
            time.sleep(0.2)
        slow.close()
        # Dropped after the deadline, not before it (no speed assertion: only the lower bound).
        assert time.monotonic() - started >= 1.0
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/")
        assert connection.getresponse().status == 200  # the server still answers
        connection.close()


def test_a_silent_connection_and_an_idle_kept_alive_one_are_closed() -> None:
    with running(header_timeout=1.0, keep_alive_timeout=1.0) as server:
        silent = socket.create_connection(("127.0.0.1", server.port))
        idle = socket.create_connection(("127.0.0.1", server.port))
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200 OK")

        wait_for(lambda: closed_by_peer(silent), "the silent connection to be closed")
        wait_for(lambda: closed_by_peer(idle), "the idle keep-alive connection to be closed")
        silent.close()
        idle.close()


def test_a_body_over_the_limit_is_answered_413_without_being_read() -> None:
    with running(max_body_size=1024) as server:
        answer = oversized_post(server.port, announced=10 * 1024 * 1024)

    assert answer.startswith(b"HTTP/1.1 413 Request Entity Too Large")


def test_many_waiting_connections_hold_no_thread_each() -> None:
    # A header deadline far beyond the test: on a loaded machine the default (10 s) dropped some.
    with running(threads=4, header_timeout=300) as server:
        threads_before = threading.active_count()
        waiting = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
        for sock in waiting:
            sock.sendall(b"GET / HTTP/1.1\r\n")  # headers never finished
        wait_for(lambda: len(server.server.active_channels) == 200, "200 connections")
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/")
        response = connection.getresponse()

        assert response.status == 200
        assert response.read().decode().split()[1].startswith("tandem-http-")
        assert threading.active_count() == threads_before
        connection.close()
        for sock in waiting:
            sock.close()


def test_a_turn_of_the_loop_asks_only_connections_that_may_have_changed() -> None:
    # A header deadline far beyond the test: on a loaded machine the default (10 s) dropped some.
    with running(header_timeout=300) as server:
        waiting = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(300)]
        for sock in waiting:
            sock.sendall(b"GET / HTTP/1.1\r\n")  # headers never finished: idle, readable
        loop = server.server.loop
        wait_for(lambda: len(server.server.active_channels) == 300, "300 connections")

        # Only the listening socket, the trigger and the stop watcher stay on the list.
        wait_for(lambda: len(loop.watch) == 3, "the idle connections to leave the watch list")
        assert sum(1 for flags in loop.flags.values() if flags) >= 300  # still registered
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/")
        assert connection.getresponse().status == 200  # and requests are served
        connection.close()
        for sock in waiting[:100]:
            sock.close()  # their descriptors are reused by the next connections
        wait_for(lambda: len(server.server.active_channels) == 200, "100 connections to close")
        again = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]
        for sock in again:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for sock in again:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK")
            sock.close()
        for sock in waiting[100:]:
            sock.close()


def test_a_stop_lets_the_request_in_flight_finish_and_closes_idle_connections() -> None:
    GATES["stop"] = (threading.Event(), threading.Event())
    entered, release = GATES["stop"]
    with running() as server:
        idle = socket.create_connection(("127.0.0.1", server.port))
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200 OK")
        outcome: list[object] = []

        def request() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=BOUND)
            connection.request("GET", "/wait/?stop")
            response = connection.getresponse()
            outcome.append((response.status, response.read()))
            connection.close()

        client = threading.Thread(target=request)
        client.start()
        assert entered.wait(BOUND)
        server.stop()

        wait_for(lambda: closed_by_peer(idle), "the idle connection to be closed")
        refused = socket.socket()
        assert refused.connect_ex(("127.0.0.1", server.port)) != 0  # no longer accepting
        refused.close()
        assert server.thread.is_alive()  # still draining the request in flight
        release.set()
        client.join(BOUND)
        server.thread.join(BOUND)

    assert len(outcome) == 1 and outcome[0][0] == 200  # type: ignore[index]
    idle.close()


def test_a_bound_socket_refuses_clients_until_its_server_accepts() -> None:
    """``tandem serve`` binds at start-up but listens only once its HTTP side serves: a client
    of a process still starting (its pools proving, under load for seconds) is refused at once,
    not left waiting in the backlog."""
    sock = listen("127.0.0.1", 0, now=False)
    port = sock.getsockname()[1]
    server = HTTPServer(sock, app, HttpOptions(), daemon=True, accepting=False)
    try:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=BOUND).close()
            raise AssertionError("a client was let in before the server accepted")
        except ConnectionRefusedError:
            pass
        server.accept_connections()
        socket.create_connection(("127.0.0.1", port), timeout=BOUND).close()
    finally:
        server.finish(timeout=5)
        sock.close()


def test_the_thread_front_listens_once_started() -> None:
    from tandem.serve.server import ThreadFront

    sock = listen("127.0.0.1", 0, now=False)
    port = sock.getsockname()[1]
    front = ThreadFront(sock, HttpOptions())
    stop_r, stop_w = os.pipe()
    try:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=BOUND).close()
            raise AssertionError("a client was let in before the front started")
        except ConnectionRefusedError:
            pass
        front.start(stop_r, lambda: None)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=BOUND)
        conn.request("GET", "/-/health/live")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        os.write(stop_w, b"stop")
        wait_for(front.ended, "the front to stop")
        os.close(stop_r)
        os.close(stop_w)
        sock.close()


def test_servers_sharing_a_socket_accept_one_connection_per_turn() -> None:
    """Web interpreters share the listening socket: each accepts one connection per turn of its
    loop, so a burst of kept-alive connections is spread over them instead of one taking all."""
    from tandem.serve.server import InterpreterFront

    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    one = HTTPServer(sock.dup(), app, HttpOptions(accept_batch=1), daemon=True)
    every = HTTPServer(sock.dup(), app, HttpOptions(), daemon=True)
    front = InterpreterFront(sock, 2, HttpOptions())
    try:
        one.handle_accept()
        assert len(one.active_channels) == 1
        every.handle_accept()
        assert len(every.active_channels) == 4  # the rest of the backlog, in one turn
        assert front.options.accept_batch == 1
    finally:
        for server in (one, every):
            server.finish(timeout=5)
        for fd in (*front._fds, front._wake_r, front._wake_w):
            os.close(fd)
        for client in clients:
            client.close()
        sock.close()
