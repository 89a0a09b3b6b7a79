"""What runs inside a pool's worker — a subinterpreter or a child process — not in the supervisor.

``setup()`` makes Django ready there (once per worker); ``run()`` executes one claimed task with
an optional in-worker watchdog and returns its ``Outcome``. Everything crossing the boundary is a
plain picklable value (``StoredTask`` in, ``Outcome`` out).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tandem.brokers.base import StoredTask
from tandem.execution import Outcome


def worker_environment() -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """What a fresh worker needs to set Django up like this process (the parent's side of
    ``setup()``): path, environment, live database names."""
    from django.db import connections

    environ = {"DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "")}
    databases = {alias: connections[alias].settings_dict["NAME"] for alias in connections}
    return list(sys.path), environ, databases


def setup(
    sys_path: Sequence[str], environ: Mapping[str, str], databases: Mapping[str, Any]
) -> dict[str, Any]:
    """Configure and set up Django in this worker; returns where it runs.

    ``databases`` are the supervisor's live connection settings (a test run renames databases at
    run time, so the settings module alone is not enough).
    """
    for entry in reversed(sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    os.environ.update(environ)
    import django
    from django.conf import settings

    if _interpreter_id() and any(
        "postg" in str(db.get("ENGINE", "")) for db in settings.DATABASES.values()
    ):
        # Only where PostgreSQL is configured: psycopg costs ~13 MiB in every interpreter.
        _load_pure_python_psycopg()

    django.setup()
    for alias, name in databases.items():
        if alias in settings.DATABASES:
            settings.DATABASES[alias]["NAME"] = name
    return {"pid": os.getpid(), "interpreter": _interpreter_id()}


def import_module(name: str) -> None:
    """Import ``name`` here (a start-up proof: one of the pool's task modules)."""
    import importlib

    importlib.import_module(name)


def _load_pure_python_psycopg() -> None:
    """psycopg's C build cannot load in a subinterpreter and psycopg falls back silently; pick the
    pure-Python one explicitly. The environment is shared by the whole process, so restore it."""
    previous = os.environ.get("PSYCOPG_IMPL")
    os.environ["PSYCOPG_IMPL"] = "python"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pass
    finally:
        if previous is None:
            del os.environ["PSYCOPG_IMPL"]
        else:
            os.environ["PSYCOPG_IMPL"] = previous


def _interpreter_id() -> int:
    try:
        from concurrent import interpreters  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return 0
    return int(interpreters.get_current().id)


def raise_in_thread(ident: int, exception: type[BaseException]) -> None:
    """Raise ``exception`` in the thread ``ident`` of this interpreter at its next bytecode
    boundary (``PyThreadState_SetAsyncExc``). ``ctypes`` is imported only here, when it fires:
    an idle worker interpreter does not hold it (about 0.2 MiB each)."""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exception))


class Watchdog:
    """Raise ``TaskTimeout`` in the running thread when ``timeout`` passes (pure Python only).

    A thread of this interpreter waits for the deadline and uses
    ``PyThreadState_SetAsyncExc``: the exception surfaces at the next bytecode boundary, so a
    loop in Python is interrupted but a blocking C call is not (the pool retires that worker).
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._target = threading.get_ident()
        self._thread = threading.Thread(target=self._watch, name="tandem-watchdog")

    def _watch(self) -> None:
        from tandem.exceptions import TaskTimeout

        if self._done.wait(self.timeout):
            return
        with self._lock:
            if not self._done.is_set():
                raise_in_thread(self._target, TaskTimeout)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._done.set()
        self._thread.join()


def run(task: StoredTask, timeout: float | None, interrupter: Interrupter | None = None) -> Outcome:
    """Execute ``task`` here, ending it with ``TaskTimeout`` after ``timeout`` seconds: by the
    worker's ``interrupter`` when it has one (a subinterpreter's), else by a ``Watchdog`` of
    this attempt's own."""
    from django.db import close_old_connections

    from tandem.exceptions import TaskTimeout
    from tandem.execution import execute, failed

    close_old_connections()
    outcome: Outcome | None = None
    try:
        if not timeout:
            return execute(task)
        try:
            if interrupter is not None:
                interrupter.arm(timeout)
                try:
                    outcome = execute(task)
                finally:
                    interrupter.disarm()
            else:
                with Watchdog(timeout):
                    outcome = execute(task)
        except TaskTimeout as exc:
            # The watchdog fired in the instant between the task's end and the watchdog's stop
            # (keep the task's own outcome when it has one), or before the task's code ran (a
            # starved interpreter): an ending the worker decided, signalled like a raise.
            if outcome is None:
                outcome = dataclasses.replace(failed(task, exc), finished_signal=True)
        return outcome
    finally:
        close_old_connections()


