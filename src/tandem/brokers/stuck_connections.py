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
import weakref
from collections.abc import Callable
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.dispatch import receiver


def cutter(wrapper: BaseDatabaseWrapper) -> Callable[[], bool]:
    """A function that cuts ``wrapper``'s current connection from any thread; it returns whether
    there was a network connection to cut (SQLite has none; nor has a wrapper not connected).

    Call it on the thread that owns the connection: it notes the connection's socket (mysqlclient
    refuses ``fileno()`` to another thread while a call is running); a connection opened later,
    during the call, was noted by that thread when it connected (``connection_created``). A
    socket is recognised by its inode, never by its number alone (a number closed meanwhile may
    be another socket's now).
    """
    known = _socket_of(wrapper.connection)

    def cut() -> bool:
        current = _socket_of(wrapper.connection)
        opened = _opened.get(wrapper, (-1, -1))  # a connection opened during the call
        for descriptor, inode in (current, known, opened):
            if descriptor >= 0 and _shut_down(descriptor, inode):
                return True
        return False

    return cut


#: The socket of each wrapper's latest connection, noted by the thread that opened it (Django's
#: ``connection_created`` is sent there, right after the connect and before any query).
_opened: weakref.WeakKeyDictionary[BaseDatabaseWrapper, tuple[int, int]] = (
    weakref.WeakKeyDictionary()
)


@receiver(connection_created, dispatch_uid="tandem.brokers.stuck_connections")
def _note_socket(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    _opened[connection] = _socket_of(connection.connection)


def _socket_of(raw: Any) -> tuple[int, int]:
    """(descriptor, inode) of a raw connection's socket; (-1, -1) when there is none to see."""
    try:
        descriptor = int(raw.fileno())  # psycopg 3 and mysqlclient; not sqlite3
        return descriptor, os.fstat(descriptor).st_ino
    except Exception:  # None, no fileno, closed, or in use on another thread (mysqlclient)
        return -1, -1


def _shut_down(descriptor: int, inode: int) -> bool:
    try:
        duplicate = os.dup(descriptor)
    except OSError:  # closed meanwhile
        return False
    try:
        if os.fstat(duplicate).st_ino != inode:
            return False  # the number is another file's now
        with socket.socket(fileno=duplicate) as sock:  # closes the duplicate (not the original)
            duplicate = -1
            sock.shutdown(socket.SHUT_RDWR)
        return True
    except OSError:  # not a socket, or not connected (any more)
        return False
    finally:
        if duplicate >= 0:
            os.close(duplicate)


__all__ = ["cutter"]
