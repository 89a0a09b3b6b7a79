"""The first mistakes of a new user, each reported by ``manage.py check`` in one message that
names the fix: a typo in TASKS, several bad OPTIONS at once, tandem not installed, a missing
extra (tests/process/test_first_hour.py runs them as real ``tandem`` commands)."""

from __future__ import annotations

import copy

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.tasks import default_task_backend

from tandem import diagnosis
from tandem.backends.database import database_broker

ALLOWED = (
    "executor, lease_seconds, max_payload_bytes, poll_interval, pools, recovery_max_attempts, "
    "retention, run_schedules, schedule, sqlite_worker_synchronous, workers"
)


@pytest.fixture
def tasks_setting(settings):
    """Change TASKS['default'] (Django rebuilds the backends on setting_changed)."""

    def apply(**changes: object) -> None:
        tasks = copy.deepcopy(settings.TASKS)
        tasks["default"].update(changes)
        settings.TASKS = tasks

    return apply


def tandem_errors(messages):
    return [(m.id, m.msg) for m in messages if m.id and m.id.startswith("tandem.")]


def test_queue_instead_of_queues_is_e004_with_did_you_mean(tasks_setting):
    tasks_setting(QUEUE=["default"], options={})

    assert tandem_errors(default_task_backend.check()) == [
        (
            "tandem.E004",
            "TASKS['default'] has unknown key(s) 'QUEUE' (did you mean 'QUEUES'?), 'options' "
            "(did you mean 'OPTIONS'?); Django reads only BACKEND, OPTIONS, QUEUES, and ignores "
            "the rest.",
        )
    ]


def test_unknown_option_keys_are_reported_together_with_did_you_mean(tasks_setting):
    tasks_setting(OPTIONS={"wrokers": 2, "leases": 30, "colour": "blue"})

    assert tandem_errors(default_task_backend.check()) == [
        (
            "tandem.E001",
            "TASKS['default']['OPTIONS'] has unknown key(s) 'colour', 'leases' (did you mean "
            f"'lease_seconds'?), 'wrokers' (did you mean 'workers'?); allowed: {ALLOWED}.",
        )
    ]


def test_every_invalid_option_value_is_reported_not_only_the_first(tasks_setting):
    tasks_setting(
        OPTIONS={
            "workers": 0,
            "lease_seconds": -1,
            "poll_interval": "x",
            "pools": {
                "default": {"queues": ["default"], "timeout": 0},
                "critical": {"workers": "8"},
            },
        }
    )

    assert tandem_errors(default_task_backend.check()) == [
        ("tandem.E001", message)
        for message in (
            "TASKS['default']['OPTIONS']['poll_interval'] must be a finite number > 0, got 'x'.",
            "TASKS['default']['OPTIONS']['workers'] must be an integer >= 1, got 0.",
            "TASKS['default']['OPTIONS']['lease_seconds'] must be a finite number > 0, got -1.",
            "TASKS['default']['OPTIONS']['pools']['default']['timeout'] must be a finite number "
            "> 0, got 0.",
            "TASKS['default']['OPTIONS']['pools']['critical']['workers'] must be an integer >= 1, "
            "got '8'.",
        )
    ]


def test_tandem_missing_from_installed_apps_is_e003_and_enqueue_says_so(settings):
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "tandem"]
    message = (
        "'tandem' is not in INSTALLED_APPS, so its tables and its manage.py command do not "
        'exist. Add "tandem" to INSTALLED_APPS in your settings, then run `python manage.py '
        "migrate`."
    )

    assert tandem_errors(default_task_backend.check()) == [("tandem.E003", message)]
    with pytest.raises(ImproperlyConfigured) as caught:
        database_broker()
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("error", "extra"),
    [
        (ModuleNotFoundError("No module named 'redis'", name="redis"), "redis"),
        (ModuleNotFoundError("No module named 'psycopg'", name="psycopg"), "postgres"),
        (ModuleNotFoundError("No module named 'MySQLdb'", name="MySQLdb"), "mysql"),
    ],
)
def test_a_missing_extra_names_the_pip_command(error, extra):
    hint = diagnosis.missing_extra(error)

    assert hint is not None
    assert hint.endswith(f'Install it with: pip install "django-tandem[{extra}]"')


def test_djangos_missing_driver_error_gets_the_pip_command():
    try:
        try:
            raise ModuleNotFoundError("No module named 'psycopg2'", name="psycopg2")
        except ModuleNotFoundError as exc:
            raise ImproperlyConfigured("Error loading psycopg2 or psycopg module") from exc
    except ImproperlyConfigured as exc:
        hint = diagnosis.missing_extra(exc)

    assert hint == (
        "The Python package 'psycopg' is not installed; this store needs it. Install it with: "
        'pip install "django-tandem[postgres]"'
    )
    assert diagnosis.missing_extra(ValueError("unrelated")) is None
