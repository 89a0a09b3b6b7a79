"""Paused queues end to end: ``tandem.pause/resume/is_paused``, a real supervisor, the command.

(The broker calls behind them are in tests/contract/test_pause.py, on every store.)
"""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

import tandem
from tandem.brokers.base import READY, RUNNING, SUCCESSFUL
from tandem.models import QueuePause, TaskRecord
from tests.support.doubles import FrozenClock
from tests.support.harness import Harness
from tests.tasks import critical_noop, gate, gated, noop

pytestmark = pytest.mark.django_db(transaction=True)


def status(result_id: str) -> str:
    return TaskRecord.objects.get(id=result_id).status


def test_pause_and_resume_answer_whether_they_changed_anything() -> None:
    assert tandem.is_paused("critical") is False
    assert tandem.pause("critical") is True
    assert tandem.pause("critical") is False  # already paused
    assert tandem.is_paused("critical") is True
    assert tandem.is_paused("default") is False

    assert tandem.resume("critical") is True
    assert tandem.resume("critical") is False
    assert tandem.is_paused("critical") is False


def test_a_paused_queue_starts_nothing_and_other_queues_go_on(drain) -> None:
    tandem.pause("critical")
    waiting = critical_noop.enqueue()  # enqueueing goes on while paused
    other = noop.enqueue()

    drain()

    assert status(other.id) == SUCCESSFUL
    assert status(waiting.id) == READY
    assert TaskRecord.objects.get(id=waiting.id).worker_ids == []  # no attempt counted

    tandem.resume("critical")
    drain()
    assert status(waiting.id) == SUCCESSFUL


def test_a_running_task_finishes_after_its_queue_is_paused(harness: Harness) -> None:
    running = gated.enqueue("pause-running")
    waiting = noop.enqueue()  # claimable by the frozen clock: only the pause holds it back
    supervisor = harness.supervisor(workers=1, clock=FrozenClock())
    assert supervisor.step() == 1  # one slot: the older task
    assert status(running.id) == RUNNING

    tandem.pause("default")
    gate("pause-running").set()
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.notify(["default"])  # announced work, a free slot: still nothing starts
    assert supervisor.step() == 1  # the running task settled; no claim
    assert status(running.id) == SUCCESSFUL
    assert status(waiting.id) == READY

    tandem.resume("default")
    supervisor.notify(["default"])
    assert supervisor.step() == 1  # claimed now
    harness.wait_for_outcomes(supervisor, 1)
    supervisor.step()
    assert status(waiting.id) == SUCCESSFUL


def test_the_pause_is_stored_with_the_tasks() -> None:
    tandem.pause("exports")

    [row] = QueuePause.objects.all()
    assert (row.backend, row.queue_name) == ("default", "exports")
    tandem.resume("exports")
    assert not QueuePause.objects.exists()


# -- manage.py tandem pause | resume --------------------------------------------------------


def command(*args: str) -> str:
    out = io.StringIO()
    call_command("tandem", *args, stdout=out)
    return out.getvalue()


def test_the_commands_pause_and_resume_several_queues() -> None:
    assert command("pause", "critical", "exports") == (
        "Queue 'critical' of backend 'default': paused.\n"
        "Queue 'exports' of backend 'default': paused.\n"
    )
    again = command("pause", "critical")
    assert again == "Queue 'critical' of backend 'default': already paused.\n"
    assert tandem.is_paused("critical") and tandem.is_paused("exports")

    assert command("resume", "exports", "default") == (
        "Queue 'exports' of backend 'default': resumed.\n"
        "Queue 'default' of backend 'default': was not paused.\n"
    )
    assert tandem.is_paused("critical") and not tandem.is_paused("exports")


def test_the_commands_refuse_an_unknown_queue_or_backend() -> None:
    with pytest.raises(CommandError, match=r"Queue 'exprots' is not one of TASKS\['default'\]"):
        command("pause", "exprots")
    with pytest.raises(CommandError, match=r"No task backend 'nope' in settings\.TASKS"):
        command("pause", "critical", "--backend", "nope")
    assert not QueuePause.objects.exists()
