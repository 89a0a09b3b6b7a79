"""The Redis keys of OPTIONS: parsed with exact messages, accepted only by the Redis backend, and
turned into a client (no connection is made here: this tier needs no Redis)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from tandem.backends.database import DatabaseBackend
from tandem.backends.redis import RedisBackend
from tandem.brokers.redis_client import connect
from tandem.conf import (
    DEFAULT_REDIS_URL,
    DEFAULT_RESULT_TTL,
    OPTION_KEYS,
    REDIS_OPTION_KEYS,
    RedisOptions,
    masked_url,
    parse_redis_options,
)

OPTIONS = "TASKS['default']['OPTIONS']"


def parse(**options: Any) -> RedisOptions:
    return parse_redis_options("default", {"OPTIONS": options})


def error_of(**options: Any) -> str:
    with pytest.raises(ImproperlyConfigured) as caught:
        parse(**options)
    return str(caught.value)


def test_defaults() -> None:
    assert parse() == RedisOptions(
        url=DEFAULT_REDIS_URL, password=None, prefix="tandem", result_ttl=DEFAULT_RESULT_TTL
    )
    assert DEFAULT_REDIS_URL == "redis://127.0.0.1:6379/0"
    assert DEFAULT_RESULT_TTL == 7 * 24 * 3600


def test_every_key() -> None:
    options = parse(
        url="rediss://redis.internal:6380/3",
        password="s3cret",
        prefix="shop",
        result_ttl=3600,
        ssl_ca_certs="/etc/ssl/redis-ca.pem",
        ssl_certfile="/etc/ssl/client.pem",
        ssl_keyfile="/etc/ssl/client.key",
    )
    assert options == RedisOptions(
        url="rediss://redis.internal:6380/3",
        password="s3cret",
        prefix="shop",
        result_ttl=3600.0,
        ssl_ca_certs="/etc/ssl/redis-ca.pem",
        ssl_certfile="/etc/ssl/client.pem",
        ssl_keyfile="/etc/ssl/client.key",
    )
    assert options.tls is True
    assert "s3cret" not in repr(options)


def test_result_ttl_none_keeps_results() -> None:
    assert parse(result_ttl=None).result_ttl is None
    assert parse(result_ttl=0.5).result_ttl == 0.5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": ""}, f"{OPTIONS}['url'] must be a non-empty string, got ''."),
        ({"url": 6379}, f"{OPTIONS}['url'] must be a non-empty string, got 6379."),
        (
            {"url": "http://:hunter2@127.0.0.1:6379/0"},
            f"{OPTIONS}['url'] must be a redis://, rediss:// or unix:// URL, "
            "got 'http://:***@127.0.0.1:6379/0'.",
        ),
        (
            {"url": "redis://127.0.0.1:port/0"},
            f"{OPTIONS}['url'] has an invalid port: 'redis://127.0.0.1:port/0'.",
        ),
        (
            {"url": "redis://127.0.0.1:6379/tasks"},
            f"{OPTIONS}['url'] must name a database number after the host (e.g. "
            "redis://127.0.0.1:6379/0), got 'redis://127.0.0.1:6379/tasks'.",
        ),
        (
            {"url": "redis://:one@127.0.0.1:6379/0", "password": "two"},
            f"{OPTIONS}['password'] is set and {OPTIONS}['url'] has a password too; "
            "set it in one place.",
        ),
        ({"password": ""}, f"{OPTIONS}['password'] must be a non-empty string, got ''."),
        (
            {"ssl_ca_certs": "/etc/ssl/ca.pem"},
            f"{OPTIONS}['ssl_ca_certs'] is a TLS setting; it needs a rediss:// URL in "
            f"{OPTIONS}['url'], got 'redis://127.0.0.1:6379/0'.",
        ),
        (
            {"url": "redis://u:pw@10.0.0.5:6379/0", "ssl_keyfile": "/k.pem"},
            f"{OPTIONS}['ssl_keyfile'] is a TLS setting; it needs a rediss:// URL in "
            f"{OPTIONS}['url'], got 'redis://u:***@10.0.0.5:6379/0'.",
        ),
        ({"prefix": ""}, f"{OPTIONS}['prefix'] must be a non-empty string, got ''."),
        ({"prefix": ["a"]}, f"{OPTIONS}['prefix'] must be a non-empty string, got ['a']."),
    ],
)
def test_bad_values_name_the_key(options: dict[str, Any], message: str) -> None:
    assert error_of(**options) == message


@pytest.mark.parametrize("value", [0, -1, True, "3600", float("inf"), float("nan")])
def test_bad_result_ttl(value: object) -> None:
    assert error_of(result_ttl=value) == (
        f"{OPTIONS}['result_ttl'] must be a finite number of seconds > 0, or None to keep "
        f"finished tasks until they are pruned, got {value!r}."
    )


def test_masked_url() -> None:
    assert masked_url("redis://user:pw@host:1/0") == "redis://user:***@host:1/0"
    assert masked_url("rediss://:pw@host/0") == "rediss://:***@host/0"
    assert masked_url("redis://host:1/0") == "redis://host:1/0"


# -- which backend accepts the keys ------------------------------------------------------------


def backend(cls: type, **options: Any) -> Any:
    return cls("default", {"QUEUES": ["default"], "OPTIONS": options})


def test_the_redis_backend_accepts_its_keys_and_refuses_unknown_ones() -> None:
    assert backend(RedisBackend, url="redis://127.0.0.1:6379/1").tandem_options.alias == "default"
    with pytest.raises(ImproperlyConfigured) as caught:
        backend(RedisBackend, uri="redis://127.0.0.1:6379/1").tandem_options  # noqa: B018
    allowed = ", ".join(sorted(OPTION_KEYS | REDIS_OPTION_KEYS))
    assert (
        str(caught.value)
        == f"{OPTIONS} has unknown key(s) 'uri' (did you mean 'url'?); allowed: {allowed}."
    )


def test_the_database_backend_refuses_the_redis_keys() -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        backend(DatabaseBackend, url="redis://127.0.0.1:6379/0").tandem_options  # noqa: B018
    assert str(caught.value).startswith(f"{OPTIONS} has unknown key(s) 'url'; allowed: ")
    assert "prefix" not in str(caught.value)


def test_check_reports_bad_redis_options_as_e001() -> None:
    [error] = [
        m
        for m in backend(RedisBackend, result_ttl=-5).check()
        if m.id and m.id.startswith("tandem.")
    ]
    assert error.id == "tandem.E001"
    assert error.msg.startswith(f"{OPTIONS}['result_ttl'] must be a finite number")


def test_transactional_enqueue_is_declared() -> None:
    assert DatabaseBackend.transactional_enqueue is True
    assert RedisBackend.transactional_enqueue is False


# -- the client --------------------------------------------------------------------------------


def test_tls_password_and_database_reach_the_client_without_connecting() -> None:
    client = connect(
        parse(
            url="rediss://redis.internal:6380/2",
            password="s3cret",
            ssl_ca_certs="/etc/ssl/redis-ca.pem",
            ssl_certfile="/etc/ssl/client.pem",
            ssl_keyfile="/etc/ssl/client.key",
        )
    )
    pool = client.connection_pool
    assert pool.connection_class is redis.SSLConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("redis.internal", 6380, 2)
    assert kwargs["password"] == "s3cret"
    assert kwargs["ssl_ca_certs"] == "/etc/ssl/redis-ca.pem"
    assert kwargs["ssl_certfile"] == "/etc/ssl/client.pem"
    assert kwargs["ssl_keyfile"] == "/etc/ssl/client.key"
    assert kwargs["decode_responses"] is True


def test_plain_url_makes_a_plain_connection_and_clients_are_shared() -> None:
    options = parse(url="redis://127.0.0.1:6379/5", password="pw")
    client = connect(options)
    assert client.connection_pool.connection_class is redis.Connection
    assert client.connection_pool.connection_kwargs["password"] == "pw"
    assert connect(parse(url="redis://127.0.0.1:6379/5", password="pw")) is client
    assert connect(parse(url="redis://127.0.0.1:6379/5", password="pw", prefix="b")) is client
    assert connect(parse(url="redis://127.0.0.1:6379/6", password="pw")) is not client
