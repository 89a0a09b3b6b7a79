"""Private store servers for the restart tests: one PostgreSQL, MariaDB or Redis instance per test,
on a free loopback port, with its data in a temporary directory.

The shared services on 127.0.0.1:5432/3306/6379 serve other test runs at the same time, so a test
that stops and starts its store never touches them: it starts its own server and restarts that one.
A missing server binary fails the test when ``CI`` is set and skips it otherwise.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port

IN_CI = bool(os.environ.get("CI"))


def missing(what: str) -> None:
    """A server binary is not installed: fail in CI, skip elsewhere."""
    message = f"{what} is not installed; the restart tests start a private server with it"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def wait_for_port(port: int, what: str, timeout: float = 60.0, up: bool = True) -> None:
    """Wait until 127.0.0.1:``port`` accepts connections (``up``) or refuses them."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            answering = True
        except OSError:
            answering = False
        if answering == up:
            return
        if time.monotonic() > deadline:
            state = "answer" if up else "stop answering"
            raise AssertionError(f"{what} did not {state} on port {port} within {timeout:g}s")
        time.sleep(0.05)


class PrivateServer:
    """A store server of this test's own: ``start()``, ``stop()``, ``close()`` (stop and delete)."""

    name = "server"

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix=f"tandem-scale-{self.name}-"))
        self.log = self.directory / "server.log"
        self.starts = 0

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        self._start()
        self.starts += 1
        wait_for_port(self.port, self.name)

    def stop(self) -> None:
        self._stop()
        wait_for_port(self.port, self.name, up=False)

    def close(self) -> None:
        try:
            if self.running:
                self._stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def settings_env(self) -> dict[str, str]:
        """What a Django process of the test suite needs to use this server."""
        raise NotImplementedError


def _run(argv: list[str], what: str, timeout: float = 120.0, **kwargs: Any) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if out.returncode:
        raise AssertionError(f"{what} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


class PrivatePostgres(PrivateServer):
    """``initdb`` + ``pg_ctl``, as the ``postgres`` user when run as root (PostgreSQL refuses
    root); trust authentication, user ``postgres``, fsync off (a test server)."""

    name = "postgres"

    def __init__(self, database: str = "tandem_scale") -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            missing("PostgreSQL (/usr/lib/postgresql/*/bin/pg_ctl)")
        self.bin = Path(found[-1]).parent
        super().__init__()
        self.database = database
        self.data = self.directory / "data"
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        _run(
            [
                *self.as_owner,
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            "initdb",
        )
        self.start()
        self.execute(f'CREATE DATABASE "{database}"')

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def _pg_ctl(self, *args: str) -> None:
        _run([*self.as_owner, str(self.bin / "pg_ctl"), "-D", str(self.data), *args], "pg_ctl")

    def _start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=100"
        )
        self._pg_ctl("-o", options, "-l", str(self.log), "-w", "-t", "60", "start")

    def _stop(self) -> None:
        # Fast: roll back open transactions and close every connection, as a restart does.
        self._pg_ctl("-m", "fast", "-w", "-t", "60", "stop")

    def crash(self) -> None:
        """``pg_ctl -m immediate``: every server process quits at once, no shutdown checkpoint
        (the next start replays the WAL), as after a crash."""
        self._pg_ctl("-m", "immediate", "-w", "-t", "60", "stop")
        wait_for_port(self.port, self.name, up=False)

    def execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql.encode())

    def settings_env(self) -> dict[str, str]:
        return {"TANDEM_TEST_DB": "postgres", "TANDEM_PG_PORT": str(self.port)}


