"""A worker interpreter set up ahead of time, while the main interpreter is still starting.

Before ``tandem serve`` or ``tandem worker`` claims its first task, the main interpreter builds
the command's parser, runs the system checks, checks the store and builds the supervisor (and
the HTTP server): about 0.15 s after Django is set up. A subinterpreter pool's first worker then
sets Django up too (about 0.2 s), and only then is the first task claimed. That worker has a GIL
of its own, so its set-up can run on another core meanwhile: the command starts it (``begin``)
before doing anything else, and the pool's start-up proof adopts it (``take``) and imports the
pool's task modules in it. The first task then waits for the longer of the two start-ups, not
for both one after the other.

The interpreter is set up exactly as a pool's own (``runner.setup`` with the same environment);
an environment that changed meanwhile (a test run renaming databases) is not adopted. One that no
pool adopts is closed once the executors are chosen (``discard``), or at exit. Nothing of this
runs for ``call_command()``, nor where no pool of the backend runs on subinterpreters.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tandem.worker.pools import early

if TYPE_CHECKING:
    from tandem.conf import BackendOptions
    from tandem.worker.pools.early import Early
    from tandem.worker.pools.subinterpreters import _Interpreter

logger = logging.getLogger("tandem.worker")


class _Warming:
    """One interpreter setting Django up on a thread of its own."""

    def __init__(self, environment: tuple[Any, ...], early: Early | None = None) -> None:
        self.environment = environment
        self.early = early  # one started during Django's set-up, adopted if set up alike
        self.worker: _Interpreter | None = None
        self._lock = threading.Lock()
        self._unwanted = False
        # Not a daemon: an exit while the interpreter sets up waits for it (a daemon thread
        # still inside a subinterpreter would crash interpreter finalization), then closes it.
        self.thread = threading.Thread(target=self._set_up, name="tandem-warm-up")

    def _set_up(self) -> None:
        # Django first, with as little as possible imported here before: this thread shares
        # the main interpreter's GIL with the command's own start until it enters the new one.
        from concurrent import interpreters  # type: ignore[attr-defined,unused-ignore]

        from tandem.worker.pools import runner
        from tandem.worker.pools.startup import StartupFailure, from_exception

        failure: StartupFailure | None = None
        interp, error = self._adopt_early()
        if interp is not None:
            if error is not None:
                failure = from_exception("subinterpreter", "setting Django up", error)
        else:
            try:
                interp = interpreters.create()
            except Exception:  # not even one: the proof creates its own and says why not
                logger.debug("the warm-up interpreter could not be created", exc_info=True)
                return
            try:
                interp.call(runner.setup, *self.environment)
            except Exception as exc:
                failure = from_exception("subinterpreter", "setting Django up", exc)
        try:
            from tandem.worker.pools.subinterpreters import _Interpreter

            worker = _Interpreter(self.environment, "", interp=interp, setup_error=failure)
        except BaseException:
            with contextlib.suppress(Exception):
                interp.close()
            raise
        with self._lock:
            self.worker = worker
            unwanted = self._unwanted
        if unwanted:
            _close(worker)

    def _adopt_early(self) -> tuple[Any, BaseException | None]:
        """The interpreter ``early`` started during Django's set-up and its set-up's error, if
        it was set up with this environment; else (None, None) (and it is closed)."""
        early = self.early
        if early is None:
            return None, None
        interp, error = early.result()
        if interp is not None and early.environment == self.environment:
            logger.debug("the interpreter set up ahead was started during Django's set-up")
            return interp, error
        if interp is not None:
            with contextlib.suppress(Exception):
                interp.close()
        return None, None

    def result(self) -> _Interpreter | None:
        self.thread.join()
        return self.worker

    def drop(self) -> None:
        """Close the interpreter: now if it is set up, else once it is (not waiting here)."""
        with self._lock:
            self._unwanted = True
            worker = self.worker
        if worker is not None:
            _close(worker)


def _close(worker: _Interpreter) -> None:
    with contextlib.suppress(Exception):
        worker.close()


_lock = threading.Lock()
_pending: _Warming | None = None
_registered = False


def begin(environment: tuple[Any, ...]) -> None:
    """Start setting one worker interpreter up with ``environment`` (``runner.worker_environment``)
    on a thread of its own; at most one waits at a time."""
    global _pending, _registered
    with _lock:
        if _pending is not None:
            return
        _pending = _Warming(environment, early.take())
        _pending.thread.start()
        if not _registered:
            _registered = True
            atexit.register(discard)


def take(environment: tuple[Any, ...]) -> _Interpreter | None:
    """The interpreter started by ``begin``, once set up (its ``setup_error`` says whether it
    could), if it was set up with ``environment``; else None (and it is closed)."""
    global _pending
    with _lock:
        warming, _pending = _pending, None
    if warming is None:
        return None
    worker = warming.result()
    if worker is not None and warming.environment != environment:
        _close(worker)
        return None
    return worker


def discard() -> None:
    """Close the interpreter started by ``begin`` if no pool took it — at once, or when its
    set-up ends (without waiting for that here: a pool's own start goes on meanwhile)."""
    global _pending
    with _lock:
        warming, _pending = _pending, None
    if warming is not None:
        warming.drop()
    stray = early.take()  # started during ``django.setup()``, but ``begin`` was never called
    if stray is not None:
        unwanted = _Warming(stray.environment, stray)
        unwanted.drop()  # closed by its thread once set up
        unwanted.thread.start()


def pending() -> bool:
    """Whether an interpreter started by ``begin`` waits for a pool."""
    return _pending is not None


def begin_for_command(args: Sequence[str]) -> bool:
    """Start a worker interpreter now if ``manage.py tandem`` was given ``args`` that run a
    subinterpreter pool (``serve`` or ``worker``, for the ``--backend`` named); True if started.
    Anything this cannot tell — an unusual command line, a backend that does not load — starts
    nothing: the pool then sets its first worker up itself, as without a warm-up."""
    from tandem.conf import SUBINTERPRETERS_AVAILABLE

    alias = early.pool_backend(args) if SUBINTERPRETERS_AVAILABLE else None
    if alias is None:
        return False
    try:
        from tandem.backends import tandem_backend
        from tandem.worker.pools.runner import worker_environment

        backend = tandem_backend(alias)
        # Whether a pool would run on subinterpreters, before asking the store whether it
        # can be used from one (that imports the store's code: a few tens of milliseconds).
        if not subinterpreter_pools(backend.parse_options(None)):
            return False
        begin(worker_environment())
        if not subinterpreter_pools(backend.tandem_options):  # a driver that cannot load there
            discard()
            return False
    except Exception:  # the command itself says what is wrong
        discard()
        return False
    return True


def subinterpreter_pools(options: BackendOptions) -> bool:
    return any(pool.executor == "subinterpreter" for pool in options.pools)


__all__ = ["begin", "begin_for_command", "discard", "pending", "take"]
