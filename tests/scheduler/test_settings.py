"""OPTIONS["schedule"], ["run_schedules"] and ["retention"]: parsed once, errors name the key."""

from __future__ import annotations

from datetime import datetime
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ImproperlyConfigured

from tandem.conf import BackendOptions, RetentionConfig, ScheduleConfig, parse_options
from tandem.scheduler.cron import Cron

QUEUES = frozenset({"default", "critical", "exports"})
OPTIONS = "TASKS['default']['OPTIONS']"
NIGHTLY = f"{OPTIONS}['schedule']['nightly']"


def parse(**options: object) -> BackendOptions:
    return parse_options("default", {"OPTIONS": options}, QUEUES)


def error_of(**options: object) -> str:
    with pytest.raises(ImproperlyConfigured) as caught:
        parse(**options)
    return str(caught.value)


def nightly_error(**entry: object) -> str:
    return error_of(
        schedule={"nightly": {"task": "tests.tasks.noop", "cron": "0 3 * * *", **entry}}
    )


def test_a_schedule_is_parsed_into_a_frozen_config():
    options = parse(
        schedule={
            "nightly": {
                "task": "tests.tasks.echo",
                "cron": "0 3 * * 1-5",
                "args": [1, ["a", None]],
                "kwargs": {"flag": True},
                "timezone": "Europe/Paris",
                "catch_up": "all",
            }
        }
    )

    assert options.schedules == (
        ScheduleConfig(
            name="nightly",
            backend="default",
            task="tests.tasks.echo",
            cron=Cron(expression="0 3 * * 1-5", fields="0 3 * * 1-5"),
            args=(1, ["a", None]),
            kwargs=MappingProxyType({"flag": True}),
            timezone="Europe/Paris",
            catch_up="all",
            source=NIGHTLY,
        ),
    )
    assert options.schedules[0].zone == ZoneInfo("Europe/Paris")
    with pytest.raises(TypeError):
        options.schedules[0].kwargs["flag"] = False  # type: ignore[index]


def test_schedule_defaults(settings):
    settings.TIME_ZONE = "America/New_York"
    [config] = parse(schedule={"hourly": {"task": "tests.tasks.noop", "cron": "@hourly"}}).schedules

    assert (config.args, dict(config.kwargs), config.timezone, config.catch_up) == (
        (),
        {},
        None,
        "one",
    )
    assert config.cron.fields == "0 * * * *"
    assert config.zone == ZoneInfo("America/New_York")  # settings.TIME_ZONE, read when used


def test_no_schedule_no_retention_and_schedules_run_by_default():
    options = parse()

    assert options.schedules == ()
    assert options.run_schedules is True
    assert options.retention == RetentionConfig(successful=None, failed=None)
    assert options.retention.enabled is False


def test_run_schedules_and_retention_are_parsed():
    options = parse(run_schedules=False, retention={"successful": 3600, "failed": 86400.5})

    assert options.run_schedules is False
    assert options.retention == RetentionConfig(successful=3600.0, failed=86400.5)
    assert parse(retention={"failed": 60}).retention == RetentionConfig(failed=60.0)
    assert parse(retention={"successful": None}).retention.enabled is False


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("61 * * * *", "= '61 * * * *' is not a valid cron expression (Bad minute)."),
        (
            "0 3 * *",
            "= '0 3 * *' has 4 field(s); a cron expression has 5 "
            "(minute hour day-of-month month day-of-week).",
        ),
        (
            "0 0 3 * * *",
            "= '0 0 3 * * *' has 6 field(s); a cron expression has 5 "
            "(minute hour day-of-month month day-of-week).",
        ),
        ("0 0 30 2 *", "= '0 0 30 2 *' is not a valid cron expression (Bad day-of-month)."),
        (
            "@often",
            "= '@often' is not a known alias; use one of @annually, @daily, @hourly, "
            "@midnight, @monthly, @weekly, @yearly.",
        ),
        ("", "= '' is not a cron expression (a string such as '0 3 * * *')."),
        (300, "= 300 is not a cron expression (a string such as '0 3 * * *')."),
    ],
)
def test_a_bad_cron_expression_names_the_key(cron, message):
    assert nightly_error(cron=cron) == f"{NIGHTLY}['cron'] {message}"


def test_a_missing_cron_expression_names_the_key():
    error = error_of(schedule={"nightly": {"task": "tests.tasks.noop"}})

    assert (
        error
        == f"{NIGHTLY}['cron'] = None is not a cron expression (a string such as '0 3 * * *')."
    )


