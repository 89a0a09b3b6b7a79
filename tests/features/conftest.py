"""The features tier: tandem's extras beyond DEP 14, end to end through a real supervisor."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture(autouse=True)
def threads(tandem_settings: Callable[..., None]) -> None:
    """Thread pools by default: the tests' gates and signals live in this interpreter."""
    tandem_settings(executor="thread")
