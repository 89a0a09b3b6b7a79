"""The views: ``ping`` (``bench/serve.py``'s load: one small ORM query, a few bytes of JSON),
``page`` (``bench/web.py``'s load: one ORM query, a ~2 KB HTML page) and ``enqueue_mark``
(``bench/compare``'s pickup through HTTP for ``tandem serve``)."""

import time

from django.http import HttpRequest, HttpResponse, JsonResponse

from benchsite.tasks import mark
from tandem.models import TaskRecord


def ping(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ready": TaskRecord.objects.filter(status="READY").count()})


ITEMS = "".join(
    f'<li><a href="/items/{n}/">Item {n}</a>: a line of the page\'s body text</li>\n'
    for n in range(26)
)


def page(request: HttpRequest) -> HttpResponse:
    """One ORM query and about 2 KB of HTML."""
    ready = TaskRecord.objects.filter(status="READY").count()
    return HttpResponse(
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>bench</title></head>\n'
        f"<body><h1>{ready} task(s) ready</h1>\n<ul>\n{ITEMS}</ul></body></html>\n"
    )


def enqueue_mark(request: HttpRequest) -> JsonResponse:
    """Enqueue ``mark(stamp=…)``, stamped here just before ``enqueue()`` as every other
    contender's enqueuer stamps its call: pickup runs from the enqueue call to the task's start,
    not from the client's request (``?stamp=0`` marks a task that is not timed)."""
    timed = request.GET.get("stamp", "0") != "0"
    result = mark.enqueue(stamp=time.time() if timed else 0.0)
    return JsonResponse({"id": str(result.id)})
