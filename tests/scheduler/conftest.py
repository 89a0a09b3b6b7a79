"""The scheduler tier: schedules from settings and ``@tandem.schedule``, fired once per tick."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from tandem.scheduler import registry


@pytest.fixture(autouse=True)
def empty_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no ``@tandem.schedule`` registrations and leaves none behind."""
    monkeypatch.setattr(registry, "_schedules", {})
    monkeypatch.setattr(registry, "_discovered", threading.Event())


@pytest.fixture
def schedules(tandem_settings: Callable[..., None]) -> Callable[..., None]:
    """Set TASKS['default']['OPTIONS']['schedule'] (plus any other OPTIONS keys) for one test."""

    def apply(entries: dict[str, dict[str, Any]], **options: Any) -> None:
        tandem_settings(schedule=entries, **options)

    return apply
