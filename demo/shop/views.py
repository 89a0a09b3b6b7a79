"""One page: the last task results, and forms that enqueue tasks."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from tandem.models import TaskRecord

from . import tasks

RECENT = 20
MAX_PRIMES_BELOW = 5_000_000


def result_text(record: TaskRecord) -> str:
    """The return value, or the last line of the last error's traceback."""
    if record.status == "SUCCESSFUL":
        value = record.return_value
        if value is None:
            return ""
        return value if isinstance(value, str) else json.dumps(value)
    if record.errors:
        lines = [line for line in record.errors[-1].get("traceback", "").splitlines() if line]
        return lines[-1] if lines else record.errors[-1].get("exception_class_path", "")
    if record.status == "RUNNING" and isinstance(record.progress, dict):
        return f"{record.progress.get('rows', 0)} of {record.progress.get('total', '?')} rows"
    if record.status == "READY" and record.run_after:
        return f"deferred until {record.run_after:%H:%M:%S}"
    return ""


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    records = list(TaskRecord.objects.order_by("-enqueued_at")[:RECENT])
    rows: list[dict[str, Any]] = [
        {
            "id": record.id,
            "task": record.task_path.rpartition(".")[2],
            "task_path": record.task_path,
            "queue": record.queue_name,
            "priority": record.priority,
            "status": record.status,
            "attempts": record.attempts,
            "result": result_text(record),
            "enqueued_at": record.enqueued_at,
            "finished_at": record.finished_at,
        }
        for record in records
    ]
    return render(request, "shop/index.html", {"rows": rows, "total": TaskRecord.objects.count()})


@require_POST
def enqueue(request: HttpRequest) -> HttpResponse:
    kind = request.POST.get("kind", "")
    if kind == "welcome":
        email = request.POST.get("email", "").strip() or "ada@example.com"
        tasks.send_welcome_email.enqueue(email)
    elif kind == "primes":
        try:
            below = int(request.POST.get("below", "1000000"))
        except ValueError:
            return HttpResponseBadRequest("below must be a whole number")
        if not 2 <= below <= MAX_PRIMES_BELOW:
            return HttpResponseBadRequest(f"below must be between 2 and {MAX_PRIMES_BELOW}")
        tasks.count_primes.enqueue(below)
    elif kind == "fail":
        tasks.charge_card.enqueue(order="A-1001")
    elif kind == "deferred":
        tasks.send_reminder.using(run_after=timedelta(seconds=10)).enqueue("sent 10 s later")
    elif kind == "critical":
        tasks.reset_password.enqueue("ada")
    elif kind == "export":
        tasks.export_orders.enqueue(f"orders-{timezone.now():%Y%m%d-%H%M%S}", 3000)
    else:
        return HttpResponseBadRequest(f"unknown kind of task: {kind!r}")
    return redirect("index")
