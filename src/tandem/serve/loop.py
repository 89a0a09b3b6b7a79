"""The HTTP server's event loop: waitress's ``poll()`` loop, without the cost of idle connections.

waitress's loop (``wasyncore.poll2``) asks every connection whether it is readable or writable and
builds a new ``poll()`` set on every turn: with 5,000 open connections a turn costs ~4 ms of
Python (measured), and a request takes several turns — so every request pays for every idle
connection, and more so on a busy machine. ``Loop`` keeps one ``epoll`` set between turns and
only asks the connections whose answer may have changed:

- a descriptor that came or went (``SocketMap`` records every change of the map);
- one that had an event on the last turn (its handlers ran);
- one that was not plainly idle when last asked — a request in service, a response to send, a
  close pending — since request threads change those;
- the listening socket, the trigger and the stop watcher, every turn;
- a connection the server's maintenance sweep marked for closing (``Loop.touch``).

An idle connection (readable, nothing to write) stays registered for input and costs nothing
until a byte arrives. Event handling is waitress's own (``wasyncore.readwrite``). Without epoll
(not Linux) the loop falls back to waitress's ``poll2``.
"""

from __future__ import annotations

import contextlib
import select
import threading
from typing import Any

from waitress import wasyncore

IDLE = select.POLLIN | select.POLLPRI


class SocketMap(dict[int, Any]):
    """waitress's map of descriptors to dispatchers, recording which descriptors came, and
    telling the loop at once which went (while the descriptor is still open: epoll keys its
    registrations on the open file, which a shared socket keeps open after this copy closes)."""

    def __init__(self) -> None:
        super().__init__()
        self.added: set[int] = set()
        self.loop: Loop | None = None

    def __setitem__(self, fd: int, dispatcher: Any) -> None:
        super().__setitem__(fd, dispatcher)
        self.added.add(fd)

    def __delitem__(self, fd: int) -> None:
        super().__delitem__(fd)
        self._gone(fd)

    def pop(self, fd: int, *default: Any) -> Any:
        value = super().pop(fd, *default)
        self._gone(fd)
        return value

    def clear(self) -> None:
        for fd in list(self):
            self._gone(fd)
        super().clear()

    def _gone(self, fd: int) -> None:
        self.added.discard(fd)
        if self.loop is not None:
            self.loop.forget(fd)


class Loop:
    """Turns of the event loop over one ``SocketMap``."""

    def __init__(self, map: SocketMap) -> None:
        self.map = map
        self.epoll = select.epoll() if hasattr(select, "epoll") else None
        self.flags: dict[int, int] = {}  # what each registered descriptor waits for
        self.watch: set[int] = set()  # descriptors to ask again on the next turn
        # Held while the registrations change: a request thread may re-arm a connection
        # (``rearm``) while the loop's thread asks the others.
        self.lock = threading.RLock()
        map.loop = self
        map.added.update(map)  # whatever was there before

    def touch(self, fd: int) -> None:
        """Ask this descriptor again on the next turn (its dispatcher changed state)."""
        self.watch.add(fd)

    def forget(self, fd: int) -> None:
        """The descriptor left the map (and is about to be closed)."""
        with self.lock:
            self.watch.discard(fd)
            if self.epoll is not None and self.flags.pop(fd, 0):
                with contextlib.suppress(OSError):  # already closed
                    self.epoll.unregister(fd)

    def rearm(self, dispatcher: Any) -> bool:
        """From a request thread whose response is sent: watch the connection for its next request
        now, so that the loop's thread need not be woken to do it (``False``: the connection is
        not plainly idle, or the loop has no epoll: wake the loop instead).

        A connection is unregistered while its request is served (it must not be read); the
        loop would register it again on the turn after the server's trigger woke it.
        """
        if self.epoll is None:
            return False
        with self.lock:
            fd = dispatcher._fileno
            if fd is None or fd not in self.map or self.map[fd] is not dispatcher:
                return False  # closed meanwhile
            if not dispatcher.readable() or dispatcher.writable() or dispatcher.busy():
                return False
            self._register(fd, IDLE)
        return True

    def turn(self, timeout: float) -> None:
        if self.epoll is None:
            wasyncore.poll2(timeout, self.map)
            return
        with self.lock:
            asking, self.watch = self.watch, set()
            asking |= self.map.added
            self.map.added.clear()
            for fd in asking:
                dispatcher = self.map.get(fd)
                if dispatcher is None:
                    continue
                flags = 0
                if dispatcher.readable():
                    flags |= IDLE
                if dispatcher.writable() and not dispatcher.accepting:
                    flags |= select.POLLOUT
                self._register(fd, flags)
                busy = getattr(dispatcher, "busy", None)
                if flags != IDLE or busy is None or busy():
                    self.watch.add(fd)  # may change without an event of its own: ask every turn
        try:
            events = self.epoll.poll(timeout)
        except InterruptedError:
            events = []
        for fd, flags in events:
            dispatcher = self.map.get(fd)
            if dispatcher is None:
                continue
            self.watch.add(fd)
            wasyncore.readwrite(dispatcher, flags)

    def _register(self, fd: int, flags: int) -> None:
        assert self.epoll is not None
        current = self.flags.get(fd, 0)
        if current == flags:
            return
        if not flags:
            self.forget(fd)
        elif current:
            self.epoll.modify(fd, flags)
        else:
            self.epoll.register(fd, flags)
        if flags:
            self.flags[fd] = flags

    def close(self) -> None:
        self.map.loop = None
        if self.epoll is not None:
            self.epoll.close()
