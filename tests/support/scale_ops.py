"""The store side of a scale test, run as a child process with the workers' settings:

    python -m tests.support.scale_ops enqueue COUNT PREFIX SECONDS IDS_FILE
    python -m tests.support.scale_ops wait COUNT TIMEOUT
    python -m tests.support.scale_ops snapshot IDS_FILE OUT_FILE
    python -m tests.support.scale_ops forgotten WORKER_ID TIMEOUT

``enqueue`` stores COUNT ``mark`` tasks with one ``tandem.enqueue_many()`` call (keys
``PREFIX-<n>``) and writes their ids, in order, to IDS_FILE. ``wait`` blocks until COUNT tasks of
the store have finished and none is READY or RUNNING (exit 1 after TIMEOUT seconds). ``snapshot``
writes what the store holds for each id (JSON, one object per task) to OUT_FILE. ``forgotten``
blocks until WORKER_ID is no longer in the worker registry (exit 1 after TIMEOUT seconds), then
prints the registry (JSON: id and last heartbeat of each worker).

Everything goes through tandem's broker API, so the same code reads the database and Redis, and the
test process needs no connection to a store it may restart (tests/support/servers.py).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any


def enqueue(count: int, prefix: str, seconds: float) -> list[str]:
    import tandem
    from tests.support.scale_tasks import mark

    items = [((f"{prefix}-{n}", seconds), {}) for n in range(count)]
    return [result.id for result in tandem.enqueue_many(mark, items)]


def broker() -> Any:
    from django.tasks import task_backends

    return task_backends["default"].broker  # type: ignore[attr-defined]


def counts() -> Counter[str]:
    total: Counter[str] = Counter()
    for queue in broker().stats():
        total.update(
            READY=queue.ready,
            RUNNING=queue.running,
            SUCCESSFUL=queue.successful,
            FAILED=queue.failed,
        )
    return +total


def wait(count: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        now = counts()
        if now["SUCCESSFUL"] + now["FAILED"] >= count and not (now["READY"] or now["RUNNING"]):
            return dict(now)
        if time.monotonic() > deadline:
            raise SystemExit(f"after {timeout:g}s the store still holds {dict(now)}")
        time.sleep(0.1)


def forgotten(worker_id: str, timeout: float) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        workers = broker().workers()
        if all(worker.id != worker_id for worker in workers):
            return [
                {"id": worker.id, "last_heartbeat_at": worker.last_heartbeat_at.isoformat()}
                for worker in workers
            ]
        if time.monotonic() > deadline:
            raise SystemExit(f"after {timeout:g}s the registry still holds {worker_id}")
        time.sleep(0.2)


def snapshot(ids: list[str]) -> list[dict[str, Any] | None]:
    store = broker()
    rows: list[dict[str, Any] | None] = []
    for task_id in ids:
        task = store.get(task_id)
        if task is None:
            rows.append(None)
            continue
        rows.append(
            {
                "id": task.id,
                "key": task.args[0],
                "status": task.status,
                "worker_ids": list(task.worker_ids),
                "worker_id": task.worker_id,
                "errors": [error.exception_class_path for error in task.errors],
                "tracebacks": [error.traceback for error in task.errors],
                "started_at": task.started_at.isoformat() if task.started_at else None,
                "finished_at": task.finished_at.isoformat() if task.finished_at else None,
            }
        )
    return rows


def main(argv: list[str]) -> None:
    import django

    django.setup()
    command, *args = argv
    if command == "enqueue":
        count, prefix, seconds, out = args
        ids = enqueue(int(count), prefix, float(seconds))
        Path(out).write_text(json.dumps(ids))
    elif command == "wait":
        count, timeout = args
        print(json.dumps(wait(int(count), float(timeout))))
    elif command == "snapshot":
        ids_file, out = args
        Path(out).write_text(json.dumps(snapshot(json.loads(Path(ids_file).read_text()))))
    elif command == "forgotten":
        worker_id, timeout = args
        print(json.dumps(forgotten(worker_id, float(timeout))))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
