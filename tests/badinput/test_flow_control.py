"""The flow-control corpus: bad queue names and backends for ``tandem.pause/resume/is_paused``
(and the commands), on each store. Every refusal names the problem and stores nothing."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.tasks.exceptions import InvalidTaskBackend

import tandem
from tandem.backends.base import TandemBackend

pytestmark = pytest.mark.django_db

NAME = "A queue name must be a non-empty string, got "


@pytest.mark.parametrize(
    ("queue", "error", "message"),
    [
        (None, TypeError, NAME + "None."),
        (7, TypeError, NAME + "7."),
        ("", TypeError, NAME + "''."),
        (["critical"], TypeError, NAME + "['critical']."),
        (
            "exprots",
            ValueError,
            "Queue 'exprots' is not one of TASKS['default']['QUEUES'] "
            "(critical, default, exports).",
        ),
    ],
)
@pytest.mark.parametrize("call", [tandem.pause, tandem.resume])
def test_pause_and_resume_refuse_a_bad_queue(
    backend: TandemBackend, call: Any, queue: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        call(queue)

    assert str(raised.value) == message
    assert backend.broker.paused_queues() == {}


@pytest.mark.parametrize("queue", [None, 7, ""])
def test_is_paused_refuses_a_name_that_is_not_a_string(
    backend: TandemBackend, queue: object
) -> None:
    with pytest.raises(TypeError, match="A queue name must be a non-empty string"):
        tandem.is_paused(queue)  # type: ignore[arg-type]


def test_an_unknown_backend_is_refused(backend: TandemBackend) -> None:
    with pytest.raises(InvalidTaskBackend, match="nope"):
        tandem.pause("critical", backend="nope")


def test_a_queue_dropped_from_the_settings_can_still_be_resumed(backend: TandemBackend) -> None:
    from django.utils import timezone

    backend.broker.pause_queues(["retired"], timezone.now())  # paused before it was removed

    assert tandem.resume("retired") is True
    with pytest.raises(ValueError, match="Queue 'retired' is not one of"):
        tandem.resume("retired")  # no longer paused: a typo like any other


def test_the_commands_need_a_queue_and_name_the_bad_one(backend: TandemBackend) -> None:
    with pytest.raises(CommandError, match="the following arguments are required: QUEUE"):
        call_command("tandem", "pause", stdout=io.StringIO())
    with pytest.raises(CommandError, match="Queue 'nope' is not one of"):
        call_command("tandem", "resume", "critical", "nope", stdout=io.StringIO())
    assert backend.broker.paused_queues() == {}
