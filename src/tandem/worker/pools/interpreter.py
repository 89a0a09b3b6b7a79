"""One worker of a subinterpreter pool: an interpreter with Django set up, and the thread that
runs ``runner.serve`` in it for the interpreter's lifetime.

The pool's side talks to it through ``interpreters`` queues and pipes: a task on ``tasks`` and a
byte on the wake pipe; its ending back on ``results`` with a byte on the done pipe. While it
runs a task, the slot's thread may send it the pool's next waiting task ahead (``send`` with
``ahead``), which it starts as soon as the one it runs ends, without waiting for the main
interpreter. An ahead task can be taken back until it starts (``take_back``): it carries a claim
(a token on ``claims``) that the interpreter takes before starting it, and that the pool takes
instead to keep it from starting; the interpreter then answers ``SKIPPED`` for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Sequence
from typing import Any

from tandem.brokers.base import StoredTask
from tandem.execution import Outcome
from tandem.worker.pools import handoff, runner
from tandem.worker.pools.slots import lower_priority
from tandem.worker.pools.startup import StartupFailure, from_exception

logger = logging.getLogger("tandem.worker")

#: The done pipe's byte for an ahead task the pool took back before it started (no outcome).
SKIPPED = runner.SKIPPED


class WorkerInterpreter:
    """One worker interpreter and the thread that runs ``runner.serve`` in it."""

    def __init__(
        self,
        environment: tuple[Any, ...],
        name: str,
        modules: Sequence[str] = (),
        *,
        lowered: bool = False,
        interp: Any = None,
        setup_error: StartupFailure | None = None,
    ) -> None:
        """Create the interpreter and set Django up in it. ``lowered``: on a thread of the idle
        class, like the tasks (``lower_priority``): a pool's workers that set up while the
        first ones already run tasks must not take the CPU from those tasks — nor from the web
        side — for the second or more each takes; only the proof, before anything runs, does
        not wait for spare CPU. ``interp``: one created and set up already (``warmup``), with
        ``setup_error`` saying how its set-up went."""
        from concurrent import interpreters  # type: ignore[attr-defined,unused-ignore]

        self.interp = interp if interp is not None else interpreters.create()
        self.tasks = interpreters.create_queue()
        self.results = interpreters.create_queue()
        self.stops = interpreters.create_queue()  # attempts to interrupt (their lease is lost)
        self.claims = interpreters.create_queue()  # the claim of the task sent ahead, if any
        #: The task sent ahead that the pool still counts on this worker to run (under the pool's
        #: dispatch lock), and whether an ahead item's ending has not been read yet (the slot's
        #: thread only): it reads one for every item sent, taken back or not.
        self.ahead: StoredTask | None = None
        self.ahead_pending = False
        self.wake_r, self.wake_w = os.pipe()
        self.done_r, self.done_w = os.pipe()
        self.stop_r, self.stop_w = os.pipe()
        self.crash: str | None = None  # why the loop ended while a task ran
        self.setup_error: StartupFailure | None = setup_error
        if interp is None and lowered:
            setup = threading.Thread(
                target=self._set_up,
                args=(environment, modules, True),
                name=f"{threading.current_thread().name}-setup",
            )
            setup.start()
            setup.join()
        elif interp is None:
            self._set_up(environment, modules)
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def _set_up(
        self, environment: tuple[Any, ...], modules: Sequence[str], lowered: bool = False
    ) -> None:
        if lowered:
            lower_priority()
        try:
            self.interp.call(runner.setup, *environment)
        except Exception as exc:
            self.setup_error = from_exception("subinterpreter", "setting Django up", exc)
            return
        self.import_modules(modules)

    def import_modules(self, modules: Sequence[str]) -> None:
        """Import the pool's task ``modules`` here (Django set up); ``setup_error`` says which
        one could not."""
        if self.setup_error is not None:
            return
        for module in modules:
            try:
                self.interp.call(runner.import_module, module)
            except Exception as exc:
                stage = f"importing task module {module!r}"
                self.setup_error = from_exception("subinterpreter", stage, exc)
                return

    def start(self, name: str) -> None:
        """Start serving tasks (only once Django is set up here)."""
        self.thread.name = name
        if self.setup_error is None:
            self.thread.start()

    def _serve(self) -> None:
        lower_priority()  # this OS thread runs the interpreter: tasks yield to requests
        try:
            self.crash = self.interp.call(
                runner.serve,
                self.tasks,
                self.results,
                self.wake_r,
                self.done_w,
                self.stops,
                self.stop_r,
                self.stop_w,
                self.claims,
            )
        except Exception as exc:  # ExecutionFailed: the loop itself failed
            self.crash = f"the worker interpreter failed: {exc}"
        finally:
            with contextlib.suppress(OSError):
                os.write(self.done_w, b"!")  # wakes its slot's thread: no outcome will come

    def send(self, task: StoredTask, timeout: float | None, *, ahead: bool = False) -> None:
        """Start ``task`` there (``ahead``: once the task it runs ended, unless taken back; its
        claim is on ``claims`` already); a byte on ``done_r`` tells when it ended (``outcome``)."""
        self.tasks.put((handoff.encode(task), timeout, ahead))
        os.write(self.wake_w, b".")

    def claim_ahead(self, task: StoredTask) -> None:
        """Count on this worker for ``task`` (under the pool's dispatch lock), then ``send``."""
        self.claims.put(True)
        self.ahead = task
        self.ahead_pending = True

    def take_back(self) -> tuple[StoredTask | None, bool]:
        """Under the pool's dispatch lock: the task sent ahead, if the pool still counts on this
        worker for it, no longer so; and whether it was taken back before it started (True: it
        never runs here) or has started here already (False)."""
        task, self.ahead = self.ahead, None
        if task is None:
            return None, False
        try:
            self.claims.get_nowait()
        except queue.Empty:  # (QueueEmpty) the interpreter took the claim: it started it
            return task, False
        return task, True

    def outcome(self, signal: bytes) -> Outcome | None:
        """The outcome of the task sent, after ``signal``; None: the interpreter's loop ended."""
        if signal != b".":
            return None
        outcome: Outcome = handoff.decode(self.results.get_nowait())
        return outcome

    def interrupt(self, task: StoredTask) -> None:
        """Raise ``LeaseLost`` in ``task``'s attempt if it still runs here (pure Python only)."""
        self.stops.put(f"{task.id}:{task.attempt_token}")
        with contextlib.suppress(OSError):
            os.write(self.stop_w, b"!")

    def abandon(self) -> None:
        """Give up on this interpreter, still running a task: end its interrupter thread, which
        interpreter finalization would otherwise wait for forever (it joins every thread that
        is not a daemon, and a subinterpreter has no daemon threads)."""
        with contextlib.suppress(OSError):
            os.write(self.stop_w, b"q")

    def close(self) -> None:
        if self.thread.is_alive():
            self.tasks.put(None)
            with contextlib.suppress(OSError):
                os.write(self.wake_w, b".")
            self.thread.join()
        try:
            self.interp.close()
        except Exception:  # already gone
            logger.debug("interpreter %s left open", getattr(self.interp, "id", "?"))
        for fd in (self.wake_r, self.wake_w, self.done_r, self.done_w, self.stop_r, self.stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)
