"""In-process wake-up: an enqueue tells this process's supervisors about new work at once.

The backend calls ``notify()`` after the enqueuing transaction commits; a supervisor registers a
callback with ``subscribe()``. No thread, no polling: a direct call.

A listener returns True when it woke a supervisor that was asleep, waiting for work. The
enqueuing thread then lets go of the GIL for a moment (``time.sleep(0)``): the woken supervisor
needs it to start its round, and a view that goes on running Python after its enqueue (building
its response) would otherwise hold it until its next I/O — measured on a 2-core machine, a woken
thread waited ~330 µs (p50) behind 300 µs of Python after the wake-up, ~24 µs after a yield. The
view waits instead until the round's first store call lets the GIL go (~25 µs). A supervisor that
is busy, or no supervisor in this process, costs the enqueue nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Called with the queue's name; True when it woke a sleeping supervisor.
Listener = Callable[[str], bool | None]

_lock = threading.Lock()
_listeners: dict[str, list[Listener]] = {}


def subscribe(backend_alias: str, listener: Listener) -> None:
    with _lock:
        _listeners.setdefault(backend_alias, []).append(listener)


def unsubscribe(backend_alias: str, listener: Listener) -> None:
    with _lock:
        listeners = _listeners.get(backend_alias, [])
        if listener in listeners:
            listeners.remove(listener)


def notify(backend_alias: str, queue_name: str) -> None:
    """Tell every supervisor of ``backend_alias`` in this process that ``queue_name`` has work;
    yield the GIL to one that was asleep."""
    woke = False
    for listener in list(_listeners.get(backend_alias, ())):
        woke = bool(listener(queue_name)) or woke
    if woke:
        time.sleep(0)
