"""``tandem.embedded.start()/stop()`` in this process: idempotence, drain, release, errors."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest
from django.db import DatabaseError
from django.tasks.exceptions import InvalidTaskBackend

from tandem import embedded
from tandem.brokers.database import DatabaseBroker
from tandem.models import TaskRecord, WorkerRecord
from tests.embedded.conftest import status, wait_for
from tests.tasks import add, gate, gated

pytestmark = pytest.mark.django_db(transaction=True)


def test_start_is_idempotent_and_stop_is_repeatable(started: list[embedded.EmbeddedWorker]) -> None:
    worker = embedded.start()
    started.append(worker)
    assert worker.running
    assert embedded.start() is worker
    assert embedded.start(workers=7) is worker  # arguments of later calls are ignored
    assert embedded.current() is worker
    assert WorkerRecord.objects.filter(pk=worker.worker_id).exists()

    assert worker.stop(grace=5) is True
    assert not worker.running
    assert embedded.current() is None
    assert not WorkerRecord.objects.filter(pk=worker.worker_id).exists()
    assert worker.stop(grace=5) is True  # a no-op once stopped
    assert embedded.stop() is True  # nothing left to stop

    again = embedded.start()
    started.append(again)
    assert again is not worker
    assert again.running and again.worker_id != worker.worker_id


def test_runs_a_task_enqueued_in_this_process(started: list[embedded.EmbeddedWorker]) -> None:
    started.append(embedded.start())
    result = add.enqueue(2, 3)
    wait_for(lambda: status(result.id) == "SUCCESSFUL", "the task to succeed")
    assert TaskRecord.objects.get(pk=result.id).return_value == 5


def test_stop_drains_an_in_flight_task(started: list[embedded.EmbeddedWorker]) -> None:
    worker = embedded.start()
    started.append(worker)
    result = gated.enqueue("drain")
    wait_for(lambda: status(result.id) == "RUNNING", "the task to run")

    opener = threading.Timer(0.3, gate("drain").set)
    opener.start()
    try:
        assert embedded.stop(grace=15) is True
    finally:
        opener.join()
    assert not worker.running
    record = TaskRecord.objects.get(pk=result.id)
    assert record.status == "SUCCESSFUL"
    assert record.return_value is True


def test_stop_releases_what_is_still_running_after_the_grace_period(
    started: list[embedded.EmbeddedWorker],
) -> None:
    worker = embedded.start()
    started.append(worker)
    result = gated.enqueue("release", timeout=30)
    wait_for(lambda: status(result.id) == "RUNNING", "the task to run")

    began = time.monotonic()
    assert worker.stop(grace=0.5) is False
    took = time.monotonic() - began
    assert 0.5 <= took < 0.5 + embedded.FORCED_STOP_TIMEOUT
    assert not worker.running
    record = TaskRecord.objects.get(pk=result.id)
    assert record.status == "READY"
    assert record.worker_id == ""
    assert record.errors[-1]["exception_class_path"] == "tandem.exceptions.Released"


def test_grace_must_not_be_negative(started: list[embedded.EmbeddedWorker]) -> None:
    worker = embedded.start()
    started.append(worker)
    with pytest.raises(ValueError, match="grace must be >= 0"):
        worker.stop(grace=-1)
    with pytest.raises(ValueError, match="grace must be >= 0"):
        embedded.lifespan(lambda scope, receive, send: None, grace=-1)  # type: ignore[arg-type,return-value]
    assert worker.running


def test_an_unknown_backend_fails_in_the_caller() -> None:
    with pytest.raises(InvalidTaskBackend):
        embedded.start("missing")
    assert embedded.current("missing") is None


class UnavailableStore(DatabaseBroker):
    def prepare(self) -> None:
        raise DatabaseError("the task store is unavailable (injected by the test)")


def test_a_failing_supervisor_start_is_raised_in_the_caller() -> None:
    with pytest.raises(DatabaseError, match="injected by the test"):
        embedded.start(broker=UnavailableStore("default"))
    assert embedded.current() is None
    assert not [t for t in threading.enumerate() if t.name.startswith("tandem-embedded")]
    assert not WorkerRecord.objects.exists()


def test_never_installs_a_signal_handler(
    monkeypatch: pytest.MonkeyPatch, started: list[embedded.EmbeddedWorker]
) -> None:
    catchable = [s for s in signal.Signals if s not in (signal.SIGKILL, signal.SIGSTOP)]
    before = {s: signal.getsignal(s) for s in catchable}
    calls: list[Any] = []
    real = signal.signal
    monkeypatch.setattr(signal, "signal", lambda *args: calls.append(args) or real(*args))

    worker = embedded.start()
    started.append(worker)
    result = add.enqueue(1, 1)
    wait_for(lambda: status(result.id) == "SUCCESSFUL", "the task to succeed")
    embedded.stop(grace=5)

    assert calls == []
    assert {s: signal.getsignal(s) for s in catchable} == before


def test_the_exit_handler_releases_in_flight_tasks(started: list[embedded.EmbeddedWorker]) -> None:
    worker = embedded.start()
    started.append(worker)
    result = gated.enqueue("exit", timeout=30)
    wait_for(lambda: status(result.id) == "RUNNING", "the task to run")

    embedded._release_at_exit()  # what atexit runs when the host never called stop()

    assert not worker.running
    assert embedded.current() is None
    assert status(result.id) == "READY"
