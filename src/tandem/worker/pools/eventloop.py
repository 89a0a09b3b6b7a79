"""One worker's event loop for ``async def`` tasks — runs where the worker runs (a thread of the
supervisor's process, a child process, or a subinterpreter), never in the supervisor's round.

The loop takes messages from ``receive()`` (a blocking call, read by a thread of its own so the
loop never blocks on the channel) and sends each attempt's ``Outcome`` with ``send()``, from the
loop's thread:

- ``("run", task, timeout)``: start the attempt; at most ``concurrency`` coroutines are in flight,
  the others wait for a seat (their timeout starts when they get one);
- ``("stop", task_id, attempt_token)``: cancel that attempt's coroutine (``tandem.cancel``, a lost
  lease); its outcome is still sent, and the supervisor's side discards it;
- ``None`` (or the channel closing): take no more, let the coroutines in flight end, return.

Every message is a plain picklable value, so the same loop serves all three executors.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tandem.brokers.base import StoredTask
from tandem.execution import Outcome, aexecute, failed

Message = tuple[Any, ...] | None


def attempt_key(task_id: str, attempt_token: str) -> str:
    return f"{task_id}:{attempt_token}"


class EventLoopWorker:
    """Runs coroutine tasks on one ``asyncio`` loop, ``concurrency`` at most at once."""

    def __init__(
        self,
        concurrency: int,
        receive: Callable[[], Message],
        send: Callable[[Outcome], None],
    ) -> None:
        self.concurrency = concurrency
        self._receive = receive
        self._send = send
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stopped: set[str] = set()

    def run(self) -> None:
        """Serve until told to stop (``None``) and every coroutine in flight has ended."""
        asyncio.run(self._main())

    def _read(self, loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue[Message]) -> None:
        while True:
            try:
                message = self._receive()
            except (EOFError, OSError):  # the channel closed: the supervisor side is gone
                message = None
            loop.call_soon_threadsafe(inbox.put_nowait, message)
            if message is None:
                return

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        seats = asyncio.Semaphore(self.concurrency)
        # Not a daemon: a subinterpreter has none; it ends with the ``None`` it passes on.
        reader = threading.Thread(
            target=self._read, args=(loop, inbox), name="tandem-eventloop-reader"
        )
        reader.start()
        try:
            while (message := await inbox.get()) is not None:
                if message[0] == "run":
                    _, task, timeout = message
                    key = attempt_key(task.id, task.attempt_token)
                    self._running[key] = asyncio.create_task(self._attempt(task, timeout, seats))
                elif message[0] == "stop":
                    key = attempt_key(message[1], message[2])
                    running = self._running.get(key)
                    if running is not None:
                        self._stopped.add(key)
                        running.cancel()
            if self._running:
                await asyncio.wait(list(self._running.values()))
        finally:
            await asyncio.to_thread(reader.join)

    async def _attempt(self, task: StoredTask, timeout: float | None, seats: Any) -> None:
        key = attempt_key(task.id, task.attempt_token)
        try:
            async with seats:
                outcome = await aexecute(task, timeout, current=lambda: key not in self._stopped)
        except BaseException as exc:  # cancelled while waiting for a seat, or the runner failed
            outcome = failed(task, exc)
        finally:
            self._running.pop(key, None)
            self._stopped.discard(key)
        self._send(outcome)


def process_main(
    connection: Any,
    sys_path: Sequence[str],
    environ: Mapping[str, str],
    databases: Mapping[str, Any],
    concurrency: int,
) -> None:
    """A process lane's child: set Django up, say ``("ready", pid)`` (or ``("failed", stage,
    error)`` and end), then serve the event loop until told to stop or the parent is gone."""
    from tandem.worker.pools.runner import die_with_parent, setup

    die_with_parent()
    try:
        setup(sys_path, environ, databases)
    except BaseException as exc:
        connection.send(("failed", "setting Django up", f"{type(exc).__name__}: {exc}"))
        return
    connection.send(("ready", os.getpid()))
    EventLoopWorker(concurrency, connection.recv, connection.send).run()


def serve_interpreter(tasks: Any, results: Any, wake: int, done: int, concurrency: int) -> None:
    """A subinterpreter lane's loop (Django already set up there): a message is an item on
    ``tasks`` and a byte on ``wake``; an outcome goes on ``results`` with a byte on ``done``."""

    def receive() -> Message:
        os.read(wake, 1)
        message: Message = tasks.get_nowait()
        return message

    def send(outcome: Outcome) -> None:
        results.put(outcome)
        os.write(done, b".")

    EventLoopWorker(concurrency, receive, send).run()
