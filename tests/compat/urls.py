from django.http import HttpRequest, JsonResponse
from django.urls import path

from tests.compat.shop.tasks import backported, validate_order


def ping(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def order(request: HttpRequest) -> JsonResponse:
    """Enqueue both tasks from a view, as a site does; their result ids."""
    validated = validate_order.enqueue({"sku": "tea", "quantity": int(request.GET["quantity"])})
    hello = backported.enqueue(request.GET.get("name", "web"))
    return JsonResponse({"validate_order": validated.id, "backported": hello.id})


urlpatterns = [path("ping/", ping), path("order/", order)]
