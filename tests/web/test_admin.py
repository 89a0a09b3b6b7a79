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


# -- every filter, exercised ---------------------------------------------------------------------


def listed(client: Client, **query: str) -> set[str]:
    """The task ids the changelist shows for ``query`` (its filter links' parameters)."""
    import re

    response = client.get(CHANGELIST, query)
    assert response.status_code == 200
    assert "?e=1" not in response.get("Location", "")  # a parameter the admin did not accept
    return set(re.findall(r'name="_selected_action" value="([^"]+)"', response.content.decode()))


def test_each_filter_narrows_the_list(admin_client: Client, failed: TaskRecord) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from tests.tasks import critical_noop

    urgent = critical_noop.enqueue().id
    waiting = echo.enqueue("later").id
    old = echo.enqueue("old").id
    other = echo.enqueue("elsewhere").id
    TaskRecord.objects.filter(id=old).update(enqueued_at=timezone.now() - timedelta(days=30))
    TaskRecord.objects.filter(id=other).update(backend="reports")
    everything = {str(failed.pk), urgent, waiting, old, other}

    assert listed(admin_client) == everything
    assert listed(admin_client, status__exact=FAILED) == {str(failed.pk)}
    assert listed(admin_client, status__exact=READY) == everything - {str(failed.pk)}
    assert listed(admin_client, queue_name="critical") == {urgent}
    assert listed(admin_client, task_path="tests.tasks.echo") == {waiting, old, other}
    assert listed(admin_client, task_path="tests.tasks.fail") == {str(failed.pk)}
    assert listed(admin_client, backend="reports") == {other}
    assert listed(admin_client, backend="default") == everything - {other}
    # The date filter, through the links the admin offers.
    page = admin_client.get(CHANGELIST).content.decode()
    import html
    import re
    from urllib.parse import parse_qsl

    links = dict(
        (text, dict(parse_qsl(html.unescape(href).lstrip("?"))))
        for href, text in re.findall(r'<a href="(\?enqueued_at__[^"]*)"[^>]*>([^<]+)</a>', page)
    )
    assert listed(admin_client, **links["Past 7 days"]) == everything - {old}
    assert listed(admin_client, **links["Today"]) == everything - {old}
    # Filters combine.
    assert listed(admin_client, task_path="tests.tasks.echo", backend="default") == {waiting, old}


def test_search_finds_by_id_and_by_part_of_the_task_path(
    admin_client: Client, failed: TaskRecord
) -> None:
    waiting = echo.enqueue("later").id

    assert listed(admin_client, q=waiting) == {waiting}
    assert listed(admin_client, q=str(failed.pk)) == {str(failed.pk)}
    assert listed(admin_client, q="tasks.fail") == {str(failed.pk)}
    assert listed(admin_client, q="tests.tasks") == {waiting, str(failed.pk)}
    assert listed(admin_client, q="no-such-task") == set()


# -- the detail page: every attempt, and progress ------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the task writes its ledger row on its own connection
def test_the_detail_page_shows_every_attempts_error_and_traceback(
    admin_client: Client, drain: Callable[..., Supervisor]
) -> None:
    from tests.tasks import hooked_flaky

    result = hooked_flaky.enqueue("twice", fail_times=5)  # max_attempts=2, no back-off
    drain()
    record = TaskRecord.objects.get(id=result.id)
    assert (record.status, record.attempts, len(record.errors)) == (FAILED, 2, 2)

    page = admin_client.get(detail(record)).content.decode()

    tracebacks = page.split('<pre class="tandem-traceback">')[1:]
    assert len(tracebacks) == 2
    assert "RuntimeError: failure 1 of 5" in tracebacks[0]
    assert "RuntimeError: failure 2 of 5" in tracebacks[1]
    assert all(t.startswith("Traceback (most recent call last):") for t in tracebacks)
    assert "<strong>1.</strong> <code>builtins.RuntimeError</code>" in page
    assert "<strong>2.</strong> <code>builtins.RuntimeError</code>" in page
    for worker_id in record.worker_ids:
        assert f"<li><code>{worker_id}</code></li>" in page
    assert '<div class="readonly">2</div>' in page  # attempts


@pytest.mark.django_db(transaction=True)  # the task writes its ledger row on its own connection
def test_the_detail_page_shows_progress_and_the_return_value(
    admin_client: Client, drain: Callable[..., Supervisor]
) -> None:
    from tests.tasks import resumable_count

    result = resumable_count.enqueue("progress", total=4, crash_at=2)  # retried from step 2
    drain()
    record = TaskRecord.objects.get(id=result.id)
    assert (record.status, record.progress) == (SUCCESSFUL, {"done": 4, "total": 4})

    page = admin_client.get(detail(record)).content.decode()

    progress = page.split('<div class="form-row field-progress_display">')[1].split("</pre>")[0]
    assert "&quot;done&quot;: 4" in progress and "&quot;total&quot;: 4" in progress
    assert "field-progress_at" in page and record.progress_at is not None
    assert "RuntimeError: crashed at step 2" in page  # the first attempt's error
    value = page.split('<div class="form-row field-return_value_display">')[1].split("</pre>")[0]
    assert "&quot;started_at&quot;: 2" in value


# -- each action needs its permission, even when posted by hand ---------------------------------


@pytest.mark.parametrize(
    ("action", "needs"),
    [
        ("retry_tasks", "add_taskrecord"),
        ("cancel_tasks", "change_taskrecord"),
        ("delete_selected", "delete_taskrecord"),
    ],
)
def test_an_action_posted_without_its_permission_changes_nothing(
    action: str, needs: str, drain: Callable[..., Supervisor]
) -> None:
    fail.enqueue("kaput")
    drain()
    waiting = echo.enqueue("never").id
    before = sorted(TaskRecord.objects.values_list("id", "status"))
    every = {"view_taskrecord", "add_taskrecord", "change_taskrecord", "delete_taskrecord"}
    viewer = staff("view_taskrecord")
    almost = staff(*sorted(every - {needs}))  # every permission but the one the action needs

    for client in (viewer, almost):
        listing = client.get(CHANGELIST).content.decode()
        assert f'value="{action}"' not in listing
        page = client.post(
            CHANGELIST,
            {
                "action": action,
                "_selected_action": [str(pk) for pk, _ in before],
                "post": "yes",  # delete_selected's confirmation
            },
            follow=True,
        )
        assert page.status_code == 200
        assert sorted(TaskRecord.objects.values_list("id", "status")) == before
    assert TaskRecord.objects.get(id=waiting).status == READY
