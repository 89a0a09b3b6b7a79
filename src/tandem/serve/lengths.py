"""``Content-Length`` on Django's whole responses, so that the connection is kept alive.

Django's ``WSGIHandler`` returns an ``HttpResponse`` without a ``Content-Length`` header, and the
response object itself as the body: an iterable of unknown length. waitress then answers an
HTTP/1.1 request with a chunked body *and closes the connection* after it, so every request of a
keep-alive client (a browser, a load balancer keeping connections) pays for a new TCP connection:
accept, a new channel, a close — more than a third of the server's CPU per request on a small page
(measured on ``bench/web.py``'s view). ``gunicorn``'s sync worker closes every connection too;
uvicorn, granian and Django's ``runserver`` send the length.

``ContentLength`` sits directly around the project's application. When it returns an
``HttpResponse`` or a subclass (not a ``StreamingHttpResponse`` or ``FileResponse``: those are
streamed as before) and sets no ``Content-Length`` itself, the length of its content is added to
the headers and the content handed to the server in one piece. Statuses without a body (1xx,
204, 304) are left alone. A project with Django's
``CommonMiddleware`` (``startproject``'s default) has the header already: nothing changes for it.

To add the header, ``start_response`` is held back until the application returns (WSGI allows a
server to send the headers only with the first body bytes anyway); an application that writes
through the ``write()`` callable, or calls ``start_response`` again with ``exc_info``, gets the
server's own ``start_response`` from then on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

NO_BODY = ("1", "204", "304")  # status prefixes of responses that carry no body


class ContentLength:
    """WSGI middleware: ``Content-Length`` on Django's non-streaming responses."""

    def __init__(self, app: WSGIApplication) -> None:
        from django.http import HttpResponse

        self.app = app
        self.response_class = HttpResponse

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        held: list[Any] = []  # [status, headers]: start_response not passed on yet

        def write(data: bytes) -> None:
            release()(data)

        def release() -> Callable[[bytes], object]:
            status, headers = held
            held.clear()
            return start_response(status, headers)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if exc_info is not None:  # the server decides (it may have sent headers already)
                held.clear()
                return start_response(status, headers, exc_info)
            held[:] = [status, headers]
            return write

        body = self.app(environ, start)
        if not held:  # nothing held back (or already released through write())
            return body
        status, headers = held
        if (
            isinstance(body, self.response_class)
            and not status.startswith(NO_BODY)
            and not any(name.lower() == "content-length" for name, _ in headers)
        ):
            content = body.content
            held[1] = [*headers, ("Content-Length", str(len(content)))]
            release()
            return _Whole(content, body)
        release()
        return body


class _Whole:
    """A response's content in one piece; closes the response (Django's request_finished:
    database connections handed back) when the server is done with it."""

    __slots__ = ("content", "response")

    def __init__(self, content: bytes, response: Any) -> None:
        self.content = content
        self.response = response

    def __iter__(self) -> Iterator[bytes]:
        if self.content:
            yield self.content

    def close(self) -> None:
        self.response.close()
