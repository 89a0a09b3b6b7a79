"""The mailbox of an idle subinterpreter worker, which starts a task it is handed at once.

An idle worker of a ``SlotPool`` waits on its mailbox; the pool puts the next task there and the
worker's thread wakes to pass it on. For a subinterpreter that thread is only a go-between: the
task runs in the interpreter, which the thread wakes through a pipe. So ``Inbox.put`` sends the
task to the interpreter itself, from the thread that submits it, and the worker's thread sleeps on
until the task has ended: one thread less to wake per task, and the task does not wait for that
thread to get the main interpreter's GIL (which the supervisor, going on with its round, holds)
before it can start. Everything else (``STOP``, a task for an interpreter that could not set
Django up) waits in a queue, with a byte on the same pipe to wake the worker's thread.
"""

from __future__ import annotations

import os
import queue
import select
from collections.abc import Callable

from tandem.brokers.base import StoredTask

#: The byte that says the inbox's queue has an item (the interpreter writes others: see
#: ``runner.serve``).
QUEUED = b"m"


class Inbox:
    """What an idle worker's thread waits on (``get``): the end of a task ``put`` started, or an
    item queued. ``signal`` is the pipe the interpreter writes a byte to when a task ends
    (``signal_w``: its writing end)."""

    def __init__(self, start: Callable[[StoredTask], bool], signal: int, signal_w: int) -> None:
        self._start = start  # starts a task in the interpreter; False when it cannot run there
        self._signal = signal
        self._signal_w = signal_w
        self._poll = select.poll()  # (not ``select.select``: fds past 1023 are common in a server)
        self._poll.register(signal, select.POLLIN)
        self._items: queue.SimpleQueue[StoredTask | None] = queue.SimpleQueue()
        self._started: StoredTask | None = None
        self._ended: bytes | None = None
        #: The interpreter's loop ended while this worker was idle (``get`` then returns None).
        self.lost = False

    def put(self, item: StoredTask | None) -> None:
        """Start ``item`` in the interpreter, or queue it (``STOP``; one that cannot start)."""
        if item is not None:
            self._started = item  # (before the interpreter can end it)
            if self._start(item):
                return
            self._started = None
        self._items.put(item)
        os.write(self._signal_w, QUEUED)

    def get(self, block: bool = True, timeout: float | None = None) -> StoredTask | None:
        """The task ``put`` started, once it has ended (``ended`` then gives its signal), or the
        next item queued; ``queue.Empty`` after ``timeout`` seconds without either."""
        if timeout is not None and not self._poll.poll(timeout * 1000):
            raise queue.Empty
        signal = os.read(self._signal, 1)
        if signal == QUEUED:
            return self._items.get_nowait()
        task, self._started, self._ended = self._started, None, signal
        if task is None:
            self.lost = True
        return task

    def ended(self) -> bytes | None:
        """The signal the ending of the task ``get`` returned sent, when ``put`` started that
        task; None when it was not started yet (it came from the queue)."""
        ended, self._ended = self._ended, None
        return ended
