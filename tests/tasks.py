"""The shared catalogue of task functions used across the test tiers."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from django.tasks import TaskContext, task

from tandem import task as tandem_task


@task
def noop() -> None:
    return None


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@task
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@task
def exit_task() -> None:
    raise SystemExit(3)


@task
def return_not_json() -> object:
    return object()


@task(takes_context=True)
def with_context(context: TaskContext, value: int) -> dict[str, Any]:
    return {
        "attempt": context.attempt,
        "id": context.task_result.id,
        "status": str(context.task_result.status),
        "value": value,
    }


@task
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task(queue_name="critical")
def critical_noop() -> str:
    return "critical"


@task
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task
def ledger(key: str) -> int:
    """Append one row per execution, so tests can count how often a task really ran."""
    from tests.models import Ledger

    Ledger.objects.create(key=key, worker=str(os.getpid()))
    return os.getpid()


@task
def sleep_then_ledger(key: str, seconds: float) -> int:
    time.sleep(seconds)
    return ledger.call(key)


@tandem_task(max_attempts=3)
def flaky(key: str, fail_times: int) -> int:
    """Fails the first ``fail_times`` runs (counted in the ledger), then succeeds."""
    from tests.models import Ledger

    Ledger.objects.create(key=key)
    runs = Ledger.objects.filter(key=key).count()
    if runs <= fail_times:
        raise RuntimeError(f"failure {runs} of {fail_times}")
    return runs


def not_a_task() -> str:
    return "plain function"


# -- worker tier: tasks a test holds in flight until it opens their gate (same process only) ----

GATES: dict[str, threading.Event] = {}


def gate(name: str) -> threading.Event:
    """The gate ``gated(name)`` waits on; a test sets it to let the task finish."""
    return GATES.setdefault(name, threading.Event())


@task
def gated(name: str, timeout: float = 10.0) -> bool:
    """Stays in flight until the test opens gate ``name``; returns False if it never does."""
    return gate(name).wait(timeout)


@task
def return_nul() -> str:
    """Returns a string that PostgreSQL cannot store in JSON (it holds a NUL character)."""
    return "before\x00after"


@task
def where() -> dict[str, int]:
    """Where the task ran: process id and interpreter id (0 = the main interpreter)."""
    try:
        from concurrent import interpreters

        interpreter = int(interpreters.get_current().id)
    except ImportError:
        interpreter = 0
    return {"pid": os.getpid(), "interpreter": interpreter}


@task
def where_curses_loads() -> dict[str, int]:
    """Imports ``_curses`` when it runs (refused in a subinterpreter), then says where it ran."""
    import _curses  # noqa: F401

    return where.call()


@task
def spin(seconds: float) -> int:
    """CPU-bound pure Python for about ``seconds`` (interruptible by a watchdog)."""
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return n


@task
def lease_probe(path: str, seconds: float) -> int:
    """Pure Python for ``seconds``; writes ``start <pid>`` to ``path``, then ``end`` or the
    name of the exception that stopped it (``LeaseLost`` when its worker interrupted it)."""
    with open(path, "w") as out:
        out.write(f"start {os.getpid()}\n")
    try:
        spin.call(seconds)
    except BaseException as exc:
        with open(path, "a") as out:
            out.write(f"{type(exc).__name__}\n")
        raise
    with open(path, "a") as out:
        out.write("end\n")
    return os.getpid()


@task
def hard_exit(code: int = 7) -> None:
    os._exit(code)


@task
def timed_spin(seconds: float) -> dict[str, float]:
    """CPU-bound for ``seconds``; returns when it started and ended (wall clock) and where."""
    started = time.time()
    spin.call(seconds)
    return {"started": started, "ended": time.time(), **where.call()}


@task
def rendezvous(directory: str, name: str, expected: int, spin_seconds: float) -> dict[str, Any]:
    """Marks its arrival as file ``name`` in ``directory``, waits (up to 60 s) until ``expected``
    tasks have arrived there, then spins CPU-bound for ``spin_seconds``. ``met`` says whether all
    of them were in flight at once: a gate, so a test of parallelism never hopes for timing."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "w"):
        pass
    deadline = time.monotonic() + 60
    met = False
    while time.monotonic() < deadline:
        if len(os.listdir(directory)) >= expected:
            met = True
            break
        time.sleep(0.005)
    spin.call(spin_seconds)
    return {"met": met, **where.call()}


