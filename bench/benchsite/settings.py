"""Settings for the benchmark site.

``BENCH_DB=sqlite|postgres|mariadb`` picks the database (and the task store, unless
``BENCH_STORE=redis``):

- ``sqlite``: the file named by ``BENCH_SQLITE_PATH`` (the harness makes one in a temp dir), in WAL
  mode, 30 s busy timeout, with SQLite's default ``synchronous`` (FULL: an fsync per commit)
  unless ``BENCH_SQLITE_SYNCHRONOUS`` (e.g. ``NORMAL``) says otherwise;
- ``postgres``: database ``BENCH_PG_NAME`` (default ``tandem_bench``) on 127.0.0.1:5432 as
  ``BENCH_PG_USER`` (default ``postgres``); the harness creates and drops it;
- ``mariadb``: database ``BENCH_MARIADB_NAME`` (default ``tandem_bench``) on 127.0.0.1:3306
  (``BENCH_MARIADB_PORT``) as ``root`` without a password; ``bench/scale.py`` creates and drops it.

``BENCH_STORE=redis`` keeps the tasks in Redis instead (``tandem.backends.redis.RedisBackend``
at ``BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/0``, keys under ``BENCH_REDIS_PREFIX``,
default ``tandem-bench``); the database (normally ``sqlite``) then only holds Django's own tables.

``BENCH_EXECUTOR`` (thread, subinterpreter, process) and ``BENCH_POLL_INTERVAL`` (seconds) override
tandem's defaults when set.
"""

import os
import tempfile
from pathlib import Path

SECRET_KEY = "bench-only-not-secret"
DEBUG = False  # DEBUG=True would record every query in memory
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "benchsite.urls"
WSGI_APPLICATION = "benchsite.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = ["tandem", "benchsite"]

BENCH_DB = os.environ.get("BENCH_DB", "sqlite")
if BENCH_DB == "sqlite":
    _init = "PRAGMA journal_mode=WAL;"
    if os.environ.get("BENCH_SQLITE_SYNCHRONOUS"):
        _init += f" PRAGMA synchronous={os.environ['BENCH_SQLITE_SYNCHRONOUS']};"
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get(
                "BENCH_SQLITE_PATH", str(Path(tempfile.gettempdir()) / "tandem-bench.sqlite3")
            ),
            "OPTIONS": {"timeout": 30, "init_command": _init},
        }
    }
elif BENCH_DB == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("BENCH_PG_NAME", "tandem_bench"),
            "USER": os.environ.get("BENCH_PG_USER", "postgres"),
            "HOST": "127.0.0.1",
            "PORT": "5432",
        }
    }
elif BENCH_DB == "mariadb":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": os.environ.get("BENCH_MARIADB_NAME", "tandem_bench"),
            "USER": "root",
            "HOST": "127.0.0.1",
            "PORT": os.environ.get("BENCH_MARIADB_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
        }
    }
else:
    raise RuntimeError(f"BENCH_DB must be 'sqlite', 'postgres' or 'mariadb', got {BENCH_DB!r}")

# Persistent connections, as a production site configures them (Django's default, 0, opens a
# connection per request: ~1.5 ms on SQLite, more on PostgreSQL, inside every view's enqueue).
for _db in DATABASES.values():
    _db["CONN_MAX_AGE"] = int(os.environ.get("BENCH_CONN_MAX_AGE", "600"))

BENCH_STORE = os.environ.get("BENCH_STORE", "database")
if BENCH_STORE not in ("database", "redis"):
    raise RuntimeError(f"BENCH_STORE must be 'database' or 'redis', got {BENCH_STORE!r}")

_options: dict[str, object] = {}
if os.environ.get("BENCH_EXECUTOR"):
    _options["executor"] = os.environ["BENCH_EXECUTOR"]
if os.environ.get("BENCH_POLL_INTERVAL"):
    _options["poll_interval"] = float(os.environ["BENCH_POLL_INTERVAL"])

if BENCH_STORE == "redis":
    _options["url"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    _options["prefix"] = os.environ.get("BENCH_REDIS_PREFIX", "tandem-bench")

TASKS = {
    "default": {
        "BACKEND": (
            "tandem.backends.redis.RedisBackend"
            if BENCH_STORE == "redis"
            else "tandem.backends.database.DatabaseBackend"
        ),
        "QUEUES": ["default"],
        "OPTIONS": _options,
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"tandem": {"handlers": ["stderr"], "level": "WARNING"}},
}
