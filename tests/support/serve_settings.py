"""Settings of the ``tandem serve`` processes the serve tests start: the test settings, plus
views to request and one pool of two workers.

Environment:

- ``TANDEM_TEST_EXECUTOR``: default subinterpreter on Python >= 3.14 (not on MariaDB), else thread;
- ``TANDEM_TEST_LEASE``, ``TANDEM_TEST_POLL``: lease and poll interval in seconds;
- ``TANDEM_TEST_NO_LISTEN=1``: no cross-process wake-up, so an enqueue in another process waits
  for the poll (see ``tests.serve.apps``);
- ``TANDEM_TEST_WSGI``: a ``WSGI_APPLICATION`` path;
- ``TANDEM_TEST_METRICS_TOKEN``: ``TANDEM_METRICS_TOKEN``;
- ``TANDEM_TEST_DEBUG=1``: ``DEBUG`` on (static files from the finders);
- ``TANDEM_TEST_STATIC_ROOT``: ``STATIC_ROOT``, collected with WhiteNoise's compressing manifest
  storage (hashed names, ``.gz`` variants).
"""

import os
import sys

from tests.settings import *  # noqa: F403
from tests.settings import DB_KIND, INSTALLED_APPS

ROOT_URLCONF = "tests.serve.urls"
# /-/metrics (tests/serve/test_ops.py) answers only with this bearer token.
TANDEM_METRICS_TOKEN = os.environ.get("TANDEM_TEST_METRICS_TOKEN") or None
WSGI_APPLICATION = os.environ.get("TANDEM_TEST_WSGI") or None
INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.staticfiles", "tests.serve"]
DEBUG = os.environ.get("TANDEM_TEST_DEBUG") == "1"
STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("TANDEM_TEST_STATIC_ROOT") or None
if STATIC_ROOT:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
SUBINTERPRETERS = sys.version_info >= (3, 14) and DB_KIND != "mariadb"  # mysqlclient: no
# Parallel executors: CPU-bound test tasks in a thread pool would hold the GIL the server and
# the supervisor need (the thread pool's own behaviour is covered in tests/pools and tests/worker).
EXECUTOR = os.environ.get(
    "TANDEM_TEST_EXECUTOR", "subinterpreter" if SUBINTERPRETERS else "process"
)
TASKS = {
    "default": {
        "BACKEND": "tandem.backends.database.DatabaseBackend",
        "QUEUES": ["default"],
        "OPTIONS": {
            "executor": EXECUTOR,
            "lease_seconds": float(os.environ.get("TANDEM_TEST_LEASE", "60")),
            # MariaDB has no cross-process wake-up: the poll finds tasks enqueued by the tests.
            "poll_interval": float(os.environ.get("TANDEM_TEST_POLL", "1")),
            "pools": {"default": {"workers": 2}},
        },
    },
}
