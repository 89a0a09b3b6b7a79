"""The atexit safety net in a real process: a host that exits without ``stop()``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tandem.models import TaskRecord, WorkerRecord

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


EXECUTORS = ["thread", "process"]
if sys.version_info >= (3, 14) and settings.DB_KIND != "mariadb":  # mysqlclient: no subinterp.
    EXECUTORS.append("subinterpreter")


@pytest.mark.parametrize("executor", EXECUTORS)
def test_exiting_without_stop_releases_in_flight_tasks(executor: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TANDEM_TEST_LEASE"}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        PYTHONUNBUFFERED="1",
        TANDEM_TEST_DB=settings.DB_KIND,
        TANDEM_DB_NAME=str(connection.settings_dict["NAME"]),
        TANDEM_TEST_EXECUTOR=executor,
    )
    began = time.monotonic()
    child = subprocess.run(
        [sys.executable, "-m", "tests.embedded.exit_without_stop"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,  # far below the task's 600 s: an exit that waited for it fails here
    )
    took = time.monotonic() - began
    output = f"--- stdout ---\n{child.stdout}--- stderr ---\n{child.stderr}"
    # A subinterpreter still in a task would hang or crash (SIGSEGV) finalization: the exit hook
    # ends the process itself, after the release.
    assert child.returncode == 0, output
    assert took < 150, f"the host took {took:.1f}s to exit (the task sleeps 600 s)\n{output}"
    record = TaskRecord.objects.get(pk=child.stdout.strip())
    assert record.status == "READY", output
    assert record.errors[-1]["exception_class_path"] == "tandem.exceptions.Released"
    assert "process exiting without tandem.embedded.stop()" in child.stderr
    assert not WorkerRecord.objects.exists()
