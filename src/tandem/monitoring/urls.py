"""``path("tasks/", include("tandem.monitoring.urls"))``: dashboard, metrics and health views."""

from django.urls import path

from tandem.monitoring import pause_view, views

app_name = "tandem"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("panel/", views.panel, name="panel"),
    path("status.json", views.status_json, name="status"),
    path("metrics/", views.metrics_view, name="metrics"),
    path("health/live", views.live, name="live"),
    path("health/ready", views.ready, name="ready"),
    path("queues/pause", pause_view.queue_pause, name="queue_pause"),
]
