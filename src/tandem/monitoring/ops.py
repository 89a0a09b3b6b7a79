"""``tandem serve``'s own endpoints, answered before the project's WSGI application sees a request.

- ``/-/health/live``: 200 while the process serves HTTP.
- ``/-/health/ready``: 200 when the task store answers and the supervisor runs (not stopping);
  503 with the reason otherwise — a load balancer stops sending traffic while serve drains.
- ``/-/metrics``: the Prometheus text format (store gauges and this process's counters); needs
  ``Authorization: Bearer <TANDEM_METRICS_TOKEN>``, and answers 403 while no token is set.

Every other path goes to the application unchanged. No Django middleware runs for these paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tandem.monitoring import health, metrics

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

PREFIX = "/-/"
TEXT = "text/plain; charset=utf-8"


class OpsApp:
    """Wraps a WSGI application with the ``/-/`` endpoints."""

    def __init__(
        self, app: WSGIApplication, supervisor: health.SupervisorProbe | None = None
    ) -> None:
        self.app = app
        self.supervisor = supervisor

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX):
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        if method != "GET":
            return _answer(start_response, "405 Method Not Allowed", b"GET only\n", Allow="GET")
        if path == "/-/health/live":
            return _answer(start_response, "200 OK", b"live\n")
        if path == "/-/health/ready":
            try:
                result = health.readiness(self.supervisor)
            finally:
                health.close_connections()
            code = "200 OK" if result.ready else "503 Service Unavailable"
            return _answer(start_response, code, result.text.encode())
        if path == "/-/metrics":
            return self._metrics(environ, start_response)
        return self.app(environ, start_response)

    def _metrics(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not metrics.token():
            return _answer(
                start_response,
                "403 Forbidden",
                b"metrics need a token: set TANDEM_METRICS_TOKEN in the settings and scrape with "
                b"'Authorization: Bearer <token>'\n",
            )
        if not metrics.bearer_ok(environ.get("HTTP_AUTHORIZATION")):
            return _answer(
                start_response,
                "401 Unauthorized",
                b"send 'Authorization: Bearer <TANDEM_METRICS_TOKEN>'\n",
                **{"WWW-Authenticate": 'Bearer realm="tandem metrics"'},
            )
        try:
            body = metrics.exposition()
        finally:
            health.close_connections()
        return _answer(start_response, "200 OK", body, content_type=metrics.CONTENT_TYPE)


def _answer(
    start_response: StartResponse,
    code: str,
    body: bytes,
    content_type: str = TEXT,
    **headers: Any,
) -> list[bytes]:
    start_response(
        code,
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *((name, str(value)) for name, value in headers.items()),
        ],
    )
    return [body]


__all__ = ["PREFIX", "OpsApp"]
