from django.contrib import admin
from django.contrib.staticfiles.views import serve
from django.urls import include, path, re_path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("tasks/", include("tandem.monitoring.urls")),
    # tandem serve serves no static files; the test server serves the admin's own.
    re_path(r"^static/(?P<path>.*)$", serve, {"insecure": True}),
]
