"""The web side of ``tandem serve`` in a subinterpreter, and the wake-ups it passes on.

``interpreter_main()`` runs one HTTP server (``tandem.serve.http``) inside a web interpreter, on
its own duplicate of the listening socket; ``forward_wakeups()`` and ``relay_wakeups()`` carry its
enqueue wake-ups to the supervisor in the main interpreter. Nothing here imports Django at module
level: the interpreter sets Django up first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from tandem.serve.http import HttpOptions, HTTPServer, listen, quiet_waitress, serve

__all__ = ["forward_wakeups", "interpreter_main", "listen", "relay_wakeups"]


def forward_wakeups(aliases: Sequence[str], wake_fd: int) -> None:
    """In a web interpreter: pass this interpreter's enqueue wake-ups on to the main one.

    ``tandem.wakeup`` is per interpreter, and the supervisor lives in the main interpreter, so
    every after-commit wake-up is written to a pipe (``alias<TAB>queue``, one line) that
    ``relay_wakeups()`` reads there. The pipe is non-blocking: a full pipe drops the hint, and
    the supervisor's poll (or the store's own wake-up) still finds the task.
    """
    from tandem import wakeup

    def forwarder(alias: str) -> wakeup.Listener:
        def forward(queue: str) -> None:
            with contextlib.suppress(OSError):
                os.write(wake_fd, f"{alias}\t{queue}\n".encode())

        return forward

    for alias in aliases:
        wakeup.subscribe(alias, forwarder(alias))


def relay_wakeups(read_fd: int) -> None:
    """In the main interpreter: turn lines from ``forward_wakeups()`` into ``wakeup.notify()``.

    Returns when every write end of the pipe is closed.
    """
    from tandem import wakeup

    pending = b""
    while chunk := os.read(read_fd, 4096):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            alias, _, queue = line.decode(errors="replace").partition("\t")
            wakeup.notify(alias, queue)


def interpreter_main(
    listen_fd: int,
    stop_fd: int,
    wake_fd: int,
    options: HttpOptions,
    log_level: int,
    sys_path: Sequence[str],
    environ: Mapping[str, str],
    databases: Mapping[str, Any],
) -> int:
    """A web worker inside a subinterpreter: set Django up, serve until stopped and drained.

    ``listen_fd`` is this worker's own duplicate of the listening socket: it is closed here,
    whatever happens. Returns the number of connections still open at the end (0). No signals and
    no daemon threads here; the main interpreter owns both and says "stop" through ``stop_fd``.
    """
    with socket.socket(fileno=listen_fd) as sock:
        from tandem.worker.pools.runner import setup

        setup(sys_path, environ, databases)
        _log_like_the_main_interpreter(log_level)
        quiet_waitress()
        from django.conf import settings

        from tandem.serve import application

        app = application.build(options, ops=False)
        forward_wakeups(list(getattr(settings, "TASKS", {})), wake_fd)
        server = HTTPServer(sock, app, options, daemon=False)
        try:
            serve(server, stop_fd)  # closes this worker's copy of the listening socket
            server.drain()  # the main interpreter gives up on us after its grace period
        finally:
            # Its threads must be gone before the interpreter can close; none is serving by now.
            server.finish(timeout=60.0)
        return len(server.active_channels)


def _log_like_the_main_interpreter(level: int) -> None:
    """Logging is per interpreter: unless the project's LOGGING configured tandem's loggers here,
    write them to stderr the way ``manage.py tandem`` does in the main interpreter."""
    tandem_logger = logging.getLogger("tandem")
    if tandem_logger.handlers or logging.getLogger().handlers:
        return
    from tandem.logging import PlainFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PlainFormatter())
    tandem_logger.addHandler(handler)
    tandem_logger.setLevel(level)
