"""Settings for ``djangoq2-redis``: django-q2's Redis broker on the benchmark's Redis database.

django-q2 still needs a Django database for its models (schedules, failures); it is a SQLite file
in the contender's temp dir (``BENCH_DJQ_SQLITE``). Successful tasks are not saved
(``save_limit: -1``): completions are counted through the marks file.
"""

import os
from urllib.parse import urlsplit

_redis = urlsplit(os.environ["BENCH_REDIS_URL"])

SECRET_KEY = "bench-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django_q"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["BENCH_DJQ_SQLITE"],
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 30},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
Q_CLUSTER = {
    "name": "bench",
    "workers": int(os.environ.get("BENCH_DJQ_WORKERS", "2")),  # bench/compare --slots
    "timeout": 60,
    "retry": 120,
    "save_limit": -1,
    "log_level": "WARNING",  # its default INFO logs two lines per task
    "redis": {
        "host": _redis.hostname,
        "port": _redis.port or 6379,
        "db": int(_redis.path.lstrip("/") or 0),
    },
}
