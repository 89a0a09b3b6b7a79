"""Settings for the peers built on Django's task API that came with issue 22: ``BENCH_PEER`` picks
the backend (``vtasks``, ``djqueue``, ``threadmill``, ``ox``), ``BENCH_DB`` the Django database.

- ``BENCH_DB=sqlite``: ``BENCH_SQLITE_PATH`` (WAL, 30 s busy timeout, SQLite's default synchronous
  FULL, as for tandem and django-tasks-db); for the Redis peers this holds only Django's own tables.
- ``BENCH_DB=postgres``: ``BENCH_PG_NAME`` on 127.0.0.1:5432 as postgres.

``CONN_MAX_AGE`` 600 (``BENCH_CONN_MAX_AGE``), as ``bench/benchsite`` has for tandem.

Each backend as its README configures it, with its defaults, except the worker slots
(``BENCH_SLOTS``, ``bench/compare --slots``) where the slot count is a setting.
"""

import os

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

PEER = os.environ["BENCH_PEER"]
SLOTS = int(os.environ.get("BENCH_SLOTS", "2"))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")

# Connections kept, as bench/benchsite keeps them for tandem (a production site would; django-ox's
# worker warns that CONN_MAX_AGE 0 opens a new connection for every task and its production guide
# says 600).
CONN_MAX_AGE = int(os.environ.get("BENCH_CONN_MAX_AGE", "600"))

if os.environ.get("BENCH_DB", "sqlite") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["BENCH_PG_NAME"],
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "CONN_MAX_AGE": CONN_MAX_AGE,
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ["BENCH_SQLITE_PATH"],
            "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"},
            "CONN_MAX_AGE": CONN_MAX_AGE,
        }
    }

# Django's task framework logs every task's state changes at INFO on "django.tasks"; threadmill's
# worker routes every logger to stdout as JSON, 2 lines per task. WARNING, as for the other peers
# (huey -q, Celery -l WARNING, ...).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django.tasks": {"level": "WARNING"}},
}

if PEER == "vtasks":
    # README: INSTALLED_APPS django_vtasks (+ django_vtasks.db for the database backend);
    # VTASKS_CONCURRENCY is the worker's concurrency (default 20), here the slots.
    VTASKS_CONCURRENCY = SLOTS
    if os.environ.get("BENCH_DB") == "postgres":
        INSTALLED_APPS = ["django_vtasks", "django_vtasks.db"]
        TASKS = {"default": {"BACKEND": "django_vtasks.backends.db.DatabaseTaskBackend"}}
    else:
        INSTALLED_APPS = ["django_vtasks"]
        TASKS = {
            "default": {
                "BACKEND": "django_vtasks.backends.valkey.ValkeyTaskBackend",
                "OPTIONS": {"BROKER_URL": REDIS_URL},
            }
        }
elif PEER == "djqueue":
    # README: the app, its router, DjQueueBackend; one worker process with `threads` threads
    # (default 3, here the slots), polling 0.1 s (default), LISTEN/NOTIFY on PostgreSQL (default).
    INSTALLED_APPS = ["dj_queue"]
    DATABASE_ROUTERS = ["dj_queue.routers.DjQueueRouter"]
    TASKS = {
        "default": {
            "BACKEND": "dj_queue.backend.DjQueueBackend",
            "QUEUES": [],
            "OPTIONS": {"workers": [{"queues": "*", "threads": SLOTS, "processes": 1}]},
        }
    }
elif PEER == "threadmill":
    # README: the app and RedisTaskBackend with REDIS_URL; defaults otherwise.
    INSTALLED_APPS = ["threadmill"]
    TASKS = {
        "default": {
            "BACKEND": "threadmill.backends.redis.RedisTaskBackend",
            "REDIS_URL": REDIS_URL,
        }
    }
elif PEER == "ox":
    # README: the app and OxBackend, every option at its default.
    INSTALLED_APPS = ["django_ox"]
    TASKS = {"default": {"BACKEND": "django_ox.backend.OxBackend"}}
else:
    raise RuntimeError(f"unknown BENCH_PEER {PEER!r}")