#: The longest a worker's ``Interrupter`` sleeps at a time (seconds; ``poll`` refuses enormous
#: timeouts): it looks at the deadline again then.
LONGEST_WAIT = 3600.0


class Interrupter:
    """A thread of the worker interpreter that raises an exception in the running task: either
    ``LeaseLost`` when the pool asks (its lease is lost: the pool puts ``"<task id>:<token>"``
    on ``stops`` and a byte ``b"!"`` on the ``signal`` pipe), or ``TaskTimeout`` at the
    attempt's deadline (``arm``). ``b"q"`` ends the thread. Only the attempt named is
    interrupted (``current``, under the lock), never the next one.

    It is the watchdog of every attempt of the interpreter, not a thread started per attempt
    (about 70 µs each): ``arm`` sets the deadline, and wakes the thread (a byte ``b"t"`` on
    ``signal``, written to ``nudge``) only when it sleeps until later than that: when the last
    deadline armed has passed. While tasks with the same timeout follow one another, it sleeps
    until the latest deadline armed, then until the running attempt's, further on: a wake per
    timeout's length, not per attempt.
    """

    def __init__(self, stops: Any, signal: int, nudge: int) -> None:
        self._stops = stops
        self._signal = signal
        self._nudge = nudge
        self._lock = threading.Lock()
        self._current: str | None = None
        self._deadline: float | None = None  # the running attempt's
        self._latest: float | None = None  # the latest deadline armed, passed or not
        self._wakes_at = float("inf")  # when the thread's wait ends at the latest
        self._target = threading.get_ident()
        self._thread = threading.Thread(target=self._watch, name="tandem-interrupter")
        self._thread.start()

    def running(self, attempt: str | None) -> None:
        with self._lock:
            self._current = attempt

    def arm(self, timeout: float) -> None:
        """Raise ``TaskTimeout`` in the running task ``timeout`` seconds from now."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._deadline = deadline
            self._latest = max(deadline, self._latest or deadline)
            nudge = deadline < self._wakes_at
            if nudge:
                self._wakes_at = deadline
        if nudge:
            os.write(self._nudge, b"t")

    def disarm(self) -> None:
        with self._lock:
            self._deadline = None

    def _watch(self) -> None:
        import select

        from tandem.exceptions import LeaseLost, TaskTimeout

        poll = select.poll()  # (not ``select.select``: fds past 1023 are common in a server)
        poll.register(self._signal, select.POLLIN)
        while True:
            with self._lock:
                now = time.monotonic()
                if self._deadline is None and self._latest is not None and self._latest <= now:
                    self._latest = None  # idle, every deadline passed: sleep until armed
                # (idle: until the latest deadline, which the next attempt's is likely beyond)
                wake = self._deadline if self._deadline is not None else self._latest
                wait = min(max(0.0, wake - now), LONGEST_WAIT) if wake is not None else LONGEST_WAIT
                self._wakes_at = now + wait
            if not poll.poll(wait * 1000):
                with self._lock:
                    if self._deadline is not None and time.monotonic() >= self._deadline:
                        self._deadline = None  # once per attempt
                        raise_in_thread(self._target, TaskTimeout)
                continue
            signal = os.read(self._signal, 1)
            if signal == b"t":
                continue
            if signal != b"!":
                return
            wanted = self._stops.get_nowait()
            with self._lock:
                if wanted is not None and wanted == self._current:
                    raise_in_thread(self._target, LeaseLost)

    def close(self, quit_fd: int) -> None:
        os.write(quit_fd, b"q")
        self._thread.join()


def serve(
    tasks: Any,
    results: Any,
    wake: int,
    done: int,
    stops: Any = None,
    stop_r: int | None = None,
    stop_w: int | None = None,
) -> str | None:
    """The loop of a subinterpreter worker, run by one thread for the interpreter's lifetime.

    ``Interpreter.call()`` costs 0.2 to 0.9 ms a call on this interpreter (more with Django loaded),
    far more than a short task; so the interpreter is entered once and fed through a channel: a
    task ``(StoredTask, timeout)`` on the ``tasks`` queue and a byte on the ``wake`` pipe (a
    blocking read that releases this interpreter's GIL — ``interpreters.Queue.get()`` would poll);
    its ``Outcome`` back on ``results`` and a byte on ``done``; both cross as tuples of shareable
    values (``handoff``), not pickles. ``None`` ends the loop. Returns None after a stop, or the
    traceback of an exception that escaped the runner (the caller records the task as crashed
    and replaces the interpreter).
    """
    import traceback

    from tandem.exceptions import LeaseLost
    from tandem.execution import failed
    from tandem.worker.pools import handoff

    interrupter = (
        Interrupter(stops, stop_r, stop_w)
        if stops is not None and stop_r is not None and stop_w is not None
        else None
    )
    try:
        while True:
            os.read(wake, 1)
            item = tasks.get_nowait()
            if item is None:
                return None
            encoded, timeout = item
            task = handoff.decode(encoded)
            try:
                try:
                    if interrupter is not None:
                        interrupter.running(f"{task.id}:{task.attempt_token}")
                    outcome = run(task, timeout, interrupter)
                finally:
                    if interrupter is not None:
                        interrupter.running(None)
            except LeaseLost as exc:  # landed outside the task's own code: the same ending
                outcome = failed(task, exc)
            except BaseException as exc:  # a signal receiver or the runner itself failed
                return "".join(traceback.format_exception(exc))
            results.put(handoff.encode(outcome))
            os.write(done, b".")
    finally:
        if interrupter is not None and stop_w is not None:
            interrupter.close(stop_w)


#: How often a pool's child looks for its parent (seconds): a child of a parent killed with
#: SIGKILL ends within this, long before the lease of the task it ran expires and the task runs
#: again elsewhere, so a killed supervisor never leaves a second live copy running.
PARENT_CHECK = 0.2


def die_with_parent() -> None:
    """End this process (at once, ``os._exit``) soon after its parent is gone.

    A pool's child runs its task to the end whatever happens to the supervisor that started it;
    if that supervisor is killed (``kill -9``, the OOM killer), the task's lease expires and
    another worker runs it again, while the orphan would still be running its copy. A daemon
    thread watches the parent (Linux's ``PR_SET_PDEATHSIG`` is not used: it fires when the
    *thread* that started the child ends, and pools start children from worker threads)."""
    import multiprocessing

    started_by = multiprocessing.parent_process()
    parent = started_by.pid if started_by is not None and started_by.pid else os.getppid()
    if os.getppid() != parent:  # already gone before this line ran
        os._exit(70)

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(70)
            threading.Event().wait(PARENT_CHECK)

    threading.Thread(target=watch, name="tandem-parent-watch", daemon=True).start()


def process_main(
    connection: Any,
    sys_path: Sequence[str],
    environ: Mapping[str, str],
    databases: Mapping[str, Any],
    modules: Sequence[str] = (),
) -> None:
    """The loop of a process-pool child: receive a task, send its outcome, until told to stop.

    It first sets Django up and imports ``modules``, then sends ``("ready", pid)`` — or
    ``("failed", stage, error, traceback)`` and ends."""
    from tandem.worker.pools.slots import lower_priority

    die_with_parent()
    lower_priority()  # a child's main thread: tasks yield the CPU to the web side
    stage = "setting Django up"
    try:
        setup(sys_path, environ, databases)
        for module in modules:
            stage = f"importing task module {module!r}"
            import_module(module)
    except BaseException as exc:
        import traceback

        error = f"{type(exc).__name__}: {exc}"
        connection.send(("failed", stage, error, "".join(traceback.format_exception(exc))))
        return
    connection.send(("ready", os.getpid()))
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if message is None:
            return
        task, timeout = message
        try:
            outcome = run(task, timeout)
        except BaseException as exc:  # escaped the runner (e.g. a signal receiver): report, end
            from tandem.execution import failed

            connection.send(("crashed", failed(task, exc)))
            return
        connection.send(outcome)
