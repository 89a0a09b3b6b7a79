"""Fixtures of the chaos tier: the scale tier's stores (``scale``: the run's database or the shared
Redis; ``private_scale``: a private server the test may restart), and a summary of what every chaos
run survived at the end of the test session."""

from __future__ import annotations

import pytest

from tests.chaos.monkey import REPORTS
from tests.support.fixtures import children, private_scale, scale

__all__ = ["children", "private_scale", "scale"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTS:
        terminalreporter.section("chaos")
        for report in REPORTS:
            terminalreporter.write_line(report.line())
