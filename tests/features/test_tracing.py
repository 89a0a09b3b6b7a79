"""OpenTelemetry in one process: the PRODUCER span at enqueue, the trace context stored with the
task, a CONSUMER span per attempt parented by it; nothing when no tracer provider is set.
(Across a real worker process: tests/process/test_tracing.py.)"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from django.tasks import TaskResultStatus

from tandem.models import TaskRecord
from tests import tasks
from tests.spans import as_dict, in_memory
from tests.support.doubles import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def use_thread_pool(settings: Any, **pool: Any) -> None:
    configured = {k: dict(v) for k, v in settings.TASKS.items()}
    configured["default"]["OPTIONS"] = {
        "pools": {
            "default": {"queues": ["default", "critical", "exports"], "executor": "thread", **pool}
        }
    }
    settings.TASKS = configured


def test_each_attempt_is_a_consumer_span_of_the_enqueue(drain: Any, settings: Any) -> None:
    use_thread_pool(settings, backoff=0.01)
    with in_memory() as exporter:
        result = tasks.flaky.enqueue("traced-retry", 1)  # fails once, then succeeds
        stored = TaskRecord.objects.get(id=result.id).trace_context
        until_finished(drain, result)
        spans = [as_dict(span) for span in exporter.get_finished_spans()]
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    [producer] = [s for s in spans if s["kind"] == "PRODUCER"]
    assert producer["name"] == "tandem enqueue tests.tasks.flaky"
    assert producer["attributes"]["messaging.system"] == "tandem"
    assert producer["attributes"]["messaging.destination.name"] == "default"
    assert producer["attributes"]["messaging.message.id"] == result.id
    assert stored["traceparent"].startswith(f"00-{producer['trace_id']}-{producer['span_id']}-")
    runs = [s for s in spans if s["kind"] == "CONSUMER"]
    assert [s["name"] for s in runs] == ["tandem run tests.tasks.flaky"] * 2
    assert [s["attributes"]["tandem.attempt"] for s in runs] == [1, 2]
    for run in runs:
        assert (run["trace_id"], run["parent_id"]) == (producer["trace_id"], producer["span_id"])
        assert run["attributes"]["messaging.system"] == "tandem"
        assert run["attributes"]["messaging.destination.name"] == "default"
        assert run["attributes"]["messaging.message.id"] == result.id
    assert [s["status"] for s in runs] == ["ERROR", "UNSET"]
    [exception] = runs[0]["exception"]
    assert exception["exception.type"] == "RuntimeError"
    assert exception["exception.message"] == "failure 1 of 1"
    assert runs[1]["exception"] == []


def test_a_coroutine_attempt_and_a_task_that_cannot_run_are_spans_too(
    drain: Any, settings: Any
) -> None:
    use_thread_pool(settings)
    with in_memory() as exporter:
        coroutine = tasks.async_fail.enqueue("async traced")
        missing = tasks.add.enqueue(1, 2)
        TaskRecord.objects.filter(id=missing.id).update(task_path="tests.tasks.vanished")
        drain(workers=1)
        spans = [as_dict(span) for span in exporter.get_finished_spans()]
    producers = {
        s["attributes"]["messaging.message.id"]: s for s in spans if s["kind"] == "PRODUCER"
    }
    runs = {s["attributes"]["messaging.message.id"]: s for s in spans if s["kind"] == "CONSUMER"}
    run = runs[coroutine.id]
    assert run["name"] == "tandem run tests.tasks.async_fail"
    assert run["parent_id"] == producers[coroutine.id]["span_id"]
    assert run["status"] == "ERROR"
    assert run["exception"][0]["exception.type"] == "ValueError"
    assert runs[missing.id]["status"] == "ERROR"
    assert runs[missing.id]["parent_id"] == producers[missing.id]["span_id"]


def test_without_a_tracer_provider_nothing_is_recorded_or_stored(drain: Any) -> None:
    result = tasks.add.enqueue(1, 2)
    assert TaskRecord.objects.get(id=result.id).trace_context is None
    drain()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_without_opentelemetry_nothing_is_imported() -> None:
    """A process where the package cannot be imported: tasks enqueue and run, and no module of
    OpenTelemetry is ever loaded."""
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "import django; django.setup()\n"
        "from tandem import tracing\n"
        "from tandem.brokers.base import NewTask\n"
        "from datetime import datetime, UTC\n"
        "new = NewTask(id='x', backend='default', queue_name='default', task_path='a.b',"
        " priority=0, takes_context=False, args=[], kwargs={}, run_after=None,"
        " enqueued_at=datetime.now(UTC))\n"
        "with tracing.producer(new) as same: assert same is new\n"
        "assert not tracing.enabled()\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.')))\n"
    )
    from tests.support.processes import process_env

    done = subprocess.run(
        [sys.executable, "-c", code], env=process_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_installed_but_unused_opentelemetry_is_not_imported() -> None:
    """Installed, but nothing imported ``opentelemetry.trace`` (so nothing can have set a tracer
    provider): an enqueue does not import it; once the app sets a provider, spans are made."""
    code = (
        "import sys, os; os.environ.pop('OTEL_PYTHON_TRACER_PROVIDER', None)\n"
        "import django; django.setup()\n"
        "from tandem import tracing\n"
        "from tandem.brokers.base import NewTask\n"
        "from datetime import datetime, UTC\n"
        "new = NewTask(id='x', backend='default', queue_name='default', task_path='a.b',"
        " priority=0, takes_context=False, args=[], kwargs={}, run_after=None,"
        " enqueued_at=datetime.now(UTC))\n"
        "with tracing.producer(new) as same: assert same is new\n"
        "assert not tracing.enabled()\n"
        "print('opentelemetry.trace' in sys.modules)\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "trace.set_tracer_provider(TracerProvider())\n"
        "with tracing.producer(new) as traced: assert traced.trace_context\n"
        "print(tracing.enabled())\n"
    )
    from tests.support.processes import process_env

    done = subprocess.run(
        [sys.executable, "-c", code], env=process_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


def until_finished(drain: Any, result: Any) -> None:
    """Burst rounds until ``result`` finished: its retry, a few ms of back-off later, may not be
    due yet when a burst finds the queue empty."""

    def finished() -> bool:
        drain(workers=1)
        return TaskRecord.objects.get(id=result.id).status in ("SUCCESSFUL", "FAILED")

    wait_for(finished, "the retried task to finish")
