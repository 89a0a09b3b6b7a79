"""Workflows made visible: a task's parents, children and groups in the admin (links both
ways), a group's page with done/total, and groups' progress in ``tandem status --json``."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from django.core.management import call_command
from django.test import Client

import tandem
from tandem.models import TaskRecord
from tandem.worker.supervisor import Supervisor
from tests import tasks
from tests import tasks as features

pytestmark = pytest.mark.django_db

TASK_PAGE = "/admin/tandem/taskrecord/{}/change/"
GROUP_PAGE = "/admin/tandem/taskgroup/{}/change/"


def test_a_task_page_links_its_parents_and_its_children(admin_client: Client) -> None:
    parent = tasks.add.enqueue(1, 2)
    child = tandem.enqueue_after([parent], features.parents_seen, ["x"])

    page = admin_client.get(TASK_PAGE.format(child.id)).content.decode()
    assert "waits for 1 more parent task(s) to finish (0 failed)" in page
    assert f'<a href="{TASK_PAGE.format(parent.id)}">{parent.id}</a>' in page

    page = admin_client.get(TASK_PAGE.format(parent.id)).content.decode()
    assert f'<a href="{TASK_PAGE.format(child.id)}">{child.id}</a>' in page


def test_a_group_page_shows_done_over_total_and_its_tasks_link_to_it(
    admin_client: Client,
) -> None:
    group = tandem.group([(tasks.add, [n, n], None) for n in range(3)], then=features.add_to)
    first = group.member_ids[0]
    TaskRecord.objects.filter(id=first).update(status="SUCCESSFUL")

    page = admin_client.get(GROUP_PAGE.format(group.id)).content.decode()
    assert "1/3" in page
    assert f'<a href="{TASK_PAGE.format(group.then_id)}">{group.then_id}</a>' in page
    assert f'<a href="{TASK_PAGE.format(first)}">{first}</a>' in page

    page = admin_client.get(TASK_PAGE.format(first)).content.decode()
    assert f'item of group <a href="{GROUP_PAGE.format(group.id)}">{group.id}</a>: 1/3 done' in page
    page = admin_client.get(TASK_PAGE.format(group.then_id)).content.decode()
    assert "callback of group" in page


@pytest.mark.django_db(transaction=True)
def test_status_json_shows_each_groups_progress(tandem_settings) -> None:  # type: ignore[no-untyped-def]
    tandem_settings(executor="thread")
    group = tandem.group([(tasks.add, [n, 1], None) for n in range(4)])

    def groups() -> list[dict[str, object]]:
        out = io.StringIO()
        # Unhealthy (no worker registered: SystemExit 1), the JSON is printed all the same.
        with contextlib.suppress(SystemExit):
            call_command("tandem", "status", "--json", stdout=out, stderr=io.StringIO())
        return list(json.loads(out.getvalue())["groups"])

    [entry] = groups()
    assert (entry["id"], entry["done"], entry["total"], entry["finished"]) == (
        group.id,
        0,
        4,
        False,
    )
    Supervisor(burst=True, listen=False).run()
    [entry] = groups()
    assert (entry["done"], entry["total"], entry["finished"]) == (4, 4, True)


def test_the_dashboards_status_json_shows_each_groups_progress(admin_client: Client) -> None:
    group = tandem.group([(tasks.add, [n, 1], None) for n in range(3)], then=features.add_to)
    TaskRecord.objects.filter(id=group.member_ids[1]).update(status="FAILED")

    data = json.loads(admin_client.get("/tasks/status.json").content)

    [entry] = data["groups"]
    assert (entry["id"], entry["done"], entry["total"], entry["then_id"]) == (
        group.id,
        1,
        3,
        group.then_id,
    )


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_links_a_failed_tasks_parents_and_children_and_lists_groups(
    admin_client: Client,
    tandem_settings,  # type: ignore[no-untyped-def]
) -> None:
    tandem_settings(executor="thread")
    parent = tasks.fail.enqueue("the parent fails")
    child = tandem.enqueue_after([parent], features.parents_seen, ["x"])  # fails: DependencyFailed
    group = tandem.group([(tasks.add, [n, n], None) for n in range(3)], then=features.add_to)
    Supervisor(burst=True, listen=False).run()

    page = admin_client.get("/tasks/panel/").content.decode()

    failures = page[page.index('id="failures"') : page.index("Workflow groups")]
    rows = {
        task_id: row
        for row in failures.split('<tr class="failure">')[1:]
        for task_id in (parent.id, child.id)
        if f'<code class="muted">{task_id}</code>' in row
    }
    assert (
        f'waited on by: <a href="{TASK_PAGE.format(child.id)}"><code>{child.id}</code></a>'
        in (rows[parent.id])
    )
    assert (
        f'waited for: <a href="{TASK_PAGE.format(parent.id)}"><code>{parent.id}</code></a>'
        in (rows[child.id])
    )
    groups = page[page.index('id="groups"') :]
    row = groups[groups.index(group.id) - 200 : groups.index("</tr>", groups.index(group.id))]
    assert f'<a href="{GROUP_PAGE.format(group.id)}"><code>{group.id}</code></a>' in row
    assert '<td class="n">3</td>\n      <td class="n">3</td>' in row  # done / total
    assert f'<a href="{TASK_PAGE.format(group.then_id)}"><code>{group.then_id}</code></a>' in row
