"""Enqueue through HTTP: ``GET /enqueue/?stamp=…`` on ``bench/benchsite`` (``tandem serve``).

    python -m contenders.http_enqueue serial|paced N [INTERVAL]     (port in BENCH_HTTP_PORT)

One new connection per request, as separate page views would; the view stamps the task itself,
just before its ``enqueue()`` call (pickup counts from there, as for every other contender).
"""

from __future__ import annotations

import http.client
import os

from contenders.base import enqueue_main

PORT = int(os.environ["BENCH_HTTP_PORT"])


def one(stamp: float) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    try:
        connection.request("GET", f"/enqueue/?stamp={stamp:.6f}")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise SystemExit(f"GET /enqueue/ -> {response.status}: {body[:200]!r}")


if __name__ == "__main__":
    enqueue_main(one)
