"""The view ``bench/serve.py`` loads: one small ORM query, a few bytes of JSON."""

from django.http import HttpRequest, JsonResponse

from tandem.models import TaskRecord


def ping(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ready": TaskRecord.objects.filter(status="READY").count()})
