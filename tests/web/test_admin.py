"""The TaskRecord and WorkerRecord admins: read-only pages, filters, search, and the three actions
with the permission each needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from tandem.brokers.base import FAILED, READY, SUCCESSFUL
from tandem.models import TaskRecord, WorkerRecord
from tandem.worker.supervisor import Supervisor
from tests.tasks import add, echo, fail

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/tandem/taskrecord/"


def detail(record: TaskRecord) -> str:
    return f"{CHANGELIST}{record.pk}/change/"


def staff(*codenames: str) -> Client:
    """A client logged in as a staff user holding only these taskrecord permissions."""
    user = User.objects.create_user(f"staff-{'-'.join(codenames) or 'none'}", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def act(client: Client, action: str, *records: TaskRecord) -> Any:
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [str(r.pk) for r in records]},
        follow=True,
    )


@pytest.fixture
def failed(drain: Callable[..., Supervisor]) -> TaskRecord:
    result = fail.using(priority=7).enqueue("kaput")
    drain()
    record = TaskRecord.objects.get(id=result.id)
    assert record.status == FAILED
    return record


def test_the_list_filters_by_status_and_searches_by_path_and_id(
    admin_client: Client, failed: TaskRecord, drain: Callable[..., Supervisor]
) -> None:
    done = add.enqueue(1, 2)
    drain()
    waiting = echo.enqueue("later")

    failed_only = admin_client.get(CHANGELIST, {"status__exact": FAILED}).content.decode()
    by_path = admin_client.get(CHANGELIST, {"q": "tests.tasks.echo"}).content.decode()
    by_id = admin_client.get(CHANGELIST, {"q": str(done.id)}).content.decode()
    by_queue = admin_client.get(CHANGELIST, {"queue_name": "default"}).content.decode()

    assert str(failed.pk) in failed_only
    assert done.id not in failed_only and waiting.id not in failed_only
    assert waiting.id in by_path and done.id not in by_path
    assert done.id in by_id and waiting.id not in by_id
    assert all(i in by_queue for i in (done.id, waiting.id, str(failed.pk)))
    filters = admin_client.get(CHANGELIST).content.decode()
    for name in ("status", "queue name", "task path", "backend", "enqueued at"):
        assert f"By {name}" in filters


def test_the_detail_page_shows_arguments_errors_and_attempts_read_only(
    admin_client: Client, failed: TaskRecord
) -> None:
    page = admin_client.get(detail(failed)).content.decode()

    assert "ValueError: kaput" in page
    assert '<pre class="tandem-traceback">Traceback (most recent call last):' in page
    assert "tests.tasks.fail" in page
    assert "&quot;kaput&quot;" in page  # the arguments, as indented JSON
    assert f"<li><code>{failed.worker_ids[0]}</code></li>" in page
    assert 'name="_save"' not in page  # nothing to save: the page is read-only
    assert admin_client.post(detail(failed), {"status": SUCCESSFUL}).status_code == 403
    failed.refresh_from_db()
    assert failed.status == FAILED


def test_tasks_cannot_be_added_by_hand(admin_client: Client) -> None:
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403


def test_retry_enqueues_a_new_task_and_keeps_the_failed_one(
    admin_client: Client, failed: TaskRecord
) -> None:
    before = TaskRecord.objects.get(pk=failed.pk)

    page = act(admin_client, "retry_tasks", failed).content.decode()

    new = TaskRecord.objects.exclude(pk=failed.pk).get()
    assert (new.task_path, new.args, new.kwargs) == (failed.task_path, ["kaput"], {})
    assert (new.queue_name, new.priority, new.status) == (failed.queue_name, 7, READY)
    assert f"Retried 1 failed task(s) as new task(s): {failed.pk} → {new.pk}." in page
    after = TaskRecord.objects.get(pk=failed.pk)
    assert (after.status, after.errors, after.worker_ids) == (
        before.status,
        before.errors,
        before.worker_ids,
    )


def test_retry_leaves_tasks_that_did_not_fail(
    admin_client: Client, drain: Callable[..., Supervisor]
) -> None:
    add.enqueue(1, 1)
    drain()
    done = TaskRecord.objects.get()

    page = act(admin_client, "retry_tasks", done).content.decode()

    assert TaskRecord.objects.count() == 1
    assert "Skipped 1 task(s) that are not FAILED" in page


def test_retry_needs_the_add_permission(failed: TaskRecord) -> None:
    viewer = staff("view_taskrecord", "change_taskrecord", "delete_taskrecord")
    assert 'value="retry_tasks"' not in viewer.get(CHANGELIST).content.decode()

    act(viewer, "retry_tasks", failed)

    assert TaskRecord.objects.count() == 1
    adder = staff("view_taskrecord", "add_taskrecord")
    assert 'value="retry_tasks"' in adder.get(CHANGELIST).content.decode()
    act(adder, "retry_tasks", failed)
    assert TaskRecord.objects.count() == 2


def test_cancel_fails_a_ready_task_and_needs_the_change_permission() -> None:
    waiting = TaskRecord.objects.get(id=echo.enqueue("never").id)
    viewer = staff("view_taskrecord", "add_taskrecord")
    assert 'value="cancel_tasks"' not in viewer.get(CHANGELIST).content.decode()
    act(viewer, "cancel_tasks", waiting)
    waiting.refresh_from_db()
    assert waiting.status == READY

    changer = staff("view_taskrecord", "change_taskrecord")
    page = act(changer, "cancel_tasks", waiting).content.decode()

    waiting.refresh_from_db()
    assert waiting.status == FAILED
    assert waiting.errors[-1]["exception_class_path"] == "tandem.exceptions.Cancelled"
    assert "Cancelled 1 task(s)" in page
    page = act(changer, "cancel_tasks", waiting).content.decode()
    assert "1 task(s) had already finished and were left as they were." in page


def test_delete_needs_the_delete_permission(failed: TaskRecord) -> None:
    viewer = staff("view_taskrecord", "add_taskrecord", "change_taskrecord")
    assert 'value="delete_selected"' not in viewer.get(CHANGELIST).content.decode()
    deleter = staff("view_taskrecord", "delete_taskrecord")
    assert 'value="delete_selected"' in deleter.get(CHANGELIST).content.decode()

    deleter.post(
        CHANGELIST,
        {"action": "delete_selected", "_selected_action": [str(failed.pk)], "post": "yes"},
    )

    assert not TaskRecord.objects.exists()


def test_view_permission_alone_shows_the_task_without_actions(failed: TaskRecord) -> None:
    viewer = staff("view_taskrecord")

    listing = viewer.get(CHANGELIST).content.decode()
    page = viewer.get(detail(failed)).content.decode()

    assert str(failed.pk) in listing
    assert 'name="action"' not in listing
    assert "ValueError: kaput" in page


def test_workers_are_listed_read_only(
    admin_client: Client, drain: Callable[..., Supervisor]
) -> None:
    from django.utils import timezone

    now = timezone.now()
    WorkerRecord.objects.create(
        id="host:1:abcdefgh",
        hostname="host",
        pid=1,
        queues=["default", "critical"],
        pools={"default": {"executor": "thread", "workers": 2}},
        started_at=now,
        last_heartbeat_at=now,
    )

    listing = admin_client.get("/admin/tandem/workerrecord/").content.decode()
    page = admin_client.get("/admin/tandem/workerrecord/host:1:abcdefgh/change/")

    assert "host:1:abcdefgh" in listing and "default, critical" in listing
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert "&quot;executor&quot;: &quot;thread&quot;" in page.content.decode()
    assert admin_client.get("/admin/tandem/workerrecord/add/").status_code == 403
