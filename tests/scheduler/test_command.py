"""``manage.py tandem schedule``: each schedule, its last tick and its next runs; ``--json``."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.tasks import task_backends
from django.utils import timezone

from tandem.scheduler.registry import schedule
from tandem.scheduler.report import views
from tests.tasks import add, noop

pytestmark = pytest.mark.django_db

TICK = datetime(2030, 1, 1, 2, 0, tzinfo=UTC)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("tandem", "schedule", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def configured(schedules):
    schedules(
        {
            "nightly": {
                "task": "tests.tasks.echo",
                "cron": "0 3 * * *",
                "args": ["report", 7],
                "kwargs": {"full": True},
                "timezone": "Europe/Paris",
            }
        }
    )
    schedule("*/30 * * * *", catch_up="none")(noop)
    backend = task_backends["default"]
    backend.broker.fire_tick("nightly", TICK, backend._new_task(noop, [], {}))


def upcoming(name: str, count: int) -> list[datetime]:
    [view] = [
        v for v in views(task_backends["default"], timezone.now(), count) if v.config.name == name
    ]
    return list(view.next_runs)


def test_the_listing_shows_task_cron_zone_last_tick_and_next_runs(configured):
    nightly, every_half_hour = upcoming("nightly", 3), upcoming("tests.tasks.noop", 3)

    output = run("--count", "3")

    paris = task_backends["default"].tandem_options.schedules[0].zone
    expected_nightly = [
        "nightly",
        '  task:      tests.tasks.echo("report", 7, full=true)',
        "  cron:      0 3 * * *  (Europe/Paris, catch_up=one)",
        "  last tick: 2030-01-01 03:00:00+01:00",
        f"  next:      {nightly[0].astimezone(paris).isoformat(' ')}",
        f"             {nightly[1].astimezone(paris).isoformat(' ')}",
        f"             {nightly[2].astimezone(paris).isoformat(' ')}",
    ]
    expected_noop = [
        "tests.tasks.noop",
        "  task:      tests.tasks.noop",
        "  cron:      */30 * * * *  (UTC, catch_up=none)",
        "  last tick: never",
        *(
            f"{'  next:      ' if i == 0 else ' ' * 13}{moment.isoformat(' ')}"
            for i, moment in enumerate(every_half_hour)
        ),
    ]
    assert output.splitlines() == expected_nightly + expected_noop
    assert all(moment.astimezone(paris).hour == 3 for moment in nightly)


def test_json(configured):
    nightly = upcoming("nightly", 2)

    document = json.loads(run("--json", "--count", "2"))

    assert document["backend"] == "default"
    assert document["run_schedules"] is True
    first, second = document["schedules"]
    assert first == {
        "name": "nightly",
        "task": "tests.tasks.echo",
        "cron": "0 3 * * *",
        "timezone": "Europe/Paris",
        "catch_up": "one",
        "args": ["report", 7],
        "kwargs": {"full": True},
        "defined_by": "TASKS['default']['OPTIONS']['schedule']['nightly']",
        "last_tick": "2030-01-01T02:00:00+00:00",
        "next_runs": [moment.isoformat() for moment in nightly],
    }
    assert (second["name"], second["last_tick"], len(second["next_runs"])) == (
        "tests.tasks.noop",
        None,
        2,
    )
    assert second["defined_by"] == "tandem.schedule() on 'tests.tasks.noop'"


def test_no_schedules():
    assert run() == "No schedules for backend 'default'.\n"
    assert json.loads(run("--json")) == {
        "backend": "default",
        "run_schedules": True,
        "schedules": [],
    }


def test_a_configuration_that_does_not_run_them_says_so(schedules):
    schedules({"n": {"task": "tests.tasks.noop", "cron": "@daily"}}, run_schedules=False)

    assert run().splitlines()[0] == (
        "OPTIONS['run_schedules'] is False for TASKS['default']: no supervisor of this "
        "configuration fires these schedules."
    )
    assert json.loads(run("--json"))["run_schedules"] is False


def test_errors():
    with pytest.raises(CommandError, match=r"^--count must be >= 1, got 0\.$"):
        run("--count", "0")
    with pytest.raises(CommandError, match=r"^No task backend 'nope' in settings\.TASKS\.$"):
        run("--backend", "nope")


def test_a_name_clash_is_a_command_error(schedules):
    schedules({"tests.tasks.add": {"task": "tests.tasks.add", "cron": "@daily"}})
    schedule("@hourly")(add)

    with pytest.raises(
        CommandError, match=r"^Schedule 'tests\.tasks\.add' of TASKS\['default'\] is"
    ):
        run()
