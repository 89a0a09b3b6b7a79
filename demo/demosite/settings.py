"""Settings of the demo shop: tandem's DatabaseBackend on SQLite, two queues, two pools.

Environment (all optional): ``TANDEM_DEMO_DB`` (the SQLite file, default ``demo/db.sqlite3``),
``TANDEM_DEMO_DEBUG`` (``0`` turns DEBUG off), ``TANDEM_DEMO_ALLOWED_HOSTS`` (comma-separated),
``TANDEM_DEMO_EXPORTS`` (where CSV exports are written, default ``demo/exports``),
``TANDEM_DEMO_LEASE_SECONDS`` (how soon a killed worker's tasks are recovered, default 60).
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
    "tandem",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demosite.urls"
WSGI_APPLICATION = "demosite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
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

# The resumable CSV export writes here (see shop.tasks.export_orders).
TANDEM_DEMO_EXPORTS = Path(os.environ.get("TANDEM_DEMO_EXPORTS", str(BASE_DIR / "exports")))
