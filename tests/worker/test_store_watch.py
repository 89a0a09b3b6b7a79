"""The store watch (``tandem.worker.store_watch``) and the connection cutter it uses
(``tandem.brokers.stuck_connections``): a store call blocked on a silent connection is cut after
a lease, once, and only the connection it was using.

Real sockets on loopback: a listener that accepts and never answers is a silent network. The
processes, proxy and stores of the real thing are in tests/faults (the silent-outage scenario).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import pytest
from django.db.backends.signals import connection_created

from tandem.brokers import stuck_connections
from tandem.brokers.memory import MemoryBroker
from tandem.worker.store_watch import StoreWatch


class Wrapper:
    """What the cutter reads of a Django connection wrapper: ``connection``, the raw one."""

    def __init__(self, raw: Any) -> None:
        self.connection = raw


class BusyElsewhere:
    """A raw connection that, like mysqlclient's, refuses ``fileno()`` to another thread while a
    call runs on it (``busy``)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.busy = False

    def fileno(self) -> int:
        if self.busy:
            raise RuntimeError("This connection is already in use from another thread.")
        return self.sock.fileno()


@pytest.fixture
def silent() -> Iterator[Callable[[], socket.socket]]:
    """Connections to a listener that accepts and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    opened: list[socket.socket] = [listener]

    def connect() -> socket.socket:
        sock = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        opened.extend([sock, accepted])
        return sock

    yield connect
    for sock in opened:
        sock.close()


def blocked_read(sock: socket.socket) -> tuple[threading.Thread, list[bytes]]:
    """A thread blocked in ``recv`` on ``sock`` (it never ends unless the socket is cut)."""
    got: list[bytes] = []
    thread = threading.Thread(target=lambda: got.append(sock.recv(10)), daemon=True)
    thread.start()
    return thread, got


def test_the_cutter_ends_a_read_blocked_on_a_silent_connection(silent) -> None:
    sock = silent()
    cut = stuck_connections.cutter(Wrapper(sock))  # type: ignore[arg-type]
    thread, got = blocked_read(sock)

    assert cut() is True
    thread.join(10)
    assert not thread.is_alive()
    assert got == [b""]  # the read ended: the driver reports the connection lost


def test_the_cutter_uses_the_socket_it_noted_when_the_driver_refuses_fileno(silent) -> None:
    raw = BusyElsewhere(silent())
    cut = stuck_connections.cutter(Wrapper(raw))  # type: ignore[arg-type]
    raw.busy = True
    thread, got = blocked_read(raw.sock)

    assert cut() is True
    thread.join(10)
    assert got == [b""]


def test_a_connection_opened_during_the_call_is_cut_by_what_its_thread_noted(silent) -> None:
    wrapper = Wrapper(None)
    cut = stuck_connections.cutter(wrapper)  # type: ignore[arg-type]  # not connected yet
    raw = BusyElsewhere(silent())
    wrapper.connection = raw
    connection_created.send(sender=None, connection=wrapper)  # what Django sends on connecting
    raw.busy = True
    thread, got = blocked_read(raw.sock)

    assert cut() is True
    thread.join(10)
    assert got == [b""]


def test_the_cutter_never_cuts_a_socket_that_took_a_closed_ones_number(silent) -> None:
    first = silent()
    raw = BusyElsewhere(first)
    cut = stuck_connections.cutter(Wrapper(raw))  # type: ignore[arg-type]
    number = first.fileno()
    first.close()
    second = silent()
    assert second.fileno() == number  # the lowest free number: the closed one's
    raw.sock, raw.busy = second, True

    assert cut() is False
    second.sendall(b"still open")  # not shut down


def test_nothing_to_cut_without_a_network_connection() -> None:
    assert stuck_connections.cutter(Wrapper(None))() is False  # type: ignore[arg-type]
    assert stuck_connections.cutter(Wrapper(object()))() is False  # type: ignore[arg-type]
    assert MemoryBroker().connection_cutter()() is False


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CuttingBroker(MemoryBroker):
    """The memory twin, with a connection per thread to cut (recorded)."""

    def __init__(self) -> None:
        super().__init__()
        self.cut: list[int] = []
        self.connected = True

    def connection_cutter(self) -> Callable[[], bool]:
        thread = threading.get_ident()

        def cut() -> bool:
            if self.connected:
                self.cut.append(thread)
            return self.connected

        return cut


def test_a_guarded_call_is_cut_once_after_the_limit(caplog: pytest.LogCaptureFixture) -> None:
    broker, clock = CuttingBroker(), Clock()
    watch = StoreWatch(broker, 3.0, worker_id="w1", monotonic=clock)
    caplog.set_level(logging.ERROR, "tandem.worker")
    with watch.guard("the claim loop"):
        clock.now += 2.9
        assert watch.check() == 0
        clock.now += 0.1
        assert watch.check() == 1
        clock.now += 10
        assert watch.check() == 0  # once per call
    assert broker.cut == [threading.get_ident()]
    assert watch.cuts == 1
    assert "a store call (the claim loop) of worker w1 was blocked for 3.0s" in caplog.text

    with watch.guard("lease renewal"):  # a new call starts its own count
        clock.now += 2
        assert watch.check() == 0
    clock.now += 10
    assert watch.check() == 0  # nothing guarded: nothing to cut


def test_a_call_not_connected_yet_is_cut_once_it_is() -> None:
    broker, clock = CuttingBroker(), Clock()
    watch = StoreWatch(broker, 3.0, monotonic=clock)
    broker.connected = False
    with watch.guard("the start"):
        clock.now += 5
        assert watch.check() == 0
        broker.connected = True
        assert watch.check() == 1


def test_the_watch_thread_cuts_a_real_blocked_read(silent) -> None:
    sock = silent()

    class SocketBroker(MemoryBroker):
        def connection_cutter(self) -> Callable[[], bool]:
            return stuck_connections.cutter(Wrapper(sock))  # type: ignore[arg-type]

    watch = StoreWatch(SocketBroker(), 0.2)
    watch.start()
    try:
        with closing(sock), watch.guard("the claim loop"):
            assert sock.recv(10) == b""  # blocks until the watch cuts it
    finally:
        watch.stop()
    assert watch.cuts == 1


def test_the_worker_banners_read_of_paused_queues_is_cut_on_a_silent_connection(silent) -> None:
    """The banner reads the paused queues before the claim loop starts: on a connection gone
    silent that read is cut after a lease too, and the banner goes on without the line (it
    blocked for good, before the signal handlers, and the drain's SIGTERM killed the worker)."""
    from types import SimpleNamespace

    from django.db import OperationalError

    from tandem.cli.startup import paused_queues

    sock = silent()

    class SilentBroker(MemoryBroker):
        def connection_cutter(self) -> Callable[[], bool]:
            return stuck_connections.cutter(Wrapper(sock))  # type: ignore[arg-type]

        def paused_queues(self) -> Any:
            sock.recv(10)  # blocks until the watch cuts the connection
            raise OperationalError("the connection was cut")

    broker = SilentBroker()
    supervisor = SimpleNamespace(broker=broker, store_watch=StoreWatch(broker, 0.2))
    try:
        assert paused_queues(supervisor) == set()  # type: ignore[arg-type]
    finally:
        supervisor.store_watch.stop()
    assert supervisor.store_watch.cuts == 1
