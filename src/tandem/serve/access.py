"""The access log: one line per request on the ``tandem.access`` logger, at INFO.

``127.0.0.1 "GET /ping/?x=1 HTTP/1.1" 200 12 1.3ms``: the client (after trusted proxy headers),
the request line, the status, the body bytes sent and the time from the request reaching the
application to the last byte handed to the server. It goes wherever tandem's log goes (stderr by
default, in tandem's format), so ``LOGGING`` can route, silence or reformat it like any logger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("tandem.access")


class AccessLog:
    """WSGI middleware that logs every request once its response is done."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not logger.isEnabledFor(logging.INFO):
            return self.app(environ, start_response)
        started = time.perf_counter()
        seen: dict[str, str] = {}

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"] = status.split(" ", 1)[0]
            for name, value in headers:
                if name.lower() == "content-length":
                    seen["length"] = value
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, start)
        except BaseException:
            _log(environ, "500", "-", started)
            raise
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None and type(body) is wrapper:
            # A file handed to the server to send itself (static files): unwrapped, or it
            # would be read through Python; its length is in the headers.
            _log(environ, seen.get("status", "-"), seen.get("length", "-"), started)
            return body
        return _Logged(body, environ, seen, started)


class _Logged:
    """The response body, passed through; logs the request when the server closes it."""

    def __init__(
        self, body: Iterable[bytes], environ: WSGIEnvironment, seen: dict[str, str], started: float
    ) -> None:
        self.body = body
        self.environ = environ
        self.seen = seen
        self.started = started
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.body:
            self.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            _log(self.environ, self.seen.get("status", "-"), str(self.sent), self.started)


def _log(environ: WSGIEnvironment, status: str, sent: str, started: float) -> None:
    path = environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    target = f"{path}?{query}" if query else path
    logger.info(
        '%s "%s %s %s" %s %s %.1fms',
        environ.get("REMOTE_ADDR", "-"),
        environ.get("REQUEST_METHOD", "-"),
        target,
        environ.get("SERVER_PROTOCOL", "-"),
        status,
        sent,
        (time.perf_counter() - started) * 1000,
    )