def _raise_once(sender: object, **kwargs: object) -> None:
    from django.tasks.signals import task_started

    task_started.disconnect(dispatch_uid="tandem-tests-poison")
    raise RuntimeError("a task_started receiver failed")


@task
def poison_receiver() -> str:
    """Connects a task_started receiver that raises (once, in this worker): the next task's
    failure escapes the task runner."""
    from django.tasks.signals import task_started

    task_started.connect(_raise_once, weak=False, dispatch_uid="tandem-tests-poison")
    return "connected"


_COUNTER = {"value": 0}


@task
def bump_module_counter() -> int:
    """Increments a module-level counter: shows whose module state a pool's workers share."""
    _COUNTER["value"] += 1
    return _COUNTER["value"]


@task
def scheduling_class() -> bool:
    """Whether the OS thread running this task is in Linux's idle scheduling class."""
    import threading

    return os.sched_getscheduler(threading.get_native_id()) == os.SCHED_IDLE


# -- issue 4: task options, hooks, progress, cancellation -------------------------------------


def linear_backoff(attempt: int) -> float:
    """A callable back-off: 100 seconds per failed attempt (easy to see on a frozen clock)."""
    return 100.0 * attempt


@tandem_task(max_attempts=3, backoff=linear_backoff)
def flaky_linear(key: str, fail_times: int) -> int:
    return flaky.call(key, fail_times)


@tandem_task(unique=True)
def unique_ledger(key: str) -> int:
    return ledger.call(key)


@tandem_task(unique_key=lambda user_id, **_: f"user:{user_id}")
def per_user(user_id: int, note: str = "") -> str:
    return f"{user_id}:{note}"


@task
def record_hook(result_id: str) -> str:
    """A hook: records which result it was enqueued for, and that result's status then."""
    from django.tasks import default_task_backend

    from tests.models import Ledger

    status = default_task_backend.get_result(result_id).status
    Ledger.objects.create(key=f"hook:{result_id}", worker=str(status))
    return str(status)


@tandem_task(on_success=record_hook, on_failure="tests.tasks.record_hook")
def hooked(should_fail: bool) -> str:
    if should_fail:
        raise ValueError("hooked task failed")
    return "ok"


@tandem_task(on_success="tests.tasks.record_hook", max_attempts=2, backoff=lambda attempt: 0)
def hooked_flaky(key: str, fail_times: int) -> int:
    return flaky.call(key, fail_times)


@tandem_task(takes_context=True, max_attempts=3, backoff=lambda attempt: 0)
def resumable_count(context: Any, key: str, total: int, crash_at: int) -> dict[str, Any]:
    """Counts to ``total``, saving a checkpoint after every step; the first attempt raises at
    ``crash_at``. Later attempts start from the checkpoint."""
    from tests.models import Ledger

    start = (context.checkpoint or {}).get("done", 0)
    Ledger.objects.create(key=key, worker=f"start:{start}")
    for step in range(start, total):
        if step == crash_at and context.attempt == 1:
            raise RuntimeError(f"crashed at step {step}")
        context.save_progress({"done": step + 1, "total": total}, force=True)
    return {"started_at": start, "done": total}


@task(takes_context=True)
def until_cancelled(context: Any, name: str, limit: float = 30.0) -> int:
    """Loops (signalling ``gate(name)`` once running) until cancelled; cooperative."""
    gate(name).set()
    deadline = time.monotonic() + limit
    checks = 0
    while time.monotonic() < deadline:
        checks += 1
        context.raise_if_cancelled()
        time.sleep(0.02)
    return checks


@tandem_task(timeout=0.5)
def short_timeout_spin(seconds: float) -> int:
    return spin.call(seconds)


@task
def load_ledger(pk: int) -> str:
    """Loads the row whose id it was given (the enqueue-in-a-transaction race)."""
    from tests.models import Ledger

    return Ledger.objects.get(pk=pk).key


@task(takes_context=True)
def with_progress(context: Any, steps: int) -> int:
    """Saves progress ``steps`` times in a tight loop; returns how many calls wrote at once."""
    return sum(bool(context.save_progress({"step": i + 1})) for i in range(steps))


