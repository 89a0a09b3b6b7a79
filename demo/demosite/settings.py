"""Settings of the demo shop: tandem's DatabaseBackend on SQLite, two queues, two pools.

Environment (all optional): ``TANDEM_DEMO_DB`` (the SQLite file, default ``demo/db.sqlite3``),
``TANDEM_DEMO_DEBUG`` (``0`` turns DEBUG off), ``TANDEM_DEMO_ALLOWED_HOSTS`` (comma-separated),
``TANDEM_DEMO_EXPORTS`` (where CSV exports are written, default ``demo/exports``),
``TANDEM_DEMO_LEASE_SECONDS`` (how soon a killed worker's tasks are recovered, default 60),
``TANDEM_DEMO_STATIC_ROOT`` (where ``collectstatic`` puts the admin's files, default
``demo/static``).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("TANDEM_DEMO_SECRET_KEY", "demo-only-not-secret")
DEBUG = os.environ.get("TANDEM_DEMO_DEBUG", "1") != "0"
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("TANDEM_DEMO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
    if h.strip()
]

INSTALLED_APPS = [
    # The admin (tasks and workers under /admin/) and the staff-only dashboard (/tasks/).
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "tandem",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demosite.urls"
WSGI_APPLICATION = "demosite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TANDEM_DEMO_DB", str(BASE_DIR / "db.sqlite3")),
        # IMMEDIATE: a view's transaction waits for a worker's write instead of failing with
        # "database is locked" (tandem.W003).
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }
}

TASKS = {
    "default": {
        "BACKEND": "tandem.backends.database.DatabaseBackend",
        "QUEUES": ["default", "critical"],
        "OPTIONS": {
            "lease_seconds": float(os.environ.get("TANDEM_DEMO_LEASE_SECONDS", "60")),
            "pools": {
                "default": {"workers": 4},
                "critical": {"workers": 2, "poll_interval": 0.5},
            },
        },
    }
}

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The admin's stylesheets: `manage.py collectstatic` gathers them into STATIC_ROOT for a server
# in front; DEBUG serves them from the apps.
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("TANDEM_DEMO_STATIC_ROOT", str(BASE_DIR / "static")))

# The resumable CSV export writes here (see shop.tasks.export_orders).
TANDEM_DEMO_EXPORTS = Path(os.environ.get("TANDEM_DEMO_EXPORTS", str(BASE_DIR / "exports")))
