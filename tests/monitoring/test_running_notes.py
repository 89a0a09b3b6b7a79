"""A RUNNING task that is not simply running: its worker is gone ("worker lost — recovered
within N s") or it was asked to cancel ("cancel requested") — in ``tandem status``, the
dashboard and the admin's task page; and what ``tandem.cancel()`` returns for each state."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

import tandem
from tandem.brokers.base import RUNNING
from tandem.models import TaskRecord
from tandem.monitoring.attention import lost_note
from tests.tasks import echo

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def running(worker_id: str, lease_left: float) -> TaskRecord:
    """A task RUNNING on ``worker_id`` whose lease ends ``lease_left`` seconds from now."""
    record = TaskRecord.objects.get(id=echo.enqueue("x").id)
    now = timezone.now()
    TaskRecord.objects.filter(id=record.id).update(
        status=RUNNING,
        worker_id=worker_id,
        started_at=now,
        lease_expires_at=now + timedelta(seconds=lease_left),
        worker_ids=[worker_id],
    )
    record.refresh_from_db()
    return record


def status_output() -> str:
    out = io.StringIO()
    with pytest.raises(SystemExit):  # unhealthy: no live worker serves the queues
        call_command("tandem", "status", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_the_recovery_deadline_is_the_rest_of_the_lease_plus_one_heartbeat() -> None:
    assert lost_note(T0 + timedelta(seconds=40), T0, 20.0) == (
        "worker lost — recovered within 60 s"
    )
    assert lost_note(T0 + timedelta(seconds=0.2), T0, 20.0) == (
        "worker lost — recovered within 21 s"
    )
    assert lost_note(T0 - timedelta(seconds=5), T0, 20.0) == "worker lost — recovered within 20 s"


def test_status_shows_a_task_whose_worker_is_gone() -> None:
    record = running("gone-host:123:dead", lease_left=-5)  # expired: the next heartbeat

    report = status_output()

    assert report.endswith(
        "\nrunning tasks to watch:\n"
        f"  {record.pk} tests.tasks.echo (default): worker lost — recovered within 20 s\n"
    )


def test_cancel_says_what_happened_and_the_dashboard_shows_cancel_requested(
    admin_client: Client,
) -> None:
    ready = echo.enqueue("ready")
    record = running("gone-host:123:dead", lease_left=-5)

    assert tandem.cancel(ready.id) == tandem.CancelOutcome.CANCELLED
    assert tandem.cancel(str(record.pk)) == tandem.CancelOutcome.REQUESTED
    assert tandem.cancel(ready.id) is False  # finished now: nothing to do

    page = admin_client.get("/tasks/panel/").content.decode()
    assert '<table id="running-notes">' in page
    assert '<td class="note">worker lost — recovered within 20 s; cancel requested</td>' in page
    task_page = admin_client.get(f"/admin/tandem/taskrecord/{record.pk}/change/")
    assert "worker lost — recovered within 20 s; cancel requested" in task_page.content.decode()
    assert "cancel requested" in status_output()


def test_a_task_on_a_live_worker_gets_no_note(admin_client: Client) -> None:
    from django.tasks import task_backends

    from tandem.brokers.base import WorkerInfo

    now = timezone.now()
    task_backends["default"].broker.register_worker(  # type: ignore[attr-defined]
        WorkerInfo(
            id="host:1:live",
            backend="default",
            hostname="host",
            pid=1,
            queues=("default", "critical", "exports"),
            pools={},
            started_at=now,
            last_heartbeat_at=now,
        )
    )
    running("host:1:live", lease_left=50)

    page = admin_client.get("/tasks/panel/").content.decode()

    assert "running-notes" not in page
    assert "worker lost" not in page
