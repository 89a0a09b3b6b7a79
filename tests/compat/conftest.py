"""The compatibility tier: real third-party packages (pinned in the ``test`` extra) with tandem on
its default settings. A missing package skips locally and fails when ``CI`` is set."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import Children

#: The distributions this tier needs, by the module it imports.
PACKAGES = {
    "ninja_extra": "django-ninja-extra",
    "ninja": "django-ninja",
    "pydantic": "pydantic",
    "django_tasks": "django-tasks",
}


@pytest.fixture(autouse=True)
def _packages() -> None:
    missing = [
        dist for module, dist in PACKAGES.items() if importlib.util.find_spec(module) is None
    ]
    if missing:
        reason = f"the compat tier needs {', '.join(missing)}: pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    started = Children(tmp_path)
    try:
        yield started
    finally:
        started.kill_all()
