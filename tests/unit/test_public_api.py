"""The public surface is deliberately small: these names, and no others."""

from __future__ import annotations

import re

import tandem


def test_exported_names():
    assert sorted(tandem.__all__) == [
        "CancelOutcome",
        "Group",
        "Task",
        "__version__",
        "cancel",
        "chain",
        "enqueue_after",
        "enqueue_many",
        "enqueue_on_commit",
        "get_group",
        "get_progress",
        "group",
        "is_paused",
        "pause",
        "resume",
        "schedule",
        "task",
    ]


def test_exported_names_exist():
    for name in tandem.__all__:
        assert hasattr(tandem, name), name


def test_star_import_gives_exactly_the_exported_names():
    namespace: dict[str, object] = {}
    exec("from tandem import *", namespace)

    assert sorted(k for k in namespace if k != "__builtins__") == sorted(tandem.__all__)


def test_exports_are_the_implementations():
    from tandem.tasks import Task, task

    assert tandem.Task is Task
    assert tandem.task is task


def test_version_is_a_release_number():
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", tandem.__version__)


#: The modules a project imports or names in its settings, with the names it uses from each:
#: moving code between tandem's internal modules must keep every one of these working.
PUBLIC_MODULES = {
    "tandem": ["task", "enqueue_many", "cancel"],
    "tandem.backends.database": ["DatabaseBackend"],
    "tandem.backends.redis": ["RedisBackend"],
    "tandem.embedded": ["start", "stop", "lifespan", "LifespanApp", "gunicorn_hooks"],
    "tandem.monitoring.urls": ["urlpatterns", "app_name"],
    "tandem.exceptions": ["TaskTimeout", "WorkerCrashed", "Cancelled"],
    "tandem.models": ["TaskRecord"],
}


def test_the_public_modules_keep_their_names():
    import importlib

    for module_name, names in PUBLIC_MODULES.items():
        module = importlib.import_module(module_name)
        missing = [name for name in names if not hasattr(module, name)]
        assert not missing, f"{module_name} lost {missing}"


def test_the_embedded_module_exports_what_it_documents():
    import tandem.embedded

    assert sorted(tandem.embedded.__all__) == [
        "EmbeddedWorker",
        "LifespanApp",
        "current",
        "gunicorn_hooks",
        "lifespan",
        "post_worker_init",
        "start",
        "stop",
        "worker_exit",
    ]
