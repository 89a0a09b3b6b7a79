"""Helpers shared by the tiers that start servers: a free port and a cookie-aware HTTP request."""

from __future__ import annotations

import http.client
import socket
from http.cookies import SimpleCookie


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
