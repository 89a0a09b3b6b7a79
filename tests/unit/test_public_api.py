"""The public surface is deliberately small: these names, and no others."""

from __future__ import annotations

import re

import tandem


def test_exported_names():
    assert sorted(tandem.__all__) == [
        "CancelOutcome",
        "Task",
        "__version__",
        "cancel",
        "enqueue_many",
        "enqueue_on_commit",
        "get_progress",
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
