"""What every tandem backend shares: Django's contract on top of a broker."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, dataclass, fields
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from django.apps import apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.tasks import Task as DjangoTask
from django.tasks import TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, TaskError
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.module_loading import import_string

from tandem import tracing
from tandem.backends.results import (
    AnyResult,
    TandemTaskResult,
    ready_result,
    send_task_enqueued,
    unreadable_arguments,
)
from tandem.brokers.base import Broker, NewTask, StoredTask
from tandem.cancellation import CancelOutcome
from tandem.conf import BackendOptions, parse_options
from tandem.exceptions import TaskNotRunnable
from tandem.serialization import PayloadTooLarge, to_json_and_text
from tandem.tasks import AnyTask, Task, copy_task

#: Tasks per store round trip in ``enqueue_many``.
ENQUEUE_BATCH = 500


def new_task_id() -> str:
    """A new task's id: ``str(uuid.uuid4())`` (a random version 4 UUID) in a quarter of the
    time, which counts in a bulk enqueue."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class SharedByItems:
    """What every enqueue of one task stores alike, whatever its arguments
    (``TandemBackend.shared_by_items``)."""

    priority: int
    max_attempts: int
    timeout: float | None
    rate_limit: str | None
    max_payload_bytes: int | None


def _in_project(module: str) -> bool:
    """Whether ``module`` belongs to an installed app or to the settings module's package."""
    roots = [app.name for app in apps.get_app_configs()]
    settings_module = os.environ.get("DJANGO_SETTINGS_MODULE", "")
    if "." in settings_module:
        roots.append(settings_module.partition(".")[0])
    return any(module == root or module.startswith(f"{root}.") for root in roots)


#: The rule ``resolve_task`` applies before importing a task's module, for messages.
IMPORT_RULE = (
    "a worker imports task modules only from the packages of INSTALLED_APPS and the package of "
    "DJANGO_SETTINGS_MODULE"
)


def unimportable(task: AnyTask) -> str | None:
    """Why a worker would never import ``task``'s module (so ``enqueue()`` refuses it), or None."""
    module = task.module_path.rpartition(".")[0]
    if _in_project(module):
        return None
    settings_module = os.environ.get("DJANGO_SETTINGS_MODULE", "")
    packages = [app.name for app in apps.get_app_configs()]
    if "." in settings_module:
        packages.append(settings_module.partition(".")[0])
    return (
        f"Task {task.module_path!r} cannot be enqueued: {IMPORT_RULE} "
        f"({', '.join(dict.fromkeys(packages))}), and its module {module!r} is in none of "
        "them, so no worker would ever run it. Move the task into a module of an installed "
        "app (e.g. yourapp/tasks.py), or add its package to INSTALLED_APPS."
    )


def resolve_task(task_path: str) -> AnyTask:
    """The registered Task at ``task_path``; anything else raises ``TaskNotRunnable``.

    Only objects made by ``@task`` are runnable, so a stored row that names ``os.system`` or a
    plain function is refused before anything is called. A module is imported only when it is
    already loaded, belongs to an installed app or to the settings module's package, so a
    tampered row cannot make a worker import (and run the import-time code of) any module.
    """
    module = task_path.rpartition(".")[0]
    if module not in sys.modules and not _in_project(module):
        raise TaskNotRunnable(
            f"Task path {task_path!r} is not in an installed app or the project's package; "
            "tandem imports task modules only from INSTALLED_APPS and the package of "
            "DJANGO_SETTINGS_MODULE (or modules already imported)."
        )
    try:
        candidate = import_string(task_path)
    except ImportError as exc:
        advice = ""
        if "subinterpreters" in str(exc):
            advice = (
                f" The module {exc.name or '?'!r} is a C extension that cannot load in a "
                'subinterpreter: set "executor": "process" (or "thread") for the pool that '
                "serves this task's queue."
            )
        raise TaskNotRunnable(f"Task path {task_path!r} does not import: {exc}.{advice}") from None
    if not isinstance(candidate, DjangoTask):
        raise TaskNotRunnable(
            f"{task_path!r} is a {type(candidate).__module__}.{type(candidate).__qualname__}, "
            "not a Task; only functions decorated with @task can be run from a stored row."
        )
    if candidate.module_path != task_path:
        raise TaskNotRunnable(
            f"{task_path!r} refers to the task {candidate.module_path!r}; "
            "a stored row must name a task by its own module path."
        )
    return candidate


