"""Views the serve tests request."""

from __future__ import annotations

import os
import time
from pathlib import Path

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from tandem.models import TaskRecord
from tests.serve.tasks import quick


def ping(request: HttpRequest) -> HttpResponse:
    """One ORM query."""
    return HttpResponse(f"running={TaskRecord.objects.filter(status='RUNNING').count()}")


def enqueue(request: HttpRequest) -> HttpResponse:
    """Enqueue a task (autocommit: the wake-up follows at once); answer with its id."""
    return HttpResponse(quick.enqueue(request.GET.get("value", "from a view")).id)


def hang(request: HttpRequest) -> HttpResponse:
    """Touch ``marker``, then wait until the file ``flag`` exists (at most 60 s)."""
    Path(request.GET["marker"]).touch()
    deadline = time.monotonic() + 60
    while not os.path.exists(request.GET["flag"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return HttpResponse("released")


def whoami(request: HttpRequest) -> HttpResponse:
    """The client as the application sees it: address, scheme, and any X-Forwarded-For left."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "-")
    return HttpResponse(f"{request.META['REMOTE_ADDR']} {request.scheme} {forwarded}")


@csrf_exempt
def echo(request: HttpRequest) -> HttpResponse:
    """The request body as the application read it: its length, then the body itself."""
    body = request.body
    return HttpResponse(f"{len(body)} ".encode() + body)


def stream(request: HttpRequest) -> StreamingHttpResponse:
    """``count`` parts of unknown total length: the server must send them chunked."""
    count = int(request.GET.get("count", "3"))
    return StreamingHttpResponse(f"part {n};" for n in range(count))


def modules(request: HttpRequest) -> HttpResponse:
    """The modules this interpreter has imported, one a line."""
    import sys

    return HttpResponse("\n".join(sorted(sys.modules)), content_type="text/plain")
