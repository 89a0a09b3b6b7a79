"""The Redis store's own keys of ``TASKS[alias]['OPTIONS']`` (``url``, ``password``, ``prefix``,
``result_ttl``, TLS files): ``RedisOptions`` and how they are parsed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

from tandem.conf.reader import SettingsReader

#: ``OPTIONS`` keys of ``tandem.backends.redis.RedisBackend`` only.
#:
#: They are accepted for the Redis backend alone (``TandemBackend.extra_option_keys``), not for
#: every backend: a ``"url"`` in a DatabaseBackend's options would be silently ignored, and the
#: user who wrote it believes their tasks go to Redis. An unknown key stays an error everywhere.
REDIS_OPTION_KEYS = frozenset(
    {"url", "password", "prefix", "result_ttl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile"}
)
REDIS_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_REDIS_PREFIX = "tandem"
DEFAULT_RESULT_TTL = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisOptions:
    """Where and how a Redis backend stores its tasks (the parsed Redis keys of ``OPTIONS``)."""

    url: str
    password: str | None = field(default=None, repr=False)
    prefix: str = DEFAULT_REDIS_PREFIX
    #: Seconds a finished task is kept (its Redis TTL); None keeps it until ``prune``.
    result_ttl: float | None = DEFAULT_RESULT_TTL
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "rediss"


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def parse_redis_options(alias: str, params: Mapping[str, Any]) -> RedisOptions:
    """Parse the Redis keys of ``TASKS[alias]["OPTIONS"]``; errors name the key.

    The other keys are ``parse_options``'s; unknown keys are reported there.
    """
    raw = params.get("OPTIONS", {}) or {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS'] must be a dict, got {raw!r}.")
    mine = {k: v for k, v in raw.items() if k in REDIS_OPTION_KEYS}
    reader = SettingsReader(mine, f"TASKS[{alias!r}]['OPTIONS']", REDIS_OPTION_KEYS)
    url = reader.text("url", DEFAULT_REDIS_URL)
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        raise ImproperlyConfigured(
            f"{reader.key('url')} must be a redis://, rediss:// or unix:// URL, "
            f"got {masked_url(url)!r}."
        )
    try:
        parts.port  # noqa: B018 — urlsplit checks the port when it is read
    except ValueError:
        raise ImproperlyConfigured(
            f"{reader.key('url')} has an invalid port: {masked_url(url)!r}."
        ) from None
    database = parts.path.strip("/") if parts.scheme != "unix" else ""
    if database and not database.isdigit():
        raise ImproperlyConfigured(
            f"{reader.key('url')} must name a database number after the host (e.g. "
            f"redis://127.0.0.1:6379/0), got {masked_url(url)!r}."
        )
    password = reader.optional_text("password")
    if password is not None and parts.password:
        raise ImproperlyConfigured(
            f"{reader.key('password')} is set and {reader.key('url')} has a password too; "
            "set it in one place."
        )
    tls = {
        name: reader.optional_text(name) for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
    }
    for name, value in tls.items():
        if value is not None and parts.scheme != "rediss":
            raise ImproperlyConfigured(
                f"{reader.key(name)} is a TLS setting; it needs a rediss:// URL in "
                f"{reader.key('url')}, got {masked_url(url)!r}."
            )
    result_ttl: float | None = DEFAULT_RESULT_TTL
    if "result_ttl" in mine:
        value = mine["result_ttl"]
        if value is None:
            result_ttl = None
        elif (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ImproperlyConfigured(
                f"{reader.key('result_ttl')} must be a finite number of seconds > 0, or None to "
                f"keep finished tasks until they are pruned, got {value!r}."
            )
        else:
            result_ttl = float(value)
    return RedisOptions(
        url=url,
        password=password,
        prefix=reader.text("prefix", DEFAULT_REDIS_PREFIX),
        result_ttl=result_ttl,
        ssl_ca_certs=tls["ssl_ca_certs"],
        ssl_certfile=tls["ssl_certfile"],
        ssl_keyfile=tls["ssl_keyfile"],
    )


__all__ = [
    "DEFAULT_REDIS_PREFIX",
    "DEFAULT_REDIS_URL",
    "DEFAULT_RESULT_TTL",
    "REDIS_OPTION_KEYS",
    "REDIS_SCHEMES",
    "RedisOptions",
    "masked_url",
    "parse_redis_options",
]
