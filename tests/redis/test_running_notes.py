"""The attention notes on Redis: a task RUNNING on a worker that is gone gets "worker lost —
recovered within N s", a cancel request "cancel requested" — in ``tandem status`` and the
dashboard, as on the database store (tests/monitoring/test_running_notes.py)."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.tasks import task_backends
from django.test import Client
from django.utils import timezone

import tandem
from tandem.brokers.base import WorkerInfo
from tests.tasks import echo

pytestmark = pytest.mark.django_db


def claim_one(worker_id: str, lease_left: float) -> str:
    """Enqueue a task and claim it as ``worker_id``, its lease ending ``lease_left`` s from now."""
    result = echo.enqueue("x")
    broker = task_backends["default"].broker  # type: ignore[attr-defined]
    now = timezone.now()
    [task] = broker.claim(["default"], 1, worker_id, now + timedelta(seconds=lease_left), now)
    assert task.id == result.id
    return str(result.id)


def status_output() -> str:
    out = io.StringIO()
    with pytest.raises(SystemExit):  # unhealthy: no live worker serves every queue
        call_command("tandem", "status", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_status_and_dashboard_name_a_lost_worker_and_a_cancel_request_on_redis(
    redis_backend: Callable[..., None], admin_client: Client
) -> None:
    redis_backend()
    broker = task_backends["default"].broker  # type: ignore[attr-defined]
    now = timezone.now()
    broker.register_worker(
        WorkerInfo(
            id="host:1:live",
            backend="default",
            hostname="host",
            pid=1,
            queues=("default",),
            pools={},
            started_at=now,
            last_heartbeat_at=now,
        )
    )
    lost = claim_one("gone-host:123:dead", lease_left=-5)  # expired: the next heartbeat
    live = claim_one("host:1:live", lease_left=50)
    assert tandem.cancel(live) == tandem.CancelOutcome.REQUESTED

    report = status_output()
    assert report.endswith(
        "\nrunning tasks to watch:\n"
        f"  {lost} tests.tasks.echo (default): worker lost — recovered within 20 s\n"
        f"  {live} tests.tasks.echo (default): cancel requested\n"
    )
    page = admin_client.get("/tasks/panel/").content.decode()
    assert '<table id="running-notes">' in page
    assert '<td class="note">worker lost — recovered within 20 s</td>' in page
    assert '<td class="note">cancel requested</td>' in page
    assert "/admin/tandem/taskrecord/" not in page  # Redis tasks have no admin page
