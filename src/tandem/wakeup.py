"""In-process wake-up: an enqueue tells this process's supervisors about new work at once.

The backend calls ``notify()`` after the enqueuing transaction commits; a supervisor registers a
callback with ``subscribe()``. No thread, no polling: a direct call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Listener = Callable[[str], None]

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
    """Tell every supervisor of ``backend_alias`` in this process that ``queue_name`` has work."""
    for listener in list(_listeners.get(backend_alias, ())):
        listener(queue_name)
