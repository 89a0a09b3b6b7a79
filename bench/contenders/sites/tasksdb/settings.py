"""Settings for ``tasksdb-sqlite`` / ``tasksdb-postgres``: django-tasks-db's ``DatabaseBackend``.

``BENCH_DB=sqlite`` (``BENCH_SQLITE_PATH``, WAL, 30 s busy timeout, SQLite's default synchronous,
as for tandem) or ``postgres`` (``BENCH_PG_NAME`` on 127.0.0.1:5432 as postgres).
"""

import os

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django_tasks_db", "contenders.sites.tasksdb"]

if os.environ.get("BENCH_DB", "sqlite") == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ["BENCH_SQLITE_PATH"],
            "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["BENCH_PG_NAME"],
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
        }
    }

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django_tasks_db": {"handlers": ["stderr"], "level": "WARNING"}},
}
