"""Prometheus metrics: who may scrape, the store's gauges, and the counters the supervisor's
settle point feeds (with one structured log line per settled attempt)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.tasks import task_backends
from django.test import Client
from django.utils import timezone

from tandem.brokers.base import WorkerInfo
from tandem.worker import telemetry
from tandem.worker.supervisor import Supervisor
from tests.tasks import add, echo, fail

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-scrape-token"


def sample(name: str, **labels: str) -> float:
    return telemetry.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def token(settings: object) -> str:
    settings.TANDEM_METRICS_TOKEN = TOKEN  # type: ignore[attr-defined]
    return TOKEN


def test_scrapers_need_the_token(client: Client, token: str) -> None:
    anonymous = client.get("/tasks/metrics/")
    wrong = client.get("/tasks/metrics/", headers={"Authorization": "Bearer nope"})
    right = client.get("/tasks/metrics/", headers={"Authorization": f"Bearer {TOKEN}"})

    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="tandem metrics"'
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert right["Content-Type"].startswith("text/plain; version=")


def test_without_a_token_setting_only_staff_may_scrape(client: Client) -> None:
    assert client.get("/tasks/metrics/", headers={"Authorization": "Bearer "}).status_code == 401
    client.force_login(User.objects.create_user("customer"))
    assert client.get("/tasks/metrics/").status_code == 401
    client.force_login(User.objects.create_user("ops", is_staff=True))
    assert client.get("/tasks/metrics/").status_code == 200


def test_gauges_are_read_from_the_store_at_scrape_time(client: Client, token: str) -> None:
    echo.enqueue("a")
    echo.enqueue("b")
    from tandem.models import TaskRecord

    TaskRecord.objects.update(available_at=timezone.now() - timedelta(seconds=30))
    auth = {"Authorization": f"Bearer {TOKEN}"}

    text = client.get("/tasks/metrics/", headers=auth).content.decode()

    assert 'tandem_queue_ready_tasks{backend="default",queue="default"} 2.0' in text
    assert 'tandem_queue_ready_tasks{backend="default",queue="exports"} 0.0' in text
    assert 'tandem_queue_running_tasks{backend="default",queue="default"} 0.0' in text
    assert 'tandem_queue_failed_tasks{backend="default",queue="default"} 0.0' in text
    assert 'tandem_queue_live_workers{backend="default",queue="default"} 0.0' in text
    assert 'tandem_workers{backend="default"} 0.0' in text
    assert 'tandem_store_up{backend="default"} 1.0' in text
    age = next(
        line
        for line in text.splitlines()
        if line.startswith(
            'tandem_queue_oldest_ready_age_seconds{backend="default",queue="default"}'
        )
    )
    assert 30 <= float(age.split()[-1]) < 60
    echo.enqueue("c")
    assert 'queue="default"} 3.0' in client.get("/tasks/metrics/", headers=auth).content.decode()


def test_settled_attempts_are_counted_timed_and_logged(
    drain: Callable[..., Supervisor], caplog: pytest.LogCaptureFixture
) -> None:
    labels = {"backend": "default", "queue": "default"}
    succeeded = sample("tandem_tasks_total", task="tests.tasks.add", outcome="succeeded", **labels)
    failed = sample("tandem_tasks_total", task="tests.tasks.fail", outcome="failed", **labels)
    timed = sample("tandem_task_duration_seconds_count", task="tests.tasks.add", **labels)
    done = add.enqueue(2, 3)
    fail.enqueue("counted")

    with caplog.at_level(logging.INFO, logger="tandem.tasks"):
        drain()

    assert sample("tandem_tasks_total", task="tests.tasks.add", outcome="succeeded", **labels) == (
        succeeded + 1
    )
    assert sample("tandem_tasks_total", task="tests.tasks.fail", outcome="failed", **labels) == (
        failed + 1
    )
    assert sample("tandem_task_duration_seconds_count", task="tests.tasks.add", **labels) == (
        timed + 1
    )
    record = next(
        r
        for r in caplog.records
        if r.name == "tandem.tasks" and getattr(r, "task_id", None) == done.id
    )
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith(f"task finished: tests.tasks.add {done.id} succeeded in ")
    fields = {
        k: getattr(record, k)
        for k in ("task_path", "queue", "status", "outcome", "attempt", "backend")
    }
    assert fields == {
        "task_path": "tests.tasks.add",
        "queue": "default",
        "status": "SUCCESSFUL",
        "outcome": "succeeded",
        "attempt": 1,
        "backend": "default",
    }
    assert isinstance(record.duration_ms, int) and record.duration_ms >= 0  # type: ignore[attr-defined]
    assert record.worker_id  # type: ignore[attr-defined]
    failure = next(
        r
        for r in caplog.records
        if r.name == "tandem.tasks" and getattr(r, "task_path", "") == "tests.tasks.fail"
    )
    assert failure.levelno == logging.WARNING and failure.status == "FAILED"  # type: ignore[attr-defined]
    assert failure.error == "ValueError: counted"  # type: ignore[attr-defined]


def test_retries_are_counted_as_retried(drain: Callable[..., Supervisor]) -> None:
    from tandem.models import TaskRecord

    labels = {"backend": "default", "queue": "default", "task": "tests.tasks.fail"}
    retried = sample("tandem_tasks_total", outcome="retried", **labels)
    failed = sample("tandem_tasks_total", outcome="failed", **labels)
    result = fail.enqueue("twice")
    TaskRecord.objects.filter(id=result.id).update(max_attempts=2)

    drain()  # the first attempt fails and is retried after a back-off
    TaskRecord.objects.filter(id=result.id).update(available_at=timezone.now())
    drain()  # the second fails for good

    assert sample("tandem_tasks_total", outcome="retried", **labels) == retried + 1
    assert sample("tandem_tasks_total", outcome="failed", **labels) == failed + 1
    assert TaskRecord.objects.get(id=result.id).attempts == 2


def test_recovered_leases_and_pool_state_are_exposed(
    drain: Callable[..., Supervisor], client: Client, token: str
) -> None:
    before = sample("tandem_recovered_leases_total", backend="default", status="READY")
    echo.enqueue("lost")
    now = timezone.now()
    broker = task_backends["default"].broker  # type: ignore[attr-defined]
    claimed = broker.claim(["default"], 1, "dead:1:worker", now - timedelta(seconds=1), now)
    assert len(claimed) == 1

    supervisor = drain()  # recovers the expired lease at its first heartbeat, then runs it

    assert sample("tandem_recovered_leases_total", backend="default", status="READY") == before + 1
    text = client.get("/tasks/metrics/", headers={"Authorization": f"Bearer {TOKEN}"})
    body = text.content.decode()
    pool = f'backend="default",pool="default",worker_id="{supervisor.worker_id}"'
    assert f"tandem_pool_restarts_total{{{pool}}} 0.0" in body
    assert f"tandem_pool_workers{{{pool}}} " in body
    assert f"tandem_pool_busy_workers{{{pool}}} 0.0" in body
    assert "# TYPE tandem_tasks_total counter" in body
    assert "# TYPE tandem_task_duration_seconds histogram" in body


# -- the catalogue: every metric, its type and its labels ---------------------------------------


def test_every_metric_is_exposed_with_its_type_and_labels(
    drain: Callable[..., Supervisor], client: Client, token: str
) -> None:
    from tandem.models import TaskRecord
    from tests.monitoring.catalogue import CATALOGUE, check
    from tests.tasks import sleep

    # A success, a retry then a failure, a timeout (its thread is replaced: a pool restart), and
    # an expired lease to recover: every counter gets a sample.
    add.enqueue(1, 1)
    retried = fail.enqueue("catalogue")
    TaskRecord.objects.filter(id=retried.id).update(max_attempts=2)
    slow = sleep.enqueue(1.0)
    TaskRecord.objects.filter(id=slow.id).update(timeout=0.1)
    echo.enqueue("lost")
    now = timezone.now()
    broker = task_backends["default"].broker  # type: ignore[attr-defined]
    assert broker.claim(["default"], 1, "dead:1:worker", now - timedelta(seconds=1), now)

    supervisor = drain()
    TaskRecord.objects.filter(id=retried.id).update(available_at=timezone.now())
    drain()

    assert TaskRecord.objects.get(id=retried.id).attempts == 2
    assert any(s["restarts"] for s in supervisor.pool_states().values())
    supervisor.broker.register_worker(  # a live supervisor's pools: the pool gauges get samples
        WorkerInfo(
            id="host:1:live",
            backend="default",
            hostname="host",
            pid=1,
            queues=supervisor.queues,
            pools=supervisor.pool_states(),
            started_at=timezone.now(),
            last_heartbeat_at=timezone.now(),
        )
    )
    full_rate_window()  # a full rate limit: the rate gauge gets a sample
    text = client.get("/tasks/metrics/", headers={"Authorization": f"Bearer {TOKEN}"})
    check(text.content.decode(), with_samples=set(CATALOGUE))


def full_rate_window() -> None:
    """A rate limit whose window is full for the next hour (as a claim leaves it)."""
    from tandem.models import RateWindow

    now = timezone.now()
    RateWindow.objects.create(
        backend="default",
        limit_key="tests.tasks.add",
        rate="1/h",
        starts=f"[{now.timestamp()}]",
        free_at=now + timedelta(hours=1),
    )


def test_the_reference_page_lists_exactly_the_exposed_metrics() -> None:
    from tests.monitoring.catalogue import CATALOGUE, documented

    assert documented() == set(CATALOGUE)


def test_a_retry_is_counted_in_the_retries_counter_too(drain: Callable[..., Supervisor]) -> None:
    from tandem.models import TaskRecord

    labels = {"backend": "default", "queue": "default", "task": "tests.tasks.fail"}
    before = sample("tandem_task_retries_total", **labels)
    result = fail.enqueue("again")
    TaskRecord.objects.filter(id=result.id).update(max_attempts=3)

    drain()
    assert sample("tandem_task_retries_total", **labels) == before + 1
    TaskRecord.objects.filter(id=result.id).update(available_at=timezone.now())
    drain()
    assert sample("tandem_task_retries_total", **labels) == before + 2
    TaskRecord.objects.filter(id=result.id).update(available_at=timezone.now())
    drain()  # the third attempt fails for good: not a retry

    assert sample("tandem_task_retries_total", **labels) == before + 2
    assert TaskRecord.objects.get(id=result.id).status == "FAILED"


# -- structured log lines -----------------------------------------------------------------------

#: The keys every ``tandem.tasks`` "task finished" record carries, and their types.
STABLE_KEYS = {
    "task_id": str,
    "task_path": str,
    "queue": str,
    "backend": str,
    "status": str,
    "outcome": str,
    "duration_ms": int,
    "attempt": int,
    "worker_id": str,
}


def test_each_outcome_logs_one_line_with_the_stable_keys(
    drain: Callable[..., Supervisor], caplog: pytest.LogCaptureFixture
) -> None:
    import json

    from tandem.models import TaskRecord

    done = add.enqueue(1, 2)
    flaky = fail.enqueue("logged")
    TaskRecord.objects.filter(id=flaky.id).update(max_attempts=2)

    with caplog.at_level(logging.INFO, logger="tandem.tasks"):
        drain()
        TaskRecord.objects.filter(id=flaky.id).update(available_at=timezone.now())
        drain()

    lines = [r for r in caplog.records if r.name == "tandem.tasks" and hasattr(r, "task_id")]
    seen = []
    for record in lines:
        fields = {key: getattr(record, key) for key in STABLE_KEYS}
        for key, kind in STABLE_KEYS.items():
            assert isinstance(fields[key], kind), (key, fields[key])
        json.dumps(fields)  # a JSON formatter can write them as they are
        seen.append((fields["task_id"], fields["status"], fields["outcome"], fields["attempt"]))
        assert record.levelno == (logging.WARNING if fields["status"] == "FAILED" else logging.INFO)
    assert sorted(seen) == sorted(  # one line per attempt; add and fail settle in either order
        [
            (done.id, "SUCCESSFUL", "succeeded", 1),
            (flaky.id, "READY", "retried", 1),
            (flaky.id, "FAILED", "failed", 2),
        ]
    )
