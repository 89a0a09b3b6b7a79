"""SQLite's cross-process wake-up: a datagram to every listening worker, beside the database file.

SQLite has no notifications. So each listening supervisor binds a Unix datagram socket in the
database's *wake directory* — ``<database file>.tandem-wake/``, or, when that path is too long
for a socket address (``sun_path``: 108 bytes on Linux, 104 on macOS),
``/tmp/tandem-wake-<hash of the file's real path>/`` — and a process that commits new work
(``DatabaseBroker.notify``, called by every enqueue) sends ``"<backend alias>:<queue>,…"`` to
every socket there once the transaction has committed. The listener's thread blocks in
``recv()``: nothing polls.

A datagram can be lost (a full receive buffer, a socket bound a moment after the sender listed
the directory), so the listener still reads ``PRAGMA data_version`` — every
``SQLiteListener.fallback_interval`` seconds instead of every ``watch_interval`` — and the
supervisor's poll stays the last resort. Where no socket can be bound (an in-memory database, a
directory the worker cannot write to, no ``AF_UNIX``), the listener is the commit watcher alone,
as before; that is logged once.

Sending costs one ``stat()`` of the directory and one ``sendto()`` per listening worker: the
listing is cached until the directory's mtime changes. A socket whose worker is gone refuses the
datagram (``ECONNREFUSED``) and is removed; a listener also sweeps such leftovers when it starts
and removes its own socket (and the directory, once empty) when it stops. Listeners in this
interpreter get the message by a direct call instead of a datagram.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import logging
import os
import secrets
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("tandem.worker")

WAKE_SUFFIX = ".tandem-wake"
#: The longest socket path used, in bytes: below macOS's 104-byte ``sun_path`` with its NUL.
MAX_SOCKET_PATH = 100
#: Room kept for a socket's name inside the directory: ``/<pid>-<8 hex>.sock``.
SOCKET_NAME_BYTES = 26
#: A listing younger than this (against the directory's mtime) is not trusted: a change within
#: the file system's timestamp granularity may leave the mtime as it was.
RACY_NS = 1_000_000_000

_lock = threading.Lock()
_directories: dict[str, str | None] = {}  # database NAME -> its wake directory
_senders: dict[str, _Sender] = {}  # wake directory -> its sender
_own: dict[str, SQLiteListener] = {}  # socket path -> the listener in this interpreter
_logged: set[str] = set()


def _log_once(key: str, message: str, *args: object) -> None:
    if key not in _logged:
        _logged.add(key)
        logger.info(message, *args)


def database_file(name: str) -> str | None:
    """The file of the SQLite database ``NAME``; None for an in-memory one."""
    if ":memory:" in name or "mode=memory" in name or not name:
        return None
    if name.startswith("file:"):  # a URI filename (OPTIONS["uri"])
        name = name[len("file:") :].partition("?")[0]
    return name


def wake_directory(name: str) -> str | None:
    """The wake directory of the SQLite database ``NAME`` (None: in-memory, or no ``AF_UNIX``)."""
    try:
        return _directories[name]
    except KeyError:
        pass
    directory: str | None = None
    path = database_file(name)
    if path is not None and hasattr(socket, "AF_UNIX"):
        real = os.path.realpath(path)
        directory = real + WAKE_SUFFIX
        if len(os.fsencode(directory)) + SOCKET_NAME_BYTES > MAX_SOCKET_PATH:
            # /tmp, not $TMPDIR: every process must find the same directory, and the web
            # server's environment need not match the worker's.
            digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:16]
            base = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
            directory = os.path.join(base, f"tandem-wake-{digest}")
    _directories[name] = directory
    return directory


class _Sender:
    """Sends to the sockets of one wake directory; the listing is cached on the mtime."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.stamp: tuple[int, int] | None = None  # (inode, mtime) of the cached listing
        self.targets: list[str] = []
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None

    def send(self, payload: bytes) -> None:
        try:
            st = os.stat(self.directory)
        except OSError:
            return  # nobody listens (or may be reached)
        with self.lock:
            stamp = (st.st_ino, st.st_mtime_ns)
            if stamp != self.stamp:
                try:
                    names = os.listdir(self.directory)
                except OSError:
                    return
                self.targets = [
                    os.path.join(self.directory, n) for n in names if n.endswith(".sock")
                ]
                quiet = time.time_ns() - st.st_mtime_ns > RACY_NS
                self.stamp = stamp if quiet else None
            targets = self.targets
            if self.sock is None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self.sock.setblocking(False)
            sock = self.sock
        pid = os.getpid()
        for target in targets:
            own = _own.get(target)
            if own is not None and own.pid == pid:  # (not in a forked child: datagram)
                own.deliver(payload)
                continue
            try:
                sock.sendto(payload, target)
            except OSError as exc:
                if exc.errno == errno.ECONNREFUSED:  # its worker is gone
                    _remove(target)
                    self._forget(target)
                elif exc.errno == errno.ENOENT:
                    self._forget(target)
                # EAGAIN/ENOBUFS (a full buffer: that worker is awake anyway), EACCES: skip it

    def _forget(self, target: str) -> None:
        with self.lock:
            if target in self.targets:
                self.targets = [t for t in self.targets if t != target]

    def close(self) -> None:
        with self.lock:
            sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()


