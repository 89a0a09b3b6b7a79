"""Schedules inside supervisors on the real database store, stepped with a frozen clock."""

from __future__ import annotations

import io
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection

from tandem.management.commands.tandem import Command
from tandem.models import ScheduleTick, TaskRecord
from tests.support.doubles import FrozenClock
from tests.support.harness import Harness

pytestmark = pytest.mark.django_db(transaction=True)

EVERY_MINUTE = {"every-minute": {"task": "tests.tasks.noop", "cron": "* * * * *"}}


def noop_rows() -> list[TaskRecord]:
    return list(TaskRecord.objects.filter(task_path="tests.tasks.noop").order_by("enqueued_at"))


def test_two_supervisors_stepping_the_same_tick_enqueue_one_task(harness: Harness, schedules):
    schedules(EVERY_MINUTE, poll_interval=3600)
    clock = FrozenClock()
    a = harness.supervisor(clock=clock, workers=1)
    b = harness.supervisor(clock=clock, workers=1)
    a.step()
    b.step()
    assert noop_rows() == []  # a schedule never fired starts from now
    tick = a.scheduler.next_at
    assert tick == b.scheduler.next_at and tick > clock()

    clock.move_to(tick)
    a.step()
    b.step()

    [row] = noop_rows()
    [recorded] = ScheduleTick.objects.all()
    assert (recorded.backend, recorded.name, recorded.tick_at, recorded.task_id) == (
        "default",
        "every-minute",
        tick,
        row.id,
    )
    assert (a.claimed, b.claimed) == (1, 0)  # woken by its own tick: claimed in the same step
    assert a.scheduler.next_at == b.scheduler.next_at == tick + timedelta(minutes=1)


def test_four_supervisors_stepping_one_tick_at_once_enqueue_one_task(harness: Harness, schedules):
    """Concurrently, each in its own thread and database connection, released by a barrier."""
    schedules(EVERY_MINUTE, poll_interval=3600)
    clock = FrozenClock()
    supervisors = [harness.supervisor(clock=clock, workers=1) for _ in range(4)]
    for supervisor in supervisors:
        supervisor.step()
    tick = supervisors[0].scheduler.next_at
    clock.move_to(tick)
    barrier = threading.Barrier(len(supervisors), timeout=60)
    errors: list[BaseException] = []

    def step(supervisor) -> None:
        try:
            barrier.wait()
            supervisor.step()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=step, args=(s,)) for s in supervisors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    [row] = noop_rows()
    [recorded] = ScheduleTick.objects.all()
    assert (recorded.tick_at, recorded.task_id) == (tick, row.id)
    assert all(s.scheduler.next_at == tick + timedelta(minutes=1) for s in supervisors)


@pytest.mark.parametrize(("catch_up", "caught_up"), [("one", 1), ("none", 0), ("all", 3)])
def test_a_supervisor_started_after_a_gap_catches_up_as_configured(
    harness: Harness, schedules, catch_up, caught_up
):
    schedules(
        {"hourly": {"task": "tests.tasks.noop", "cron": "0 * * * *", "catch_up": catch_up}},
        poll_interval=3600,
    )
    clock = FrozenClock()
    first = harness.supervisor(clock=clock, workers=1)
    first.step()
    clock.move_to(first.scheduler.next_at)
    first.step()  # fires the first tick
    fired_at = clock()
    first.request_stop()
    first.step()

    clock.advance(3.5 * 3600)  # three ticks pass while no supervisor runs
    second = harness.supervisor(clock=clock, workers=1)
    second.step()

    ticks = sorted(ScheduleTick.objects.values_list("tick_at", flat=True))
    expected = {
        "one": [fired_at, fired_at + timedelta(hours=3)],
        "none": [fired_at],
        "all": [fired_at + timedelta(hours=h) for h in range(4)],
    }[catch_up]
    assert ticks == expected
    assert len(noop_rows()) == 1 + caught_up
    assert second.scheduler.next_at == fired_at + timedelta(hours=4)


def test_the_supervisor_sleeps_no_longer_than_the_next_tick(harness: Harness, schedules):
    schedules(EVERY_MINUTE, poll_interval=3600, lease_seconds=3600)
    clock = FrozenClock()
    supervisor = harness.supervisor(clock=clock, workers=1)
    supervisor.step()

    slept = supervisor._sleep_for()

    assert slept == (supervisor.scheduler.next_at - clock()).total_seconds()
    assert 0 < slept <= 60  # without the schedule: the heartbeat, 1200 s away


def test_schedules_can_be_turned_off(harness: Harness, schedules):
    schedules(EVERY_MINUTE)
    assert harness.supervisor().scheduler is not None
    assert harness.supervisor(schedules=False).scheduler is None

    schedules(EVERY_MINUTE, run_schedules=False)
    assert harness.supervisor().scheduler is None


def test_a_supervisor_without_schedules_has_no_scheduler(harness: Harness):
    assert harness.supervisor().scheduler is None


def test_worker_command_runs_schedules_unless_no_schedule(schedules):
    schedules(EVERY_MINUTE)
    out = io.StringIO()
    call_command("tandem", "worker", "--burst", stdout=out, stderr=io.StringIO())
    assert "  cron:   every-minute\n" in out.getvalue()

    out = io.StringIO()
    call_command("tandem", "worker", "--burst", "--no-schedule", stdout=out, stderr=io.StringIO())
    assert "cron:" not in out.getvalue()


def test_serve_accepts_no_schedule():
    parser = Command().create_parser("manage.py", "tandem")

    assert parser.parse_args(["serve", "--no-schedule"]).no_schedule is True
    assert parser.parse_args(["serve"]).no_schedule is False
    assert parser.parse_args(["worker", "--no-schedule"]).no_schedule is True
