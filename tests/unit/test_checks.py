"""System checks: bad OPTIONS are tandem.E001, a queue no pool serves is tandem.W001."""

from __future__ import annotations

import copy
from io import StringIO

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.tasks import default_task_backend, task_backends


@pytest.fixture
def options(settings):
    """Set TASKS['default']['OPTIONS'] (Django rebuilds the backends on setting_changed)."""

    def apply(value: object) -> None:
        tasks = copy.deepcopy(settings.TASKS)
        tasks["default"]["OPTIONS"] = value
        settings.TASKS = tasks

    return apply


def tandem_messages(messages):
    return [m for m in messages if m.id and m.id.startswith("tandem.")]


@pytest.mark.django_db  # Django's model checks ask the database about JSON support
def test_the_test_settings_pass():
    assert tandem_messages(default_task_backend.check()) == []
    assert tandem_messages(checks.run_checks()) == []


def test_bad_options_are_error_e001_naming_the_key(options):
    options({"pools": {"critical": {"workers": "x"}}})

    [error] = tandem_messages(default_task_backend.check())

    assert error.id == "tandem.E001"
    assert error.level == checks.ERROR
    assert error.obj == "default"
    assert error.msg == (
        "TASKS['default']['OPTIONS']['pools']['critical']['workers'] must be an integer >= 1, "
        "got 'x'."
    )


def test_the_backend_is_rebuilt_from_the_new_settings(options):
    before = task_backends["default"]
    options({"workers": 0})

    assert task_backends["default"] is not before
    messages = checks.run_checks(databases=[])  # the registered checks, minus database ones
    assert [m.id for m in tandem_messages(messages)] == ["tandem.E001"]


@pytest.mark.django_db
def test_check_command_fails_on_bad_options(options):
    options({"lease_seconds": -5})

    with pytest.raises(SystemCheckError) as caught:
        call_command("check", stdout=StringIO(), stderr=StringIO())

    report = str(caught.value)
    assert "(tandem.E001)" in report
    assert (
        "TASKS['default']['OPTIONS']['lease_seconds'] must be a finite number > 0, got -5."
        in report
    )


def test_unknown_option_key_is_e001(options):
    options({"pool": {}})

    [error] = tandem_messages(default_task_backend.check())

    assert error.id == "tandem.E001"
    assert error.msg.startswith(
        "TASKS['default']['OPTIONS'] has unknown key(s) 'pool' (did you mean 'pools'?);"
    )


def test_unserved_queue_is_warning_w001(options):
    options({"pools": {"critical": {"workers": 2}}})

    warnings = tandem_messages(default_task_backend.check())

    assert [(w.id, w.level, w.obj) for w in warnings] == [
        ("tandem.W001", checks.WARNING, "default"),
        ("tandem.W001", checks.WARNING, "default"),
    ]
    assert [w.msg for w in warnings] == [
        f"Queue {queue!r} of TASKS['default'] is served by no pool, so no worker of this "
        "configuration will run its tasks."
        for queue in ("default", "exports")
    ]
    assert (
        warnings[0].hint == "Add it to a pool's 'queues' in TASKS['default']['OPTIONS']['pools']."
    )


@pytest.mark.django_db
def test_check_command_reports_the_warning_without_failing(options):
    options({"pools": {"critical": {}, "default": {}}})
    stderr = StringIO()

    call_command("check", stdout=StringIO(), stderr=stderr)

    assert "(tandem.W001) Queue 'exports' of TASKS['default'] is served by no pool" in (
        stderr.getvalue()
    )
    assert "'default' of TASKS" not in stderr.getvalue()
