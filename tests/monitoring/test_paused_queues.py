"""Paused queues in ``tandem status`` (text and ``--json``) and in the metrics."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

import tandem
from tandem.models import TaskRecord
from tandem.monitoring import status
from tests.monitoring.test_status import register
from tests.tasks import critical_noop

pytestmark = pytest.mark.django_db

TOKEN = "paused-scrape-token"


def report(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("tandem", "status", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue() + err.getvalue()


def test_status_marks_a_paused_queue_and_says_since_when() -> None:
    register()
    tandem.pause("critical")

    code, text = report()
    _, data = report("--json")

    assert code == 0
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith(("c", "d"))}
    assert "PAUSED" in rows["critical"]
    assert "PAUSED" not in rows["default"]
    queues = {q["name"]: q for q in json.loads(data)["queues"]}
    assert queues["default"]["paused_at"] is None
    paused_at = queues["critical"]["paused_at"]
    assert paused_at is not None
    assert abs(timezone.now() - timezone.datetime.fromisoformat(paused_at)) < timedelta(hours=1)


def test_a_paused_queue_waiting_past_max_age_is_no_problem() -> None:
    register()
    critical_noop.enqueue()
    TaskRecord.objects.update(available_at=timezone.now() - timedelta(seconds=600))
    assert report("--max-age", "60")[0] == 1  # running: the wait is a problem

    tandem.pause("critical")

    assert report("--max-age", "60")[0] == 0  # paused: the wait is on purpose


def test_a_paused_queue_outside_the_settings_is_still_listed() -> None:
    from django.tasks import task_backends

    task_backends["default"].broker.pause_queues(["retired"], timezone.now())  # type: ignore[attr-defined]

    snapshot = status.take("default")

    [retired] = [q for q in snapshot.queues if q.name == "retired"]
    assert retired.paused and not retired.configured


def test_the_paused_gauge(client: Client, settings: object) -> None:
    settings.TANDEM_METRICS_TOKEN = TOKEN  # type: ignore[attr-defined]
    tandem.pause("exports")
    auth = {"Authorization": f"Bearer {TOKEN}"}

    text = client.get("/tasks/metrics/", headers=auth).content.decode()

    assert 'tandem_queue_paused{backend="default",queue="exports"} 1.0' in text
    assert 'tandem_queue_paused{backend="default",queue="default"} 0.0' in text
    tandem.resume("exports")
    text = client.get("/tasks/metrics/", headers=auth).content.decode()
    assert 'tandem_queue_paused{backend="default",queue="exports"} 0.0' in text
