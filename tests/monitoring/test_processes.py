"""What a real process shows: ``tandem worker``'s and ``tandem serve``'s start-up banners, the
exit status of ``tandem status`` as a container probe sees it, and every metric at ``tandem
serve``'s ``/-/metrics``."""

from __future__ import annotations

import http.client
import platform
import re
import signal
from datetime import timedelta

import pytest
from django.db import connection
from django.tasks import task_backends
from django.utils import timezone

from tandem.brokers.base import FAILED, SUCCESSFUL, WorkerInfo
from tandem.models import TaskRecord
from tests.monitoring.catalogue import CATALOGUE, check
from tests.monitoring.tasks import double, fails_twice
from tests.monitoring.test_metrics import full_rate_window
from tests.support.fixtures import (
    children,  # noqa: F401  (real worker processes)
    servers,  # noqa: F401
)
from tests.support.processes import Children
from tests.support.serving import Servers, get, wait_until
from tests.tasks import echo

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

TOKEN = "monitoring-metrics-token"


def banner_lines(stdout: str) -> dict[str, str]:
    """``  key:  value`` lines of a banner, by key."""
    return dict(re.findall(r"^  (\w+): +(.*)$", stdout, flags=re.MULTILINE))


def test_the_worker_banner_names_store_python_pools_executors_and_queues(
    children: Children,  # noqa: F811
) -> None:
    executor = task_backends["default"].tandem_options.executor  # type: ignore[attr-defined]

    worker = children.worker("--burst", "-w", "3", "--no-schedule")
    assert worker.wait() == 0, worker.output()

    first = worker.stdout.splitlines()[0]
    assert re.fullmatch(r"tandem worker \S+:\d+:\w+ burst", first), first
    lines = banner_lines(worker.stdout)
    assert lines["store"].startswith(f"{connection.vendor} (")
    assert lines["store"].endswith(", backend 'default'")
    assert lines["python"] == platform.python_version()
    assert lines["pools"] == f"default[{executor} x3: critical,default,exports]"
    assert lines["queues"] == "critical, default, exports"
    assert lines["lease"] == "60s"


def test_status_exit_codes_of_a_real_process(children: Children) -> None:  # noqa: F811
    unserved = children.python("-m", "django", "tandem", "status")
    assert unserved.wait() == 1
    assert "UNHEALTHY: queue 'critical': no live worker serves it" in unserved.stderr

    now = timezone.now()
    task_backends["default"].broker.register_worker(  # type: ignore[attr-defined]
        WorkerInfo(
            id="probe:1:abcdefgh",
            backend="default",
            hostname="probe",
            pid=1,
            queues=("default", "critical", "exports"),
            pools={},
            started_at=now,
            last_heartbeat_at=now,
        )
    )
    healthy = children.python("-m", "django", "tandem", "status", "--json")
    assert healthy.wait() == 0, healthy.output()
    assert '"healthy": true' in healthy.stdout

    echo.enqueue("waiting")
    TaskRecord.objects.update(available_at=now - timedelta(seconds=120))
    starving = children.python("-m", "django", "tandem", "status", "--max-age", "60")
    assert starving.wait() == 1
    assert "UNHEALTHY: queue 'default': the oldest ready task has waited 1" in starving.stderr
    patient = children.python("-m", "django", "tandem", "status", "--max-age", "600")
    assert patient.wait() == 0, patient.output()


def scrape(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/-/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        response = conn.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        conn.close()


def test_serve_prints_its_banner_and_exposes_every_metric(servers: Servers) -> None:  # noqa: F811
    from tests.support.serve_settings import EXECUTOR

    # An expired lease of a worker that died, for serve's first heartbeat to recover.
    echo.enqueue("lost")
    now = timezone.now()
    broker = task_backends["default"].broker  # type: ignore[attr-defined]
    assert broker.claim(["default"], 1, "dead:1:worker", now - timedelta(seconds=1), now)

    server, port = servers.serve(TANDEM_TEST_METRICS_TOKEN=TOKEN, TANDEM_TEST_LEASE="3")

    first = server.stdout.splitlines()[0]
    assert re.fullmatch(r"tandem serve \S+:\d+:\w+", first), first
    lines = banner_lines(server.stdout)
    assert lines["store"].startswith(f"{connection.vendor} (")
    assert lines["store"].endswith(", backend 'default'")
    assert lines["python"] == platform.python_version()
    assert lines["pools"] == f"default[{EXECUTOR} x2: default]"
    assert lines["queues"] == "default"
    assert lines["http"].startswith(f"http://127.0.0.1:{port}/ (8 threads; ")
    assert lines["ops"].endswith("/-/health/live, /-/health/ready, /-/metrics")

    done = double.enqueue(21)
    flaky = fails_twice.enqueue("counted")  # retried once, then FAILED
    wait_until(
        lambda: (
            TaskRecord.objects.get(id=done.id).status == SUCCESSFUL
            and TaskRecord.objects.get(id=flaky.id).status == FAILED
            and not TaskRecord.objects.filter(status__in=["READY", "RUNNING"]).exists()
        ),
        "the tasks to settle and the lost lease to be recovered",
        alive=[server],
    )
    full_rate_window()  # a full rate limit: the rate gauge gets a sample
    text = scrape(port)

    check(text, with_samples=set(CATALOGUE))
    assert 'tandem_task_retries_total{backend="default",queue="default",' in text
    assert 'outcome="retried"' in text
    assert 'tandem_recovered_leases_total{backend="default",status="READY"} 1.0' in text
    assert get(port, "/-/health/ready") == (200, "ready\n")
    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.output()
