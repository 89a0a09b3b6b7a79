"""Pausing from the web: the dashboard's staff-only POST button (with Django's CSRF check) and
the admin actions."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

import tandem
from tandem.models import QueuePause, TaskRecord
from tests.tasks import critical_noop, echo

pytestmark = pytest.mark.django_db

BUTTON = "/tasks/queues/pause"


def staff_client(*codenames: str, enforce_csrf: bool = False) -> Client:
    user = User.objects.create_user(f"staff-{len(codenames)}-{enforce_csrf}", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client(enforce_csrf_checks=enforce_csrf)
    client.force_login(user)
    return client


def state_cell(page: str, queue: str) -> str:
    row = re.search(rf'<tr id="queue-{queue}"[^>]*>(.*?)</tr>', page, flags=re.DOTALL)
    assert row, f"no row for queue {queue!r}"
    cell = re.search(r'<td class="state">(.*?)</td>', row.group(1), flags=re.DOTALL)
    assert cell, row.group(1)
    return cell.group(1)


def test_the_panel_shows_each_queue_with_its_button(admin_client: Client) -> None:
    tandem.pause("exports")

    page = admin_client.get("/tasks/panel/").content.decode()

    assert 'value="resume">Resume</button>' in state_cell(page, "exports")
    assert ">paused<" in state_cell(page, "exports")
    assert 'value="pause">Pause</button>' in state_cell(page, "default")
    assert 'name="csrfmiddlewaretoken"' in state_cell(page, "default")


def test_the_button_pauses_and_resumes_with_the_pages_csrf_token() -> None:
    client = staff_client(enforce_csrf=True)
    page = client.get("/tasks/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, "the dashboard carries a CSRF token"
    form = {"backend": "default", "queue": "critical", "csrfmiddlewaretoken": token.group(1)}

    paused = client.post(BUTTON, {**form, "action": "pause"})

    assert paused.status_code == 302
    assert paused["Location"] == "/tasks/?backend=default"
    assert tandem.is_paused("critical")
    assert client.post(BUTTON, {**form, "action": "resume"}).status_code == 302
    assert not tandem.is_paused("critical")


def test_a_post_without_the_csrf_token_is_refused() -> None:
    client = staff_client(enforce_csrf=True)

    response = client.post(BUTTON, {"backend": "default", "queue": "critical", "action": "pause"})

    assert response.status_code == 403
    assert not QueuePause.objects.exists()


def test_only_staff_may_press_it_and_only_by_post(client: Client) -> None:
    form = {"backend": "default", "queue": "critical", "action": "pause"}
    assert client.post(BUTTON, form).status_code == 302  # to the admin login
    client.force_login(User.objects.create_user("customer"))
    response = client.post(BUTTON, form)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert staff_client().get(BUTTON, form).status_code == 405
    assert not QueuePause.objects.exists()


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"backend": "nope", "queue": "critical", "action": "pause"}, "No tandem backend 'nope'"),
        ({"backend": "default", "queue": "critical", "action": "stop"}, "action must be"),
        ({"backend": "default", "queue": "exprots", "action": "pause"}, "Queue 'exprots' is not"),
        ({"backend": "default", "queue": "", "action": "pause"}, "non-empty string"),
    ],
)
def test_a_bad_form_is_refused_with_the_reason(form: dict[str, str], message: str) -> None:
    response = staff_client().post(BUTTON, form)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not QueuePause.objects.exists()


# -- the admin ---------------------------------------------------------------------------------


def act(client: Client, action: str, *records: TaskRecord) -> str:
    page = client.post(
        "/admin/tandem/taskrecord/",
        {"action": action, "_selected_action": [str(r.pk) for r in records]},
        follow=True,
    )
    assert page.status_code == 200
    return str(page.content.decode())


def test_the_admin_pauses_and_resumes_the_queues_of_the_selected_tasks() -> None:
    records = [
        TaskRecord.objects.get(id=r.id)
        for r in (echo.enqueue("a"), echo.enqueue("b"), critical_noop.enqueue())
    ]
    changer = staff_client("view_taskrecord", "change_taskrecord")

    page = act(changer, "pause_queues", *records)

    assert "Paused queue(s) default:critical, default:default." in page
    assert tandem.is_paused("default") and tandem.is_paused("critical")
    assert "were already paused" in act(changer, "pause_queues", records[0])
    assert "Resumed queue(s) default:default." in act(changer, "resume_queues", records[0])
    assert not tandem.is_paused("default") and tandem.is_paused("critical")


def test_the_admin_actions_need_the_change_permission() -> None:
    record = TaskRecord.objects.get(id=echo.enqueue("a").id)
    viewer = staff_client("view_taskrecord", "add_taskrecord")

    assert 'value="pause_queues"' not in viewer.get("/admin/tandem/taskrecord/").content.decode()
    act(viewer, "pause_queues", record)

    assert not tandem.is_paused("default")


def test_the_paused_queues_are_listed_and_resumed_in_the_admin(admin_client: Client) -> None:
    tandem.pause("exports")
    tandem.pause("critical")
    listing = admin_client.get("/admin/tandem/queuepause/").content.decode()
    assert "exports" in listing and "critical" in listing
    pk = QueuePause.objects.get(queue_name="exports").pk

    page = admin_client.post(
        "/admin/tandem/queuepause/",
        {"action": "resume_selected", "_selected_action": [str(pk)]},
        follow=True,
    ).content.decode()

    assert "Resumed queue(s) default:exports." in page
    assert not tandem.is_paused("exports") and tandem.is_paused("critical")
