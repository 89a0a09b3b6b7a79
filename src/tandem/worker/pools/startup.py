"""Start-up proof of an executor: can its worker set Django up and import the pool's task modules?

Many projects import, while Django starts (an app's ``ready()``, a ``models.py``), a compiled
extension that refuses to load in a subinterpreter: ``pydantic_core`` (pydantic, django-ninja),
``orjson``, ``numpy``… In such a project every worker interpreter fails ``django.setup()``, so
before a subinterpreter pool takes work, the supervisor proves that one interpreter can set
Django up and import the pool's task modules. When it cannot, the pool runs on the process
executor (parallel and isolated too) — or on threads where a process cannot start either — and
the supervisor says so once, naming the module that refused and the setting that silences the
notice. The proving interpreter becomes the pool's first worker, so a pool that passes pays
nothing extra.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tandem.conf import PoolConfig

if TYPE_CHECKING:
    from tandem.worker.pools.base import Deliver, ExecutionPool

logger = logging.getLogger("tandem.worker")

#: What CPython's import machinery says when an extension cannot load in a subinterpreter.
REFUSAL = "does not support loading in subinterpreters"
_REFUSED = re.compile(r"module ([\w.]+) " + REFUSAL)


def refused_module(text: str) -> str | None:
    """The module a subinterpreter refused to load, named in ``text`` (an error or traceback)."""
    found = _REFUSED.search(text)
    return found.group(1) if found else None


@dataclass(frozen=True, slots=True, kw_only=True)
class StartupFailure:
    """Why a worker of one executor could not start: what it was doing and the error."""

    executor: str
    stage: str  # "setting Django up" or "importing task module 'shop.tasks'"
    error: str  # "ImportError: module pydantic_core._pydantic_core does not support …"
    details: str = ""  # the traceback, where there is one

    @property
    def refused(self) -> str | None:
        return refused_module(f"{self.error}\n{self.details}")

    def describe(self) -> str:
        return f"a {self.executor} worker failed {self.stage}: {self.error}"


def from_exception(executor: str, stage: str, exc: BaseException) -> StartupFailure:
    """A ``StartupFailure`` from an exception, unwrapping a subinterpreter's ``ExecutionFailed``."""
    info = getattr(exc, "excinfo", None)
    if info is not None:  # concurrent.interpreters.ExecutionFailed: the error of the interpreter
        error = f"{info.type.__name__}: {info.msg}"
        return StartupFailure(executor=executor, stage=stage, error=error, details=info.formatted)
    import traceback

    details = "".join(traceback.format_exception(exc))
    error = f"{type(exc).__name__}: {exc}"
    return StartupFailure(executor=executor, stage=stage, error=error, details=details)


def task_modules(config: PoolConfig, alias: str) -> list[str]:
    """The modules that define this pool's tasks, as far as this process can tell.

    Every loaded module of the project holding a task of backend ``alias`` on one of the pool's
    queues — after every installed app's ``tasks`` module was imported here.
    """
    from django.tasks import Task as DjangoTask

    from tandem.backends.base import _in_project
    from tandem.scheduler.registry import discover

    discover()  # every installed app's tasks module, imported once (as for the schedules)
    found: list[str] = []
    for name, module in list(sys.modules.items()):
        if module is None or not _in_project(name):
            continue
        for value in list(vars(module).values()):
            if (
                isinstance(value, DjangoTask)
                and value.backend == alias
                and value.queue_name in config.queues
                and value.func.__module__ not in found
            ):
                found.append(value.func.__module__)
    return sorted(found)


def notice(alias: str, config: PoolConfig, failures: list[StartupFailure], used: str) -> str:
    """The one message logged when a pool does not run on the executor it was given."""
    first = failures[0]
    refused = first.refused
    what = (
        f"the module {refused!r} cannot load in a subinterpreter"
        if refused
        else f"{first.stage} failed there"
    )
    tried = "; ".join(f.describe() for f in failures)
    return (
        f"pool {config.name!r} of TASKS[{alias!r}] runs on the {used} executor instead of "
        f'{config.executor}: {what} ({tried}). Set "executor": "{used}" for this pool '
        f"(TASKS[{alias!r}]['OPTIONS']['pools'][{config.name!r}]['executor']) to silence this "
        "notice."
    )


def choose(
    alias: str, config: PoolConfig, pool: ExecutionPool, deliver: Deliver
) -> tuple[PoolConfig, ExecutionPool, StartupFailure | None]:
    """The executor a pool really runs on: ``pool`` when its first worker starts (only
    subinterpreters need the proof), else the first of process and thread that does; with the
    failure that made it fall back."""
    if config.executor != "subinterpreter":
        return config, pool, None
    modules = task_modules(config, alias)
    failure = pool.prove(modules)
    if failure is None:
        return config, pool, None
    from tandem.worker.pools import create_pool

    failures = [failure]
    for executor in ("process", "thread"):
        candidate_config = replace(config, executor=executor)
        candidate = create_pool(candidate_config, deliver)
        problem = candidate.prove(modules)
        if problem is None:
            logger.warning("%s", notice(alias, config, failures, executor))
            return candidate_config, candidate, failure
        failures.append(problem)
    raise AssertionError("a thread pool needs no proof")  # pragma: no cover