# -- async tasks: concurrency on one worker's event loop -------------------------------------

_ASYNC_IN_FLIGHT: dict[str, dict[str, int]] = {}  # per gate directory: now, peak


@task
async def async_rendezvous(
    directory: str, name: str, expected: int, seconds: float
) -> dict[str, Any]:
    """Marks its arrival as file ``name`` in ``directory`` and awaits (up to 60 s) until
    ``expected`` tasks have arrived, then awaits ``asyncio.sleep(seconds)``. Returns whether they
    met, its start and end (wall clock), the most coroutines of this worker in flight at once
    (``peak``), and where it ran."""
    started = time.time()
    counts = _ASYNC_IN_FLIGHT.setdefault(directory, {"now": 0, "peak": 0})
    counts["now"] += 1
    counts["peak"] = max(counts["peak"], counts["now"])
    try:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, name), "w"):
            pass
        met = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(os.listdir(directory)) >= expected:
                met = True
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(seconds)
    finally:
        counts["now"] -= 1
    return {
        "met": met,
        "started": started,
        "ended": time.time(),
        "peak": counts["peak"],
        **where.call(),
    }


@task
async def async_until_cancelled(marker: str, seconds: float = 60.0) -> str:
    """Writes ``marker``.started, awaits ``seconds``; when its coroutine is cancelled it writes
    ``marker``.cancelled (proof that the coroutine itself was cancelled) and re-raises."""
    with open(f"{marker}.started", "w"):
        pass
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        with open(f"{marker}.cancelled", "w"):
            pass
        raise
    return "slept"


@task
async def async_orm(key: str) -> list[int]:
    """Django's async ORM inside a coroutine task: writes a ledger row and reads it back."""
    from tests.models import Ledger

    row = await Ledger.objects.acreate(key=key, worker=str(os.getpid()))
    await asyncio.sleep(0.01)
    return [entry.pk async for entry in Ledger.objects.filter(key=key, pk=row.pk)]


@task
async def async_fail(message: str) -> None:
    await asyncio.sleep(0)
    raise ValueError(message)


@task
async def async_logs(text: str) -> str:
    """Logs ``text`` from inside a coroutine (after an await: other coroutines ran meanwhile)."""
    import logging

    await asyncio.sleep(0.01)
    logging.getLogger("tests.tasks").info("async %s", text)
    return text


@task
async def async_hard_exit(code: int) -> None:
    """Ends the process its event loop runs in (a crash of the process executor's loop)."""
    await asyncio.sleep(0)
    os._exit(code)


# -- workflows (features/, process/ and web/ tiers) -------------------------------------------


@task(takes_context=True)
def parents_seen(context: Any, label: str) -> dict[str, Any]:
    """What ``context.parent_results`` showed this task (statuses and return values)."""
    return {
        "label": label,
        "parents": [
            [str(r.status), r.return_value if r.status == "SUCCESSFUL" else None]
            for r in context.parent_results
        ],
    }


@task
def add_to(total: int, amount: int) -> int:
    """A chain step: the previous step's return value arrives first."""
    return total + amount


@task
def group_done(group_id: str) -> dict[str, Any]:
    """A group's ``then``: records each run, and what the group looked like."""
    import tandem
    from tests.models import Ledger

    group = tandem.get_group(group_id)
    Ledger.objects.create(key=f"then:{group_id}", worker=f"{group.done}/{group.total}")
    return {"finished": group.finished, "successful": group.successful}


@task
def pid_file_then_sleep(path: str, seconds: float) -> int:
    """Writes the id of the process it runs in to ``path`` as it starts, then sleeps."""
    with open(path, "w") as out:
        out.write(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


@tandem_task(timeout=60)
def where_unhurried() -> dict[str, int]:
    """``where``, with a timeout of its own (a minute) that wins over a pool's tight one."""
    return where.func()


@tandem_task(concurrency_key="one-at-a-time", concurrency_limit=1)
def keyed_sleep(seconds: float) -> float:
    """Tasks of one concurrency key, one running at a time (the others wait READY)."""
    time.sleep(seconds)
    return seconds
