from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from django.conf import settings

from tests.support.pools import EXECUTORS, needs_subinterpreters, pool


@pytest.fixture
def use_pools(settings: Any) -> Callable[..., None]:
    """Configure TASKS['default'] pools for one test: use_pools(executor="process", pools={...})."""

    def apply(**options: Any) -> None:
        tasks = {k: dict(v) for k, v in settings.TASKS.items()}
        tasks["default"]["OPTIONS"] = {"lease_seconds": 60, **options}
        settings.TASKS = tasks

    return apply


@pytest.fixture
def unfriendly() -> Iterator[ModuleType]:
    """``tests.subinterpreter_unfriendly`` (it imports ``_curses``), imported for one test only:
    a loaded task module is one a subinterpreter pool proves at start-up, and it must not make
    the pools of later tests fall back to processes."""
    module = importlib.import_module("tests.subinterpreter_unfriendly")
    try:
        yield module
    finally:
        sys.modules.pop(module.__name__, None)
        import tests

        vars(tests).pop("subinterpreter_unfriendly", None)


__all__ = ["EXECUTORS", "needs_subinterpreters", "pool", "settings"]
