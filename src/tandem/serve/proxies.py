"""Trusted proxy headers: ``X-Forwarded-For`` and ``X-Forwarded-Proto``, believed only from the
peers named in ``--forwarded-allow-ips``.

From a trusted peer (an address or network in the list, or any peer with ``*``), the last address
of ``X-Forwarded-For`` (the one the proxy added) becomes ``REMOTE_ADDR`` and ``X-Forwarded-Proto``
becomes ``wsgi.url_scheme`` (so ``request.is_secure()`` and absolute URLs follow the client's
scheme); a malformed value is answered 400. The parsing is waitress's. Any other peer's
``X-Forwarded-*`` and ``Forwarded`` headers are removed before the application sees them, so a
client cannot claim another address or HTTPS by sending them itself.

Without ``--forwarded-allow-ips`` nothing is changed or removed.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from waitress.proxy_headers import proxy_headers_middleware

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("tandem.serve")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allowed(value: str) -> tuple[str, ...]:
    """``--forwarded-allow-ips``: comma-separated addresses or networks, or ``*``."""
    entries = tuple(entry.strip() for entry in value.split(",") if entry.strip())
    for entry in entries:
        if entry != "*":
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"--forwarded-allow-ips: {entry!r} is not an IP address or network "
                    "(e.g. 127.0.0.1,10.0.0.0/8, or * for any peer)."
                ) from None
    return entries


class TrustedProxies:
    """WSGI middleware: proxy headers applied from allowed peers, removed from the others."""

    def __init__(self, app: WSGIApplication, allowed: Sequence[str]) -> None:
        self.any = "*" in allowed
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in allowed if entry != "*"
        )
        self.trusted = proxy_headers_middleware(
            app,
            trusted_proxy="*",  # the peer is checked here, against a list
            trusted_proxy_count=1,
            trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto"},
            clear_untrusted=False,  # a trusted proxy's other headers are the project's business
            logger=logger,
        )
        self.untrusted = proxy_headers_middleware(app, trusted_proxy=None, clear_untrusted=True)

    def trusts(self, peer: str) -> bool:
        if self.any:
            return True
        try:
            address = ipaddress.ip_address(peer.strip("[]"))
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.trusts(environ.get("REMOTE_ADDR", "")):
            return self.trusted(environ, start_response)  # type: ignore[no-any-return]
        return self.untrusted(environ, start_response)  # type: ignore[no-any-return]
