"""Fixtures of the scale tier: several ``tandem worker`` processes on one real store
(``tests.support.fixtures`` says how ``scale`` and ``private_scale`` are parametrized)."""

from __future__ import annotations

from tests.support.fixtures import children, private_scale, scale

__all__ = ["children", "private_scale", "scale"]
