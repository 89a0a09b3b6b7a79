"""The settings corpus: every ``OPTIONS`` key, with a value of the wrong type and a wrong value.

One row per case: the ``OPTIONS`` given, and the exact ``ImproperlyConfigured`` message, which
names the full settings key. ``test_every_key_has_a_wrong_type_and_a_wrong_value_row`` keeps the
table complete: a key added to ``conf.py`` without its two rows fails it.

Cases about the *combination* of keys (a queue in two pools, ``max_tasks_per_worker`` outside a
process pool, subinterpreters on MariaDB, a password in both ``url`` and ``password``) are in
tests/unit/test_conf.py and tests/unit/test_redis_options.py; schedules declared with
``@tandem.schedule`` (the same messages) in tests/scheduler/test_decorator.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.tasks import task_backends

from tandem.conf import (
    OPTION_KEYS,
    POOL_KEYS,
    REDIS_OPTION_KEYS,
    RETENTION_KEYS,
    SCHEDULE_KEYS,
    parse_options,
    parse_redis_options,
)
from tests import tasks

QUEUES = frozenset({"default", "critical", "exports"})
OPTIONS = "TASKS['default']['OPTIONS']"
POOL = f"{OPTIONS}['pools']['critical']"
NIGHTLY = f"{OPTIONS}['schedule']['nightly']"
RETENTION = f"{OPTIONS}['retention']"
EXECUTORS = "'subinterpreter', 'thread', 'process'"
JSON_ONLY = (
    "task data must be JSON (str, int, float, bool, None, list, dict). Pass an id or an ISO "
    "string instead, and load or parse it inside the task."
)


class Row(NamedTuple):
    section: str  # "options", "pool", "schedule", "retention" or "redis"
    key: str
    kind: str  # "type": a value of the wrong type; "value": the right type, a wrong value
    value: Any
    message: str


def pool(**values: Any) -> dict[str, Any]:
    return {"pools": {"critical": values, "rest": {"queues": ["default", "exports"]}}}


def nightly(**values: Any) -> dict[str, Any]:
    return {"schedule": {"nightly": {"task": "tests.tasks.noop", "cron": "0 3 * * *", **values}}}


def retention(**values: Any) -> dict[str, Any]:
    return {"retention": values}


def number(key: str, value: Any) -> str:
    return f"{key} must be a finite number > 0, got {value!r}."


def integer(key: str, value: Any) -> str:
    return f"{key} must be an integer >= 1, got {value!r}."


def text(key: str, value: Any) -> str:
    return f"{key} must be a non-empty string, got {value!r}."


def cron(value: Any, problem: str) -> str:
    return f"{NIGHTLY}['cron'] = {value!r} {problem}."


NOT_CRON = "is not a cron expression (a string such as '0 3 * * *')"
TTL = "must be a finite number of seconds > 0, or None to keep finished tasks until they are pruned"
KEPT = "must be a number of seconds > 0 (how long finished tasks are kept), or None to keep them"
PAYLOAD = (
    "must be an integer >= 1 (bytes of JSON a task's arguments may take), or None for no limit"
)
K = f"{OPTIONS}[%r]"
P = f"{POOL}[%r]"
S = f"{NIGHTLY}[%r]"
R = f"{RETENTION}[%r]"

ROWS = [
    # -- OPTIONS ---------------------------------------------------------------------------------
    Row("options", "executor", "type", 3, f"{K % 'executor'} must be one of {EXECUTORS}, got 3."),
    Row(
        "options",
        "executor",
        "value",
        "threads",
        f"{K % 'executor'} must be one of {EXECUTORS}, got 'threads'.",
    ),
    Row("options", "workers", "type", "4", integer(K % "workers", "4")),
    Row("options", "workers", "type", True, integer(K % "workers", True)),
    Row("options", "workers", "value", 0, integer(K % "workers", 0)),
    Row("options", "workers", "value", -3, integer(K % "workers", -3)),
    Row("options", "poll_interval", "type", "1", number(K % "poll_interval", "1")),
    Row("options", "poll_interval", "value", 0, number(K % "poll_interval", 0)),
    Row(
        "options", "poll_interval", "value", float("inf"), number(K % "poll_interval", float("inf"))
    ),
    Row("options", "lease_seconds", "type", None, number(K % "lease_seconds", None)),
    Row("options", "lease_seconds", "value", -60, number(K % "lease_seconds", -60)),
    Row(
        "options", "lease_seconds", "value", float("nan"), number(K % "lease_seconds", float("nan"))
    ),
    Row("options", "recovery_max_attempts", "type", 2.5, integer(K % "recovery_max_attempts", 2.5)),
    Row("options", "recovery_max_attempts", "value", 0, integer(K % "recovery_max_attempts", 0)),
    Row(
        "options",
        "pools",
        "type",
        ["critical"],
        f"{K % 'pools'} must be a non-empty dict of pool name -> pool settings, got ['critical'].",
    ),
    Row(
        "options",
        "pools",
        "value",
        {},
        f"{K % 'pools'} must be a non-empty dict of pool name -> pool settings, got {{}}.",
    ),
    Row(
        "options",
        "schedule",
        "type",
        ["nightly"],
        f"{K % 'schedule'} must be a dict of schedule name -> schedule settings "
        "({'task': ..., 'cron': ...}), got ['nightly'].",
    ),
    Row(
        "options",
        "schedule",
        "value",
        {"": {"task": "tests.tasks.noop", "cron": "@daily"}},
        f"{K % 'schedule'} has a schedule named ''; a schedule name must be a non-empty string "
        "of at most 100 characters.",
    ),
    Row(
        "options",
        "run_schedules",
        "type",
        "no",
        f"{K % 'run_schedules'} must be True or False, got 'no'.",
    ),
    Row(
        "options",
        "run_schedules",
        "type",
        1,
        f"{K % 'run_schedules'} must be True or False, got 1.",
    ),
    Row("options", "retention", "type", 3600, f"{K % 'retention'} must be a dict, got 3600."),
    Row(
        "options",
        "retention",
        "value",
        {"cancelled": 60},
        f"{K % 'retention'} has unknown key(s) 'cancelled'; allowed: failed, successful.",
    ),
    Row(
        "options",
        "max_payload_bytes",
        "type",
        "1MB",
        f"{K % 'max_payload_bytes'} {PAYLOAD}, got '1MB'.",
    ),
    Row(
        "options",
        "max_payload_bytes",
        "type",
        1.5,
        f"{K % 'max_payload_bytes'} {PAYLOAD}, got 1.5.",
    ),
    Row(
        "options",
        "max_payload_bytes",
        "type",
        True,
        f"{K % 'max_payload_bytes'} {PAYLOAD}, got True.",
    ),
    Row("options", "max_payload_bytes", "value", 0, f"{K % 'max_payload_bytes'} {PAYLOAD}, got 0."),
    Row(
        "options",
        "sqlite_worker_synchronous",
        "type",
        1,
        f"{K % 'sqlite_worker_synchronous'} must be one of 'NORMAL', 'FULL', 'EXTRA', or None to "
        "keep the connection's own setting, got 1.",
    ),
    Row(
        "options",
        "sqlite_worker_synchronous",
        "value",
        "OFF",
        f"{K % 'sqlite_worker_synchronous'} must be one of 'NORMAL', 'FULL', 'EXTRA', or None to "
        "keep the connection's own setting, got 'OFF'.",
    ),
    # -- OPTIONS["pools"][name] ------------------------------------------------------------------
    Row(
        "pool",
        "queues",
        "type",
        "critical",
        f"{P % 'queues'} must be a non-empty list of queue names, got 'critical'.",
    ),
    Row(
        "pool",
        "queues",
        "value",
        ["emails"],
        f"{P % 'queues'} names queue 'emails', which is not in TASKS['default']['QUEUES'] "
        "(critical, default, exports).",
    ),
    Row("pool", "workers", "type", "x", integer(P % "workers", "x")),
    Row("pool", "workers", "value", 0, integer(P % "workers", 0)),
    Row(
        "pool", "executor", "type", None, f"{P % 'executor'} must be one of {EXECUTORS}, got None."
    ),
    Row(
        "pool",
        "executor",
        "value",
        "fork",
        f"{P % 'executor'} must be one of {EXECUTORS}, got 'fork'.",
    ),
    Row("pool", "poll_interval", "type", "0.2", number(P % "poll_interval", "0.2")),
    Row("pool", "poll_interval", "value", -1, number(P % "poll_interval", -1)),
    Row("pool", "max_attempts", "type", 2.5, integer(P % "max_attempts", 2.5)),
    Row("pool", "max_attempts", "value", 0, integer(P % "max_attempts", 0)),
    Row("pool", "backoff", "type", "2", number(P % "backoff", "2")),
    Row("pool", "backoff", "value", 0, number(P % "backoff", 0)),
    Row("pool", "timeout", "type", "30", number(P % "timeout", "30")),
    Row("pool", "timeout", "value", -5, number(P % "timeout", -5)),
    Row("pool", "max_tasks_per_worker", "type", "50", integer(P % "max_tasks_per_worker", "50")),
    Row("pool", "max_tasks_per_worker", "value", 0, integer(P % "max_tasks_per_worker", 0)),
    Row("pool", "prefetch", "type", "8", f"{P % 'prefetch'} must be an integer >= 0, got '8'."),
    Row("pool", "prefetch", "value", -1, f"{P % 'prefetch'} must be an integer >= 0, got -1."),
    Row("pool", "starvation_limit", "type", "300", number(P % "starvation_limit", "300")),
    Row("pool", "starvation_limit", "value", 0, number(P % "starvation_limit", 0)),
    Row("pool", "idle_close", "type", "3", number(P % "idle_close", "3")),
    Row("pool", "idle_close", "value", -1, number(P % "idle_close", -1)),
    Row("pool", "idle_keep", "type", "1", f"{P % 'idle_keep'} must be an integer >= 0, got '1'."),
    Row("pool", "idle_keep", "value", -1, f"{P % 'idle_keep'} must be an integer >= 0, got -1."),
    Row("pool", "async_concurrency", "type", "10", integer(P % "async_concurrency", "10")),
    Row("pool", "async_concurrency", "value", 0, integer(P % "async_concurrency", 0)),
    Row(
        "pool",
        "rate_limit",
        "type",
        10,
        f'{P % "rate_limit"} must be a string "N/s", "N/m" or "N/h" (N an integer >= 1), got 10.',
    ),
    Row(
        "pool",
        "rate_limit",
        "value",
        "10/x",
        f'{P % "rate_limit"} must be "N/s", "N/m" or "N/h" (N an integer >= 1: at most N starts '
        "in any second, minute or hour), got '10/x'.",
    ),
    # -- OPTIONS["schedule"][name] ---------------------------------------------------------------
    Row(
        "schedule",
        "task",
        "type",
        3,
        f"{S % 'task'} must be the dotted path of a task, such as 'reports.tasks.nightly', got 3.",
    ),
    Row(
        "schedule",
        "task",
        "value",
        "noop",
        f"{S % 'task'} must be the dotted path of a task, such as 'reports.tasks.nightly', "
        "got 'noop'.",
    ),
    Row("schedule", "cron", "type", 300, cron(300, NOT_CRON)),
    Row("schedule", "cron", "type", None, cron(None, NOT_CRON)),
    Row("schedule", "cron", "value", "", cron("", NOT_CRON)),
    Row(
        "schedule",
        "cron",
        "value",
        "61 * * * *",
        cron("61 * * * *", "is not a valid cron expression (Bad minute)"),
    ),
    Row(
        "schedule",
        "cron",
        "value",
        "0 0 30 2 *",
        cron("0 0 30 2 *", "is not a valid cron expression (Bad day-of-month)"),
    ),
    Row(
        "schedule",
        "cron",
        "value",
        "0 3 * *",
        cron(
            "0 3 * *",
            "has 4 field(s); a cron expression has 5 (minute hour day-of-month month day-of-week)",
        ),
    ),
    Row(
        "schedule",
        "cron",
        "value",
        "@often",
        cron(
            "@often",
            "is not a known alias; use one of @annually, @daily, @hourly, @midnight, @monthly, "
            "@weekly, @yearly",
        ),
    ),
    Row("schedule", "args", "type", "abc", f"{S % 'args'} must be a list of arguments, got 'abc'."),
    Row(
        "schedule",
        "args",
        "value",
        [1, datetime(2030, 1, 1)],
        f"{S % 'args'}[1] is a datetime.datetime; {JSON_ONLY}",
    ),
    Row(
        "schedule",
        "kwargs",
        "type",
        [("a", 1)],
        f"{S % 'kwargs'} must be a dict of keyword arguments (str keys), got [('a', 1)].",
    ),
    Row(
        "schedule",
        "kwargs",
        "value",
        {"when": {1, 2}},
        f"{S % 'kwargs'}['when'] is a builtins.set; {JSON_ONLY}",
    ),
    Row(
        "schedule",
        "timezone",
        "type",
        2,
        f"{S % 'timezone'} = 2 is not a time zone name (a string such as 'Europe/Paris').",
    ),
    Row(
        "schedule",
        "timezone",
        "value",
        "Europe/Pariss",
        f"{S % 'timezone'} = 'Europe/Pariss' is not a known time zone; use an IANA name such as "
        "'Europe/Paris' or 'UTC' (install the tzdata package where the system has no zone "
        "database).",
    ),
    Row(
        "schedule",
        "catch_up",
        "type",
        1,
        f"{S % 'catch_up'} must be one of 'one', 'none', 'all', got 1.",
    ),
    Row(
        "schedule",
        "catch_up",
        "value",
        "latest",
        f"{S % 'catch_up'} must be one of 'one', 'none', 'all', got 'latest'.",
    ),
    # -- OPTIONS["retention"] --------------------------------------------------------------------
    Row("retention", "successful", "type", "7d", f"{R % 'successful'} {KEPT}, got '7d'."),
    Row("retention", "successful", "value", 0, f"{R % 'successful'} {KEPT}, got 0."),
    Row("retention", "failed", "type", True, f"{R % 'failed'} {KEPT}, got True."),
    Row("retention", "failed", "value", -5, f"{R % 'failed'} {KEPT}, got -5."),
    # -- the Redis keys of OPTIONS (RedisBackend only) -------------------------------------------
    Row("redis", "url", "type", 6379, text(K % "url", 6379)),
    Row(
        "redis",
        "url",
        "value",
        "http://:hunter2@127.0.0.1:6379/0",
        f"{K % 'url'} must be a redis://, rediss:// or unix:// URL, "
        "got 'http://:***@127.0.0.1:6379/0'.",
    ),
    Row(
        "redis",
        "url",
        "value",
        "redis://:hunter2@127.0.0.1:port/0",
        f"{K % 'url'} has an invalid port: 'redis://:***@127.0.0.1:port/0'.",
    ),
    Row(
        "redis",
        "url",
        "value",
        "redis://127.0.0.1:6379/tasks",
        f"{K % 'url'} must name a database number after the host (e.g. "
        "redis://127.0.0.1:6379/0), got 'redis://127.0.0.1:6379/tasks'.",
    ),
    Row("redis", "password", "type", 1234, text(K % "password", 1234)),
    Row("redis", "password", "value", "", text(K % "password", "")),
    Row("redis", "prefix", "type", ["a"], text(K % "prefix", ["a"])),
    Row("redis", "prefix", "value", "", text(K % "prefix", "")),
    Row("redis", "result_ttl", "type", "3600", f"{K % 'result_ttl'} {TTL}, got '3600'."),
    Row("redis", "result_ttl", "value", 0, f"{K % 'result_ttl'} {TTL}, got 0."),
    Row("redis", "result_ttl", "value", float("inf"), f"{K % 'result_ttl'} {TTL}, got inf."),
    *(
        row
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
        for row in (
            Row("redis", name, "type", 1, text(K % name, 1)),
            Row(
                "redis",
                name,
                "value",
                "/etc/ssl/x.pem",  # a TLS file for a plain redis:// URL
                f"{K % name} is a TLS setting; it needs a rediss:// URL in {K % 'url'}, "
                "got 'redis://127.0.0.1:6379/0'.",
            ),
        )
    ),
]

#: The keys of each section, and which of them take every value of their type (a flag: any
#: non-bool is a wrong type, and both bools are right), so have no "wrong value" row.
SECTIONS: Mapping[str, frozenset[str]] = {
    "options": OPTION_KEYS,
    "pool": POOL_KEYS,
    "schedule": SCHEDULE_KEYS,
    "retention": RETENTION_KEYS,
    "redis": REDIS_OPTION_KEYS,
}
NO_WRONG_VALUE = {("options", "run_schedules")}


def options_of(row: Row) -> dict[str, Any]:
    if row.section == "pool" and row.key == "max_tasks_per_worker":
        return pool(executor="process", **{row.key: row.value})
    if row.section == "pool":
        return pool(**{row.key: row.value})
    if row.section == "schedule":
        return nightly(**{row.key: row.value})
    if row.section == "retention":
        return retention(**{row.key: row.value})
    if row.section == "redis" and row.key.startswith("ssl_") and row.kind == "type":
        return {"url": "rediss://127.0.0.1:6380/0", row.key: row.value}
    return {row.key: row.value}


def error_of(row: Row) -> str:
    options = options_of(row)
    with pytest.raises(ImproperlyConfigured) as caught:
        if row.section == "redis":
            parse_redis_options("default", {"OPTIONS": options})
        else:
            parse_options("default", {"OPTIONS": options}, QUEUES)
    return str(caught.value)


def row_id(row: Row) -> str:
    return f"{row.section}-{row.key}-{row.kind}-{row.value!r}"


@pytest.mark.parametrize("row", ROWS, ids=row_id)
def test_a_bad_option_is_refused_with_a_message_naming_its_key(row: Row) -> None:
    message = error_of(row)

    assert message == row.message
    assert f"[{row.key!r}]" in message


def test_every_key_has_a_wrong_type_and_a_wrong_value_row() -> None:
    covered = {(row.section, row.key, row.kind) for row in ROWS}
    missing = [
        f"{section}[{key!r}] ({kind})"
        for section, keys in SECTIONS.items()
        for key in sorted(keys)
        for kind in ("type", "value")
        if (section, key, kind) not in covered
        and not (kind == "value" and (section, key) in NO_WRONG_VALUE)
    ]
    assert missing == []
    assert {(row.section, row.key) for row in ROWS} <= {
        (section, key) for section, keys in SECTIONS.items() for key in keys
    }


@pytest.mark.parametrize("row", [row for row in ROWS if row.section != "redis"], ids=row_id)
def test_a_bad_option_reaches_the_caller_of_enqueue_and_stores_nothing(
    row: Row, settings: Any
) -> None:
    # No django_db mark: the options are read before the store is touched, and pytest-django
    # would fail any database access here.
    settings.TASKS = {
        "default": {
            "BACKEND": "tandem.backends.database.DatabaseBackend",
            "QUEUES": sorted(QUEUES),
            "OPTIONS": options_of(row),
        }
    }
    assert task_backends["default"].check() != []  # manage.py check reports it too (E001)
    with pytest.raises(ImproperlyConfigured) as caught:
        tasks.noop.enqueue()
    assert str(caught.value) == row.message
