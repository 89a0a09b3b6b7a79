"""Run tandem's supervisor inside any server process: uvicorn, hypercorn, granian, gunicorn.

``start()`` runs a supervisor — its pools, claim loop, heartbeats and scheduler — in a background
thread of the calling process; ``stop(grace)`` drains it: no new claims, in-flight tasks get up to
``grace`` seconds to finish, then the rest are released back to READY. One supervisor per backend
alias and per process: a second ``start()`` returns the running one.

The host server owns the process, so nothing here installs a signal handler. The server's own
shutdown hook calls ``stop()``:

- ASGI servers (uvicorn, hypercorn, granian): wrap the application with ``lifespan(app)``; it
  starts the worker on ``lifespan.startup`` and stops it on ``lifespan.shutdown``.
- gunicorn: ``post_worker_init`` and ``worker_exit`` (module-level hooks, or ``gunicorn_hooks()``
  for other arguments) in the gunicorn configuration file. They run in each worker process, never
  in the arbiter, which forks.

If the host exits without calling ``stop()``, an ``atexit`` handler releases in-flight tasks
back to READY (leases would recover them anyway, but only after ``lease_seconds``).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tandem.worker.supervisor import Supervisor

__all__ = [
    "EmbeddedWorker",
    "LifespanApp",
    "current",
    "gunicorn_hooks",
    "lifespan",
    "post_worker_init",
    "start",
    "stop",
    "worker_exit",
]

logger = logging.getLogger("tandem.embedded")

DEFAULT_GRACE = 30.0
# After a forced stop the supervisor only writes the release and closes its pools: seconds.
FORCED_STOP_TIMEOUT = 10.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class EmbeddedWorker:
    """A supervisor running in a background thread of this process. Made by ``start()``."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.pid = os.getpid()
        self.drained: bool | None = None  # after stop(): True if no task had to be released
        self._thread = threading.Thread(
            target=self._main,
            name=f"tandem-embedded-{supervisor.backend.alias}",
            # The supervisor must never keep the host from exiting; the atexit handler (which
            # only runs once non-daemon threads are done) releases what it still holds.
            daemon=True,
        )
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._lock = threading.RLock()

    @property
    def backend(self) -> str:
        return self.supervisor.backend.alias

    @property
    def worker_id(self) -> str:
        return self.supervisor.worker_id

    @property
    def running(self) -> bool:
        """Whether the supervisor thread is alive in this process."""
        return self.pid == os.getpid() and self._thread.is_alive()

    def _start(self) -> None:
        """Start the thread; return once the supervisor started, or raise why it could not.

        ``Supervisor.start()`` (store checks, worker registration, pools, listener) runs in the
        supervisor's own thread, so its database connection belongs to that thread rather than
        to a thread of the host (an event loop thread must not touch the ORM at all); its
        exception is re-raised here, in the caller.
        """
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error

    def _main(self) -> None:
        # Supervisor.close() (after a failed start, or at the end of run()) closes this
        # thread's connections.
        supervisor = self.supervisor
        try:
            supervisor.start()
        except BaseException as exc:
            self._start_error = exc
            supervisor.request_stop(force=True)
            try:
                supervisor.close()
            except Exception:
                logger.debug("cleaning up after a failed start", exc_info=True)
            return
        finally:
            self._started.set()
        try:
            supervisor.run()
        except Exception:
            logger.exception(
                "the embedded tandem supervisor %s stopped unexpectedly", supervisor.worker_id
            )

    def stop(self, grace: float = DEFAULT_GRACE) -> bool:
        """Drain: claim nothing new, give in-flight tasks ``grace`` seconds, release the rest.

        Returns True when every in-flight task finished in time, False when some were released
        back to READY. Safe to call again (a no-op once stopped) and from another process after
        a fork (a no-op there: the thread does not exist in the child).
        """
        if grace < 0:
            raise ValueError(f"grace must be >= 0, got {grace:g}.")
        if self.pid != os.getpid():
            return True
        with self._lock:
            if self._thread.is_alive():
                supervisor = self.supervisor
                logger.info(
                    "stopping tandem supervisor %s: draining %d in-flight task(s) (grace %gs)",
                    supervisor.worker_id,
                    supervisor.in_flight,
                    grace,
                )
                supervisor.request_stop()
                self._thread.join(grace)
                self.drained = True
                if self._thread.is_alive():
                    left = supervisor.in_flight
                    self.drained = left == 0
                    if left:
                        logger.warning(
                            "grace period (%gs) over: releasing %d in-flight task(s) back to READY",
                            grace,
                            left,
                        )
                    supervisor.request_stop(force=True)
                    self._thread.join(FORCED_STOP_TIMEOUT)
                    if self._thread.is_alive():
                        logger.error(
                            "tandem supervisor %s still busy %gs after releasing its tasks; "
                            "leaving it to the process exit",
                            supervisor.worker_id,
                            FORCED_STOP_TIMEOUT,
                        )
            _forget(self)
            return self.drained is not False

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedWorker {self.worker_id} backend={self.backend!r} {state}>"


