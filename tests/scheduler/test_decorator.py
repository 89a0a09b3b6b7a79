"""``@tandem.schedule``: registration, merging with the settings, and the system checks."""

from __future__ import annotations

import copy
import sys

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.tasks import task_backends

import tandem
from tandem.brokers.memory import MemoryBroker
from tandem.scheduler import registry
from tandem.scheduler.core import Scheduler
from tandem.scheduler.registry import ScheduleClash, registered, schedule, schedules_for
from tests.tasks import add, critical_noop, noop, not_a_task

PARIS_3AM = "0 3 * * *"


def options():
    return task_backends["default"].tandem_options


def tandem_errors(app_configs=None):
    from tandem.checks import check_schedules

    return check_schedules(app_configs)


def test_the_decorator_registers_and_returns_the_task_unchanged():
    decorated = schedule(PARIS_3AM, args=(1, 2), timezone="Europe/Paris", catch_up="all")(add)

    assert decorated is add
    [config] = registered("default")
    assert (config.name, config.task, config.cron.expression, config.args) == (
        "tests.tasks.add",
        "tests.tasks.add",
        PARIS_3AM,
        (1, 2),
    )
    assert (config.timezone, config.catch_up, config.backend, dict(config.kwargs)) == (
        "Europe/Paris",
        "all",
        "default",
        {},
    )
    assert config.source == "tandem.schedule() on 'tests.tasks.add'"


def test_it_is_public_as_tandem_schedule():
    assert tandem.schedule is schedule
    assert "schedule" in tandem.__all__


def test_a_name_and_a_backend_can_be_given():
    schedule("@hourly", name="hourly-noop", kwargs={}, backend="other")(noop)

    assert [c.name for c in registered("other")] == ["hourly-noop"]
    assert registered("default") == ()


def test_settings_and_decorators_merge_settings_first(schedules):
    schedules({"from-settings": {"task": "tests.tasks.noop", "cron": "@daily"}})
    schedule("*/5 * * * *", kwargs={"a": 1, "b": 2})(add)

    assert [c.name for c in schedules_for(options())] == ["from-settings", "tests.tasks.add"]
    scheduler = Scheduler.for_backend(task_backends["default"], MemoryBroker())
    assert [c.name for c in scheduler.schedules] == ["from-settings", "tests.tasks.add"]


def test_a_name_used_by_the_settings_and_a_decorator_is_an_error(schedules):
    schedules({"tests.tasks.noop": {"task": "tests.tasks.noop", "cron": "@daily"}})
    schedule("@hourly")(noop)

    with pytest.raises(ScheduleClash) as caught:
        schedules_for(options())

    assert str(caught.value) == (
        "Schedule 'tests.tasks.noop' of TASKS['default'] is defined twice: by "
        "TASKS['default']['OPTIONS']['schedule']['tests.tasks.noop'] and by "
        "tandem.schedule() on 'tests.tasks.noop'; give one of them another name."
    )


def test_two_decorators_with_one_name_are_an_error_at_once():
    schedule("@hourly", name="report")(noop)

    with pytest.raises(ScheduleClash) as caught:
        schedule("@daily", name="report")(add)

    assert str(caught.value) == (
        "Schedule 'report' of TASKS['default'] is defined twice: by "
        "tandem.schedule() on 'tests.tasks.noop' and by tandem.schedule() on 'tests.tasks.add'; "
        "give one of them another name."
    )


def test_the_same_decoration_twice_is_not_a_clash():
    """A module imported again (autoreload, a test importing it by another route)."""
    schedule("@hourly", args=[1])(noop)
    schedule("@hourly", args=[1])(noop)

    assert len(registered("default")) == 1


def test_the_decorator_validates_at_once_with_exact_messages():
    where = "tandem.schedule() on 'tests.tasks.add'"
    cases = [
        (
            lambda: schedule("61 * * * *")(add),
            f"{where}: cron = '61 * * * *' is not a valid cron expression (Bad minute).",
        ),
        (
            lambda: schedule(PARIS_3AM, timezone="Paris")(add),
            f"{where}: timezone = 'Paris' is not a known time zone; use an IANA name such as "
            "'Europe/Paris' or 'UTC' (install the tzdata package where the system has no zone "
            "database).",
        ),
        (
            lambda: schedule(PARIS_3AM, args=[object])(add),
            f"{where}: args[0] is a builtins.type; task data must be JSON (str, int, float, bool, "
            "None, list, dict). Pass an id or an ISO string instead, and load or parse it inside "
            "the task.",
        ),
        (
            lambda: schedule(PARIS_3AM, catch_up="some")(add),
            f"{where}: catch_up must be one of 'one', 'none', 'all', got 'some'.",
        ),
        (
            lambda: schedule(PARIS_3AM, name="")(add),
            f"{where}: name = ''; a schedule name must be a non-empty string of at most 100 "
            "characters (pass name=...).",
        ),
    ]
    for apply, message in cases:
        with pytest.raises(ImproperlyConfigured) as caught:
            apply()
        assert str(caught.value) == message
    assert registered("default") == ()


