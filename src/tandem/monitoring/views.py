"""The staff-only dashboard, its JSON twin, the metrics view and the health views.

The dashboard page refreshes its panel every ``TANDEM_DASHBOARD_REFRESH`` seconds (default 5)
with a few lines of inline JavaScript; without JavaScript a ``<meta http-equiv="refresh">``
reloads the whole page instead. Everything on it is read through the broker (``stats()``,
``workers()``), so it works for every store; the throughput chart and the recent failures need a
database store and say so otherwise.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from tandem.backends import tandem_backend
from tandem.backends.base import TandemBackend
from tandem.monitoring import attention, chart, health, history, metrics, status

DEFAULT_REFRESH = 5.0


def refresh_seconds() -> float:
    value = getattr(settings, "TANDEM_DASHBOARD_REFRESH", DEFAULT_REFRESH)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ImproperlyConfigured(
            f"TANDEM_DASHBOARD_REFRESH must be a number of seconds > 0, got {value!r}."
        )
    return float(value)


def _alias(request: HttpRequest) -> str:
    aliases = status.tandem_aliases()
    if not aliases:
        raise Http404("No tandem backend in settings.TASKS.")
    alias = request.GET.get("backend") or aliases[0]
    if alias not in aliases:
        raise Http404(f"No tandem backend {alias!r} in settings.TASKS.")
    return alias


def admin_url(task_id: object) -> str | None:
    try:
        return reverse("admin:tandem_taskrecord_change", args=[task_id])
    except NoReverseMatch:  # the admin is not installed, or TaskRecord is not registered
        return None


def panel_context(alias: str) -> dict[str, Any]:
    backend = tandem_backend(alias)
    now = timezone.now()
    snapshot = status.take(alias, now=now)
    buckets = history.throughput(backend, now)
    failures = history.recent_failures(backend)
    totals = None
    if buckets is not None:
        succeeded = sum(b.succeeded for b in buckets)
        failed = sum(b.failed for b in buckets)
        finished = succeeded + failed
        totals = {
            "succeeded": succeeded,
            "failed": failed,
            "rate": f"{failed / finished:.0%}" if finished else "—",
            "minutes": len(buckets),
        }
    return {
        "snapshot": snapshot,
        "chart": chart.throughput_svg(buckets) if buckets is not None else None,
        "totals": totals,
        "failures": [
            {
                "record": record,
                "url": admin_url(record.id) if backend.broker.rows_in_admin else None,
                "error": record.errors[-1].exception_class_path if record.errors else "",
                **_workflow_links(backend, record.id),
            }
            for record in failures
        ]
        if failures is not None
        else None,
        "groups": _groups(backend),
        "running_notes": _running_notes(backend, now),
        "now": now,
    }


def _running_notes(backend: TandemBackend, now: datetime) -> list[dict[str, Any]]:
    linked = backend.broker.rows_in_admin
    return [
        {
            "task": n.task,
            "note": n.note,
            "url": admin_url(n.task.id) if linked else None,
            **_workflow_links(backend, n.task.id),
        }
        for n in attention.running_notes(backend, now)
    ]


def _workflow_links(backend: TandemBackend, task_id: str) -> dict[str, list[dict[str, Any]]]:
    """A listed task's parents (the tasks it waited for) and children (the tasks that wait for
    it), each with its admin page where the store's rows are there: workflows both ways."""
    linked = backend.broker.rows_in_admin

    def links(ids: list[str]) -> list[dict[str, Any]]:
        return [{"id": i, "url": admin_url(i) if linked else None} for i in ids]

    return {
        "parents": links(backend.broker.parent_ids(task_id)),
        "children": links(backend.broker.child_ids(task_id)),
    }


#: Groups the dashboard lists: the newest ones.
DASHBOARD_GROUPS = 10


def _groups(backend: TandemBackend) -> list[dict[str, Any]]:
    """The newest workflow groups with their progress (done/total), linked to their admin page
    and their callback's where the store's rows are there."""
    from tandem.monitoring.workflows import groups_json

    linked = backend.broker.rows_in_admin
    groups = groups_json(backend, limit=DASHBOARD_GROUPS)
    for group in groups:
        group["url"] = _group_admin_url(group["id"]) if linked else None
        then = group["then_id"]
        group["then_url"] = admin_url(then) if linked and then else None
    return groups


def _group_admin_url(group_id: str) -> str | None:
    try:
        return reverse("admin:tandem_taskgroup_change", args=[group_id])
    except NoReverseMatch:
        return None


@never_cache
@staff_member_required
def dashboard(request: HttpRequest) -> HttpResponse:
    alias = _alias(request)
    context = panel_context(alias)
    context.update(
        backend=alias,
        backends=status.tandem_aliases(),
        refresh=refresh_seconds(),
        panel_url=f"{reverse('tandem:panel')}?backend={alias}",
        admin_changelist=_changelist_url(),
    )
    return render(request, "tandem/monitoring/dashboard.html", context)


@never_cache
@staff_member_required
def panel(request: HttpRequest) -> HttpResponse:
    """The part of the dashboard that refreshes (fetched by the page's script)."""
    return render(request, "tandem/monitoring/panel.html", panel_context(_alias(request)))


@never_cache
@staff_member_required
def status_json(request: HttpRequest) -> JsonResponse:
    """What ``tandem status --json`` prints, for the chosen backend."""
    from tandem.monitoring.workflows import groups_json

    alias = _alias(request)
    data = status.take(alias).as_json()
    data["groups"] = groups_json(tandem_backend(alias))  # workflows: done/total
    return JsonResponse(data)


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, for ``Authorization: Bearer <TANDEM_METRICS_TOKEN>`` or staff."""
    user = getattr(request, "user", None)
    staff = bool(user is not None and user.is_active and user.is_staff)
    if not staff and not metrics.bearer_ok(request.headers.get("Authorization")):
        response = HttpResponse(
            "Scrape with 'Authorization: Bearer <TANDEM_METRICS_TOKEN>', or log in as staff.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="tandem metrics"'
        return response
    return HttpResponse(metrics.exposition(), content_type=metrics.CONTENT_TYPE)


@never_cache
@require_GET
def live(request: HttpRequest) -> HttpResponse:
    """Liveness: this process answers requests."""
    return HttpResponse("live\n", content_type="text/plain; charset=utf-8")


@never_cache
@require_GET
def ready(request: HttpRequest) -> HttpResponse:
    """Readiness: every tandem backend's store answers (503 with the reason otherwise)."""
    result = health.readiness()
    return HttpResponse(
        result.text, status=200 if result.ready else 503, content_type="text/plain; charset=utf-8"
    )


def _changelist_url() -> str | None:
    try:
        return reverse("admin:tandem_taskrecord_changelist")
    except NoReverseMatch:
        return None