def test_unknown_schedule_keys():
    assert nightly_error(when="03:00", queue="x") == (
        f"{NIGHTLY} has unknown key(s) 'queue', 'when'; allowed: args, catch_up, cron, kwargs, "
        "task, timezone."
    )


@pytest.mark.parametrize("task", [None, "", "noop", "tests.tasks.", "tests tasks.noop", 3])
def test_the_task_must_be_a_dotted_path(task):
    assert nightly_error(task=task) == (
        f"{NIGHTLY}['task'] must be the dotted path of a task, such as 'reports.tasks.nightly', "
        f"got {task!r}."
    )


def test_arguments_must_be_json():
    assert nightly_error(args=[1, datetime(2030, 1, 1)]) == (
        f"{NIGHTLY}['args'][1] is a datetime.datetime; task data must be JSON (str, int, float, "
        "bool, None, list, dict). Pass an id or an ISO string instead, and load or parse it "
        "inside the task."
    )
    assert nightly_error(kwargs={"when": {"at": {1, 2}}}) == (
        f"{NIGHTLY}['kwargs']['when']['at'] is a builtins.set; task data must be JSON (str, int, "
        "float, bool, None, list, dict). Pass an id or an ISO string instead, and load or parse "
        "it inside the task."
    )


def test_args_must_be_a_list_and_kwargs_a_dict():
    assert nightly_error(args="abc") == f"{NIGHTLY}['args'] must be a list of arguments, got 'abc'."
    assert nightly_error(kwargs=[("a", 1)]) == (
        f"{NIGHTLY}['kwargs'] must be a dict of keyword arguments (str keys), got [('a', 1)]."
    )
    assert nightly_error(kwargs={1: "a"}) == (
        f"{NIGHTLY}['kwargs'] must be a dict of keyword arguments (str keys), got {{1: 'a'}}."
    )


def test_an_unknown_time_zone_names_the_key():
    assert nightly_error(timezone="Europe/Pariss") == (
        f"{NIGHTLY}['timezone'] = 'Europe/Pariss' is not a known time zone; use an IANA name "
        "such as 'Europe/Paris' or 'UTC' (install the tzdata package where the system has no "
        "zone database)."
    )
    assert nightly_error(timezone=2) == (
        f"{NIGHTLY}['timezone'] = 2 is not a time zone name (a string such as 'Europe/Paris')."
    )


def test_catch_up_must_be_one_none_or_all():
    assert nightly_error(catch_up="latest") == (
        f"{NIGHTLY}['catch_up'] must be one of 'one', 'none', 'all', got 'latest'."
    )


def test_schedule_must_be_a_dict_of_dicts():
    assert error_of(schedule=["nightly"]) == (
        f"{OPTIONS}['schedule'] must be a dict of schedule name -> schedule settings "
        "({'task': ..., 'cron': ...}), got ['nightly']."
    )
    assert error_of(schedule={"nightly": "0 3 * * *"}) == (
        f"{NIGHTLY} must be a dict, got '0 3 * * *'."
    )


@pytest.mark.parametrize("name", ["", "x" * 101, 7])
def test_schedule_names_fit_the_tick_table(name):
    error = error_of(schedule={name: {"task": "tests.tasks.noop", "cron": "@daily"}})

    assert error == (
        f"{OPTIONS}['schedule'] has a schedule named {name!r}; a schedule name must be a "
        "non-empty string of at most 100 characters."
    )


def test_run_schedules_must_be_a_bool():
    assert error_of(run_schedules="no") == (
        f"{OPTIONS}['run_schedules'] must be True or False, got 'no'."
    )


@pytest.mark.parametrize("value", [0, -5, "7d", True, float("inf")])
def test_retention_must_be_seconds_or_none(value):
    assert error_of(retention={"failed": value}) == (
        f"{OPTIONS}['retention']['failed'] must be a number of seconds > 0 (how long finished "
        f"tasks are kept), or None to keep them, got {value!r}."
    )


def test_retention_keys():
    assert error_of(retention={"successful": 60, "cancelled": 60}) == (
        f"{OPTIONS}['retention'] has unknown key(s) 'cancelled'; allowed: failed, successful."
    )
    assert error_of(retention=3600) == f"{OPTIONS}['retention'] must be a dict, got 3600."
