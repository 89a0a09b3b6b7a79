"""The server integrations in this process: the ASGI lifespan wrapper and the gunicorn hooks.

A fake ASGI server drives the lifespan protocol; fake gunicorn worker objects carry the one
setting the hooks read (``cfg.graceful_timeout``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.asgi import get_asgi_application
from django.db import connections

from tandem import embedded
from tandem.embedded import Message, Receive, Scope, Send
from tests.embedded.conftest import status, wait_for
from tests.tasks import gated

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class LifespanRun:
    """What a fake server saw: the messages the application sent, and the workers meanwhile."""

    sent: list[str] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    worker_while_serving: embedded.EmbeddedWorker | None = None


async def serve_lifespan(
    app: Callable[[Scope, Receive, Send], Awaitable[None]],
    serving: Callable[[], Awaitable[None]] | None = None,
) -> LifespanRun:
    """Run the lifespan protocol as a server does: startup, ``serving()``, shutdown."""
    run = LifespanRun()
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()

    async def send(message: Message) -> None:
        run.sent.append(message["type"])
        run.messages.append(dict(message))
        await outbox.put(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    reply = await asyncio.wait_for(outbox.get(), 20)
    if reply["type"] == "lifespan.startup.complete":
        run.worker_while_serving = embedded.current()
        if serving is not None:
            await serving()
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(outbox.get(), 40)
    await asyncio.wait_for(task, 20)
    return run


async def off_loop[T](function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a thread (the ORM refuses the loop's); closes its connections."""

    def call() -> T:
        try:
            return function(*args)
        finally:
            connections.close_all()

    return await asyncio.to_thread(call)