def missing_task(stored: StoredTask, reason: str) -> AnyTask:
    """A stand-in for a stored task whose code moved or vanished: it carries the stored path
    (``module_path``) and raises ``TaskNotRunnable(reason)`` when called."""
    module, _, name = stored.task_path.rpartition(".")

    def vanished(*args: Any, **kwargs: Any) -> Any:
        raise TaskNotRunnable(reason)

    vanished.__module__ = module
    vanished.__name__ = vanished.__qualname__ = name
    stand_in = object.__new__(Task)
    for f in fields(Task):
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        object.__setattr__(stand_in, f.name, None if default is MISSING else default)
    return copy_task(stand_in, func=vanished, takes_context=stored.takes_context)


def to_task_result(stored: StoredTask, task: AnyTask | None = None) -> AnyResult:
    """Build Django's ``TaskResult`` for a stored row. A row whose task cannot be resolved (its
    code moved or vanished) still gives its result, with a stand-in task (``missing_task``)."""
    if task is None:
        try:
            task = resolve_task(stored.task_path)
        except TaskNotRunnable as exc:
            task = missing_task(stored, str(exc))
    for name, value, kind in (("args", stored.args, list), ("kwargs", stored.kwargs, dict)):
        if not isinstance(value, kind):
            raise TaskNotRunnable(unreadable_arguments(name, value, kind))
    run_after = stored.run_after
    if stored.status == TaskResultStatus.READY and stored.errors:
        run_after = stored.available_at  # waiting for a retry: due once its back-off passed
    task = copy_task(
        task,
        priority=stored.priority,
        queue_name=stored.queue_name,
        run_after=run_after,
        backend=stored.backend,
    )
    result: AnyResult = TandemTaskResult(
        task=task,
        id=stored.id,
        status=TaskResultStatus(stored.status),
        enqueued_at=stored.enqueued_at,
        started_at=stored.started_at,
        finished_at=stored.finished_at,
        last_attempted_at=stored.last_attempted_at,
        args=list(stored.args),
        kwargs=dict(stored.kwargs),
        backend=stored.backend,
        errors=[
            TaskError(exception_class_path=e.exception_class_path, traceback=e.traceback)
            for e in stored.errors
        ],
        worker_ids=list(stored.worker_ids),
        progress=stored.progress,
    )
    if stored.status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", stored.return_value)
    return result


