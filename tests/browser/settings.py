"""Settings of the ``tandem serve`` process the browser test drives: the serve tests' settings
(static files included: the admin's, served by ``tandem serve`` from ``STATIC_ROOT`` after
``collectstatic``), the dashboard and the browser test's tasks."""

from tests.support.serve_settings import *  # noqa: F403

ROOT_URLCONF = "tests.browser.urls"
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
