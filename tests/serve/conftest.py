"""Fixtures of the serve tier: real ``tandem serve`` processes (``tests.support.serving``)."""

from __future__ import annotations

from tests.support.fixtures import servers

__all__ = ["servers"]