class TandemBackend(BaseTaskBackend):
    """Django's task backend contract, stored through a ``Broker``."""

    task_class = Task
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True
    #: Whether ``enqueue()`` joins the caller's database transaction (the task is stored, or
    #: not, with the caller's commit or rollback). False: stored at once, whatever the caller's
    #: transaction does.
    transactional_enqueue = False
    #: ``OPTIONS`` keys of this backend's store, on top of the common ``conf.OPTION_KEYS``.
    extra_option_keys: frozenset[str] = frozenset()
    #: Tasks per ``_store`` call of ``enqueue_many`` (None: all of them in one call, which the
    #: store batches itself).
    enqueue_batch: int | None = ENQUEUE_BATCH

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        # Touches no database, no network: Django creates backends lazily, per thread.
        super().__init__(alias, params)
        self.params = params
        self._checked_tasks: dict[int, tuple[AnyTask, Any, SharedByItems]] = {}  # _check_task

    @cached_property
    def tandem_options(self) -> BackendOptions:
        """Parsed ``OPTIONS``; raises ``ImproperlyConfigured`` naming the bad key."""
        return self.parse_options(self.subinterpreter_blocker())

    def parse_options(self, blocker: str | None) -> BackendOptions:
        """``OPTIONS`` parsed as if ``blocker`` were the store's ``subinterpreter_blocker()``."""
        queues, extra = frozenset(self.queues), self.extra_option_keys
        return parse_options(self.alias, self.params, queues, blocker, extra_keys=extra)

    def subinterpreter_blocker(self) -> str | None:
        """Why this backend's store cannot be used from a subinterpreter, if it cannot."""
        return None

    @cached_property
    def broker(self) -> Broker:
        raise NotImplementedError

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        from tandem import diagnosis

        messages: list[checks.CheckMessage] = list(super().check(**kwargs))
        if not apps.is_installed("tandem"):
            return [
                *messages,
                checks.Error(diagnosis.NOT_INSTALLED, obj=self.alias, id="tandem.E003"),
            ]
        if typo := diagnosis.unknown_backend_keys(self.alias, self.params):
            messages.append(checks.Error(typo, obj=self.alias, id="tandem.E004"))
        try:
            options = self.tandem_options
        except ImproperlyConfigured as exc:
            return [
                *messages,
                *(
                    checks.Error(text, obj=self.alias, id="tandem.E001")
                    for text in diagnosis.option_errors(self, exc)
                ),
            ]
        served = {q for pool in options.pools for q in pool.queues}
        for queue in sorted(set(self.queues) - served):
            messages.append(
                checks.Warning(
                    f"Queue {queue!r} of TASKS[{self.alias!r}] is served by no pool, so no "
                    "worker of this configuration will run its tasks.",
                    hint=(
                        f"Add it to a pool's 'queues' in TASKS[{self.alias!r}]['OPTIONS']['pools']."
                    ),
                    obj=self.alias,
                    id="tandem.W001",
                )
            )
        return messages

    def validate_task(self, task: AnyTask) -> None:
        """Django's rules, plus the types it assumes: a priority that is a number (not a bool or
        a string: one would be stored as something no store reads back as an int) and a
        ``run_after`` that is a datetime, with the same messages."""
        priority = task.priority
        if isinstance(priority, bool) or not isinstance(priority, int | float):
            raise InvalidTask(
                f"priority must be a whole number between {TASK_MIN_PRIORITY} and "
                f"{TASK_MAX_PRIORITY}."
            )
        if task.run_after is not None and not isinstance(task.run_after, datetime):
            raise InvalidTask(f"run_after must be an aware datetime, got {task.run_after!r}.")
        super().validate_task(task)

    # -- enqueue -------------------------------------------------------------------------------

    def _check_task(self, task: AnyTask) -> SharedByItems:
        """``validate_task`` and ``unimportable`` once per task object (frozen) and installed
        apps (what else they read is this backend's), and its ``shared_by_items``, returned."""
        checked, configs = self._checked_tasks, apps.app_configs
        hit = checked.get(id(task))
        if hit is not None and hit[0] is task and hit[1] is configs:
            return hit[2]
        self.validate_task(task)
        if reason := unimportable(task):
            raise InvalidTask(reason)
        shared = self.shared_by_items(task)
        if len(checked) >= 256:  # tasks made per call (``task.using(...)``): bounded
            checked.clear()
        checked[id(task)] = (task, configs, shared)
        return shared

    def _new_task(
        self,
        task: AnyTask,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        *,
        checked: bool = False,  # the task itself was validated already (a workflow's items)
        shared: SharedByItems | None = None,  # ``shared_by_items(task)``, made once per task
    ) -> NewTask:
        if not checked:
            shared = self._check_task(task)
        elif shared is None:
            shared = self.shared_by_items(task)
        # No arguments (common in a bulk enqueue): nothing to check or convert.
        no_args = type(args) in (tuple, list) and not args
        no_kwargs = type(kwargs) is dict and not kwargs
        json_args, args_text = ([], "[]") if no_args else to_json_and_text(list(args), "args")
        json_kwargs, kwargs_text = (
            ({}, "{}") if no_kwargs else to_json_and_text(dict(kwargs), "kwargs")
        )
        limit = shared.max_payload_bytes
        if limit is not None and (size := len(args_text) + len(kwargs_text)) > limit:
            raise PayloadTooLarge(
                f"The arguments of task {task.module_path!r} take {size:,} bytes as JSON, more "
                f"than the {limit:,} that TASKS[{self.alias!r}]['OPTIONS']['max_payload_bytes'] "
                "allows. Store large data elsewhere (a file, a row) and pass its id, or raise "
                "the limit (None: no limit)."
            )
        return NewTask(
            id=new_task_id(),
            backend=self.alias,
            queue_name=task.queue_name,
            task_path=task.module_path,
            priority=shared.priority,
            takes_context=task.takes_context,
            args=json_args,
            kwargs=json_kwargs,
            run_after=task.run_after,
            enqueued_at=timezone.now(),
            max_attempts=shared.max_attempts,
            timeout=shared.timeout,
            unique_key=task.key_for(json_args, json_kwargs) if isinstance(task, Task) else None,
            **_concurrency(task, json_args, json_kwargs),
            rate_limit=shared.rate_limit,
            args_json=args_text,
            kwargs_json=kwargs_text,
        )

    def shared_by_items(self, task: AnyTask) -> SharedByItems:
        """What every enqueue of ``task`` stores alike, whatever its arguments: looked up once
        for all the items of an ``enqueue_many``."""
        pool = self.tandem_options.pool_for_queue(task.queue_name)
        max_attempts = getattr(task, "max_attempts", None)
        if max_attempts is None:
            max_attempts = pool.max_attempts if pool else 1
        return SharedByItems(
            priority=int(task.priority),  # Django allows a whole float (2.0)
            max_attempts=max_attempts,
            timeout=getattr(task, "timeout", None),
            rate_limit=getattr(task, "rate_limit", None),
            max_payload_bytes=self.tandem_options.max_payload_bytes,
        )

    def _result_for(self, task: AnyTask, new: NewTask) -> AnyResult:
        return ready_result(task, new.id, new.enqueued_at, new.args, new.kwargs, self.alias)

    def _results(
        self, tasks: Sequence[AnyTask], new: Sequence[NewTask], ids: Sequence[str]
    ) -> list[tuple[AnyResult, bool]]:
        """Each enqueue's result, and whether it is new (False: an active unique task's)."""
        results: list[tuple[AnyResult, bool]] = []
        for task, item, stored_id in zip(tasks, new, ids, strict=True):
            if stored_id == item.id:
                results.append((self._result_for(task, item), True))
            else:
                results.append((self.get_result(stored_id), False))
        return results

    def enqueue(self, task: AnyTask, args: Sequence[Any], kwargs: dict[str, Any]) -> AnyResult:
        new = self._new_task(task, args, kwargs)
        if tracing.enabled():
            with tracing.producer(new) as new:
                [stored_id] = self._store([new])
        else:  # the same without the context manager: every enqueue() pays for one
            [stored_id] = self._store([new])
        if stored_id != new.id:  # an active unique task's: no task_enqueued (as ``_results``)
            return self.get_result(stored_id)
        result = self._result_for(task, new)
        send_task_enqueued(type(self), [result])
        return result

    async def aenqueue(
        self, task: AnyTask, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> AnyResult:
        with tracing.producer(self._new_task(task, args, kwargs)) as new:
            ids = await self._astore([new])
        if ids[0] == new.id:
            result = self._result_for(task, new)
            await task_enqueued.asend(type(self), task_result=result)
            return result
        return await self.aget_result(ids[0])

    def enqueue_many(
        self, task: AnyTask, items: Iterable[tuple[Sequence[Any], dict[str, Any]]]
    ) -> list[AnyResult]:
        """Enqueue ``task`` once per ``(args, kwargs)`` item: one store round trip per batch.

        Every item is validated and serialised before anything is stored, so a bad item stores
        nothing. ``task_enqueued`` is sent for each task stored, once its batch is stored (on the
        database backend, once all are: one transaction).
        """
        new: list[NewTask] = []
        # The task is one for every item: validated once, what its items share looked up once,
        # and the tracer looked up once.
        self.validate_task(task)
        if reason := unimportable(task):
            raise InvalidTask(reason)
        shared = self.shared_by_items(task)
        traced = tracing.enabled()
        new_task = self._new_task
        for index, item in enumerate(items):
            try:
                args, kwargs = item
            except (TypeError, ValueError):
                raise TypeError(
                    f"enqueue_many() item {index} must be an (args, kwargs) pair, got {item!r}."
                ) from None
            made = new_task(task, args, kwargs, checked=True, shared=shared)
            if traced:  # a PRODUCER span per task, its trace context stored with the task
                with tracing.producer(made) as made:
                    pass
            new.append(made)
        results: list[AnyResult] = []
        batch = self.enqueue_batch or max(len(new), 1)
        for start in range(0, len(new), batch):
            chunk = new[start : start + batch]
            ids = self._store(chunk)
            stored = self._results([task] * len(chunk), chunk, ids)
            send_task_enqueued(type(self), [result for result, fresh in stored if fresh])
            results += [result for result, _ in stored]
        return results

    def cancel(self, result_id: str) -> CancelOutcome | Literal[False]:
        """Cancel a task of this backend: ``CancelOutcome.CANCELLED`` when it was READY (it is
        FAILED now), ``CancelOutcome.REQUESTED`` when it is RUNNING (told to stop: it runs on
        until its code checks ``context.cancelled``, or a process pool kills it at its next
        heartbeat); False when it is unknown or already finished. Both outcomes are truthy."""
        if not _is_uuid(result_id):
            return False
        outcome = self.broker.cancel(str(result_id), timezone.now())
        if outcome is None:
            return False
        return CancelOutcome.CANCELLED if outcome == "cancelled" else CancelOutcome.REQUESTED

    def _store(self, tasks: Sequence[NewTask]) -> list[str]:
        raise NotImplementedError

    def wake_after_store(self, queues: Sequence[str]) -> None:
        """Wake this process's supervisors of ``queues`` once what was just stored is visible:
        at once here (the store has it); after the commit on the database backend."""
        from tandem import wakeup

        for queue in queues:
            wakeup.notify(self.alias, queue)

    async def _astore(self, tasks: Sequence[NewTask]) -> list[str]:
        raise NotImplementedError

    # -- results -------------------------------------------------------------------------------

    def get_result(self, result_id: str) -> AnyResult:
        stored = self.broker.get(str(result_id)) if _is_uuid(result_id) else None
        if stored is None or stored.backend != self.alias:
            raise TaskResultDoesNotExist(result_id)
        return to_task_result(stored)


def _concurrency(task: AnyTask, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The flow-control fields of a ``NewTask`` (none for a task without a concurrency key)."""
    if not isinstance(task, Task) or task.concurrency_key is None:
        return {}
    key, limit = task.concurrency_for(args, kwargs), task.concurrency_limit or 1
    return {"concurrency_key": key, "concurrency_limit": limit, "on_limit": task.on_limit}


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
