"""The Django admin for tasks, workers and paused queues: read-only history, and actions.

Rows are written by the broker only, so nothing is editable here. The actions go through the
public API: *retry* enqueues a NEW task with the failed one's task, arguments, queue and priority
(the failed row stays as it was: history is not rewritten); *cancel* calls ``tandem.cancel()``;
*delete* is Django's; *pause/resume the queues* call ``tandem.pause()``/``tandem.resume()`` for
the selected tasks' queues. Each needs a model permission: retry ``add``, cancel, pause and
resume ``change``, delete ``delete`` (the detail pages only need ``view``).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from tandem.backends.base import resolve_task
from tandem.brokers.base import FAILED
from tandem.models import QueuePause, TaskRecord, WorkerRecord
from tandem.workflow_admin import WorkflowFields


def _pretty(value: Any) -> SafeString:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="tandem-json">{}</pre>', text)


@admin.register(TaskRecord)
class TaskRecordAdmin(WorkflowFields, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "id",
        "task_path",
        "queue_name",
        "status",
        "attempts_count",
        "priority",
        "enqueued_at",
        "finished_at",
        "backend",
    ]
    list_filter = [
        "status",
        "queue_name",
        "task_path",
        "backend",
        ("enqueued_at", admin.DateFieldListFilter),
    ]
    search_fields = ["id", "task_path"]
    ordering = ["-enqueued_at"]
    list_per_page = 50
    show_full_result_count = False  # no COUNT(*) over the whole table on every page
    actions = ["retry_tasks", "cancel_tasks", "pause_queues", "resume_queues"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "task_path",
                    "status",
                    "backend",
                    "queue_name",
                    "priority",
                    "takes_context",
                ]
            },
        ),
        ("Arguments", {"fields": ["arguments"]}),
        ("Workflow", {"fields": list(WorkflowFields.workflow_fields)}),
        ("Result", {"fields": ["return_value_display", "progress_display", "progress_at"]}),
        (
            "Attempts",
            {
                "fields": [
                    "attempts_count",
                    "max_attempts",
                    "worker_ids_display",
                    "errors_display",
                ]
            },
        ),
        (
            "Timing",
            {
                "fields": [
                    "enqueued_at",
                    "run_after",
                    "available_at",
                    "started_at",
                    "last_attempted_at",
                    "finished_at",
                    "timeout",
                ]
            },
        ),
        (
            "Lease",
            {
                "fields": [
                    "running_note",
                    "worker_id",
                    "lease_expires_at",
                    "cancel_requested_at",
                    "unique_key",
                    "concurrency_key",
                    "concurrency_limit",
                    "on_limit",
                    "rate_limit",
                ]
            },
        ),
    ]

    # -- read only: the broker owns these rows -------------------------------------------------

    def get_readonly_fields(self, request: HttpRequest, obj: TaskRecord | None = None) -> list[str]:
        names: list[str] = []
        for _, options in self.fieldsets:
            names += [name for name in options["fields"] if isinstance(name, str)]
        return names

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: TaskRecord | None = None) -> bool:
        # The change permission allows the cancel action on the list; a task's own page is
        # always read-only (Django then shows it to those with the view or change permission).
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(f"{self.opts.app_label}.add_{self.opts.model_name}"))

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}"))

    # -- the detail page -----------------------------------------------------------------------

    @admin.display(description="state")
    def running_note(self, obj: TaskRecord) -> str:
        """ "worker lost — recovered within N s" and/or "cancel requested" for a RUNNING task."""
        from django.tasks.exceptions import InvalidTaskBackend
        from django.utils import timezone

        from tandem.backends import NotATandemBackend, tandem_backend
        from tandem.monitoring import attention

        if obj.status != "RUNNING":
            return "—"
        try:
            backend = tandem_backend(obj.backend)
        except (InvalidTaskBackend, NotATandemBackend):
            return "—"
        task = backend.broker.get(str(obj.pk))
        if task is None:
            return "—"
        now = timezone.now()
        options = backend.tandem_options
        live = attention.live_worker_ids(backend.broker, now, options.lease_seconds)
        return attention.note_for(task, now, live, options.heartbeat_interval) or "running"

    @admin.display(description="attempts")
    def attempts_count(self, obj: TaskRecord) -> int:
        return obj.attempts

    @admin.display(description="arguments")
    def arguments(self, obj: TaskRecord) -> SafeString:
        return _pretty({"args": obj.args, "kwargs": obj.kwargs})

    @admin.display(description="return value")
    def return_value_display(self, obj: TaskRecord) -> SafeString:
        return _pretty(obj.return_value)

    @admin.display(description="progress")
    def progress_display(self, obj: TaskRecord) -> SafeString:
        return _pretty(obj.progress)

    @admin.display(description="worker ids (one per attempt)")
    def worker_ids_display(self, obj: TaskRecord) -> SafeString:
        if not obj.worker_ids:
            return format_html("{}", "—")
        return format_html(
            "<ol>{}</ol>",
            format_html_join("", "<li><code>{}</code></li>", ((w,) for w in obj.worker_ids)),
        )

    @admin.display(description="errors (one per failed attempt, oldest first)")
    def errors_display(self, obj: TaskRecord) -> SafeString:
        if not obj.errors:
            return format_html("{}", "—")
        return format_html_join(
            "",
            '<div class="tandem-error"><p><strong>{}.</strong> <code>{}</code></p>'
            '<pre class="tandem-traceback">{}</pre></div>',
            (
                (n, error.get("exception_class_path", "?"), error.get("traceback", ""))
                for n, error in enumerate(obj.errors, start=1)
            ),
        )

    # -- actions -------------------------------------------------------------------------------

    @admin.action(description="Retry selected failed tasks (as new tasks)", permissions=["retry"])
    def retry_tasks(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> None:
        retried: list[str] = []
        skipped = 0
        for record in queryset.order_by("enqueued_at"):
            if record.status != FAILED:
                skipped += 1
                continue
            try:
                task = resolve_task(record.task_path).using(
                    queue_name=record.queue_name,
                    priority=record.priority,
                    backend=record.backend,
                )
                result = task.enqueue(*record.args, **record.kwargs)
            except Exception as exc:
                self.message_user(
                    request,
                    f"Could not retry {record.task_path} ({record.pk}): {exc}",
                    messages.ERROR,
                )
                continue
            retried.append(f"{record.pk} → {result.id}")
        if retried:
            self.message_user(
                request,
                f"Retried {len(retried)} failed task(s) as new task(s): {'; '.join(retried)}.",
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request,
                f"Skipped {skipped} task(s) that are not FAILED: only failed tasks are retried.",
                messages.WARNING,
            )

    @admin.action(description="Cancel selected tasks", permissions=["cancel"])
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> None:
        from tandem import cancel
        from tandem.cancellation import CancelOutcome

        cancelled = 0
        requested = 0
        refused = 0
        for record in queryset:
            outcome = cancel(str(record.pk), backend=record.backend)
            if outcome == CancelOutcome.REQUESTED:
                requested += 1
            elif outcome:
                cancelled += 1
            else:
                refused += 1
        if cancelled:
            self.message_user(
                request,
                f"Cancelled {cancelled} task(s): they were ready, and failed at once.",
                messages.SUCCESS,
            )
        if requested:
            self.message_user(
                request,
                f"Asked {requested} running task(s) to stop (cancel requested): each runs on "
                "until its code checks context.cancelled, or a process pool kills it.",
                messages.WARNING,
            )
        if refused:
            self.message_user(
                request,
                f"{refused} task(s) had already finished and were left as they were.",
                messages.WARNING,
            )

    @admin.action(description="Pause the queues of selected tasks", permissions=["cancel"])
    def pause_queues(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> None:
        _pause_or_resume(self, request, _queues_of(queryset), "pause")

    @admin.action(description="Resume the queues of selected tasks", permissions=["cancel"])
    def resume_queues(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> None:
        _pause_or_resume(self, request, _queues_of(queryset), "resume")


def _queues_of(queryset: QuerySet[Any]) -> list[tuple[str, str]]:
    """The distinct (backend, queue) pairs of the selected rows."""
    return sorted(set(queryset.values_list("backend", "queue_name")))


def _pause_or_resume(
    model_admin: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
    queues: list[tuple[str, str]],
    action: str,
) -> None:
    from tandem import pausing
    from tandem.backends import tandem_backend

    done: list[str] = []
    unchanged: list[str] = []
    for alias, queue in queues:
        try:
            backend = tandem_backend(alias)
            if action == "pause":
                changed = pausing.pause_queues(backend, [queue])
            else:
                changed = pausing.resume_queues(backend, [queue])
        except Exception as exc:
            model_admin.message_user(
                request, f"Could not {action} queue {queue!r} of {alias!r}: {exc}", messages.ERROR
            )
            continue
        (done if changed else unchanged).append(f"{alias}:{queue}")
    past = "Paused" if action == "pause" else "Resumed"
    if done:
        model_admin.message_user(request, f"{past} queue(s) {', '.join(done)}.", messages.SUCCESS)
    if unchanged:
        state = "already paused" if action == "pause" else "not paused"
        model_admin.message_user(
            request, f"Queue(s) {', '.join(unchanged)} were {state}.", messages.WARNING
        )


@admin.register(QueuePause)
class QueuePauseAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Paused queues; pause from the task list, the dashboard or ``tandem pause``, resume here."""

    list_display = ["queue_name", "backend", "paused_at"]
    list_filter = ["backend"]
    ordering = ["backend", "queue_name"]
    fields = readonly_fields = ("queue_name", "backend", "paused_at")
    actions = ["resume_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: QueuePause | None = None) -> bool:
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: QueuePause | None = None) -> bool:
        return False  # resume instead: it wakes the workers

    @admin.action(description="Resume selected queues", permissions=["change"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[QueuePause]) -> None:
        _pause_or_resume(self, request, _queues_of(queryset), "resume")


WORKER_FIELDS = (
    "id",
    "backend",
    "hostname",
    "pid",
    "queue_list",
    "pools_display",
    "tasks_done",
    "started_at",
    "last_heartbeat_at",
)


@admin.register(WorkerRecord)
class WorkerRecordAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Live (and recently silent) supervisors; supervisors write these rows, so read-only."""

    list_display = [
        "id",
        "hostname",
        "pid",
        "backend",
        "queue_list",
        "tasks_done",
        "started_at",
        "last_heartbeat_at",
    ]
    list_filter = ["backend", "hostname"]
    search_fields = ["id", "hostname"]
    ordering = ["-last_heartbeat_at"]
    fields = WORKER_FIELDS
    readonly_fields = WORKER_FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WorkerRecord | None = None) -> bool:
        return False

    @admin.display(description="queues")
    def queue_list(self, obj: WorkerRecord) -> str:
        return ", ".join(obj.queues)

    @admin.display(description="pools")
    def pools_display(self, obj: WorkerRecord) -> SafeString:
        return _pretty(obj.pools)
