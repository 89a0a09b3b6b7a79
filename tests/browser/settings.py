"""Settings of the ``tandem serve`` process the browser test drives: the serve tests' settings,
plus the admin's static files, the dashboard and the browser test's tasks."""

from tests.serve.settings import *  # noqa: F403
from tests.serve.settings import INSTALLED_APPS

ROOT_URLCONF = "tests.browser.urls"
INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.staticfiles"]
STATIC_URL = "/static/"
TANDEM_DASHBOARD_REFRESH = 1
TASKS = {
    "default": {
        "BACKEND": "tandem.backends.database.DatabaseBackend",
        "QUEUES": ["default"],
        "OPTIONS": {
            # The browser test's tasks wait on files: threads are enough, and start at once.
            "executor": "thread",
            "poll_interval": 0.5,
            "pools": {"default": {"workers": 2}},
        },
    },
}
