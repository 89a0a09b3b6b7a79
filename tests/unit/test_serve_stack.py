"""What ``tandem serve`` wraps around the project's application, and its HTTP flags: trusted
proxy headers, the access log, and the exact messages of bad flag values."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from tandem.serve.access import AccessLog
from tandem.serve.options import parse_size
from tandem.serve.proxies import TrustedProxies, parse_allowed


def echo(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    seen = " ".join(
        str(environ.get(key, "-"))
        for key in ("REMOTE_ADDR", "wsgi.url_scheme", "HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED")
    )
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [seen.encode()]


def call(app: Any, peer: str, **headers: str) -> str:
    environ = {"REMOTE_ADDR": peer, "wsgi.url_scheme": "http", "REQUEST_METHOD": "GET"}
    environ.update({f"HTTP_{name.upper()}": value for name, value in headers.items()})
    statuses: list[str] = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    return f"{statuses[0].split()[0]} {body.decode()}"


PROXIED = {"X_FORWARDED_FOR": "198.51.100.9, 203.0.113.7", "X_FORWARDED_PROTO": "https"}


@pytest.mark.parametrize(
    ("peer", "seen"),
    [
        # In 10.0.0.0/8: the last hop is the client; the proxy's other headers are left alone.
        ("10.1.2.3", "200 203.0.113.7 https 203.0.113.7 for=1.2.3.4"),
        ("192.0.2.1", "200 203.0.113.7 https 203.0.113.7 for=1.2.3.4"),
        ("::ffff:10.1.2.3", "200 203.0.113.7 https 203.0.113.7 for=1.2.3.4"),  # IPv4-mapped
        ("192.0.2.2", "200 192.0.2.2 http - -"),  # not allowed: headers removed
        ("not-an-address", "200 not-an-address http - -"),
    ],
)
def test_proxy_headers_from_allowed_peers_only(peer: str, seen: str) -> None:
    app = TrustedProxies(echo, parse_allowed("10.0.0.0/8, 192.0.2.1"))

    assert call(app, peer, **PROXIED, FORWARDED="for=1.2.3.4") == seen


def test_any_peer_with_a_star_and_a_malformed_proto_is_refused() -> None:
    app = TrustedProxies(echo, parse_allowed("*"))

    assert call(app, "192.0.2.2", **PROXIED) == "200 203.0.113.7 https 203.0.113.7 -"
    assert call(app, "192.0.2.2", X_FORWARDED_PROTO="https, http").startswith("400 ")


def test_the_access_log_names_the_request_after_the_response(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrapped = AccessLog(TrustedProxies(echo, ("127.0.0.1",)))
    environ = {
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/ping/",
        "QUERY_STRING": "a=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_X_FORWARDED_FOR": "203.0.113.7",
    }
    with caplog.at_level(logging.INFO, logger="tandem.access"):
        body = wrapped(dict(environ), lambda status, headers, exc_info=None: None)
        assert not caplog.records  # not before the body is sent
        sent = b"".join(body)
        body.close()  # type: ignore[attr-defined]

    (record,) = caplog.records
    assert record.getMessage().startswith(f'203.0.113.7 "GET /ping/?a=1 HTTP/1.1" 200 {len(sent)} ')
    assert record.getMessage().endswith("ms")


@pytest.mark.parametrize(
    ("value", "size"), [("1048576", 1048576), ("512K", 524288), ("100M", 104857600), ("1g", 2**30)]
)
def test_sizes(value: str, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--threads", "0"], "--threads must be >= 1, got 0."),
        (["--max-connections", "0"], "--max-connections must be >= 1, got 0."),
        (["--header-timeout", "0"], "--header-timeout must be > 0, got 0."),
        (["--keep-alive-timeout", "-1"], "--keep-alive-timeout must be > 0, got -1."),
        (
            ["--max-body-size", "lots"],
            "--max-body-size must be a size like 1048576, 512K, 100M or 1G, got 'lots'.",
        ),
        (
            ["--forwarded-allow-ips", "127.0.0.1,nope"],
            "--forwarded-allow-ips: 'nope' is not an IP address or network "
            "(e.g. 127.0.0.1,10.0.0.0/8, or * for any peer).",
        ),
    ],
)
def test_bad_http_flags_are_refused_with_an_exact_message(flags: list[str], message: str) -> None:
    with pytest.raises(CommandError) as raised:
        call_command("tandem", "serve", "--bind", "127.0.0.1:0", *flags)

    assert str(raised.value) == message


def django_view(response: Any) -> Any:
    """A WSGI app answering like Django's handler: start_response, then the response object."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
        return response

    return app


def served(app: Any, method: str = "GET") -> tuple[str, list[tuple[str, str]], bytes, Any]:
    started: list[Any] = []
    environ = {"REQUEST_METHOD": method, "PATH_INFO": "/"}
    body = app(environ, lambda status, headers, exc_info=None: started.append((status, headers)))
    content = b"".join(body)
    return started[0][0], started[0][1], content, body


def test_whole_django_responses_get_a_content_length() -> None:
    from django.http import HttpResponse

    from tandem.serve.lengths import ContentLength

    response = HttpResponse("x" * 2000)
    status, headers, content, body = served(ContentLength(django_view(response)))
    assert status == "200 OK"
    assert ("Content-Length", "2000") in headers
    assert content == b"x" * 2000
    closed: list[bool] = []
    response.close = lambda: closed.append(True)  # type: ignore[method-assign]
    body.close()
    assert closed == [True]  # Django's request_finished still runs


def test_streams_set_lengths_and_bodiless_statuses_are_left_alone() -> None:
    from django.http import HttpResponse, HttpResponseNotModified, StreamingHttpResponse

    from tandem.serve.lengths import ContentLength

    stream = StreamingHttpResponse(iter([b"a", b"b"]))
    _, headers, content, body = served(ContentLength(django_view(stream)))
    assert body is stream and content == b"ab"
    assert not any(name.lower() == "content-length" for name, _ in headers)

    given = HttpResponse("abc", headers={"Content-Length": "3"})
    _, headers, _, body = served(ContentLength(django_view(given)))
    assert body is given and [n for n, _ in headers].count("Content-Length") == 1

    _, headers, _, _ = served(ContentLength(django_view(HttpResponseNotModified())))
    assert not any(name.lower() == "content-length" for name, _ in headers)

    # Anything else (a list from a plain WSGI app) is passed through as it was.
    status, headers, content, _ = served(ContentLength(echo))
    assert status == "200 OK" and headers == [("Content-Type", "text/plain")]


def test_an_app_writing_through_write_gets_its_headers_first() -> None:
    from tandem.serve.lengths import ContentLength

    sent: list[object] = []

    def writer(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])(b"early ")
        return [b"late"]

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        sent.append(status)
        return sent.append

    body = ContentLength(writer)({"REQUEST_METHOD": "GET"}, start_response)
    assert sent == ["200 OK", b"early "] and list(body) == [b"late"]
