"""SQLite's cross-process wake-up (``tandem.brokers.sqlite_wake``): a datagram socket per listening
worker beside the database file, the commit watcher only as its (slow) fallback."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tandem.brokers import sqlite_wake
from tandem.brokers.base import SUCCESSFUL
from tandem.brokers.sqlite_wake import SQLiteListener
from tandem.models import TaskRecord
from tests.support.doubles import wait_for
from tests.support.harness import Harness
from tests.worker.test_supervisor import enqueue_in_another_process

ROOT = Path(__file__).resolve().parents[2]
NEVER = 3600.0  # a poll or a commit-watcher check that cannot come during a test


class Calls(list[list[str]]):
    def __call__(self, queues: list[str]) -> None:
        self.append(queues)


def make_database(directory: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "db.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
    conn.close()
    return str(path)


def send_from_another_process(name: str, payload: str) -> None:
    code = f"from tandem.brokers.sqlite_wake import send; send({name!r}, {payload!r})"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a path short enough for the wake directory to sit beside the file."""
    directory = Path(tempfile.mkdtemp(prefix="tw-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def listening(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[SQLiteListener]]:
    """Listeners started by the test, stopped at its end; the commit watcher never checks."""
    monkeypatch.setattr(SQLiteListener, "fallback_interval", NEVER)
    monkeypatch.setattr(SQLiteListener, "watch_interval", NEVER)
    started: list[SQLiteListener] = []
    yield started
    for listener in started:
        listener.stop()


def start(started: list[SQLiteListener], name: str, alias: str = "default") -> tuple:
    calls = Calls()
    listener = SQLiteListener(name, alias, calls)
    listener.start()
    started.append(listener)
    assert listener.ready.wait(10), "the listener never got ready"
    wait_for(lambda: calls == [[]], "the listener's first look")  # whatever came before it
    return listener, calls


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(settings.DB_KIND != "sqlite", reason="the SQLite wake-up socket")
def test_an_enqueue_in_another_process_wakes_the_worker_through_its_socket(
    harness: Harness, tandem_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An hour-long poll and no commit-watcher check: only the datagram can get it claimed.
    tandem_settings(poll_interval=NEVER)
    monkeypatch.setattr(SQLiteListener, "fallback_interval", NEVER)
    supervisor = harness.supervisor(workers=1, listen=True)
    thread = harness.run_in_background(supervisor)
    wait_for(lambda: supervisor.pools[0].next_poll is not None, "the first (empty) claim")
    listener = supervisor._listener
    assert isinstance(listener, SQLiteListener)
    assert listener.ready.wait(10)
    address = listener.address
    assert address is not None and os.path.exists(address)

    task_id = enqueue_in_another_process()

    wait_for(
        lambda: TaskRecord.objects.filter(id=task_id, status=SUCCESSFUL).exists(),
        "the task enqueued elsewhere to succeed",
    )
    assert listener.wakes >= 1
    supervisor.request_stop()
    thread.join(10)
    assert not thread.is_alive()
    assert not os.path.exists(address)  # its socket is removed when it stops


def test_a_datagram_carries_the_queues_of_its_backend_alias_only(
    short_tmp: Path, listening: list[SQLiteListener]
) -> None:
    name = make_database(short_tmp / "db")
    listener, calls = start(listening, name, alias="default")
    assert os.path.dirname(listener.address) == os.path.realpath(name) + ".tandem-wake"

    send_from_another_process(name, "other:emails")  # another backend on the same file
    send_from_another_process(name, "default:emails,reports")

    wait_for(lambda: len(calls) == 2, "the datagram of its alias")
    assert calls == [[], ["emails", "reports"]]
    assert listener.wakes == 1


def test_sockets_of_workers_that_are_gone_are_removed(
    tmp_path: Path, listening: list[SQLiteListener]
) -> None:
    name = make_database(tmp_path / "db")
    directory = sqlite_wake.wake_directory(name)
    assert directory is not None
    os.mkdir(directory)

    def leftover(label: str) -> str:  # a socket whose process died without removing it
        path = os.path.join(directory, f"{label}.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.close()
        return path

    swept = leftover("1-dead")
    listener, calls = start(listening, name)
    assert not os.path.exists(swept)  # a starting listener sweeps them

    refused = leftover("2-dead")
    send_from_another_process(name, "default:q")  # a sender removes the one that refuses it
    wait_for(lambda: calls == [[], ["q"]], "the live worker's datagram")
    assert not os.path.exists(refused)
    assert sorted(os.listdir(directory)) == [os.path.basename(listener.address)]

    listener.stop()
    assert not os.path.exists(directory)  # its last listener removes the directory


def test_a_path_too_long_for_a_socket_address_falls_back_to_a_directory_under_tmp(
    tmp_path: Path, listening: list[SQLiteListener]
) -> None:
    name = make_database(tmp_path / ("x" * 90))
    directory = sqlite_wake.wake_directory(name)
    assert directory is not None and not directory.startswith(str(tmp_path))
    assert os.path.basename(directory).startswith("tandem-wake-")

    listener, calls = start(listening, name)
    assert listener.address is not None and listener.address.startswith(directory)
    assert len(os.fsencode(listener.address)) <= sqlite_wake.MAX_SOCKET_PATH
    send_from_another_process(name, "default:q")
    wait_for(lambda: calls == [[], ["q"]], "the datagram through the short path")


def test_a_directory_it_cannot_write_to_leaves_the_commit_watcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    name = make_database(tmp_path / "ro")

    def read_only(path: object, mode: int = 0o777) -> None:  # chmod does not bind root
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(sqlite_wake.os, "mkdir", read_only)
    monkeypatch.setattr(SQLiteListener, "watch_interval", 0.005)
    caplog.set_level(logging.INFO, "tandem.worker")
    calls = Calls()
    listener = SQLiteListener(name, "default", calls)
    listener.start()
    try:
        assert listener.ready.wait(10)
        assert listener.address is None  # no socket
        wait_for(lambda: calls == [[]], "the first look")
        sqlite_wake.send(name, "default:q")  # nobody to send to: no error
        with sqlite3.connect(name) as conn:  # a commit: the watcher still sees it
            conn.execute("INSERT INTO t VALUES (1)")
        conn.close()
        wait_for(lambda: len(calls) == 2, "the commit watcher's wake-up")
        assert calls == [[], []]
    finally:
        listener.stop()
    assert "cannot listen for wake-ups" in caplog.text
    assert not os.path.exists(sqlite_wake.wake_directory(name) or "")


def test_an_in_memory_database_has_no_wake_directory() -> None:
    assert sqlite_wake.wake_directory(":memory:") is None
    assert sqlite_wake.wake_directory("file:memdb1?mode=memory&cache=shared") is None
    sqlite_wake.send(":memory:", "default:q")  # nothing to do, no error


def test_the_sending_sockets_are_closed_at_exit(tmp_path: Path) -> None:
    """A process keeps one sending socket per wake directory; it is closed at exit, not left to
    finalization (a ``ResourceWarning`` at the end of every test run)."""
    database = make_database(tmp_path / "exit")
    directory = sqlite_wake.wake_directory(database)
    assert directory is not None
    os.makedirs(directory, exist_ok=True)
    sqlite_wake.send(database, "default:q")
    sender = sqlite_wake._senders[directory]
    sock = sender.sock
    assert sock is not None and sock.fileno() >= 0

    sqlite_wake._close_senders()  # (registered with atexit)
    assert sender.sock is None and sock.fileno() == -1
    sqlite_wake.send(database, "default:q")  # a send after it opens a new one
    assert sender.sock is not None
    sender.close()


def commit_elsewhere(name: str) -> None:
    """A commit on another connection: ``PRAGMA data_version`` changes for the listener's."""
    with sqlite3.connect(name) as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()


def test_a_commit_heard_of_by_no_datagram_wakes_every_pool_at_the_next_reading(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback for a lost datagram: a commit, and no datagram since the last reading."""
    monkeypatch.setattr(SQLiteListener, "fallback_interval", 0.2)
    name = make_database(short_tmp / "db")
    calls = Calls()
    listener = SQLiteListener(name, "default", calls)
    listener.start()
    try:
        assert listener.ready.wait(10)
        assert listener.address is not None  # the socket is there: this is its fallback
        commit_elsewhere(name)
        wait_for(lambda: len(calls) == 2, "the commit watcher's wake-up")
        assert calls == [[], []]
        assert listener.wakes == 0
    finally:
        listener.stop()


def test_a_commit_in_an_interval_where_a_datagram_was_heard_wakes_nothing_more(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The datagrams arrive, so the change is most likely the worker's own commits (claims and
    settles): the commit watcher does not wake every pool for an empty claim."""
    monkeypatch.setattr(SQLiteListener, "fallback_interval", 2.0)
    name = make_database(short_tmp / "db")
    calls = Calls()
    listener = SQLiteListener(name, "default", calls)
    listener.start()
    try:
        assert listener.ready.wait(10)
        assert listener.address is not None
        # Within the 2 s before its first reading: a datagram, and a commit.
        sqlite_wake.send(name, "default:emails")  # (in this process: a direct call)
        commit_elsewhere(name)
        wait_for(lambda: len(calls) == 2, "the datagram")
        time.sleep(2.5)  # past the reading
        assert calls == [[], ["emails"]]
        commit_elsewhere(name)  # no datagram in this interval: the fallback acts
        wait_for(lambda: len(calls) == 3, "the commit watcher's wake-up", timeout=10)
        assert calls[2] == []
    finally:
        listener.stop()