class LifespanAware:
    """An application with its own lifespan: records whether the worker ran at each event."""

    def __init__(self, fail_startup: bool = False) -> None:
        self.fail_startup = fail_startup
        self.events: list[tuple[str, bool]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            self.events.append((message["type"], embedded.current() is not None))
            if message["type"] == "lifespan.startup":
                if self.fail_startup:
                    await send({"type": "lifespan.startup.failed", "message": "app says no"})
                    return
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return


def test_lifespan_runs_the_worker_beside_djangos_asgi_handler(
    started: list[embedded.EmbeddedWorker],
) -> None:
    app = embedded.lifespan(get_asgi_application(), grace=5)
    run = asyncio.run(serve_lifespan(app))

    assert run.sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert run.worker_while_serving is not None
    started.append(run.worker_while_serving)
    assert not run.worker_while_serving.running
    assert embedded.current() is None
    assert app.app_handles_lifespan is False  # Django's handler raises for lifespan scopes


def test_lifespan_passes_http_to_the_application(started: list[embedded.EmbeddedWorker]) -> None:
    app = embedded.lifespan(get_asgi_application())
    sent: list[Message] = []
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the client stays connected; Django cancels this
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/nowhere/",
        "raw_path": b"/nowhere/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 404
    assert embedded.current() is None  # only lifespan starts a worker


def test_lifespan_nests_the_worker_inside_an_applications_own_lifespan(
    started: list[embedded.EmbeddedWorker],
) -> None:
    inner = LifespanAware()
    app = embedded.lifespan(inner, grace=5)
    run = asyncio.run(serve_lifespan(app))

    assert run.sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert run.worker_while_serving is not None
    started.append(run.worker_while_serving)
    # The worker starts after the application's startup and stops before its shutdown.
    assert inner.events == [("lifespan.startup", False), ("lifespan.shutdown", False)]
    assert app.app_handles_lifespan is None  # forwarded, never given up on
    assert embedded.current() is None


def test_lifespan_forwards_a_failed_application_startup_without_starting(
    started: list[embedded.EmbeddedWorker],
) -> None:
    run = asyncio.run(serve_lifespan(embedded.lifespan(LifespanAware(fail_startup=True))))
    assert run.sent == ["lifespan.startup.failed"]
    assert run.messages[0]["message"] == "app says no"
    assert embedded.current() is None


def test_lifespan_answers_alone_when_the_application_raises_after_receiving(
    started: list[embedded.EmbeddedWorker],
) -> None:
    async def no_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise RuntimeError("lifespan? never heard of it")

    app = embedded.lifespan(no_lifespan, grace=5)
    run = asyncio.run(serve_lifespan(app))
    assert run.sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert run.worker_while_serving is not None
    started.append(run.worker_while_serving)
    assert app.app_handles_lifespan is False


def test_lifespan_reports_a_worker_that_cannot_start() -> None:
    run = asyncio.run(serve_lifespan(embedded.lifespan(get_asgi_application(), backend="missing")))
    assert run.sent == ["lifespan.startup.failed"]
    message = run.messages[0]["message"]
    assert message.startswith("tandem: the embedded worker could not start: InvalidTaskBackend")
    assert "missing" in message
    assert embedded.current("missing") is None


def test_lifespan_drains_in_flight_tasks_at_shutdown(
    started: list[embedded.EmbeddedWorker],
) -> None:
    result_ids: list[str] = []

    class Enqueuer(LifespanAware):
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            async def receive_and_open() -> Message:
                message = await receive()
                if message["type"] == "lifespan.shutdown":
                    # By now the worker was drained: the task ran to its end during shutdown.
                    now = await off_loop(status, result_ids[0])
                    self.events.append(("drained", now == "SUCCESSFUL"))
                return message

            await super().__call__(scope, receive_and_open, send)

    inner = Enqueuer()

    async def serving() -> None:
        result = await off_loop(gated.enqueue, "lifespan", 0.5)  # ends after 0.5 s
        result_ids.append(result.id)
        await off_loop(wait_for, lambda: status(result.id) == "RUNNING", "the task")

    run = asyncio.run(serve_lifespan(embedded.lifespan(inner, grace=15), serving))
    assert run.worker_while_serving is not None
    started.append(run.worker_while_serving)
    assert ("drained", True) in inner.events


@dataclass
class FakeConfig:
    graceful_timeout: float
    timeout: float = 30  # gunicorn's default; 0 turns the heartbeat check off


@dataclass
class FakeGunicornWorker:
    cfg: FakeConfig


def test_gunicorn_hooks_start_and_drain(started: list[embedded.EmbeddedWorker]) -> None:
    gunicorn_config = pytest.importorskip("gunicorn.config")
    config = gunicorn_config.Config()
    config.set("post_worker_init", embedded.post_worker_init)  # gunicorn checks the arity
    config.set("worker_exit", embedded.worker_exit)

    worker = FakeGunicornWorker(FakeConfig(graceful_timeout=30))
    config.post_worker_init(worker)
    running = embedded.current()
    assert running is not None
    started.append(running)
    config.worker_exit(object(), worker)
    assert not running.running
    assert running.drained is True


def test_gunicorn_worker_exit_releases_before_the_graceful_timeout(
    started: list[embedded.EmbeddedWorker],
) -> None:
    post_worker_init, worker_exit = embedded.gunicorn_hooks(queues=["default"])
    worker = FakeGunicornWorker(FakeConfig(graceful_timeout=1))
    post_worker_init(worker)
    running = embedded.current()
    assert running is not None
    started.append(running)
    assert running.supervisor.queues == ("default",)
    result = gated.enqueue("gunicorn", timeout=30)
    wait_for(lambda: status(result.id) == "RUNNING", "the task to run")

    began = time.monotonic()
    worker_exit(object(), worker)
    took = time.monotonic() - began
    assert 0.8 <= took < 0.8 + embedded.FORCED_STOP_TIMEOUT  # 80% of graceful_timeout
    assert running.drained is False
    assert status(result.id) == "READY"


@pytest.mark.parametrize(
    ("graceful_timeout", "timeout", "grace"),
    [(30, 30, 24.0), (120, 30, 24.0), (10, 0, 8.0), (0, 0, embedded.DEFAULT_GRACE)],
)
def test_gunicorn_grace_is_80_percent_of_the_smaller_limit(
    graceful_timeout: float, timeout: float, grace: float
) -> None:
    worker = FakeGunicornWorker(FakeConfig(graceful_timeout, timeout))
    assert embedded._gunicorn_grace(worker) == pytest.approx(grace)
    assert embedded._gunicorn_grace(object()) == embedded.DEFAULT_GRACE


def test_gunicorn_worker_exit_without_a_worker_is_a_no_op() -> None:
    # gunicorn also calls worker_exit in the arbiter, for a worker that vanished.
    embedded.worker_exit(object(), FakeGunicornWorker(FakeConfig(graceful_timeout=30)))
    assert embedded.current() is None