class PrivateMariaDB(PrivateServer):
    """``mariadb-install-db`` + ``mariadbd --no-defaults`` (the shared server's config is not
    read), grant tables skipped (any user, no password), binary log off, lazy flushing."""

    name = "mariadb"

    def __init__(self, database: str = "tandem_scale") -> None:
        self.server_bin = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin")
        install = shutil.which("mariadb-install-db")
        if not self.server_bin or not install:
            missing("MariaDB (mariadbd and mariadb-install-db)")
        super().__init__()
        self.data = self.directory / "data"
        self.socket = self.directory / "mariadb.sock"
        self.process: subprocess.Popen[bytes] | None = None
        _run(
            [
                str(install),
                "--no-defaults",
                f"--datadir={self.data}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            "mariadb-install-db",
        )
        self.start()
        self.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        self.database = database

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _start(self) -> None:
        assert self.server_bin is not None
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.server_bin,
                    "--no-defaults",
                    f"--datadir={self.data}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    f"--socket={self.socket}",
                    f"--pid-file={self.directory / 'mariadb.pid'}",
                    "--user=root",
                    "--skip-grant-tables",
                    "--skip-log-bin",
                    "--innodb-buffer-pool-size=64M",
                    "--innodb-flush-log-at-trx-commit=2",
                    "--max-connections=200",
                ],
                stdout=log,
                stderr=log,
            )

    def _stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)  # a normal shutdown
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"mariadbd did not stop within 60s\n{self.log_tail()}") from None

    def crash(self) -> None:
        """SIGKILL: mariadbd dies without a shutdown (InnoDB recovers at the next start)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        wait_for_port(self.port, self.name, up=False)

    def execute(self, sql: str) -> None:
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", port=self.port, user="root")
        try:
            conn.cursor().execute(sql)
        finally:
            conn.close()

    def settings_env(self) -> dict[str, str]:
        return {"TANDEM_TEST_DB": "mariadb", "TANDEM_MARIADB_PORT": str(self.port)}


class PrivateRedis(PrivateServer):
    """``redis-server`` as a child process, by default with the append-only file on and fsynced
    on every write: a restart keeps every task, as a Redis that stores tasks must.

    ``append_only=False``: no persistence at all (``--appendonly no``, no snapshots), the control
    of the persistence tests. ``tls``: the server's TLS files (``cert``, ``key``, ``ca``); the
    server then listens with TLS only, requires a client certificate signed by ``ca``, and
    ``url`` is a ``rediss://`` URL.
    """

    name = "redis"

    def __init__(self, *, append_only: bool = True, tls: dict[str, str] | None = None) -> None:
        self.server_bin = shutil.which("redis-server")
        if not self.server_bin:
            missing("Redis (redis-server)")
        super().__init__()
        self.append_only = append_only
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        super().start()
        if not self.tls:
            self._wait_loaded()

    def _wait_loaded(self, timeout: float = 60.0) -> None:
        """Until the server has loaded its append-only file: it takes connections before that
        and answers every command with ``LOADING`` meanwhile (an enqueue then fails, as it
        should; a test's own client must wait for the store to be back)."""
        deadline = time.monotonic() + timeout
        reply = b""
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                    reply = sock.recv(256)
            except OSError:
                reply = b""
            if reply.startswith(b"+PONG"):
                return
            time.sleep(0.05)
        raise AssertionError(f"redis did not load its data within {timeout:g}s: {reply!r}")

    def crash(self) -> None:
        """SIGKILL: the server dies without a shutdown (what a crash or the OOM killer does)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(60)
        wait_for_port(self.port, self.name, up=False)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _start(self) -> None:
        assert self.server_bin is not None
        argv = [self.server_bin, "--bind", "127.0.0.1", "--dir", str(self.directory)]
        if self.tls:
            argv += [
                *("--port", "0", "--tls-port", str(self.port)),
                *("--tls-cert-file", self.tls["cert"], "--tls-key-file", self.tls["key"]),
                *("--tls-ca-cert-file", self.tls["ca"], "--tls-auth-clients", "yes"),
            ]
        else:
            argv += ["--port", str(self.port)]
        argv += ["--save", "", "--daemonize", "no"]
        if self.append_only:
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--appendonly", "no"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log)

    def _stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)  # a normal shutdown: the AOF is flushed
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"redis did not stop within 60s\n{self.log_tail()}") from None

    def settings_env(self) -> dict[str, str]:
        return {"TANDEM_REDIS_URL": self.url}
