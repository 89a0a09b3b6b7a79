"""The staff-only dashboard (``tandem.monitoring.urls``): who may see it, and what it shows."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from tandem.brokers.base import WorkerInfo
from tandem.brokers.memory import MemoryBroker
from tandem.models import TaskRecord
from tandem.monitoring import views
from tandem.worker.supervisor import Supervisor
from tests.tasks import add, critical_noop, echo, fail

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next="


@pytest.mark.parametrize("path", ["/tasks/", "/tasks/panel/", "/tasks/status.json"])
def test_anonymous_users_are_sent_to_the_admin_login(client: Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith(f"{LOGIN}{path}".split("?")[0])


@pytest.mark.parametrize("path", ["/tasks/", "/tasks/panel/", "/tasks/status.json"])
def test_users_who_are_not_staff_are_sent_to_the_admin_login(client: Client, path: str) -> None:
    client.force_login(User.objects.create_user("customer"))

    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def queue_row(page: str, queue: str) -> dict[str, str]:
    row = re.search(rf'<tr id="queue-{queue}"[^>]*>(.*?)</tr>', page, flags=re.DOTALL)
    assert row, f"no row for queue {queue!r}"
    cells = dict(re.findall(r'<td class="n (\w+)[^"]*">([^<]*)</td>', row.group(1)))
    return cells


def register_worker(queues: tuple[str, ...], seconds_ago: float = 0) -> None:
    from django.tasks import task_backends

    beat = timezone.now() - timedelta(seconds=seconds_ago)
    task_backends["default"].broker.register_worker(  # type: ignore[attr-defined]
        WorkerInfo(
            id="web1:42:abcdefgh",
            backend="default",
            hostname="web1",
            pid=42,
            queues=queues,
            pools={
                "default": {
                    "queues": list(queues),
                    "workers": 4,
                    "executor": "subinterpreter",
                    "restarts": 1,
                    "in_flight": 2,
                }
            },
            started_at=beat,
            last_heartbeat_at=beat,
            tasks_done=17,
        )
    )


def test_staff_see_queues_workers_throughput_and_failures(
    admin_client: Client, drain: Callable[..., Supervisor]
) -> None:
    add.enqueue(1, 2)
    add.enqueue(3, 4)
    failure = fail.enqueue("dashboard boom")
    drain()
    for _ in range(3):
        echo.enqueue("waiting")
    TaskRecord.objects.filter(status="READY").update(
        available_at=timezone.now() - timedelta(seconds=90)
    )
    critical_noop.using(run_after=timezone.now() + timedelta(hours=1)).enqueue()
    register_worker(("default", "exports"))

    response = admin_client.get("/tasks/")
    page = response.content.decode()

    assert response.status_code == 200
    assert queue_row(page, "default") == {
        "ready": "3",
        "running": "0",
        "failed": "1",
        "successful": "2",
        "age": "90s",
        "live": "1",
    }
    # A deferred task is READY but not waiting yet: no age; and no live worker serves it.
    assert queue_row(page, "critical")["ready"] == "1"
    assert queue_row(page, "critical")["age"] == "—"
    assert "queue &#x27;critical&#x27;: no live worker serves it" in page
    assert (
        "web1:42:abcdefgh" in page and "(subinterpreter, 2/4, 1 restart: default, exports)" in page
    )
    assert "2 succeeded</span>" in page and "1 failed</span>" in page
    assert "(failure rate 33%)" in page
    assert '<svg class="chart"' in page and "2 succeeded, 1 failed (33% failed)" in page
    assert f'href="/admin/tandem/taskrecord/{failure.id}/change/"' in page
    assert "builtins.ValueError" in page


def test_the_page_refreshes_itself_with_and_without_javascript(
    admin_client: Client, settings: object
) -> None:
    settings.TANDEM_DASHBOARD_REFRESH = 2  # type: ignore[attr-defined]

    page = admin_client.get("/tasks/").content.decode()
    panel = admin_client.get("/tasks/panel/?backend=default")

    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in page
    assert 'data-url="/tasks/panel/?backend=default" data-refresh="2"' in page
    assert "fetch(panel.dataset.url" in page
    assert panel.status_code == 200
    assert '<table id="queues">' in panel.content.decode()
    assert "<html" not in panel.content.decode()  # a fragment, swapped into the page


def test_an_unknown_backend_is_not_found(admin_client: Client) -> None:
    assert admin_client.get("/tasks/?backend=nope").status_code == 404


def test_the_json_status_matches_the_page(admin_client: Client) -> None:
    echo.enqueue("x")
    register_worker(("default", "critical", "exports"))

    data = json.loads(admin_client.get("/tasks/status.json").content)

    assert data["healthy"] is True
    assert data["backend"] == "default"
    default = next(q for q in data["queues"] if q["name"] == "default")
    assert (default["ready"], default["live_workers"], default["pool"]) == (1, 1, "default")
    assert data["workers"][0]["id"] == "web1:42:abcdefgh"


def test_a_silent_worker_is_shown_but_not_counted(admin_client: Client) -> None:
    register_worker(("default",), seconds_ago=3600)

    page = admin_client.get("/tasks/").content.decode()

    assert queue_row(page, "default")["live"] == "0"
    assert 'data-live="0"' in page and "silent" in page


def test_a_store_without_history_shows_counts_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker that is not the database one (Redis, memory): no chart, no failure list."""
    from django.tasks import task_backends

    backend = task_backends["default"]
    broker = MemoryBroker("default")
    monkeypatch.setitem(backend.__dict__, "broker", broker)

    context = views.panel_context("default")

    assert context["chart"] is None and context["failures"] is None
    assert [q.name for q in context["snapshot"].queues] == ["critical", "default", "exports"]
