"""The views: ``ping`` (``bench/serve.py``'s load: one small ORM query, a few bytes of JSON) and
``enqueue_mark`` (``bench/compare``'s pickup through HTTP for ``tandem serve``)."""

import time

from django.http import HttpRequest, JsonResponse

from benchsite.tasks import mark
from tandem.models import TaskRecord


def ping(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ready": TaskRecord.objects.filter(status="READY").count()})


def enqueue_mark(request: HttpRequest) -> JsonResponse:
    """Enqueue ``mark(stamp=…)``, stamped here just before ``enqueue()`` as every other
    contender's enqueuer stamps its call: pickup runs from the enqueue call to the task's start,
    not from the client's request (``?stamp=0`` marks a task that is not timed)."""
    timed = request.GET.get("stamp", "0") != "0"
    result = mark.enqueue(stamp=time.time() if timed else 0.0)
    return JsonResponse({"id": str(result.id)})
