"""Settings of the processes the chaos tests start: the scale tier's (task store chosen by
``TANDEM_SCALE_STORE``), plus a ``ledger`` database that the tasks append to.

The ledger is the run's test database on the shared server (``TANDEM_LEDGER_DB_NAME``), never the
store a test restarts, so a store outage cannot lose or fail a ledger write: what the ledger holds
is how often each task really ran. Recovery allows many attempts (``recovery_max_attempts``): a
task whose worker is killed ten times over must still end SUCCESSFUL, not FAILED as a poison pill.
"""

import os

from tests.support.worker_settings import *  # noqa: F403
from tests.support.worker_settings import DATABASES, DB_KIND, TASKS

_ledger = os.environ.get("TANDEM_LEDGER_DB_NAME")
if DB_KIND == "postgres":
    LEDGER_DATABASE = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _ledger or "test",
        "USER": os.environ.get("TANDEM_PG_USER", "postgres"),
        "HOST": "127.0.0.1",
        "PORT": "5432",  # the shared server, not a private one the test restarts
    }
else:
    LEDGER_DATABASE = {**DATABASES["default"], **({"NAME": _ledger} if _ledger else {})}
    if DB_KIND == "sqlite":
        # The ledger is the task store's file: with the default ``synchronous=FULL`` every row
        # is an fsync under the file's one write lock, which the tasks and the supervisor's
        # claims wait for (11 ms a row on average, 100 ms and more at the tail on a busy disk).
        # ``NORMAL`` (WAL) loses nothing when a process is killed, which is all the ledger has
        # to survive: it still holds every run.
        LEDGER_DATABASE["OPTIONS"] = {
            **LEDGER_DATABASE.get("OPTIONS", {}),
            "init_command": "PRAGMA synchronous=NORMAL",
        }
DATABASES = {**DATABASES, "ledger": LEDGER_DATABASE}

# ``tandem serve`` answers /-/health/live; the suite's URLs give it the dashboard too.
ROOT_URLCONF = "tests.urls"

TASKS = {
    "default": {
        **TASKS["default"],
        "OPTIONS": {**TASKS["default"]["OPTIONS"], "recovery_max_attempts": 100},
    }
}
