from django.contrib import admin
from django.urls import include, path
from shop import views

urlpatterns = [
    path("", views.index, name="index"),
    path("enqueue/", views.enqueue, name="enqueue"),
    path("admin/", admin.site.urls),  # tasks and workers, read-only, with retry and cancel
    path("tasks/", include("tandem.monitoring.urls")),  # the staff-only dashboard
]
