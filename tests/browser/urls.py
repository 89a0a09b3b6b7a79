from django.contrib import admin
from django.urls import include, path

# Static files (the admin's stylesheets) are tandem serve's: see tests/browser/conftest.py.
urlpatterns = [
    path("admin/", admin.site.urls),
    path("tasks/", include("tandem.monitoring.urls")),
]