# -- the per-process registry ----------------------------------------------------------------------

_registry_lock = threading.RLock()  # re-entrant: a signal handler may stop() inside start()
_workers: dict[str, EmbeddedWorker] = {}
_atexit_registered = False


def _forget(worker: EmbeddedWorker) -> None:
    with _registry_lock:
        if _workers.get(worker.backend) is worker:
            del _workers[worker.backend]


def _forget_all_after_fork() -> None:
    """In a forked child the supervisor threads do not exist: start afresh there."""
    global _registry_lock
    _registry_lock = threading.RLock()
    _workers.clear()


os.register_at_fork(after_in_child=_forget_all_after_fork)


def current(backend: str = "default") -> EmbeddedWorker | None:
    """The running embedded worker of ``backend`` in this process, if any."""
    worker = _workers.get(backend)
    return worker if worker is not None and worker.running else None


def start(backend: str = "default", **supervisor_kwargs: Any) -> EmbeddedWorker:
    """Start a supervisor for ``backend`` in a background thread of this process.

    Idempotent per process and backend: while one runs, it is returned and the arguments are
    ignored. ``supervisor_kwargs`` go to ``tandem.worker.supervisor.Supervisor`` (``queues``,
    ``workers``). Start-up errors (unknown backend, unreachable store, bad pool settings) are
    raised here. Never installs signal handlers: call ``stop()`` from the server's shutdown hook.
    """
    global _atexit_registered
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    from tandem.worker.supervisor import Supervisor

    with _registry_lock:
        running = current(backend)
        if running is not None:
            return running
        worker = EmbeddedWorker(Supervisor(backend, **supervisor_kwargs))
        worker._start()
        _workers[backend] = worker
        if not _atexit_registered:
            # atexit runs handlers last-registered first. multiprocessing's own handler
            # terminates daemon children (a process pool's workers): registered before ours,
            # it runs after the release, so those tasks go back to READY instead of FAILED.
            import multiprocessing.util  # noqa: F401

            atexit.register(_release_at_exit)
            _atexit_registered = True
    logger.info(
        "tandem supervisor %s running in pid %d (pools: %s)",
        worker.worker_id,
        worker.pid,
        ", ".join(
            f"{s.config.name}[{s.config.executor} x{s.config.workers}]"
            for s in worker.supervisor.pools
        ),
    )
    return worker


def stop(grace: float = DEFAULT_GRACE) -> bool:
    """Stop every embedded worker of this process (see ``EmbeddedWorker.stop``).

    Returns True when all in-flight tasks finished within ``grace``; a no-op returning True when
    none runs (for example in gunicorn's arbiter).
    """
    with _registry_lock:
        workers = list(_workers.values())
    drained = True
    for worker in workers:
        drained = worker.stop(grace) and drained
    return drained


def _release_at_exit() -> None:
    """The host is exiting without having called ``stop()``: release in-flight tasks now.

    A subinterpreter still inside a task would then hang or crash (SIGSEGV) the interpreter's
    finalization: when one is left, the process ends here (status 0, everything durable is
    written), without the atexit handlers registered before tandem's."""
    released = False
    for worker in list(_workers.values()):
        if worker.running:
            logger.warning(
                "process exiting without tandem.embedded.stop(): releasing the in-flight tasks "
                "of %s back to READY",
                worker.worker_id,
            )
            worker.stop(grace=0)
            released = True
    if not released:
        return
    from tandem.serve.server import finish_process, leftovers

    busy = [thing for thing in leftovers() if "subinterpreter" in thing]
    if busy:
        logger.warning(
            "exiting without interpreter finalization: %s still in a task would hang or crash it",
            ", ".join(busy),
        )
        finish_process(0)


# -- ASGI lifespan ---------------------------------------------------------------------------------


