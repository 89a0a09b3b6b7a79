"""``manage.py tandem status``: the report, ``--json``, and the exit status a health probe reads."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.tasks import task_backends
from django.utils import timezone

from tandem.brokers.base import WorkerInfo
from tandem.models import TaskRecord
from tests.tasks import echo

pytestmark = pytest.mark.django_db

ALL = ("default", "critical", "exports")


def register(queues: tuple[str, ...] = ALL, seconds_ago: float = 0, name: str = "a") -> None:
    beat = timezone.now() - timedelta(seconds=seconds_ago)
    task_backends["default"].broker.register_worker(  # type: ignore[attr-defined]
        WorkerInfo(
            id=f"host:1:{name}",
            backend="default",
            hostname="host",
            pid=1,
            queues=queues,
            pools={
                "p": {
                    "queues": list(queues),
                    "workers": 3,
                    "executor": "thread",
                    "restarts": 2,
                    "in_flight": 1,
                }
            },
            started_at=beat,
            last_heartbeat_at=beat,
        )
    )


def status(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("tandem", "status", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_healthy_when_every_queue_has_a_live_worker() -> None:
    register()
    echo.enqueue("x")

    code, out, err = status()

    assert code == 0, err
    assert err == ""
    lines = out.splitlines()
    assert lines[0].startswith("tandem status: backend 'default' at ")
    assert lines[2].split() == [
        "queue",
        "pool",
        "ready",
        "running",
        "failed",
        "oldest",
        "ready",
        "live",
        "workers",
    ]
    assert lines[4].split()[:5] == ["default", "default", "1", "0", "0"]
    assert "workers: 1 live, 0 silent" in out
    assert "pool p: thread x3, 1 busy, 2 restart(s), queues default,critical,exports" in out
    assert lines[-1] == "healthy"


def test_a_queue_without_a_live_worker_is_unhealthy_and_named() -> None:
    register(queues=("default", "critical"))
    register(queues=("exports",), seconds_ago=3600, name="silent")  # older than the lease

    code, out, err = status()

    assert code == 1
    assert err.strip() == (
        "UNHEALTHY: queue 'exports': no live worker serves it (0 ready). Start one: python "
        "manage.py tandem worker -q exports (or tandem serve); a worker counts as live while it "
        "heartbeats within the lease."
    )
    assert "workers: 1 live, 1 silent" in out and "host:1:silent SILENT" in out
    assert out.splitlines()[-1] == "UNHEALTHY: 1 problem(s)"


def test_max_age_flags_a_starving_queue() -> None:
    register()
    echo.enqueue("old")
    TaskRecord.objects.update(available_at=timezone.now() - timedelta(seconds=400))

    healthy, _, _ = status("--max-age", "500")
    code, out, err = status("--max-age", "300")

    assert healthy == 0
    assert code == 1
    assert "UNHEALTHY: queue 'default': the oldest ready task has waited 40" in err
    assert "(more than --max-age 300s). Add workers to pool 'default'" in err
    assert "tandem worker -q default" in err
    assert out.splitlines()[4].split() == ["default", "default", "1", "0", "0", "7m", "1"]


def test_json_output() -> None:
    register()
    echo.enqueue("x")

    code, out, _ = status("--json", "--max-age", "60")

    data = json.loads(out)
    assert code == 0
    assert data["healthy"] is True and data["problems"] == [] and data["max_age"] == 60
    assert [q["name"] for q in data["queues"]] == ["critical", "default", "exports"]
    default = data["queues"][1]
    assert (default["ready"], default["live_workers"], default["pool"]) == (1, 1, "default")
    assert default["oldest_ready_age"] >= 0
    assert data["workers"][0]["pools"]["p"]["restarts"] == 2


def test_json_output_when_unhealthy_still_exits_1() -> None:
    code, out, _ = status("--json")

    assert code == 1
    assert json.loads(out)["healthy"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "nope"], "No task backend 'nope' in settings.TASKS."),
        (["--max-age", "0"], "--max-age must be > 0, got 0."),
    ],
)
def test_bad_arguments(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message.replace(".", r"\.")):
        call_command("tandem", "status", *args, stdout=io.StringIO())


#: ``tandem status --json``: the keys of the object, of each queue and of each worker.
SNAPSHOT_KEYS = {
    "backend": str,
    "taken_at": str,
    "lease_seconds": float,
    "max_age": (float, type(None)),
    "queues": list,
    "workers": list,
    "problems": list,
    "rate_limited": list,  # full rate limits (tests/features/test_rate_limits.py)
    "healthy": bool,
    "groups": list,  # workflows: the newest groups' progress (tests/web/test_workflows.py)
}
QUEUE_KEYS = {
    "name": str,
    "pool": (str, type(None)),
    "configured": bool,
    "ready": int,
    "running": int,
    "failed": int,
    "successful": int,
    "oldest_ready_at": (str, type(None)),
    "oldest_ready_age": (float, type(None)),
    "live_workers": int,
    "paused_at": (str, type(None)),
}
WORKER_KEYS = {
    "id": str,
    "hostname": str,
    "pid": int,
    "queues": list,
    "pools": dict,
    "started_at": str,
    "last_heartbeat_at": str,
    "heartbeat_age": float,
    "live": bool,
    "tasks_done": int,
}


def assert_schema(data: dict[str, object], keys: dict[str, object]) -> None:
    assert set(data) == set(keys), sorted(set(data) ^ set(keys))
    for key, kind in keys.items():
        assert isinstance(data[key], kind), (key, data[key])  # type: ignore[arg-type]


def test_the_json_schema() -> None:
    register()
    echo.enqueue("x")
    TaskRecord.objects.update(available_at=timezone.now() - timedelta(seconds=5))

    code, out, _ = status("--json", "--max-age", "60")

    data = json.loads(out)
    assert code == 0
    assert_schema(data, SNAPSHOT_KEYS)
    for queue in data["queues"]:
        assert_schema(queue, QUEUE_KEYS)
    for worker in data["workers"]:
        assert_schema(worker, WORKER_KEYS)
    default = next(q for q in data["queues"] if q["name"] == "default")
    assert datetime.fromisoformat(default["oldest_ready_at"]).tzinfo is not None
    assert data["workers"][0]["pools"]["p"] == {
        "queues": list(ALL),
        "workers": 3,
        "executor": "thread",
        "restarts": 2,
        "in_flight": 1,
    }


def test_a_store_that_cannot_be_read_is_a_command_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import OperationalError

    broker = task_backends["default"].broker  # type: ignore[attr-defined]

    def down() -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(broker, "stats", down)

    with pytest.raises(CommandError, match="Cannot read the task store of backend 'default'"):
        call_command("tandem", "status", stdout=io.StringIO())
