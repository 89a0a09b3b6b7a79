"""Helpers shared by the tiers: a free port, a cookie-aware HTTP request, Django's version."""

from __future__ import annotations

import http.client
import socket
from http.cookies import SimpleCookie

import django
import pytest

#: Django 6.1 builds ``@task(...)`` with the backend's ``task_class``, so its decorator takes
#: tandem's extras (``max_attempts`` ...); on 6.0 only ``tandem.task(...)`` does.
DJANGO_TASK_CLASS = django.VERSION >= (6, 1)
needs_django_task_class = pytest.mark.skipif(
    not DJANGO_TASK_CLASS,
    reason="Django 6.0's @task takes no backend extras (6.1 builds tasks with task_class)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(
    port: int,
    method: str,
    path: str,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], str]:
    """One request to 127.0.0.1:``port``; (status, cookies set, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        cookies: SimpleCookie = SimpleCookie()
        for header in response.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
        return response.status, {k: m.value for k, m in cookies.items()}, response.read().decode()
    finally:
        connection.close()


def oversized_post(port: int, path: str = "/", announced: int = 10 * 1024 * 1024) -> bytes:
    """POST headers announcing an ``announced``-byte body, and no body; the response head.

    An answer at all proves the server did not wait for (read) the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {announced}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = client.recv(4096)
            assert chunk, f"closed without an answer: {answer!r}"
            answer += chunk
    return answer
