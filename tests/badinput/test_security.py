"""Security properties that the docs promise (docs/explanation/security.md), each proved here.

- JSON only: no module of tandem imports pickle, marshal or shelve, or calls eval/exec; task
  data is JSON in every store.
- Only registered tasks run from a stored row: tests/badinput/test_tampered_rows.py.
- The dashboard is staff-only (tests/web/test_dashboard.py); the admin actions need staff, a
  model permission (tests/web/test_admin.py), a POST and Django's CSRF token (here).
- Stored values are shown escaped: a row carrying HTML cannot script the admin or dashboard.
- Secrets stay out of messages, banners and logs: tests/badinput/test_unreachable_store.py and
  tests/unit/test_redis_options.py; Redis AUTH: tests/redis/test_auth.py.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

import tandem
from tandem.brokers.base import FAILED, READY
from tandem.models import TaskRecord
from tests import tasks

SOURCE = Path(tandem.__file__).parent
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle"}
FORBIDDEN_CALLS = {"eval", "exec", "__import__"}
CHANGELIST = "/admin/tandem/taskrecord/"
HTML = "<script>alert('tandem')</script>"


def test_no_module_imports_pickle_or_calls_eval() -> None:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name.partition(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.partition(".")[0]]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                names = [node.func.id] if node.func.id in FORBIDDEN_CALLS else []
            for name in names:
                if name in FORBIDDEN_MODULES | FORBIDDEN_CALLS:
                    found.append(f"{path.relative_to(SOURCE)}:{node.lineno}: {name}")
    assert found == []


@pytest.mark.django_db
def test_task_data_is_stored_as_json_text() -> None:
    result = tasks.echo.enqueue("text", [1, 2.5, None], flag=True)
    column = "args::text" if connection.vendor == "postgresql" else "args"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column}, kwargs FROM tandem_taskrecord WHERE id = %s",
            [TaskRecord._meta.pk.get_db_prep_value(result.id, connection)],  # type: ignore[union-attr]
        )
        args, kwargs = cursor.fetchone()
    assert json.loads(args) == ["text", [1, 2.5, None]]
    assert kwargs == {"flag": True} or json.loads(kwargs) == {"flag": True}


# -- the admin actions: staff, POST, CSRF ----------------------------------------------------------


@pytest.fixture
def ready_task(db: Any) -> TaskRecord:
    return TaskRecord.objects.get(id=tasks.noop.enqueue().id)


def superuser_client(*, enforce_csrf_checks: bool) -> Client:
    user, _ = User.objects.get_or_create(
        username="root", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(enforce_csrf_checks=enforce_csrf_checks)
    client.force_login(user)
    return client


def cancel(client: Client, record: TaskRecord, **extra: Any) -> Any:
    data = {"action": "cancel_tasks", "_selected_action": [str(record.pk)], **extra}
    return client.post(CHANGELIST, data)


def test_an_admin_action_without_the_csrf_token_is_refused(ready_task: TaskRecord) -> None:
    client = superuser_client(enforce_csrf_checks=True)

    response = cancel(client, ready_task)

    assert response.status_code == 403
    assert b"CSRF" in response.content
    ready_task.refresh_from_db()
    assert ready_task.status == READY


def test_an_admin_action_with_the_csrf_token_runs(ready_task: TaskRecord) -> None:
    client = superuser_client(enforce_csrf_checks=True)
    page = client.get(CHANGELIST)
    token = page.context["csrf_token"]

    response = cancel(client, ready_task, csrfmiddlewaretoken=str(token))

    assert response.status_code == 302
    ready_task.refresh_from_db()
    assert ready_task.status == FAILED


def test_an_admin_action_cannot_be_run_with_a_get(ready_task: TaskRecord) -> None:
    client = superuser_client(enforce_csrf_checks=True)
    client.get(CHANGELIST, {"action": "cancel_tasks", "_selected_action": str(ready_task.pk)})
    ready_task.refresh_from_db()
    assert ready_task.status == READY


@pytest.mark.parametrize("staff", [False, True], ids=["anonymous", "active-not-staff"])
def test_users_who_are_not_staff_cannot_run_an_admin_action(
    ready_task: TaskRecord, staff: bool
) -> None:
    client = Client()
    if staff:
        user = User.objects.create_user("member", is_staff=False, is_superuser=True)
        client.force_login(user)  # a superuser flag without is_staff does not open the admin

    response = cancel(client, ready_task)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    ready_task.refresh_from_db()
    assert ready_task.status == READY


# -- stored values are shown escaped ---------------------------------------------------------------


@pytest.mark.django_db
def test_html_in_a_stored_row_is_escaped_in_the_admin_and_the_dashboard() -> None:
    record = TaskRecord.objects.get(id=tasks.echo.enqueue(HTML, note=HTML).id)
    TaskRecord.objects.filter(pk=record.pk).update(
        status=FAILED,
        errors=[{"exception_class_path": HTML, "traceback": HTML}],
        worker_ids=[HTML],
        return_value=HTML,
        progress={"step": HTML},
    )
    client = superuser_client(enforce_csrf_checks=False)

    for path in (CHANGELIST, f"{CHANGELIST}{record.pk}/change/", "/tasks/", "/tasks/panel/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert HTML.encode() not in response.content, path