@atexit.register
def _close_senders() -> None:
    """Close the sending sockets at exit (they live as long as the process; without this,
    finalization closes them with a ``ResourceWarning``)."""
    with _lock:
        senders = list(_senders.values())
    for sender in senders:
        sender.close()


def send(name: str, payload: str) -> None:
    """Tell every worker listening on the SQLite database ``NAME`` (after a commit)."""
    directory = wake_directory(name)
    if directory is None:
        return
    sender = _senders.get(directory)
    if sender is None:
        with _lock:
            sender = _senders.setdefault(directory, _Sender(directory))
    sender.send(payload.encode())


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def sweep(directory: str) -> int:
    """Remove the sockets in ``directory`` whose worker is gone; the number removed."""
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        path = os.path.join(directory, name)
        if not name.endswith(".sock") or path in _own:
            continue
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            _remove(path)
            removed += 1
        except OSError:
            pass
        finally:
            probe.close()
    return removed


def _modes(database: str) -> tuple[int, int]:
    """(directory mode, socket mode): the owner's, plus the group's and others' where they may
    write the database file too (they enqueue, so they send)."""
    try:
        mode = os.stat(database).st_mode
    except OSError:
        mode = 0
    directory, sock = 0o700, 0o600
    if mode & stat.S_IWGRP:
        directory, sock = directory | 0o070, sock | 0o060
    if mode & stat.S_IWOTH:
        directory, sock = directory | 0o007, sock | 0o006
    return directory, sock


def bind(name: str) -> tuple[socket.socket, str] | None:
    """A datagram socket bound in the wake directory of ``NAME``; None where that cannot be."""
    directory = wake_directory(name)
    path = database_file(name)
    if directory is None or path is None:
        return None
    dir_mode, sock_mode = _modes(path)
    for attempt in range(3):
        address = os.path.join(directory, f"{os.getpid()}-{secrets.token_hex(4)}.sock")
        try:
            try:
                os.mkdir(directory, 0o700)
                os.chmod(directory, dir_mode)
            except FileExistsError:
                if not os.path.isdir(directory):
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", directory) from None
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.bind(address)
                os.chmod(address, sock_mode)
            except BaseException:
                sock.close()
                raise
        except FileNotFoundError:
            if attempt < 2:
                continue  # the directory was removed in between (its last listener stopped)
            raise
        except OSError as exc:
            _log_once(
                directory,
                "cannot listen for wake-ups in %s (%s); watching the SQLite file for commits",
                directory,
                exc,
            )
            return None
        sweep(directory)
        return sock, address
    return None


