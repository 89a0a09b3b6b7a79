"""A project on tandem's default settings with a real app that imports pydantic at start-up.

``ninja_extra`` (django-ninja-extra) imports django-ninja, and so pydantic and ``pydantic_core``,
from its ``AppConfig`` — as Wagtail's redirects app does — and ``pydantic_core`` refuses to load
in a subinterpreter. ``TASKS`` names no executor: the default applies (subinterpreters on Python
3.14, threads before). The database is the test database, as in ``tests.settings``.
"""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "ninja_extra", "tests.compat.shop"]
ROOT_URLCONF = "tests.compat.urls"
QUEUES = ["default", "critical", "exports"]  # the queues of tests.tasks (an installed app's)
TASKS = {
    "default": {
        "BACKEND": "tandem.backends.database.DatabaseBackend",
        "QUEUES": QUEUES,
        "OPTIONS": {"pools": {"default": {"workers": 2, "queues": QUEUES}}},
    }
}
