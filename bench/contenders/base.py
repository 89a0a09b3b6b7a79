"""What every contender of ``bench/compare`` is: a :class:`Contender` (how to prepare its store,
enqueue, run its worker, clean up) and the :class:`RunContext` the harness hands it.

Enqueue scripts: a contender's ``enqueue_argv``/``pickup_argv``/``bulk_enqueue_argv`` run a fresh
process. The easy way to write one is a module (importable with ``PYTHONPATH=bench``, e.g.
``contenders.sites.huey_enqueue``) that sets its peer up and calls :func:`enqueue_main` with a
function enqueuing one task with a given ``stamp`` (and optionally one enqueuing n tasks in bulk);
then set ``enqueue_module`` on the contender and the default ``*_argv`` methods run
``python -m <enqueue_module> serial|bulk|paced N [INTERVAL]``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

PROTECTED_DATABASES = frozenset({"postgres", "template0", "template1", "test", "root"})


@dataclass
class RunContext:
    tmp: Path  # a private temp dir for this contender and repetition
    marks: Path  # tmp / "marks.txt" (the harness creates it empty before each phase)
    python: str  # sys.executable of the compare venv
    bench: Path  # /work/main/bench
    repo: Path  # /work/main
    redis_url: str  # "redis://127.0.0.1:6379/9"
    pg_dsn_admin: dict  # host/port/user/dbname="postgres" for CREATE/DROP DATABASE
    rep: int
    slots: int = 2  # worker slots every contender runs with (bench/compare --slots)


class Contender:
    key: str = ""
    label: str = ""
    store: str = ""  # "sqlite", "postgres" or "redis"
    # one line: configuration (concurrency, pool kind, broker); "{slots}" stands for the run's
    # worker slots (``describe``)
    notes: str = ""
    # Module run as ``python -m <enqueue_module> serial|bulk|paced N [INTERVAL]`` (see enqueue_main)
    enqueue_module: str = ""
    has_bulk: bool = False  # the enqueue module supports "bulk"
    has_view_pickup: bool = False  # view_pickup_argv returns a command

    def describe(self, slots: int) -> str:
        """``notes`` for a run with ``slots`` worker slots."""
        return self.notes.replace("{slots}", str(slots))

    def view_pickup_argv(self, ctx: RunContext, n: int, interval: float) -> list[str] | None:
        """A second pickup pass enqueuing from inside the worker's own process (``tandem serve``:
        a view reached over HTTP); None where the contender has no such path."""
        return None

    def prepare(self, ctx: RunContext) -> None:
        """Make a fresh, empty store (the harness has already FLUSHDB'd Redis db 9)."""

    def cleanup(self, ctx: RunContext) -> None:
        """Remove what prepare made (runs in a finally, also after a failure)."""

    def enqueue_argv(self, ctx: RunContext, n: int) -> list[str]:
        return [ctx.python, "-m", self.enqueue_module, "serial", str(n)]

    def bulk_enqueue_argv(self, ctx: RunContext, n: int) -> list[str] | None:
        if not self.has_bulk:
            return None
        return [ctx.python, "-m", self.enqueue_module, "bulk", str(n)]

    def pickup_argv(self, ctx: RunContext, n: int, interval: float) -> list[str]:
        return [ctx.python, "-m", self.enqueue_module, "paced", str(n), str(interval)]

    def worker_argv(self, ctx: RunContext) -> list[str]:
        raise NotImplementedError

    def env(self, ctx: RunContext) -> dict[str, str]:
        """Extra environment for every process of this contender (on top of os.environ)."""
        return {
            "BENCH_MARKS": str(ctx.marks),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ctx.bench), os.environ.get("PYTHONPATH", "")) if p
            ),
            "PYTHONUNBUFFERED": "1",
        }

    def versions(self) -> dict[str, str]:
        return {}

    # -- helpers for subclasses ---------------------------------------------------------------

    def run(self, ctx: RunContext, argv: Sequence[str], timeout: float = 120) -> str:
        """Run a set-up command (e.g. migrate) with this contender's env; raise with its output."""
        env = {**os.environ, **self.env(ctx)}
        proc = subprocess.run(
            list(argv), env=env, cwd=ctx.tmp, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            head = " ".join(argv[:4])
            raise RuntimeError(f"{head}... exited {proc.returncode}: " + " | ".join(tail))
        return proc.stdout

    def pg_name(self, ctx: RunContext) -> str:
        return f"tandem_cmp_{self.key.replace('-', '_')}_{ctx.rep}"


class DjangoSite(Contender):
    """A contender that is a Django project on SQLite (file ``sqlite_file`` in the scratch dir)
    or PostgreSQL (``store``), migrated fresh for every repetition."""

    store: str
    sqlite_file: str

    def prepare(self, ctx: RunContext) -> None:
        if self.store == "postgres":
            pg_recreate(ctx, self.pg_name(ctx))
        else:
            self._remove_sqlite(ctx)
        self.run(ctx, [ctx.python, "-m", "django", "migrate", "--no-input", "-v", "0"])

    def cleanup(self, ctx: RunContext) -> None:
        if self.store == "postgres":
            pg_drop(ctx, self.pg_name(ctx))
        else:
            self._remove_sqlite(ctx)

    def _remove_sqlite(self, ctx: RunContext) -> None:
        for suffix in ("", "-wal", "-shm"):
            (ctx.tmp / f"{self.sqlite_file}{suffix}").unlink(missing_ok=True)


def pkg_versions(*dists: str) -> dict[str, str]:
    out = {}
    for dist in dists:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def pg_recreate(ctx: RunContext, name: str) -> None:
    """DROP DATABASE name WITH (FORCE), then CREATE it (names starting tandem_cmp_ only)."""
    pg_drop(ctx, name)
    _pg_admin(ctx, f'CREATE DATABASE "{name}"')


def pg_drop(ctx: RunContext, name: str) -> None:
    _pg_admin(ctx, f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)')


def _checked(name: str) -> str:
    if name in PROTECTED_DATABASES or not name.startswith("tandem_cmp_") or '"' in name:
        raise ValueError(f"refusing to touch database {name!r}")
    return name


def _pg_admin(ctx: RunContext, sql: str) -> None:
    import psycopg

    with psycopg.connect(**ctx.pg_dsn_admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql)


def redis_flush(ctx: RunContext) -> None:
    import redis

    if not ctx.redis_url.rstrip("/").endswith("/9"):
        raise ValueError(f"refusing to FLUSHDB {ctx.redis_url}")
    client = redis.Redis.from_url(ctx.redis_url)
    try:
        client.flushdb()
    finally:
        client.close()


# -- the enqueue scripts' common main ----------------------------------------------------------


def enqueue_main(
    one: Callable[[float], object],
    bulk: Callable[[int], object] | None = None,
    argv: Sequence[str] | None = None,
) -> None:
    """``serial N``: N calls of ``one(0.0)``, timed; ``bulk N``: one ``bulk(N)``, timed;
    ``paced N INTERVAL``: N calls of ``one(time.time())``, INTERVAL seconds apart.

    Prints one JSON line ``{"seconds": s, "p50_ms": per-call median}`` last on stdout. Do all
    imports, set-up and the first connection before calling this (a warm-up call is not made: it
    would leave an extra task in the store).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    mode, n = args[0], int(args[1])
    calls: list[float] = []
    if mode == "serial":
        start = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            one(0.0)
            calls.append(time.perf_counter() - t0)
        seconds = time.perf_counter() - start
    elif mode == "bulk":
        if bulk is None:
            raise SystemExit("this contender has no bulk enqueue")
        start = time.perf_counter()
        bulk(n)
        seconds = time.perf_counter() - start
        calls.append(seconds / n)
    elif mode == "paced":
        interval = float(args[2])
        start = time.perf_counter()
        for i in range(n):
            due = start + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t0 = time.perf_counter()
            one(time.time())
            calls.append(time.perf_counter() - t0)
        seconds = time.perf_counter() - start
    else:
        raise SystemExit(f"unknown mode {mode!r} (serial, bulk, paced)")
    print(json.dumps({"seconds": seconds, "p50_ms": statistics.median(calls) * 1000}), flush=True)
