"""The retention tier: finished tasks deleted by `tandem prune` and `OPTIONS["retention"]`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from tandem.brokers.base import FAILED, SUCCESSFUL
from tandem.models import TaskRecord
from tests.tasks import echo


@pytest.fixture
def finished() -> Callable[..., str]:
    """A task of ``echo`` that ended ``status`` at ``at`` (SUCCESSFUL or FAILED); its id."""

    def make(status: str, at: datetime) -> str:
        assert status in (SUCCESSFUL, FAILED)
        result = echo.enqueue(status)
        TaskRecord.objects.filter(id=result.id).update(status=status, finished_at=at)
        return str(result.id)

    return make


@pytest.fixture
def kept() -> Callable[[dict[str, str]], set[str]]:
    """Which of ``{label: id}`` are still stored."""

    def check(ids: dict[str, str]) -> set[str]:
        stored = {str(pk) for pk in TaskRecord.objects.values_list("id", flat=True)}
        return {label for label, task_id in ids.items() if task_id in stored}

    return check
