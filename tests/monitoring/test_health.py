"""Liveness and readiness views, open to probes (no login)."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client

from tandem.monitoring import health

pytestmark = pytest.mark.django_db


def test_live_answers_without_login(client: Client) -> None:
    response = client.get("/tasks/health/live")

    assert (response.status_code, response.content) == (200, b"live\n")


def test_ready_when_the_store_answers(client: Client) -> None:
    response = client.get("/tasks/health/ready")

    assert (response.status_code, response.content) == (200, b"ready\n")


def test_not_ready_when_the_store_does_not_answer(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: BaseDatabaseWrapper, *args: object) -> None:
        raise OperationalError("connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(BaseDatabaseWrapper, "cursor", refuse)
        response = client.get("/tasks/health/ready")

    assert response.status_code == 503
    assert response.content == b"not ready: the task store of backend 'default' does not answer\n"


def test_a_supervisor_probe_joins_the_reasons() -> None:
    result = health.readiness(lambda: "shutting down")

    assert not result.ready
    assert result.text == "not ready: shutting down\n"
    assert health.readiness(lambda: None).ready


def test_health_views_answer_get_only(client: Client) -> None:
    assert client.post("/tasks/health/live").status_code == 405


def test_a_store_other_than_the_database_is_asked_for_its_stats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis (here its in-memory twin): ready while ``stats()`` answers, not ready once it
    raises."""
    from django.tasks import task_backends

    from tandem.brokers.memory import MemoryBroker

    broker = MemoryBroker("default")
    monkeypatch.setitem(task_backends["default"].__dict__, "broker", broker)
    assert health.readiness().ready

    def down() -> None:
        raise ConnectionError("Connection refused")

    monkeypatch.setattr(broker, "stats", down)
    result = health.readiness()

    assert not result.ready
    assert result.reasons == ("the task store of backend 'default' does not answer",)


def call_ops(path: str, probe: health.SupervisorProbe | None = None) -> tuple[str, bytes]:
    """One request to ``tandem serve``'s ``/-/`` endpoints (the WSGI wrapper, in process)."""
    from tandem.monitoring.ops import OpsApp

    answered: list[str] = []

    def project(environ: object, start_response: object) -> list[bytes]:
        raise AssertionError("the project's application must not see /-/ paths")

    body = OpsApp(project, probe)(  # type: ignore[arg-type]
        {"PATH_INFO": path, "REQUEST_METHOD": "GET"},
        lambda status, headers: answered.append(status),  # type: ignore[arg-type,return-value]
    )
    return answered[0], b"".join(body)


def test_serves_readiness_fails_while_the_store_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert call_ops("/-/health/ready", lambda: None) == ("200 OK", b"ready\n")

    def refuse(self: BaseDatabaseWrapper, *args: object) -> None:
        raise OperationalError("connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(BaseDatabaseWrapper, "cursor", refuse)
        down = call_ops("/-/health/ready", lambda: None)
        live = call_ops("/-/health/live", lambda: None)

    assert down == (
        "503 Service Unavailable",
        b"not ready: the task store of backend 'default' does not answer\n",
    )
    assert live == ("200 OK", b"live\n")  # not ready is not dead: no restart
    assert call_ops("/-/health/ready", lambda: "shutting down") == (
        "503 Service Unavailable",
        b"not ready: shutting down\n",
    )
