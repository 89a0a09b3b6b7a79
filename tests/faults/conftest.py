"""Fixtures of the fault tier: the scale tier's stores (``scale``: the run's database or the shared
Redis), and a summary of every fault scenario at the end of the session."""

from __future__ import annotations

import pytest

from tests.faults.scenario import REPORTS
from tests.support.fixtures import children, scale

__all__ = ["children", "scale"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTS:
        terminalreporter.section("faults")
        for line in REPORTS:
            terminalreporter.write_line(line)
