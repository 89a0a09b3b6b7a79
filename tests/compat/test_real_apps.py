"""A project whose installed app imports pydantic at start-up (django-ninja-extra, like Wagtail's
redirects app), on tandem's default settings: its tasks run under ``tandem serve`` and under a
separate ``tandem worker``. On Python 3.14 the default executor is subinterpreters, which
``pydantic_core`` refuses: the pool proves it at start-up and runs on processes, saying so once."""

from __future__ import annotations

import http.client
import json
import signal
import sys

import pytest
from django.tasks import TaskResultStatus

from tandem.models import TaskRecord
from tests.support import free_port
from tests.support.processes import Children, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SETTINGS = "tests.compat.settings"
REFUSED = "module pydantic_core._pydantic_core does not support loading in subinterpreters"
ON_314 = sys.version_info >= (3, 14)


def pools_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("  pools:"))


def check_default_executor(stdout: str, stderr: str) -> None:
    """The banner and the log say where the pool runs: processes (with why) on 3.14, else threads
    (the default before 3.14; nothing to fall back from)."""
    line = pools_line(stdout)
    if ON_314:
        assert line == (
            "  pools:  default[process x2: default,critical,exports] "
            "(not subinterpreter: pydantic_core._pydantic_core refused)"
        ), stdout
        assert stderr.count("runs on the process executor instead of subinterpreter") == 1
        assert "the module 'pydantic_core._pydantic_core' cannot load in a subinterpreter" in (
            stderr
        )
        assert '"executor": "process"' in stderr
    else:
        assert line == "  pools:  default[thread x2: default,critical,exports]", stdout


@pytest.mark.skipif(not ON_314, reason="subinterpreters: Python 3.14")
def test_pydantic_core_refuses_a_subinterpreter() -> None:
    from concurrent import interpreters

    interpreter = interpreters.create()
    try:
        with pytest.raises(interpreters.ExecutionFailed) as failed:
            interpreter.exec("import pydantic")
    finally:
        interpreter.close()
    assert f"ImportError: {REFUSED}" in str(failed.value)


def test_tasks_run_under_a_separate_worker_on_the_default_settings(children: Children) -> None:
    from tests.compat.shop.tasks import backported, validate_order

    validated = validate_order.enqueue({"sku": "tea", "quantity": 2})
    hello = backported.enqueue("worker")
    worker = children.worker("--burst", DJANGO_SETTINGS_MODULE=SETTINGS)
    assert worker.wait(120) == 0, worker.output()

    validated = validate_order.get_result(validated.id)
    hello = backported.get_result(hello.id)
    assert validated.status == TaskResultStatus.SUCCESSFUL, validated.errors
    assert validated.return_value["order"] == {"sku": "tea", "quantity": 2}
    assert hello.status == TaskResultStatus.SUCCESSFUL, hello.errors
    assert hello.return_value["hello"] == "worker"
    # On 3.14 in a child process of the worker's process pool; before, in the worker's threads.
    assert (validated.return_value["pid"] != worker.pid) is ON_314
    check_default_executor(worker.stdout, worker.stderr)


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def answers(port: int) -> bool:
    try:
        return get(port, "/ping/")[0] == 200
    except OSError:
        return False


def test_tasks_enqueued_by_a_view_run_under_serve_on_the_default_settings(
    children: Children,
) -> None:
    port = free_port()
    server = children.python(
        "-m",
        "django",
        "tandem",
        "serve",
        "--bind",
        f"127.0.0.1:{port}",
        DJANGO_SETTINGS_MODULE=SETTINGS,
    )
    wait_until(lambda: answers(port), "tandem serve to answer", 120, alive=[server])
    status, body = get(port, "/order/?quantity=3&name=serve")
    assert status == 200, body
    ids = json.loads(body)
    assert get(port, "/order/?quantity=0")[0] == 200  # enqueued; fails validation when it runs

    def finished() -> bool:
        return TaskRecord.objects.filter(finished_at__isnull=False).count() == 4

    wait_until(finished, "the four tasks to finish", 120, alive=[server])
    from tests.compat.shop.tasks import backported, validate_order

    validated = validate_order.get_result(ids["validate_order"])
    hello = backported.get_result(ids["backported"])
    assert validated.status == TaskResultStatus.SUCCESSFUL, validated.errors
    assert validated.return_value["order"] == {"sku": "tea", "quantity": 3}
    assert hello.status == TaskResultStatus.SUCCESSFUL, hello.errors
    assert hello.return_value["hello"] == "serve"
    invalid = TaskRecord.objects.exclude(id__in=ids.values()).get(task_path__endswith="order")
    assert invalid.status == "FAILED"
    assert "pydantic_core._pydantic_core.ValidationError" in str(invalid.errors)

    server.send(signal.SIGTERM)
    assert server.wait(60) == 0, server.output()
    check_default_executor(server.stdout, server.stderr)
