"""The contenders of ``bench/compare``: ``ALL`` maps each key to its :class:`Contender`.

Each module below defines ``CONTENDERS``. The modules are imported on first use of ``ALL`` (not when
a task process imports ``contenders.marks``), and a module that fails to import yields, for each of
its keys, a placeholder whose ``prepare`` raises the import error: that contender is reported
FAILED while the others still run.
"""

from __future__ import annotations

import importlib
from typing import Any

# module -> the keys it defines, in the table's order
MODULES: dict[str, list[str]] = {
    "tandem_": [
        "tandem-serve-sqlite",
        "tandem-worker-sqlite",
        "tandem-worker-postgres",
        "tandem-worker-redis",
    ],
    "tasksdb": ["tasksdb-sqlite", "tasksdb-postgres"],
    "huey_": ["huey-sqlite", "huey-redis"],
    "celery_": ["celery-redis"],
    "rq_": ["rq-redis"],
    "procrastinate_": ["procrastinate-postgres"],
    "djangoq2": ["djangoq2-redis"],
    "taskapi": [
        "vtasks-redis",
        "vtasks-postgres",
        "djqueue-sqlite",
        "djqueue-postgres",
        "threadmill-redis",
        "ox-sqlite",
        "ox-postgres",
    ],
}

_all: dict[str, Any] | None = None


def _load() -> dict[str, Any]:
    from contenders.base import Contender

    found: dict[str, Any] = {}
    for module, keys in MODULES.items():
        try:
            contenders = importlib.import_module(f"contenders.{module}").CONTENDERS
        except Exception as exc:
            error = f"contenders/{module}.py does not import: {type(exc).__name__}: {exc}"
            contenders = [_broken(Contender, key, error) for key in keys]
        for contender in contenders:
            found[contender.key] = contender
    return found


def _broken(base: type, key: str, error: str) -> Any:
    class Broken(base):  # type: ignore[misc, valid-type]
        def prepare(self, ctx: Any) -> None:
            raise RuntimeError(error)

        def worker_argv(self, ctx: Any) -> list[str]:
            raise RuntimeError(error)

    broken = Broken()
    broken.key, broken.label, broken.store, broken.notes = key, key, key.rsplit("-", 1)[-1], error
    return broken


def __getattr__(name: str) -> Any:
    global _all
    if name == "ALL":
        if _all is None:
            _all = _load()
        return _all
    raise AttributeError(name)
