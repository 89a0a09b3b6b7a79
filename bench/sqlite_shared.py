"""What a site on SQLite sees while a tandem worker drains tasks from the same database file.

    python bench/sqlite_shared.py [--tasks 2000] [--transactions 200] [--rounds 1]

For each SQLite transaction mode — Django's default (DEFERRED) and ``"transaction_mode":
"IMMEDIATE"`` — it makes a fresh database file with Django's plain SQLite settings (no WAL, the
default 5 s timeout), enqueues ``--tasks`` no-op tasks, starts ``manage.py tandem worker --burst``
(default executor) on it, and meanwhile runs ``--transactions`` read-then-write transactions of the
"site" in this process, one every 5 ms: ``atomic(): count the users, create one`` — the shape of a
view that checks and then saves. It prints how many of them failed with ``database is locked``.

A DEFERRED transaction starts as a reader; when it writes while the worker holds the write lock,
SQLite cannot wait for it (the reader would deadlock the writer) and fails at once, whatever the
timeout. ``BEGIN IMMEDIATE`` takes the write lock first and so waits its turn.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = """
SECRET_KEY = "bench"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "tandem", "shared_tasks"]
DATABASES = {{
    "default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {name!r}, "OPTIONS": {options!r}}}
}}
TASKS = {{"default": {{"BACKEND": "tandem.backends.database.DatabaseBackend"}}}}
"""

TASKS = """
from django.tasks import task


@task
def noop(i: int) -> int:
    return i
"""


def run(mode: str, tasks: int, transactions: int) -> dict[str, object]:
    directory = Path(tempfile.mkdtemp(prefix="tandem-sqlite-shared-"))
    options = {"transaction_mode": "IMMEDIATE"} if mode == "IMMEDIATE" else {}
    (directory / "shared_settings.py").write_text(
        SETTINGS.format(name=str(directory / "db.sqlite3"), options=options)
    )
    (directory / "shared_tasks").mkdir()
    (directory / "shared_tasks" / "__init__.py").write_text("")
    (directory / "shared_tasks" / "tasks.py").write_text(TASKS)
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shared_settings",
        "PYTHONPATH": os.pathsep.join([str(directory), str(root / "src")]),
    }
    python = sys.executable
    subprocess.run([python, "-m", "django", "migrate", "-v0"], env=env, check=True)
    enqueue = (
        "import django; django.setup(); import tandem; from shared_tasks.tasks import noop; "
        f"tandem.enqueue_many(noop, [((i,), {{}}) for i in range({tasks})])"
    )
    subprocess.run([python, "-c", enqueue], env=env, check=True)
    site = subprocess.Popen(
        [python, "-c", SITE, str(transactions)], env=env, stdout=subprocess.PIPE, text=True
    )
    started = time.monotonic()
    worker = subprocess.run(
        [python, "-m", "django", "tandem", "worker", "--burst"],
        env=env,
        capture_output=True,
        text=True,
    )
    drained = time.monotonic() - started
    out, _ = site.communicate()
    failed, errors, overlapped = out.split()
    return {
        "mode": mode,
        "failed": int(failed),
        "transactions": transactions,
        "overlapping the drain": int(overlapped),
        "other errors": int(errors),
        "drain seconds": round(drained, 2),
        "worker exit": worker.returncode,
        "pools": next((line for line in worker.stdout.splitlines() if "pools:" in line), ""),
    }


# The site: read-then-write transactions, one every 5 ms, counted by how they end.
SITE = """
import sys, time
import django
django.setup()
from django.contrib.auth.models import User
from django.db import OperationalError, transaction
from tandem.models import TaskRecord

total = int(sys.argv[1])
time.sleep(0.3)  # the worker has started
locked = other = overlapped = 0
for i in range(total):
    try:
        with transaction.atomic():
            User.objects.count()
            User.objects.create(username=f"user-{i}")
    except OperationalError as exc:
        if "database is locked" in str(exc):
            locked += 1
        else:
            other += 1
    overlapped += TaskRecord.objects.filter(status="READY").exists()
    time.sleep(0.005)
print(locked, other, overlapped)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--transactions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    for round_ in range(args.rounds):
        for mode in ("DEFERRED", "IMMEDIATE"):
            result = run(mode, args.tasks, args.transactions)
            print(f"round {round_ + 1}: {result}", flush=True)


if __name__ == "__main__":
    main()
