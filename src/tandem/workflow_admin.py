"""The admin's view of workflows: a task's parents, children and groups (links both ways), and
a read-only page per group with its progress (done/total). Mixed into ``admin.TaskRecordAdmin``."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.contrib import admin
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from tandem.models import TaskDependency, TaskGroup, TaskGroupMember, TaskRecord, TaskWait

#: Items listed on a group's page (the rest are counted).
GROUP_PAGE_ITEMS = 100


def _task_links(ids: Iterable[uuid.UUID]) -> SafeString:
    ids = list(ids)
    if not ids:
        return format_html("{}", "—")
    records = {r.id: r for r in TaskRecord.objects.filter(id__in=ids)}
    rows = []
    for task_id in ids:
        record = records.get(task_id)
        label = f"{record.task_path} [{record.status}]" if record else "(deleted)"
        try:
            url = reverse("admin:tandem_taskrecord_change", args=[task_id])
        except NoReverseMatch:
            url = "#"
        rows.append((url, task_id, label))
    return format_html("<ol>{}</ol>", format_html_join("", '<li><a href="{}">{}</a> {}</li>', rows))


def _progress(group: TaskGroup) -> tuple[int, int]:
    members = TaskGroupMember.objects.filter(group_id=group.id).values("task_id")
    done = TaskRecord.objects.filter(id__in=members, status__in=["SUCCESSFUL", "FAILED"]).count()
    return done, group.total


class WorkflowFields:
    """The detail page's "Workflow" section."""

    workflow_fields = ("waiting_note", "parents_display", "children_display", "groups_display")

    @admin.display(description="waiting")
    def waiting_note(self, obj: TaskRecord) -> str:
        wait = TaskWait.objects.filter(task_id=obj.id).first()
        if wait is None:
            return "—"
        return f"waits for {wait.remaining} more parent task(s) to finish ({wait.failed} failed)"

    @admin.display(description="parents (waited for)")
    def parents_display(self, obj: TaskRecord) -> SafeString:
        edges = TaskDependency.objects.filter(child_id=obj.id).order_by("position", "id")
        return _task_links(edges.values_list("parent_id", flat=True))

    @admin.display(description="children (wait for this task)")
    def children_display(self, obj: TaskRecord) -> SafeString:
        edges = TaskDependency.objects.filter(parent_id=obj.id).order_by("id")
        return _task_links(edges.values_list("child_id", flat=True))

    @admin.display(description="groups")
    def groups_display(self, obj: TaskRecord) -> SafeString:
        group_ids = set(
            TaskGroupMember.objects.filter(task_id=obj.id).values_list("group_id", flat=True)
        )
        groups = TaskGroup.objects.filter(id__in=group_ids) | TaskGroup.objects.filter(
            then_id=obj.id
        )
        rows = []
        for group in groups:
            done, total = _progress(group)
            role = "callback of" if group.then_id == obj.id else "item of"
            url = reverse("admin:tandem_taskgroup_change", args=[group.id])
            rows.append((role, url, group.id, done, total))
        if not rows:
            return format_html("{}", "—")
        return format_html_join("", '<p>{} group <a href="{}">{}</a>: {}/{} done</p>', rows)


@admin.register(TaskGroup)
class TaskGroupAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "backend", "created_at", "progress", "total"]
    list_filter = ["backend"]
    search_fields = ["id"]
    ordering = ["-created_at"]
    fields = ("id", "backend", "created_at", "progress", "then_link", "items")
    readonly_fields = ("id", "backend", "created_at", "progress", "then_link", "items")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: TaskGroup | None = None) -> bool:
        return False

    @admin.display(description="done / total")
    def progress(self, obj: TaskGroup) -> str:
        done, total = _progress(obj)
        return f"{done}/{total}"

    @admin.display(description="then (callback)")
    def then_link(self, obj: TaskGroup) -> SafeString:
        return _task_links([obj.then_id] if obj.then_id else [])

    @admin.display(description=f"items (the first {GROUP_PAGE_ITEMS})")
    def items(self, obj: TaskGroup) -> SafeString:
        members = TaskGroupMember.objects.filter(group_id=obj.id).order_by("position")
        return _task_links(members.values_list("task_id", flat=True)[:GROUP_PAGE_ITEMS])


__all__ = ["TaskGroupAdmin", "WorkflowFields"]