class SQLiteListener:
    """Cross-process wake-up on SQLite: a datagram socket, and the commit watcher as a fallback.

    The thread blocks in ``recv()`` on its socket (``bind()``); between datagrams, every
    ``fallback_interval`` seconds, it reads ``PRAGMA data_version`` on a private read-only
    connection — that changes whenever another connection commits, and reading it touches only
    shared memory — and wakes every pool when it changed. Without a socket it reads it every
    ``watch_interval`` seconds. ``wakes`` counts the datagrams (and direct calls) heard.

    With a socket, a change is not acted on when a datagram was heard since the last reading:
    the datagrams arrive, and the change is then most likely this worker's own commits (its
    claims and settles change the version too), which woke every pool for an empty claim about
    once per task of a paced stream. A datagram lost in such an interval waits for the pool's
    poll (``poll_interval``) instead of the next reading.
    """

    watch_interval = 0.005
    fallback_interval = 0.05

    def __init__(self, name: str, backend_alias: str, on_wake: Callable[[list[str]], None]):
        self.name = name
        self.backend_alias = backend_alias
        self.on_wake = on_wake
        self.wakes = 0
        self.address: str | None = None
        self.pid = os.getpid()
        self.ready = threading.Event()  # set once it listens (socket bound, version read)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tandem-sqlite-wake", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.address is not None:
            poke = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                poke.sendto(b"", self.address)  # out of its recv()
            except OSError:
                pass
            finally:
                poke.close()
        self._thread.join(2.0)

    def deliver(self, payload: bytes) -> None:
        alias, _, queues = payload.decode(errors="replace").partition(":")
        if alias == self.backend_alias:
            self.wakes += 1
            self.on_wake([q for q in queues.split(",") if q])

    def _run(self) -> None:
        import sqlite3

        self.pid = os.getpid()
        bound = bind(self.name)
        sock = None
        if bound is not None:
            sock, self.address = bound
            _own[self.address] = self
        conn = None
        path = database_file(self.name)
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            last = conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            conn, last = None, None
            logger.warning("cannot watch %s for commits (%s)", self.name, exc)
        try:
            if sock is None and conn is None:
                return
            self.ready.set()
            # Anything committed before we listened: let the supervisor look once.
            self.on_wake([])
            interval = self.fallback_interval if sock is not None else self.watch_interval
            due = time.monotonic() + interval
            heard = self.wakes
            while not self._stop.is_set():
                wait = max(0.0, due - time.monotonic()) if conn is not None else None
                if sock is None:
                    if self._stop.wait(wait):
                        return
                else:
                    sock.settimeout(wait)
                    try:
                        data = sock.recv(4096)
                    except (TimeoutError, BlockingIOError):  # (a timeout of 0 is non-blocking)
                        pass
                    except OSError as exc:
                        logger.warning("wake-up socket failed (%s); watching for commits", exc)
                        sock.close()
                        _own.pop(self.address or "", None)
                        _remove(self.address or "")
                        sock, interval = None, self.watch_interval
                    else:
                        if data and not self._stop.is_set():
                            self.deliver(data)
                if conn is not None and time.monotonic() >= due:
                    try:
                        version = conn.execute("PRAGMA data_version").fetchone()[0]
                    except sqlite3.Error:
                        version = last
                    if version != last and (sock is None or self.wakes == heard):
                        self.on_wake([])
                    last, heard = version, self.wakes
                    due = time.monotonic() + interval
        finally:
            if conn is not None:
                conn.close()
            if sock is not None and self.address is not None:
                _own.pop(self.address, None)
                sock.close()
                _remove(self.address)
                with contextlib.suppress(OSError):  # its last listener tidies up
                    os.rmdir(os.path.dirname(self.address))


__all__ = ["SQLiteListener", "bind", "send", "sweep", "wake_directory"]
