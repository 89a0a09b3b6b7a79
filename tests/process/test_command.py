"""``tandem worker`` as a user runs it: the banner, --burst, --max-tasks, --queue, bad arguments."""

from __future__ import annotations

import pytest
from django.db import connection
from django.tasks import task_backends

from tandem.brokers.base import READY, SUCCESSFUL
from tandem.models import TaskRecord
from tests.support.processes import Children
from tests.tasks import critical_noop, noop

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


def statuses(task_path: str) -> list[str]:
    return sorted(TaskRecord.objects.filter(task_path=task_path).values_list("status", flat=True))


def test_burst_max_tasks_and_queue(children: Children) -> None:
    for _ in range(3):
        critical_noop.enqueue()
    for _ in range(2):
        noop.enqueue()

    limited = children.worker("--burst", "--max-tasks", "2", "--queue", "critical", "-w", "1")
    assert limited.wait() == 0, limited.output()

    banner = limited.stdout
    assert banner.startswith("tandem worker ") and " burst max-tasks=2\n" in banner
    assert f"  store:  {connection.vendor} ({connection.settings_dict['NAME']}), " in banner
    executor = task_backends["default"].tandem_options.executor
    assert f"  pools:  default[{executor} x1: critical]\n" in banner
    assert "  queues: critical\n" in banner
    assert "  lease:  60s\n" in banner
    assert banner.rstrip().endswith("stopped: 2 task(s) settled.")
    assert statuses("tests.tasks.critical_noop") == [READY, SUCCESSFUL, SUCCESSFUL]
    assert statuses("tests.tasks.noop") == [READY, READY]

    # --burst alone: exits once the queue it serves is empty, other queues untouched.
    burst = children.worker("--burst", "--queue", "critical")
    assert burst.wait() == 0, burst.output()
    assert burst.stdout.rstrip().endswith("stopped: 1 task(s) settled.")
    assert statuses("tests.tasks.critical_noop") == [SUCCESSFUL] * 3
    assert statuses("tests.tasks.noop") == [READY, READY]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "CommandError: --workers must be >= 1, got 0."),
        (["--max-tasks", "0"], "CommandError: --max-tasks must be >= 1, got 0."),
        (
            ["--queue", "nope"],
            "CommandError: Queue(s) 'nope' are served by no pool of TASKS['default']; "
            "known queues: critical, default, exports.",
        ),
        (["--backend", "nope"], "CommandError: No task backend 'nope' in settings.TASKS."),
    ],
    ids=["workers-0", "max-tasks-0", "unknown-queue", "unknown-backend"],
)
def test_bad_arguments_exit_non_zero_with_a_clear_message(
    children: Children, args: list[str], message: str
) -> None:
    worker = children.worker(*args)
    assert worker.wait() != 0
    assert message in worker.stderr, worker.output()
    assert worker.stdout == ""


def test_the_worker_logs_one_format_and_no_traceback_per_attempt(children: Children) -> None:
    """Without LOGGING for tandem: tandem's and Django's task lines in one format (timestamp,
    level, logger, message, the attempt's fields), and a failed attempt in one line."""
    from tests.tasks import fail

    result = fail.enqueue("logged once")
    worker = children.worker("--burst", "-w", "1")
    assert worker.wait() == 0, worker.output()
    lines = worker.stderr.splitlines()
    fields = f"task_id={result.id} task_path=tests.tasks.fail queue=default attempt=1 worker_id="
    started = [line for line in lines if " INFO django.tasks " in line and fields in line]
    assert [line.split(" ", 5)[4] for line in started] == [f"id={result.id}"], worker.output()
    finished = [line for line in lines if " WARNING tandem.tasks task finished: " in line]
    assert len(finished) == 1, worker.output()
    assert "(attempt 1): ValueError: logged once " + fields in finished[0]
    stamp = finished[0].split(" ", 1)[0]  # UTC, ISO 8601, milliseconds
    assert len(stamp) == 24 and stamp[10] == "T" and stamp.endswith("Z"), finished[0]
    assert "Traceback" not in worker.stderr, worker.output()
