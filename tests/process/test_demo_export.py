"""The demo's resumable CSV export survives ``kill -9`` of its worker: the next worker recovers
the task once its lease expires and continues from the checkpoint — every row exactly once."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.support.processes import ROOT, Child, wait_until

pytestmark = pytest.mark.skipif(
    settings.DB_KIND != "sqlite", reason="the demo runs on SQLite (shown once, in the SQLite run)"
)
DEMO = ROOT / "demo"
ROWS = 300


def demo_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TANDEM_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="demosite.settings",
        PYTHONPATH=os.pathsep.join([str(DEMO), str(ROOT / "src")]),
        PYTHONUNBUFFERED="1",
        TANDEM_DEMO_DB=str(tmp_path / "demo.sqlite3"),
        TANDEM_DEMO_EXPORTS=str(tmp_path / "exports"),
        # Long enough that a loaded machine never delays the live worker's renewals past it (its
        # lease guard would stop the attempt; at 5 s it did, with eight test processes on two
        # cores): the kill test waits for the dead worker's lease.
        TANDEM_DEMO_LEASE_SECONDS="10",
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=DEMO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def row(db: Path) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as connection:
        status, progress, errors, lease = connection.execute(
            "SELECT status, progress, errors, lease_expires_at FROM tandem_taskrecord"
        ).fetchone()
    return {
        "status": status,
        "progress": json.loads(progress) if progress else None,
        "errors": json.loads(errors),
        "lease_expired": lease is None or lease < time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def test_export_continues_where_the_killed_worker_stopped(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    db = tmp_path / "demo.sqlite3"
    manage(env, "migrate", "--verbosity", "0")
    manage(
        env,
        "shell",
        "-c",
        f"from shop.tasks import export_orders; export_orders.enqueue('orders', {ROWS}, 0.02)",
    )

    def worker(name: str, *args: str) -> Child:
        argv = [str(DEMO / "manage.py"), "tandem", "worker", "-q", "default", *args]
        return Child(argv, tmp_path, name, env)

    first = worker("first")
    try:
        wait_until(
            lambda: (row(db)["progress"] or {}).get("rows", 0) >= ROWS // 4,
            "a quarter of the export",
            timeout=60,
            alive=[first],
        )
    finally:
        first.kill()  # SIGKILL: no release, no clean-up — the lease must expire
    stopped_at = row(db)["progress"]["rows"]
    assert 0 < stopped_at < ROWS
    assert row(db)["status"] == "RUNNING"
    wait_until(lambda: row(db)["lease_expired"], "the dead worker's lease to expire", timeout=30)

    second = worker("second", "--burst")
    assert second.wait(120) == 0, second.output()
    final = row(db)
    assert final["status"] == "SUCCESSFUL", final
    assert [e["exception_class_path"] for e in final["errors"]] == ["tandem.exceptions.WorkerLost"]
    with (tmp_path / "exports" / "orders.csv").open(newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == ["order", "customer", "amount"]
    assert [line[0] for line in lines[1:]] == [f"A-{n:06d}" for n in range(ROWS)]  # once each
    printed = manage(
        env,
        "shell",
        "-c",
        "import json; from tandem.models import TaskRecord; "
        "print(json.dumps(TaskRecord.objects.get().return_value))",
    )
    result = json.loads(printed.strip().splitlines()[-1])
    assert result["resumed_from"] >= stopped_at
