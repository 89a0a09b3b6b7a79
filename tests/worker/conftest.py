"""Fixtures for the worker tier: in-process supervisors, stepped by the test or run in a thread."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture
def threads(tandem_settings: Callable[..., None]) -> None:
    """Thread pools: ``tests.tasks.gated`` waits on an event in this interpreter."""
    tandem_settings(executor="thread")
