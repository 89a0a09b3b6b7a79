"""Fixtures for the process tier: real worker processes on the test database."""

from __future__ import annotations

from tests.support.fixtures import children

__all__ = ["children"]
