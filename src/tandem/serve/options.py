"""``tandem serve``'s HTTP flags: definitions, checks, and the ``HttpOptions`` they become."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from tandem.serve.http import HttpOptions
from tandem.serve.proxies import parse_allowed

SIZE_SUFFIXES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    http = parser.add_argument_group("HTTP")
    http.add_argument(
        "--threads",
        type=int,
        default=8,
        help="Request threads per HTTP server (one per web interpreter); connections wait "
        "in the event loop without a thread (default: %(default)s).",
    )
    http.add_argument(
        "--max-connections",
        type=int,
        default=10_000,
        help="Open connections per HTTP server; more wait in the listen backlog "
        "(default: %(default)s).",
    )
    http.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="Drop a connection whose request headers are not complete this long after it "
        "opened (or after the request's first byte); also the longest a request body may "
        "stall (default: %(default)s).",
    )
    http.add_argument(
        "--keep-alive-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="Close a kept-alive connection idle this long between requests "
        "(default: %(default)s).",
    )
    http.add_argument(
        "--max-body-size",
        default="100M",
        metavar="BYTES",
        help="Largest request body; a larger Content-Length is answered 413 without "
        "reading the body. Suffixes K, M, G (default: %(default)s).",
    )
    http.add_argument(
        "--forwarded-allow-ips",
        default="",
        metavar="IPS",
        help="Comma-separated proxy addresses or networks (or *) whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed; other peers' X-Forwarded-* headers are removed. "
        "Default: none (headers passed through untouched).",
    )
    http.add_argument(
        "--no-static",
        action="store_true",
        help="Do not serve STATIC_URL (a proxy or CDN in front serves it).",
    )
    http.add_argument(
        "--no-access-log",
        action="store_true",
        help="Do not log one line per request on the tandem.access logger.",
    )


def parse_size(value: str) -> int:
    """``--max-body-size``: bytes, or a number with K, M or G (powers of 1024)."""
    text = value.strip().upper().removesuffix("B")
    number, suffix = (text[:-1], text[-1]) if text[-1:] in SIZE_SUFFIXES else (text, "")
    try:
        size = int(float(number) * SIZE_SUFFIXES[suffix])
    except ValueError:
        size = -1
    if size < 1:
        raise ValueError(
            f"--max-body-size must be a size like 1048576, 512K, 100M or 1G, got {value!r}."
        )
    return size


def from_command_line(options: Mapping[str, Any]) -> HttpOptions:
    """The parsed flags as ``HttpOptions``; ``ValueError`` with the message for a bad value."""
    for flag in ("threads", "max_connections"):
        if options[flag] < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {options[flag]}.")
    for flag in ("header_timeout", "keep_alive_timeout"):
        if not options[flag] > 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be > 0, got {options[flag]:g}.")
    return HttpOptions(
        threads=options["threads"],
        max_connections=options["max_connections"],
        header_timeout=options["header_timeout"],
        keep_alive_timeout=options["keep_alive_timeout"],
        max_body_size=parse_size(options["max_body_size"]),
        forwarded_allow_ips=parse_allowed(options["forwarded_allow_ips"]),
        static=not options["no_static"],
        access_log=not options["no_access_log"],
    )


def static_line(http: HttpOptions) -> str:
    """The banner's ``static:`` line."""
    if not http.static:
        return "not served (--no-static)"
    from tandem.serve.static import plan

    return plan()[1]
