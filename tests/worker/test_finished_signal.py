"""Django's ``task_finished``: sent by the supervisor's process once the store took the attempt's
ending, on a thread of its own (``tandem-signals``), never for an ending the store rejected."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.tasks import TaskResult
from django.tasks.signals import task_finished

from tandem.brokers.base import READY, RUNNING, SUCCESSFUL
from tandem.models import TaskRecord
from tests.support.conformance import capture
from tests.support.doubles import FrozenClock, wait_for
from tests.support.harness import Harness
from tests.support.pools import EXECUTORS
from tests.tasks import add

pytestmark = pytest.mark.django_db(transaction=True)


def row(result: TaskResult) -> TaskRecord:
    return TaskRecord.objects.get(id=result.id)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_an_ending_the_store_rejects_as_stale_sends_no_task_finished(
    executor: str, harness: Harness, tandem_settings: Any
) -> None:
    tandem_settings(executor=executor)
    result = add.enqueue(1, 2)
    supervisor = harness.supervisor(workers=1, clock=FrozenClock())  # no heartbeat after the first
    with capture(task_finished) as finished:
        assert supervisor.step() == 1  # claimed
        harness.wait_for_outcomes(supervisor, 1)  # the attempt ended normally
        # Before its ending is written, the lease is lost and another worker claims the task (a
        # new holder, a new attempt token): the fenced write of this attempt's ending is stale.
        TaskRecord.objects.filter(id=result.id).update(worker_id="thief", attempt_token="f" * 32)
        supervisor.step()
        assert supervisor.rejected_writes == 1
        assert (row(result).status, row(result).worker_id) == (RUNNING, "thief")
        supervisor.signals.flush()
        assert finished == []

        # The thief's lease expires in turn: the task is READY again, and runs here once more.
        TaskRecord.objects.filter(id=result.id).update(
            status=READY, worker_id="", attempt_token="", lease_expires_at=None
        )
        supervisor.notify([])
        assert supervisor.step() == 1
        harness.wait_for_outcomes(supervisor, 1)
        supervisor.step()
        assert row(result).status == SUCCESSFUL
        supervisor.signals.flush()
    # Exactly one, for the attempt whose ending is stored.
    assert [(e["id"], e["status"], e["thread"]) for e in finished] == [
        (result.id, SUCCESSFUL, "tandem-signals")
    ]


@pytest.fixture
def slow_receiver() -> Iterator[tuple[threading.Event, threading.Event, list[str]]]:
    """A ``task_finished`` receiver that blocks on the first send until ``release`` is set."""
    entered, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def receiver(sender: type, task_result: Any, **kwargs: Any) -> None:
        entered.set()
        release.wait(60)
        seen.append(task_result.id)

    task_finished.connect(receiver, weak=False, dispatch_uid="test-slow-receiver")
    try:
        yield entered, release, seen
    finally:
        release.set()
        task_finished.disconnect(dispatch_uid="test-slow-receiver")


def test_a_slow_receiver_does_not_hold_up_the_claim_loop(
    harness: Harness, slow_receiver: tuple[threading.Event, threading.Event, list[str]]
) -> None:
    entered, release, seen = slow_receiver
    first, second = add.enqueue(1, 2), add.enqueue(3, 4)
    supervisor = harness.supervisor(workers=1, clock=FrozenClock())
    assert supervisor.step() == 1  # claims the first (one worker)
    harness.wait_for_outcomes(supervisor, 1)
    assert supervisor.step() == 2  # settles the first, claims the second
    wait_for(entered.is_set, "the receiver to get the first task's signal")
    assert row(second).status == RUNNING  # claimed while the receiver blocks
    harness.wait_for_outcomes(supervisor, 1)
    assert supervisor.step() == 1  # settles the second, the receiver still blocked
    assert row(second).status == SUCCESSFUL
    assert seen == []
    release.set()
    supervisor.signals.flush()
    assert seen == [first.id, second.id]  # in order


def test_close_sends_the_pending_signals(
    harness: Harness, slow_receiver: tuple[threading.Event, threading.Event, list[str]]
) -> None:
    entered, release, seen = slow_receiver
    result = add.enqueue(1, 2)
    supervisor = harness.supervisor(workers=1, clock=FrozenClock())
    supervisor.step()
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    wait_for(entered.is_set, "the receiver to get the signal")
    seen_when_closed: list[list[str]] = []

    def close() -> None:
        supervisor.close()
        seen_when_closed.append(list(seen))

    closing = threading.Thread(target=close)
    closing.start()
    wait_for(lambda: supervisor.signals._thread is None, "close() to reach the signals")
    assert closing.is_alive()  # waiting for the pending send
    release.set()
    closing.join(30)
    assert seen_when_closed == [[result.id]]


def test_a_stop_request_while_closing_gives_up_on_a_hanging_receiver(
    harness: Harness, slow_receiver: tuple[threading.Event, threading.Event, list[str]]
) -> None:
    entered, _, seen = slow_receiver
    add.enqueue(1, 2)
    supervisor = harness.supervisor(workers=1, clock=FrozenClock())
    supervisor.step()
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    wait_for(entered.is_set, "the receiver to get the signal")
    closing = threading.Thread(target=supervisor.close)
    closing.start()
    wait_for(lambda: supervisor.signals._thread is None, "close() to reach the signals")
    supervisor.request_stop(force=True)  # a second signal while draining
    closing.join(30)
    assert not closing.is_alive()
    assert seen == []  # the receiver still hangs; the worker did not wait for it


@pytest.fixture
def django_tasks_level() -> Iterator[logging.Logger]:
    django_logger = logging.getLogger("django.tasks")
    level = django_logger.level
    try:
        yield django_logger
    finally:
        django_logger.setLevel(level)


def test_the_result_is_built_only_when_someone_would_observe_it(
    harness: Harness, django_tasks_level: logging.Logger
) -> None:
    """Only Django's own receiver, its logger off: no send at all (a TaskResult costs CPU)."""
    add.enqueue(1, 2)
    add.enqueue(3, 4)
    supervisor = harness.supervisor(workers=1, clock=FrozenClock())
    django_tasks_level.setLevel(logging.CRITICAL)
    supervisor.step()
    harness.wait_for_outcomes(supervisor, 1)
    assert supervisor.step() == 2  # settles the first, claims the second
    supervisor.signals.flush()
    assert supervisor.signals.sent == 0

    django_tasks_level.setLevel(logging.INFO)  # Django's line is written: send
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    supervisor.signals.flush()
    assert supervisor.signals.sent == 1