class LifespanApp:
    """An ASGI application that runs an embedded worker for the lifetime of the server process.

    HTTP and websocket scopes go to the wrapped application unchanged. The ``lifespan`` scope is
    forwarded to the wrapped application too when it takes part in lifespan; the worker then
    starts once the application's startup completed and stops before its shutdown begins.
    Django's ``ASGIHandler`` does not take part (it raises for any scope but ``http``): then this
    wrapper answers the server itself. An application that raises or returns before sending any
    lifespan message counts as not taking part, as the ASGI specification has it.
    """

    def __init__(
        self,
        app: ASGIApp,
        backend: str = "default",
        grace: float = DEFAULT_GRACE,
        **supervisor_kwargs: Any,
    ) -> None:
        if grace < 0:
            raise ValueError(f"grace must be >= 0, got {grace:g}.")
        self.app = app
        self.backend = backend
        self.grace = grace
        self.supervisor_kwargs = supervisor_kwargs
        self.worker: EmbeddedWorker | None = None
        self.app_handles_lifespan: bool | None = None  # None until the first lifespan scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
        elif self.app_handles_lifespan is False:
            await self._lifespan(receive, send, startup_received=False)
        else:
            await self._forward(scope, receive, send)

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        received: list[str] = []
        sent = False

        async def app_receive() -> Message:
            message = await receive()
            received.append(message["type"])
            if message["type"] == "lifespan.shutdown":
                await self._stop()  # tasks may use what the application's shutdown tears down
            return message

        async def app_send(message: Message) -> None:
            nonlocal sent
            if message["type"] == "lifespan.startup.complete":
                error = await self._start()
                if error is not None:
                    message = {"type": "lifespan.startup.failed", "message": error}
            sent = True
            await send(message)

        try:
            await self.app(scope, app_receive, app_send)
        except Exception as exc:
            if sent:
                await self._stop()
                raise
            logger.debug("%r does not take part in ASGI lifespan (%r)", self.app, exc)
        else:
            if sent:
                await self._stop()  # no-op after a regular shutdown
                return
        self.app_handles_lifespan = False
        await self._lifespan(receive, send, startup_received="lifespan.startup" in received)

    async def _lifespan(self, receive: Receive, send: Send, *, startup_received: bool) -> None:
        if not startup_received:
            message = await receive()
            if message["type"] != "lifespan.startup":
                raise RuntimeError(f"expected lifespan.startup, got {message['type']!r}")
        error = await self._start()
        if error is not None:
            await send({"type": "lifespan.startup.failed", "message": error})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        if message["type"] != "lifespan.shutdown":
            raise RuntimeError(f"expected lifespan.shutdown, got {message['type']!r}")
        try:
            await self._stop()
        except Exception as exc:
            logger.exception("stopping the embedded tandem worker failed")
            await send({"type": "lifespan.shutdown.failed", "message": f"tandem: {exc!r}"})
            return
        await send({"type": "lifespan.shutdown.complete"})

    async def _start(self) -> str | None:
        """Start the worker off the event loop; return an error message if it could not."""
        try:
            self.worker = await asyncio.to_thread(start, self.backend, **self.supervisor_kwargs)
        except Exception as exc:
            logger.exception("the embedded tandem worker could not start")
            return f"tandem: the embedded worker could not start: {type(exc).__name__}: {exc}"
        return None

    async def _stop(self) -> None:
        """Drain the worker in a thread (up to ``grace`` seconds) so the loop keeps serving."""
        worker, self.worker = self.worker, None
        if worker is not None:
            await asyncio.to_thread(worker.stop, self.grace)


def lifespan(
    app: ASGIApp, backend: str = "default", grace: float = DEFAULT_GRACE, **supervisor_kwargs: Any
) -> LifespanApp:
    """Wrap an ASGI application so the server's lifespan starts and stops an embedded worker.

    ``application = tandem.embedded.lifespan(get_asgi_application())`` in ``asgi.py``; works with
    uvicorn, hypercorn and granian (``--interface asgi``), each worker process running its own
    supervisor. ``grace``: seconds in-flight tasks get to finish at shutdown before they are
    released back to READY; keep it below the server's own shutdown limit.
    """
    return LifespanApp(app, backend, grace, **supervisor_kwargs)


# -- gunicorn --------------------------------------------------------------------------------------

GUNICORN_GRACE_SHARE = 0.8


def _gunicorn_grace(worker: Any) -> float:
    """80% of gunicorn's ``graceful_timeout``: the release must come before its SIGKILL.

    Or of ``timeout`` when that is smaller: a worker leaving on its own (``max_requests``, a
    reload) does not heartbeat while it drains, and the arbiter aborts it after ``timeout``.
    """
    config = getattr(worker, "cfg", None)
    limits = [
        float(value)
        for value in (
            getattr(config, "graceful_timeout", None),
            getattr(config, "timeout", None),
        )
        if isinstance(value, int | float) and value > 0
    ]
    if not limits:
        return DEFAULT_GRACE
    return min(limits) * GUNICORN_GRACE_SHARE


def gunicorn_hooks(
    backend: str = "default", grace: float | None = None, **supervisor_kwargs: Any
) -> tuple[Callable[[Any], None], Callable[[Any, Any], None]]:
    """``post_worker_init, worker_exit = gunicorn_hooks(...)`` for a gunicorn configuration file.

    ``post_worker_init`` starts the supervisor in each worker process after the application was
    loaded; ``worker_exit`` drains it when the worker exits (after SIGTERM, SIGINT/SIGQUIT,
    ``max_requests``, a reload). ``grace`` defaults to 80% of gunicorn's ``graceful_timeout`` (or
    of its ``timeout``, when smaller), so tasks still running then are released before the
    arbiter kills the worker.
    """

    def post_worker_init(worker: Any) -> None:
        start(backend, **supervisor_kwargs)

    def worker_exit(server: Any, worker: Any) -> None:
        # Also called in the arbiter for a worker that vanished: stop() is a no-op there.
        worker_ = _workers.get(backend)
        if worker_ is not None:
            worker_.stop(_gunicorn_grace(worker) if grace is None else grace)

    return post_worker_init, worker_exit


post_worker_init, worker_exit = gunicorn_hooks()
