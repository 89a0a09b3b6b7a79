from django.urls import path

from tests.serve import views

urlpatterns = [
    path("ping/", views.ping),
    path("enqueue/", views.enqueue),
    path("hang/", views.hang),
    path("whoami/", views.whoami),
    path("echo/", views.echo),
    path("stream/", views.stream),
    path("modules/", views.modules),
]
