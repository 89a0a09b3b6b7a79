"""Settings for the test suite. ``TANDEM_TEST_DB=postgres`` runs it on PostgreSQL (loopback)."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django.contrib.sessions",
    "tandem",
    "tests",
]

# The admin and the staff-only dashboard (tests/web) need sessions, auth and messages.
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DB_KIND = os.environ.get("TANDEM_TEST_DB", "sqlite")
if DB_KIND == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            # Worker processes started by the tests get the test database's name here.
            "NAME": os.environ.get("TANDEM_DB_NAME", "test"),
            "USER": os.environ.get("TANDEM_PG_USER", "postgres"),
            "HOST": "127.0.0.1",
            # tests/scale points worker processes at a private server of its own.
            "PORT": os.environ.get("TANDEM_PG_PORT", "5432"),
            "TEST": {"NAME": os.environ.get("TANDEM_PG_TEST_DB", f"tandem_test_{os.getpid()}")},
        }
    }
elif DB_KIND == "mariadb":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": os.environ.get("TANDEM_DB_NAME", "test"),
            "USER": "root",
            "HOST": "127.0.0.1",
            "PORT": os.environ.get("TANDEM_MARIADB_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {
                "NAME": os.environ.get("TANDEM_MARIADB_TEST_DB", f"tandem_test_{os.getpid()}"),
                "CHARSET": "utf8mb4",
            },
        }
    }
elif DB_KIND == "sqlite":
    # A file, not memory: worker processes started by the tests must see the same database.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("TANDEM_DB_NAME", str(BASE_DIR / "unused.sqlite3")),
            # IMMEDIATE: the site's transactions wait for a worker's write (tandem.W003).
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
            "TEST": {
                "NAME": os.environ.get(
                    "TANDEM_SQLITE_TEST_DB", f"/tmp/tandem-test-{os.getpid()}.sqlite3"
                )
            },
        }
    }
else:
    raise RuntimeError(f"TANDEM_TEST_DB must be 'sqlite', 'postgres' or 'mariadb', got {DB_KIND!r}")

# The Redis store under test (contract, conformance and tests/redis): loopback only, and a key
# prefix per test run, so runs side by side never share keys. Tests delete their keys.
TANDEM_TEST_REDIS = {
    "url": os.environ.get("TANDEM_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "prefix": os.environ.get("TANDEM_REDIS_PREFIX", f"tandem-test-{os.getpid()}"),
}

TASKS = {
    "default": {
        "BACKEND": "tandem.backends.database.DatabaseBackend",
        "QUEUES": ["default", "critical", "exports"],
        "OPTIONS": {
            "lease_seconds": float(os.environ.get("TANDEM_TEST_LEASE", "60")),
            # Threads by default: tests capture signals and state in this interpreter. The pool
            # tests choose their executors explicitly.
            "executor": os.environ.get("TANDEM_TEST_EXECUTOR", "thread"),
        },
    },
}

# OpenTelemetry in a worker process under test (tests/features/test_tracing.py): a tracer
# provider whose spans are appended, one JSON object a line, to this file as each span ends.
if os.environ.get("TANDEM_TEST_SPANS"):
    from tests.spans import export_to_file

    export_to_file(os.environ["TANDEM_TEST_SPANS"])