@pytest.fixture
def django_tasks_handlers(django_tasks_level: logging.Logger) -> Iterator[logging.Logger]:
    """``django.tasks`` with its handlers and propagation put back afterwards."""
    logger = django_tasks_level
    handlers, propagate = logger.handlers[:], logger.propagate
    try:
        yield logger
    finally:
        logger.handlers[:] = handlers
        logger.propagate = propagate


def handled_as_by_default(logger: logging.Logger) -> None:
    """``django.tasks`` as Django's default logging leaves it: INFO, into a console handler that
    writes only with DEBUG on, and an ERROR handler that writes only with it off (the test's
    own capture handlers are taken off)."""
    from django.utils.log import RequireDebugFalse, RequireDebugTrue

    console = logging.StreamHandler()
    console.addFilter(RequireDebugTrue())
    admins = logging.NullHandler()  # (stands in for mail_admins: ERROR, DEBUG off)
    admins.setLevel(logging.ERROR)
    admins.addFilter(RequireDebugFalse())
    logger.handlers[:] = [console, admins]
    logger.propagate = False
    logger.setLevel(logging.INFO)


def test_a_line_no_handler_would_write_builds_no_result(
    harness: Harness, django_tasks_handlers: logging.Logger, settings: Any
) -> None:
    """Django's INFO line for a success, DEBUG off: the logger is enabled for INFO, but no
    handler would write it, so no ``TaskResult`` is built and nothing is sent; with DEBUG on,
    the console handler writes it: sent."""
    from tandem.worker.signalling import written

    logger = django_tasks_handlers
    handled_as_by_default(logger)
    settings.DEBUG = False
    assert logger.isEnabledFor(logging.INFO)
    assert not written(logger, logging.INFO)
    add.enqueue(1, 2)
    add.enqueue(3, 4)
    supervisor = harness.supervisor(workers=1, clock=FrozenClock())
    supervisor.step()
    harness.wait_for_outcomes(supervisor, 1)
    assert supervisor.step() == 2  # settles the first, claims the second
    supervisor.signals.flush()
    assert supervisor.signals.sent == 0

    settings.DEBUG = True
    assert written(logger, logging.INFO)
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    supervisor.signals.flush()
    assert supervisor.signals.sent == 1


def test_a_line_written_by_some_handler_or_by_the_last_resort_counts(
    django_tasks_handlers: logging.Logger,
) -> None:
    from tandem.worker.signalling import written

    logger = django_tasks_handlers
    logger.handlers[:] = []
    logger.propagate = False
    logger.setLevel(logging.INFO)
    assert not written(logger, logging.INFO)  # no handler: the last resort, WARNING up
    assert written(logger, logging.ERROR)
    unknown = logging.StreamHandler()
    unknown.addFilter(lambda record: False)  # may look at the record: assumed to pass
    logger.handlers[:] = [unknown]
    assert written(logger, logging.INFO)
    logger.setLevel(logging.CRITICAL)
    assert not written(logger, logging.ERROR)  # the logger is off for it