def test_schedules_in_an_installed_apps_tasks_module_are_discovered(settings, monkeypatch):
    monkeypatch.delitem(sys.modules, "tests.scheduler.discovered.tasks", raising=False)
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "tests.scheduler.discovered"]
    assert registered("default") == ()  # nothing imported that module yet

    [config] = schedules_for(options())

    assert (config.name, config.args, config.cron.fields) == (
        "tests.scheduler.discovered.tasks.nightly",
        ("discovered",),
        "0 0 * * *",
    )
    assert "tests.scheduler.discovered.tasks" in sys.modules


def test_the_decorator_applies_to_tasks_only():
    with pytest.raises(TypeError) as caught:
        schedule(PARIS_3AM)(not_a_task)

    assert str(caught.value).startswith(
        "tandem.schedule('0 3 * * *') applies to a task: put it above @task, got <function "
        "not_a_task"
    )


# -- system checks -----------------------------------------------------------------------------


@pytest.mark.django_db  # the checks of the whole project ask the database about JSON support
def test_valid_schedules_pass_the_checks(schedules):
    schedules({"nightly": {"task": "tests.tasks.noop", "cron": PARIS_3AM}})
    schedule("@hourly")(critical_noop)

    assert tandem_errors() == []
    assert [m for m in checks.run_checks() if m.id and m.id.startswith("tandem.")] == []


def test_a_task_path_that_does_not_resolve_is_e010(schedules):
    schedules(
        {
            "missing": {"task": "tests.tasks.nope", "cron": "@daily"},
            "plain": {"task": "tests.tasks.not_a_task", "cron": "@daily"},
        }
    )

    errors = tandem_errors()

    assert [(e.id, e.obj) for e in errors] == [("tandem.E010", "default")] * 2
    assert errors[0].msg.startswith(
        "TASKS['default']['OPTIONS']['schedule']['missing']: the task 'tests.tasks.nope' cannot "
        "be scheduled: Task path 'tests.tasks.nope' does not import:"
    )
    assert errors[1].msg == (
        "TASKS['default']['OPTIONS']['schedule']['plain']: the task 'tests.tasks.not_a_task' "
        "cannot be scheduled: 'tests.tasks.not_a_task' is a builtins.function, not a Task; only "
        "functions decorated with @task can be run from a stored row."
    )


def test_a_task_the_backend_refuses_is_e010(settings, schedules):
    tasks = copy.deepcopy(settings.TASKS)
    tasks["default"]["QUEUES"] = ["default"]  # critical_noop's queue is not one of them
    tasks["default"]["OPTIONS"] = {
        "schedule": {"c": {"task": "tests.tasks.critical_noop", "cron": "@daily"}}
    }
    settings.TASKS = tasks

    [error] = tandem_errors()

    assert (error.id, error.msg) == (
        "tandem.E010",
        "TASKS['default']['OPTIONS']['schedule']['c']: the task 'tests.tasks.critical_noop' "
        "cannot be scheduled: Queue 'critical' is not valid for backend.",
    )


def test_a_task_of_another_backend_is_e010(settings):
    tasks = copy.deepcopy(settings.TASKS)
    tasks["other"] = copy.deepcopy(tasks["default"])
    settings.TASKS = tasks
    schedule("@daily", backend="other")(noop)  # noop is a task of the default backend

    [error] = tandem_errors()

    assert (error.id, error.obj, error.msg, error.hint) == (
        "tandem.E010",
        "other",
        "tandem.schedule() on 'tests.tasks.noop': the task 'tests.tasks.noop' belongs to backend "
        "'default', not 'other'.",
        "Schedule it in TASKS['default'] instead.",
    )


def test_a_name_clash_is_e011(schedules):
    schedules({"tests.tasks.noop": {"task": "tests.tasks.noop", "cron": "@daily"}})
    registry.schedule("@hourly")(noop)

    [error] = tandem_errors()

    assert (error.id, error.obj) == ("tandem.E011", "default")
    assert error.msg.startswith("Schedule 'tests.tasks.noop' of TASKS['default'] is defined twice")


def test_a_decorator_naming_an_unknown_backend_is_e012():
    schedule("@daily", backend="elsewhere")(noop)

    [error] = tandem_errors()

    assert (error.id, error.msg) == (
        "tandem.E012",
        "@tandem.schedule registered schedules for backend 'elsewhere', which is not in "
        "settings.TASKS.",
    )
