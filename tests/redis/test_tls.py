"""TLS for real: a private ``redis-server`` that speaks only TLS and requires a client certificate,
reached with ``rediss://`` and ``ssl_ca_certs`` / ``ssl_certfile`` / ``ssl_keyfile``.

The certificates are made per test module with the ``openssl`` command: a CA, a server
certificate for 127.0.0.1 and a client certificate, both signed by the CA.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tandem.backends.redis import RedisBackend
from tandem.brokers.base import NewTask
from tandem.brokers.listeners import RedisListener
from tests.support.doubles import wait_for
from tests.support.redis_store import PREFIX
from tests.support.servers import IN_CI, PrivateRedis

pytestmark = pytest.mark.redis


def openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def sign(name: str, subject: str, extensions: str, cwd: Path) -> None:
    """``name.key`` and ``name.pem``, signed by ``ca.key``."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-subj", subject,
            "-out", f"{name}.csr", cwd=cwd)  # fmt: skip
    (cwd / f"{name}.ext").write_text(extensions)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-sha256", "-extfile", f"{name}.ext",
            "-out", f"{name}.pem", cwd=cwd)  # fmt: skip


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not shutil.which("openssl"):
        message = "the TLS tests make their certificates with the openssl command"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    cwd = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-days", "2",
            "-subj", "/CN=tandem test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.pem",
            cwd=cwd)  # fmt: skip
    # Python's default context verifies strictly (VERIFY_X509_STRICT): key identifiers included.
    identifiers = "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    sign("server", "/CN=127.0.0.1", f"subjectAltName=IP:127.0.0.1\n{identifiers}", cwd)
    sign("client", "/CN=tandem client", f"extendedKeyUsage=clientAuth\n{identifiers}", cwd)
    return {
        name: str(cwd / file)
        for name, file in {
            "ca": "ca.pem",
            "server_cert": "server.pem",
            "server_key": "server.key",
            "client_cert": "client.pem",
            "client_key": "client.key",
        }.items()
    }


@pytest.fixture(scope="module")
def server(certificates: dict[str, str]) -> Iterator[PrivateRedis]:
    tls = {
        "cert": certificates["server_cert"],
        "key": certificates["server_key"],
        "ca": certificates["ca"],
    }
    private = PrivateRedis(append_only=False, tls=tls)
    try:
        yield private
    finally:
        private.close()


def backend(**options: Any) -> RedisBackend:
    return RedisBackend(
        "default", {"QUEUES": ["default"], "OPTIONS": {"prefix": PREFIX, **options}}
    )


def new_task() -> NewTask:
    return NewTask(
        id=str(uuid.uuid4()),
        backend="default",
        queue_name="default",
        task_path="tests.tasks.add",
        priority=0,
        takes_context=False,
        args=[1, 2],
        kwargs={},
        run_after=None,
        enqueued_at=timezone.now(),
    )


def test_rediss_with_a_client_certificate_stores_claims_and_wakes(
    server: PrivateRedis, certificates: dict[str, str]
) -> None:
    assert server.url.startswith("rediss://")
    store = backend(
        url=server.url,
        ssl_ca_certs=certificates["ca"],
        ssl_certfile=certificates["client_cert"],
        ssl_keyfile=certificates["client_key"],
    )
    broker = store.broker
    kwargs = broker.client.connection_pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == certificates["ca"]
    calls: list[list[str]] = []
    listener = RedisListener(broker, calls.append)  # the wake-up subscription, over TLS too
    listener.start()
    try:
        assert listener.connected.wait(10), "the listener never subscribed over TLS"
        task = new_task()
        assert broker.push([task]) == [task.id]
        wait_for(lambda: listener.wakes == 1, "the wake-up message over TLS")
        now = timezone.now()
        [claimed] = broker.claim(["default"], 1, "w1", now, now)
        assert (claimed.id, claimed.args) == (task.id, [1, 2])
    finally:
        listener.stop()


def test_a_server_certificate_from_an_unknown_ca_is_refused(
    server: PrivateRedis, certificates: dict[str, str]
) -> None:
    # No ssl_ca_certs: the system's CAs, which never signed the test CA.
    store = backend(
        url=server.url,
        ssl_certfile=certificates["client_cert"],
        ssl_keyfile=certificates["client_key"],
    )
    with pytest.raises(ConnectionError, match=r"^Redis: .*(certificate|CERTIFICATE)"):
        store.broker.get(new_task().id)


def test_without_the_client_certificate_the_server_refuses(
    server: PrivateRedis, certificates: dict[str, str]
) -> None:
    store = backend(url=server.url, ssl_ca_certs=certificates["ca"])
    with pytest.raises(ConnectionError, match=r"^Redis: "):
        store.broker.get(new_task().id)


def test_a_plain_redis_url_does_not_talk_to_a_tls_port(server: PrivateRedis) -> None:
    store = backend(url=server.url.replace("rediss://", "redis://"))
    with pytest.raises(ConnectionError, match=r"^Redis: "):
        store.broker.get(new_task().id)
