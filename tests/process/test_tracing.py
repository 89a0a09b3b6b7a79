"""OpenTelemetry across a real ``tandem worker`` process: the test enqueues under its own tracer
provider (the SDK's in-memory exporter); the worker process, with a provider of its own that
appends its spans to a file, runs each attempt in a CONSUMER span parented by the stored
context — in every executor (a child process and a subinterpreter configure their own)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import tasks
from tests.spans import as_dict, in_memory, read_file
from tests.support.pools import EXECUTORS
from tests.support.processes import Children

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_the_enqueue_span_is_the_parent_of_the_attempt_in_the_worker_process(
    executor: str, children: Children, tmp_path: Path
) -> None:
    with in_memory() as exporter:
        ok = tasks.add.enqueue(2, 3)
        failing = tasks.fail.enqueue("traced failure")
        coroutine = tasks.async_add.enqueue(4, 5)
        producers = {
            span["attributes"]["messaging.message.id"]: span
            for span in map(as_dict, exporter.get_finished_spans())
        }
    spans_file = str(tmp_path / "spans.jsonl")
    worker = children.worker(
        "--burst", "-w", "1", TANDEM_TEST_SPANS=spans_file, TANDEM_TEST_EXECUTOR=executor
    )
    assert worker.wait() == 0, worker.output()
    runs = {
        span["attributes"]["messaging.message.id"]: span
        for span in read_file(spans_file)
        if span["kind"] == "CONSUMER"
    }
    assert set(runs) == {ok.id, failing.id, coroutine.id}, worker.output()
    for result in (ok, failing, coroutine):
        run, producer = runs[result.id], producers[result.id]
        assert producer["kind"] == "PRODUCER"
        assert run["name"] == f"tandem run {result.task.module_path}"
        assert (run["trace_id"], run["parent_id"]) == (producer["trace_id"], producer["span_id"])
        assert run["attributes"] == {
            "messaging.system": "tandem",
            "messaging.destination.name": "default",
            "messaging.message.id": result.id,
            "messaging.operation.type": "process",
            "tandem.attempt": 1,
        }
        if executor == "thread":
            assert run["pid"] == worker.process.pid
        elif executor == "process":
            assert run["pid"] not in (worker.process.pid, os.getpid())
    assert [runs[r.id]["status"] for r in (ok, failing, coroutine)] == ["UNSET", "ERROR", "UNSET"]
    [exception] = runs[failing.id]["exception"]
    assert exception["exception.type"] == "ValueError"
    assert exception["exception.message"] == "traced failure"
