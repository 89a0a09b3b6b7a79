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
