"""``tandem serve`` as a real process: HTTP beside CPU-bound tasks, wake-up from a view, shutdown
(SIGTERM, a second signal, a hung request) and ``--supervise`` restarting a killed server.

Every test runs with each HTTP arrangement this Python has: ``threads`` (the main interpreter) and,
on 3.14, ``interpreters`` (``--web-interpreters 2``). The task pool is the settings' default
(subinterpreters on 3.14, threads before) unless a test says otherwise.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from django.tasks import TaskResult

from tandem.brokers.base import READY, RUNNING, SUCCESSFUL
from tandem.models import TaskRecord
from tests.serve.tasks import quick, spin_until
from tests.support.serving import (
    ARRANGEMENTS,
    HAS_SUBINTERPRETERS,
    Servers,
    answers,
    get,
    wait_until,
)

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]
arrangements = pytest.mark.parametrize("arrangement", ARRANGEMENTS)


def status(result: TaskResult | str) -> str:
    task_id = result if isinstance(result, str) else result.id
    return str(TaskRecord.objects.get(id=task_id).status)


@arrangements
def test_answers_http_while_cpu_bound_tasks_run(
    servers: Servers, tmp_path: Path, arrangement: str
) -> None:
    flag = tmp_path / "stop-spinning"
    # CPU-bound tasks belong in a pool with its own GIL: subinterpreters, or before 3.14
    # processes (with threads, two spinning tasks starve the request threads of the GIL).
    executor = "subinterpreter" if HAS_SUBINTERPRETERS else "process"
    server, port = servers.serve(arrangement=arrangement, TANDEM_TEST_EXECUTOR=executor)
    spinning = [spin_until.enqueue(str(flag)) for _ in range(2)]
    wait_until(
        lambda: all(status(r) == RUNNING for r in spinning),
        "both workers to spin",
        alive=[server],
    )

    answers = [get(port, "/ping/") for _ in range(20)]

    assert answers == [(200, "running=2")] * 20
    assert [status(r) for r in spinning] == [RUNNING, RUNNING]  # still spinning meanwhile
    flag.touch()
    wait_until(
        lambda: all(status(r) == SUCCESSFUL for r in spinning), "the spins to end", alive=[server]
    )
    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.output()
    assert "tandem serve stopped: 2 task(s) settled." in server.stdout


@arrangements
def test_an_enqueue_from_a_view_starts_the_task_without_polling(
    servers: Servers, arrangement: str
) -> None:
    # Poll interval 3600 s and no cross-process wake-up: only the in-process one can start it.
    server, port = servers.serve(
        arrangement=arrangement, TANDEM_TEST_POLL="3600", TANDEM_TEST_NO_LISTEN="1"
    )

    code, task_id = get(port, "/enqueue/?value=woken")

    assert code == 200
    # 30 s bounds liveness on a loaded machine; a poll would come only after 3600 s.
    wait_until(lambda: status(task_id) == SUCCESSFUL, "the task to run", 30.0, alive=[server])
    assert TaskRecord.objects.get(id=task_id).return_value == "woken"
    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.output()


@arrangements
def test_sigterm_lets_the_running_task_finish_within_grace(
    servers: Servers, tmp_path: Path, arrangement: str
) -> None:
    flag = tmp_path / "finish"
    server, _ = servers.serve(arrangement=arrangement, grace=60)
    result = spin_until.enqueue(str(flag))
    wait_until(lambda: status(result) == RUNNING, "the task to start", alive=[server])

    server.send(signal.SIGTERM)
    wait_until(lambda: "stopping" in server.stderr, "the server to start stopping", alive=[server])
    flag.touch()

    assert server.wait() == 0, server.output()
    row = TaskRecord.objects.get(id=result.id)
    assert (row.status, row.attempts, row.errors) == (SUCCESSFUL, 1, [])
    assert "tandem serve stopped: 1 task(s) settled." in server.stdout


@arrangements
def test_sigterm_releases_what_outlives_the_grace_period(
    servers: Servers, tmp_path: Path, arrangement: str
) -> None:
    result = spin_until.enqueue(str(tmp_path / "never"))
    server, _ = servers.serve(arrangement=arrangement, grace=1)
    wait_until(lambda: status(result) == RUNNING, "the task to start", alive=[server])

    server.send(signal.SIGTERM)

    assert server.wait() == 0, server.output()  # not 139: no crash at finalization
    row = TaskRecord.objects.get(id=result.id)
    assert (row.status, row.worker_id, row.attempts) == (READY, "", 1)
    assert [e["exception_class_path"] for e in row.errors] == ["tandem.exceptions.Released"]
    assert "grace period over: releasing in-flight tasks back to READY" in server.stderr


@arrangements
def test_a_second_signal_releases_at_once(
    servers: Servers, tmp_path: Path, arrangement: str
) -> None:
    spinning = [spin_until.enqueue(str(tmp_path / "never")) for _ in range(2)]
    server, _ = servers.serve(arrangement=arrangement, grace=600)
    wait_until(
        lambda: all(status(r) == RUNNING for r in spinning),
        "both workers to spin",
        alive=[server],
    )

    server.send(signal.SIGTERM)
    wait_until(lambda: "stopping" in server.stderr, "the server to start stopping", alive=[server])
    server.send(signal.SIGINT)

    assert server.wait() == 0, server.output()  # at once (grace is 600 s), and no segfault
    for result in spinning:
        row = TaskRecord.objects.get(id=result.id)
        assert (row.status, row.worker_id, row.lease_expires_at) == (READY, "", None)
        assert [e["exception_class_path"] for e in row.errors] == ["tandem.exceptions.Released"]
    assert "SIGINT: releasing in-flight tasks and exiting." in server.stderr


@arrangements
def test_a_hung_request_does_not_hold_the_exit_beyond_grace(
    servers: Servers, tmp_path: Path, arrangement: str
) -> None:
    marker, flag = tmp_path / "in-view", tmp_path / "never"
    server, port = servers.serve(arrangement=arrangement, grace=1)
    outcome: list[object] = []

    def request() -> None:
        try:
            outcome.append(get(port, f"/hang/?marker={marker}&flag={flag}", timeout=90))
        except OSError as exc:  # the server went away with the request unanswered
            outcome.append(exc)

    hung = threading.Thread(target=request, daemon=True)
    hung.start()
    wait_until(marker.exists, "the request to hang in its view", alive=[server])

    server.send(signal.SIGTERM)

    assert server.wait() == 0, server.output()
    assert "abandoning" in server.stderr
    hung.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], OSError)


@arrangements
def test_supervise_restarts_a_killed_server_and_loses_no_task(
    servers: Servers, tmp_path: Path, arrangement: str
) -> None:
    flag = tmp_path / "finish"
    parent, port = servers.serve(
        "--supervise", arrangement=arrangement, name="supervised", TANDEM_TEST_LEASE="2"
    )
    wait_until(lambda: parent.children(), "the parent to report its child", alive=[parent])
    first = parent.children()[0]
    result = spin_until.enqueue(str(flag))
    wait_until(lambda: status(result) == RUNNING, "the task to start", alive=[parent])

    os.kill(first, signal.SIGKILL)
    wait_until(lambda: len(parent.children()) == 2, "a restart", alive=[parent])
    flag.touch()

    wait_until(
        lambda: status(result) == SUCCESSFUL,
        "the task to run again after its lease expired",
        alive=[parent],
    )
    assert f"serve (pid {first}) was killed by SIGKILL; restarting in" in parent.stderr
    assert TaskRecord.objects.get(id=result.id).attempts == 2
    # The new child serves the same port: its HTTP side listens once its web interpreters are
    # set up, which may be after it ran the recovered task (at once, when the lease had expired
    # before its first round).
    wait_until(lambda: answers(port), "the new child to answer HTTP", alive=[parent])
    parent.send(signal.SIGTERM)
    assert parent.wait() == 0, parent.output()
    assert quick.enqueue("after").id  # the database is still usable (no stray writer)


@arrangements
def test_exits_non_zero_when_the_supervisor_dies(servers: Servers, arrangement: str) -> None:
    server, _ = servers.serve(
        arrangement=arrangement, answering=False, TANDEM_TEST_BREAK_SUPERVISOR="1"
    )

    assert server.wait() == 1, server.output()
    assert "the supervisor failed: RuntimeError: injected supervisor failure" in server.stderr
    assert "tandem serve failed:" in server.stderr


@pytest.mark.skipif(not HAS_SUBINTERPRETERS, reason="web interpreters need Python 3.14")
def test_a_web_interpreter_that_cannot_load_the_application_fails_the_server(
    servers: Servers,
) -> None:
    server, _ = servers.serve(
        arrangement="interpreters",
        answering=False,
        TANDEM_TEST_WSGI="tests.serve.wsgi_unfriendly.application",
    )

    assert server.wait() == 1, server.output()
    assert "ImportError: module _curses does not support loading in subinterpreters" in (
        server.stderr
    )
    assert "tandem serve failed: a web interpreter failed: ImproperlyConfigured" in server.stderr
