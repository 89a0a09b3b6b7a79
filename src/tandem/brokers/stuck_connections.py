"""Cutting a database connection that another thread is blocked on.

A store call on a connection whose network went silent (packets dropped, no reset: a partition, a
dead load balancer, a firewall that forgot the flow) blocks in a read until TCP gives up — with
the default keepalive settings, hours. Neither libpq nor the MariaDB client has a read deadline
that would end it (PostgreSQL's ``statement_timeout`` runs on the server, which never saw the
query). So the worker's store watch (``tandem.worker.store_watch``) calls the function made here
from another thread: it shuts the connection's socket down, the blocked read returns at once, and
the driver raises its "connection lost" error, which Django reports as a ``DatabaseError`` — the
store error the worker already handles (back off, reconnect, carry on).

Only the socket is shut down (``shutdown(2)`` on a duplicate of its descriptor): the driver still
owns the descriptor and closes it; Django discards the broken connection and opens a new one.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from django.db.backends.base.base import BaseDatabaseWrapper


def cutter(wrapper: BaseDatabaseWrapper) -> Callable[[], bool]:
    """A function that cuts ``wrapper``'s current connection from any thread; it returns whether
    there was a network connection to cut (SQLite has none; nor has a wrapper not connected)."""

    def cut() -> bool:
        raw = wrapper.connection
        if raw is None:
            return False
        fileno = getattr(raw, "fileno", None)  # psycopg 3 and mysqlclient; not sqlite3
        if fileno is None:
            return False
        try:
            descriptor = os.dup(fileno())
        except Exception:  # closed meanwhile, or not a descriptor
            return False
        try:
            sock = socket.socket(fileno=descriptor)
        except OSError:  # not a socket
            os.close(descriptor)
            return False
        with sock:  # closes the duplicate only
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # not connected (any more)
                return False
        return True

    return cut


__all__ = ["cutter"]
