"""``manage.py tandem retry`` and ``manage.py tandem cancel``: selections, the fresh attempt
budget, the kept error history, ``--dry-run``, the progress line and bad arguments."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tandem.brokers.base import FAILED, READY, RUNNING, SUCCESSFUL
from tandem.models import TaskRecord
from tests import tasks
from tests.support.doubles import FrozenClock
from tests.support.harness import Harness

pytestmark = pytest.mark.django_db(transaction=True)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def command(*args: str, stderr: io.StringIO | None = None) -> str:
    out = io.StringIO()
    call_command("tandem", *args, stdout=out, stderr=stderr or io.StringIO())
    return out.getvalue()


def row(result_id: str) -> TaskRecord:
    return TaskRecord.objects.get(id=result_id)


def failed_task(drain, key: str) -> str:
    result = tasks.fail.enqueue(key)
    drain()
    assert row(result.id).status == FAILED
    return str(result.id)


def test_retry_gives_a_fresh_budget_and_keeps_the_errors(drain) -> None:
    result = tasks.hooked_flaky.enqueue("bulk-retry", 3)  # max_attempts=2: fails both
    drain()
    spent = row(result.id)
    assert (spent.status, spent.attempts, len(spent.errors)) == (FAILED, 2, 2)

    out = command("retry", "--id", result.id)

    assert out.startswith("Retried 1 failed task(s) of backend 'default': READY again")
    again = row(result.id)
    assert (again.status, again.max_attempts, again.finished_at) == (READY, 4, None)
    assert again.errors == spent.errors and again.worker_ids == spent.worker_ids
    drain()  # attempt 3 fails, attempt 4 succeeds: two more attempts, as a fresh task would get
    done = row(result.id)
    assert (done.status, done.attempts, done.return_value) == (SUCCESSFUL, 4, 4)
    assert [e["exception_class_path"] for e in done.errors] == ["builtins.RuntimeError"] * 3


def test_retry_selects_by_queue_task_and_since(drain) -> None:
    old = failed_task(drain, "old")
    recent = failed_task(drain, "recent")
    other = tasks.fail.using(queue_name="exports").enqueue("exports")
    drain()
    ok = tasks.add.enqueue(1, 2)
    drain()
    TaskRecord.objects.filter(id=old).update(finished_at=timezone.now() - timedelta(hours=3))

    assert command("retry", "--since", "2h", "--dry-run") == (
        "Would retry 2 failed task(s) of backend 'default'.\n"  # recent + exports
    )
    assert row(recent).status == FAILED  # a dry run changes nothing
    command("retry", "--queue", "default", "--task", "tests.tasks.fail", "--since", "2h")

    assert [row(i).status for i in (old, recent, other.id, ok.id)] == [
        FAILED,
        READY,
        FAILED,
        SUCCESSFUL,
    ]
    assert command("retry", "--task", "tests.tasks.add").startswith("Retried 0 failed task(s)")


def test_cancel_fails_ready_tasks_and_asks_running_ones_to_stop(harness: Harness) -> None:
    running = tasks.gated.enqueue("bulk-cancel")
    supervisor = harness.supervisor(workers=1, clock=FrozenClock())
    supervisor.step()
    assert row(running.id).status == RUNNING
    waiting = [tasks.noop.enqueue() for _ in range(3)]
    elsewhere = tasks.noop.using(queue_name="exports").enqueue()

    assert command("cancel", "--queue", "default", "--dry-run") == (
        "Would cancel 4 task(s) of backend 'default': 3 ready (they would fail at once), "
        "1 running (they would be asked to stop).\n"
    )
    out = command("cancel", "--queue", "default")

    assert out == (
        "Cancelled 3 ready task(s) of backend 'default' (FAILED now); "
        "asked 1 running task(s) to stop.\n"
    )
    assert {row(w.id).status for w in waiting} == {FAILED}
    assert row(running.id).cancel_requested_at is not None
    assert row(elsewhere.id).status == READY
    tasks.gate("bulk-cancel").set()


def test_cancel_by_id_and_task(drain) -> None:
    first, second = tasks.noop.enqueue(), tasks.noop.enqueue()
    add = tasks.add.enqueue(1, 1)

    command("cancel", "--id", first.id, "--id", add.id, "--task", "tests.tasks.noop")

    assert [row(r.id).status for r in (first, second, add)] == [FAILED, READY, READY]


def test_a_terminal_gets_a_progress_line(drain) -> None:
    ids = [failed_task(drain, f"progress-{n}") for n in range(3)]
    stderr = Terminal()

    command("retry", "--task", "tests.tasks.fail", stderr=stderr)

    assert stderr.getvalue() == "\r\x1b[Kretrying: 0/3\r\x1b[Kretrying: 3/3\n"
    assert {row(i).status for i in ids} == {READY}
    off = io.StringIO()
    command("cancel", "--task", "tests.tasks.fail", stderr=off)
    assert off.getvalue() == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["retry", "--id", "42"], "--id must be a task id (a UUID), got '42'."),
        (
            ["cancel", "--since", "2 hours"],
            "--since must be a duration such as 2h, 30m, 7d or a number of seconds, got '2 hours'.",
        ),
        (["retry", "--backend", "nope"], "No task backend 'nope' in settings.TASKS."),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(args: list[str], message: str) -> None:
    waiting = tasks.noop.enqueue()
    with pytest.raises(CommandError) as raised:
        command(*args)
    assert str(raised.value) == message
    assert row(waiting.id).status == READY
