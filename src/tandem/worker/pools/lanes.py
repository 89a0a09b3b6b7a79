"""Async lanes: where a pool runs its ``async def`` tasks, beside its sync slots.

Each worker of a pool gets (on first use) one *lane*: an event loop (``eventloop.EventLoopWorker``)
of the pool's own kind — a thread of this process, a child process, or a subinterpreter — with
``async_concurrency`` coroutines in flight at most. Sync tasks keep their slots; a coroutine never
takes one. Seen from the supervisor, a lane is a channel: ``("run", task, timeout)`` and
``("stop", task_id, attempt_token)`` go in, outcomes come back on a thread of the lane.

``AsyncLanes`` keeps which attempt runs on which lane, so an outcome is delivered only for an
attempt that still belongs here (not one cancelled or stopped meanwhile), and a lane that dies
fails the attempts it held (``WorkerCrashed``) — the pool never dies with it.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from tandem.brokers.base import StoredTask
from tandem.execution import Outcome
from tandem.worker.pools import eventloop
from tandem.worker.pools.eventloop import Message, attempt_key
from tandem.worker.pools.slots import cancelled_outcome, crash_outcome

logger = logging.getLogger("tandem.worker")

#: How long a fresh lane's child process or interpreter may take to set Django up.
STARTUP_TIMEOUT = 60.0

Arrived = Callable[["Lane", Outcome], None]
Ended = Callable[["Lane", str], None]


class Lane(abc.ABC):
    """One worker's event loop, seen from the supervisor's process."""

    def __init__(self, name: str, concurrency: int, arrived: Arrived, ended: Ended) -> None:
        self.name = name
        self.concurrency = concurrency
        self._arrived = arrived
        self._ended = ended
        self.in_flight: dict[str, StoredTask] = {}  # owned by AsyncLanes, under its lock
        self._outbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def send(self, message: Message) -> None:
        """Queue ``message`` for the loop (sent once the lane has started)."""
        self._outbox.put(message)

    @abc.abstractmethod
    def _run(self) -> None:
        """Start the loop, pass messages on, hand outcomes to ``arrived``; call ``ended`` last."""

    def close(self, timeout: float | None) -> bool:
        """Let the coroutines in flight end (at most ``timeout``), then end; True when ended."""
        self.send(None)
        self.thread.join(timeout)
        if self.thread.is_alive():
            self._force()
        return not self.thread.is_alive()

    def _force(self) -> None:  # noqa: B027 (most lanes cannot be forced)
        """End a loop that did not stop in time, where that is possible."""


class ThreadLane(Lane):
    """The event loop in a thread of this process (the thread pool's lane)."""

    def _run(self) -> None:
        why = "the event loop ended"
        try:
            worker = eventloop.EventLoopWorker(
                self.concurrency, self._outbox.get, lambda outcome: self._arrived(self, outcome)
            )
            worker.run()
        except BaseException as exc:
            why = f"the event loop failed: {type(exc).__name__}: {exc}"
            logger.exception("the event loop of %s failed", self.name)
        finally:
            self._ended(self, why)


class ProcessLane(Lane):
    """The event loop in a child process of its own (``spawn``), which a stuck loop cannot
    outlive: a forced close kills it."""

    def __init__(self, *args: Any, environment: tuple[Any, ...]) -> None:
        super().__init__(*args)
        self._environment = environment
        self._process: Any = None

    def _run(self) -> None:
        why = "the worker process running the event loop ended"
        context = multiprocessing.get_context("spawn")
        connection, child_end = context.Pipe()
        try:
            self._process = context.Process(
                target=eventloop.process_main,
                args=(child_end, *self._environment, self.concurrency),
                daemon=True,
            )
            self._process.start()
            child_end.close()
            if not connection.poll(STARTUP_TIMEOUT):
                self._process.kill()
                why = f"the worker process did not start within {STARTUP_TIMEOUT:g}s"
                return
            ready = connection.recv()
            if ready[0] != "ready":
                why = f"the worker process could not start ({ready[1]}): {ready[2]}"
                return
            threading.Thread(
                target=self._forward, args=(connection,), name=f"{self.name}-send", daemon=True
            ).start()
            while True:
                self._arrived(self, connection.recv())
        except (EOFError, OSError):
            self._process.join(2)
            why = (
                "the worker process running the event loop died "
                f"(exit code {self._process.exitcode}); a fresh one replaces it."
            )
        finally:
            connection.close()
            self._ended(self, why)

    def _forward(self, connection: Any) -> None:
        while True:
            message = self._outbox.get()
            try:
                connection.send(message)
            except OSError:
                return
            if message is None:
                return

    def _force(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self.thread.join(5)


class InterpreterLane(Lane):
    """The event loop in a subinterpreter of its own (own GIL, Django set up there). A loop that
    does not stop cannot be closed, only abandoned (as for the subinterpreter pool's workers)."""

    def __init__(self, *args: Any, environment: tuple[Any, ...]) -> None:
        super().__init__(*args)
        self._environment = environment

    def _run(self) -> None:
        from concurrent import interpreters  # type: ignore[attr-defined,unused-ignore]

        from tandem.worker.pools import runner

        why = "the worker interpreter running the event loop ended"
        interp = interpreters.create()
        tasks, results = interpreters.create_queue(), interpreters.create_queue()
        wake_r, wake_w = os.pipe()
        done_r, done_w = os.pipe()
        served = False
        try:
            try:
                interp.call(runner.setup, *self._environment)
            except Exception as exc:
                why = f"the worker interpreter could not set Django up: {exc}"
                return
            server = threading.Thread(
                target=self._serve,
                args=(interp, tasks, results, wake_r, done_w),
                name=f"{self.name}-loop",
                daemon=True,
            )
            server.start()
            threading.Thread(
                target=self._forward, args=(tasks, wake_w), name=f"{self.name}-send", daemon=True
            ).start()
            while os.read(done_r, 1) == b".":
                self._arrived(self, results.get_nowait())
            server.join()  # it wrote its last byte: the loop returned
            served = True
            why = self._crash or why
        finally:
            self._ended(self, why)
            if served:
                with contextlib.suppress(Exception):
                    interp.close()
                for fd in (wake_r, wake_w, done_r, done_w):
                    with contextlib.suppress(OSError):
                        os.close(fd)

    _crash: str | None = None

    def _serve(self, interp: Any, tasks: Any, results: Any, wake: int, done: int) -> None:
        try:
            interp.call(eventloop.serve_interpreter, tasks, results, wake, done, self.concurrency)
        except Exception as exc:  # ExecutionFailed: the loop itself failed
            self._crash = f"the worker interpreter's event loop failed: {exc}"
        finally:
            with contextlib.suppress(OSError):
                os.write(done, b"!")

    def _forward(self, tasks: Any, wake: int) -> None:
        while True:
            message = self._outbox.get()
            tasks.put(message)
            try:
                os.write(wake, b".")
            except OSError:
                return
            if message is None:
                return


class AsyncLanes:
    """A pool's lanes: up to one per worker, started on first use, each with
    ``concurrency`` coroutines in flight at most."""

    def __init__(
        self,
        workers: int,
        concurrency: int,
        deliver: Callable[[Outcome], None],
        new_lane: Callable[[int, Arrived, Ended], Lane],
    ) -> None:
        self.workers = workers
        self.concurrency = concurrency
        self._deliver = deliver
        self._new_lane = new_lane
        self._lock = threading.Lock()
        self._lanes: list[Lane] = []
        self._counter = 0

    def in_flight(self) -> int:
        with self._lock:
            return sum(len(lane.in_flight) for lane in self._lanes)

    def room(self) -> int:
        """How many tasks the supervisor may claim for the lanes beyond those in flight: as
        many again as run now (at least one), up to the lanes' capacity — so a burst of
        coroutines fills the loops in a few rounds, and a pool that turns back to sync tasks
        claims only a few of them ahead."""
        busy = self.in_flight()
        return busy + min(self.workers * self.concurrency - busy, max(busy, 1))

    def submit(self, task: StoredTask, timeout: float | None) -> None:
        with self._lock:
            lanes = self._lanes
            idle = [lane for lane in lanes if not lane.in_flight]
            if idle:
                lane = idle[0]
            elif len(lanes) < self.workers:
                self._counter += 1
                lane = self._new_lane(self._counter, self._arrived, self._ended)
                lanes.append(lane)
                lane.start()
            else:
                lane = min(lanes, key=lambda each: len(each.in_flight))
            lane.in_flight[attempt_key(task.id, task.attempt_token)] = task
        lane.send(("run", task, timeout))

    def _arrived(self, lane: Lane, outcome: Outcome) -> None:
        with self._lock:
            task = lane.in_flight.pop(attempt_key(outcome.task_id, outcome.attempt_token), None)
        if task is not None:  # else cancelled or stopped meanwhile: decided elsewhere
            self._deliver(outcome)

    def _ended(self, lane: Lane, why: str) -> None:
        with self._lock:
            if lane in self._lanes:
                self._lanes.remove(lane)
            held, lane.in_flight = list(lane.in_flight.values()), {}
        for task in held:
            self._deliver(crash_outcome(task, why))
        if held:
            logger.error("%s: %s (%d attempts in flight failed)", lane.name, why, len(held))

    def _take(self, task_id: str, attempt_token: str | None) -> tuple[Lane, StoredTask] | None:
        with self._lock:
            for lane in self._lanes:
                for key, task in lane.in_flight.items():
                    if task.id == task_id and attempt_token in (None, task.attempt_token):
                        del lane.in_flight[key]
                        return lane, task
        return None

    def cancel(self, task_id: str) -> bool:
        """Cancel the coroutine of ``task_id``, recording it cancelled; True if it ran here."""
        taken = self._take(task_id, None)
        if taken is None:
            return False
        lane, task = taken
        self._deliver(cancelled_outcome(task, "its coroutine was cancelled."))
        lane.send(("stop", task.id, task.attempt_token))
        return True

    def stop_attempt(self, task_id: str, attempt_token: str) -> bool:
        """Cancel this attempt's coroutine, delivering nothing (its lease is lost)."""
        taken = self._take(task_id, attempt_token)
        if taken is None:
            return False
        lane, task = taken
        lane.send(("stop", task.id, task.attempt_token))
        return True

    def stop(self, timeout: float | None) -> bool:
        """Let every lane's coroutines end (at most ``timeout`` in all), then end the lanes."""
        with self._lock:
            lanes = list(self._lanes)
        deadline = None if timeout is None else time.monotonic() + timeout
        clean = True
        for lane in lanes:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            clean = lane.close(left) and clean
        return clean
