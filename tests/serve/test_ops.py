"""``tandem serve``'s own endpoints: /-/health/live, /-/health/ready and /-/metrics, answered by
the process that runs the supervisor (so its counters count the tasks this server ran)."""

from __future__ import annotations

import http.client
import signal

import pytest

from tandem.brokers.base import SUCCESSFUL
from tandem.models import TaskRecord
from tests.support.serving import Servers, get, wait_until

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

TOKEN = "serve-metrics-token"


def scrape(port: int, token: str | None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "GET", "/-/metrics", headers={"Authorization": f"Bearer {token}"} if token else {}
        )
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_health_and_metrics_of_a_running_server(servers: Servers) -> None:
    server, port = servers.serve(TANDEM_TEST_METRICS_TOKEN=TOKEN)
    assert "  ops:    http://127.0.0.1:" in server.stdout
    assert "/-/health/live, /-/health/ready, /-/metrics" in server.stdout

    assert get(port, "/-/health/live") == (200, "live\n")
    wait_until(lambda: get(port, "/-/health/ready") == (200, "ready\n"), "readiness", 20)
    assert scrape(port, None)[0] == 401
    assert scrape(port, "wrong")[0] == 401
    code, task_id = get(port, "/enqueue/?value=counted")
    assert code == 200
    wait_until(
        lambda: TaskRecord.objects.get(id=task_id).status == SUCCESSFUL,
        "the task to run",
        alive=[server],
    )

    code, text = scrape(port, TOKEN)

    assert code == 200
    counted = (
        'tandem_tasks_total{backend="default",outcome="succeeded",queue="default",'
        'task="tests.serve.tasks.quick"} 1.0'
    )
    assert counted in text, text
    assert 'tandem_task_duration_seconds_count{backend="default",queue="default",' in text
    assert 'tandem_queue_ready_tasks{backend="default",queue="default"} 0.0' in text
    assert 'tandem_workers{backend="default"} 1.0' in text
    assert 'tandem_pool_workers{backend="default",pool="default",worker_id="' in text
    # Other paths still reach the project's application.
    assert get(port, "/ping/") == (200, "running=0")
    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.output()


def test_metrics_are_refused_while_no_token_is_set(servers: Servers) -> None:
    server, port = servers.serve()

    code, text = scrape(port, "anything")

    assert code == 403
    assert "set TANDEM_METRICS_TOKEN" in text
    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.output()
