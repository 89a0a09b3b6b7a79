"""The dashboard's pause/resume button: a staff-only POST (Django's CSRF check applies)."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from tandem import pausing
from tandem.backends import tandem_backend
from tandem.monitoring import status


@require_POST
@staff_member_required
def queue_pause(request: HttpRequest) -> HttpResponse:
    """``action=pause|resume`` ``queue=NAME`` ``backend=ALIAS``; back to the dashboard."""
    alias = request.POST.get("backend", "")
    queue = request.POST.get("queue", "")
    action = request.POST.get("action", "")
    if alias not in status.tandem_aliases():
        return HttpResponseBadRequest(f"No tandem backend {alias!r} in settings.TASKS.\n")
    if action not in ("pause", "resume"):
        return HttpResponseBadRequest(f"action must be 'pause' or 'resume', got {action!r}.\n")
    backend = tandem_backend(alias)
    try:
        if action == "pause":
            pausing.pause_queues(backend, [queue])
        else:
            pausing.resume_queues(backend, [queue])
    except (TypeError, ValueError) as exc:
        return HttpResponseBadRequest(f"{exc}\n")
    return HttpResponseRedirect(f"{reverse('tandem:dashboard')}?backend={alias}")


__all__ = ["queue_pause"]
