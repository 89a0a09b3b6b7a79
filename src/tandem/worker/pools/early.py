"""The warm-up interpreter, started while the main interpreter is still importing Django.

``warmup`` starts a worker interpreter setting Django up when the ``tandem`` command begins to
run: after ``django.setup()`` has imported every app (about 0.2 s into the process). Most of that
time is spent importing ``tandem`` itself (it brings in ``django.tasks``, the ORM and the
stores) while the second core waits. So ``tandem/__init__.py`` calls ``begin()`` first of all,
before its own imports: when the command line is ``… tandem serve`` or ``… tandem worker`` and a
pool of that backend would run on subinterpreters, by the settings as written, a thread creates
the interpreter and sets Django up in it at once. ``warmup.begin`` then takes it over (``take``)
instead of creating one. The first task now waits for about one Django set-up, not one and a half.

Only the standard library and Django's settings are used here, in the main interpreter: this
runs in the middle of ``django.setup()``, with ``tandem`` half imported, and the thread imports
nothing of tandem in it (a second thread importing the package while the first still does could
see it half initialized). The interpreter imports tandem's ``runner`` itself and runs its
``setup`` with the environment the pools would give it (``runner.worker_environment``); one set
up with an environment that turns out to differ is closed by ``warmup``, not used. Anything this
cannot tell from the settings as written starts nothing; a guess that proves wrong (a store that
cannot be used from a subinterpreter) costs a second core for a moment, and ``warmup`` closes the
interpreter.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

#: ``manage.py tandem <subcommand>``: the subcommands whose pools run tasks.
RUNNING = ("serve", "worker")
#: Arguments after which the command runs no pool in this process: help, or ``serve
#: --supervise`` (this process becomes the supervising parent; its child starts its own).
NO_POOLS = ("-h", "--help", "--supervise")
DATABASE_BACKEND = "tandem.backends.database.DatabaseBackend"
#: Run in the new interpreter, with the environment as JSON text in its ``__main__``.
SETUP_SOURCE = """\
import json as _json
from tandem.worker.pools import runner as _runner
_runner.setup(*_json.loads(_tandem_environment))
del _json, _runner, _tandem_environment
"""


class Early:
    """One interpreter setting Django up on a thread of its own, started by ``begin``."""

    def __init__(self, environment: tuple[Any, ...]) -> None:
        self.environment = environment
        # JSON, not a pickle (tandem never imports pickle): a database name given as a path
        # reaches the interpreter as its text, which Django takes alike. (Raises here, in the
        # caller, for a name that is neither: then nothing starts.)
        self.text = json.dumps(environment, default=os.fspath)
        self.interpreter: Any = None
        self.error: BaseException | None = None
        # Not a daemon, like ``warmup``'s: an exit during the set-up waits for it to end.
        self.thread = threading.Thread(target=self._set_up, name="tandem-early-warm-up")

    def _set_up(self) -> None:
        from concurrent import interpreters  # type: ignore[attr-defined,unused-ignore]

        try:
            interp = interpreters.create()
        except Exception as exc:  # warmup creates its own and says why it could not
            self.error = exc
            return
        self.interpreter = interp
        try:
            interp.prepare_main(_tandem_environment=self.text)
            interp.exec(SETUP_SOURCE)
        except Exception as exc:  # the pool's start-up proof reports it
            self.error = exc

    def result(self) -> tuple[Any, BaseException | None]:
        """The interpreter (None if none could be created) and its set-up's error, once done."""
        self.thread.join()
        return self.interpreter, self.error


_lock = threading.Lock()
_started: Early | None = None
_registered = False


def begin(argv: Sequence[str] | None = None) -> bool:
    """Start the warm-up interpreter if ``argv`` (default ``sys.argv``) runs a subinterpreter
    pool; True if it was started. Never raises: anything unexpected starts nothing."""
    global _started, _registered
    try:
        environment = _environment_for(list(sys.argv if argv is None else argv))
    except Exception:
        return False
    if environment is None:
        return False
    try:
        early = Early(environment)
    except (TypeError, ValueError):  # a database name that is not text (nor a path)
        return False
    with _lock:
        if _started is not None:
            return False
        _started = early
        _started.thread.start()
        if not _registered:
            _registered = True
            atexit.register(_discard)  # the command ended before ``warmup`` took it
    return True


def take() -> Early | None:
    """The interpreter ``begin`` started (once), for ``warmup`` to adopt or close."""
    global _started
    with _lock:
        early, _started = _started, None
    return early


def _discard() -> None:
    early = take()
    if early is not None:
        interpreter, _ = early.result()
        if interpreter is not None:
            with contextlib.suppress(Exception):
                interpreter.close()


def _environment_for(argv: list[str]) -> tuple[Any, ...] | None:
    if sys.version_info < (3, 14) or not _in_main_interpreter():
        return None
    args = _command_args(argv)
    alias = None if args is None else pool_backend(args)
    if alias is None:
        return None
    from django.conf import settings

    params = getattr(settings, "TASKS", {}).get(alias)
    if not isinstance(params, Mapping) or not _runs_subinterpreters(params, settings.DATABASES):
        return None
    # As ``runner.worker_environment()`` will give it once Django is set up (``connections``
    # fill missing names in as ""): ``warmup`` adopts the interpreter only if they are equal.
    environ = {"DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "")}
    databases = {alias: db.get("NAME", "") for alias, db in settings.DATABASES.items()}
    return list(sys.path), environ, databases


def _in_main_interpreter() -> bool:
    from concurrent import interpreters  # type: ignore[attr-defined,unused-ignore]

    return bool(interpreters.get_current().id == interpreters.get_main().id)


def _command_args(argv: list[str]) -> list[str] | None:
    """What follows ``tandem`` on a ``manage.py``/``django-admin``/``python -m django`` line."""
    if len(argv) < 2 or argv[1] != "tandem":
        return None
    return argv[2:]


def pool_backend(args: Sequence[str]) -> str | None:
    """The backend alias whose pools ``manage.py tandem`` runs with ``args`` (``serve`` or
    ``worker``, ``--backend`` or "default"); None when it runs none here (help, ``--supervise``,
    another subcommand)."""
    if any(arg in NO_POOLS for arg in args):
        return None
    from tandem.cli import SUBCOMMANDS  # (imports nothing of tandem either)

    # The first subcommand named: only the command's own options (and their values: a
    # verbosity, a settings module) come before it.
    named = [arg for arg in args if arg in SUBCOMMANDS]
    if not named or named[0] not in RUNNING:
        return None
    alias = "default"
    for index, arg in enumerate(args):
        if arg == "--backend" and index + 1 < len(args):
            alias = args[index + 1]
        elif arg.startswith("--backend="):
            alias = arg.partition("=")[2]
    return alias


def _runs_subinterpreters(params: Mapping[str, Any], databases: Mapping[str, Any]) -> bool:
    """Whether a pool of this backend would run on subinterpreters, by its settings as written
    (``tandem.conf`` decides for real once the backend loads; this may not import it yet).

    A database store can only be MariaDB/MySQL (whose driver does not load in a subinterpreter)
    when every database is: then nothing starts. Otherwise the loaded backend has the last word.
    """
    backend = str(params.get("BACKEND", ""))
    if not backend.startswith("tandem."):
        return False
    engines = [str(db.get("ENGINE", "")) for db in databases.values()]
    if backend == DATABASE_BACKEND and engines and all("mysql" in e for e in engines):
        return False
    options = params.get("OPTIONS") or {}
    default = options.get("executor", "subinterpreter")
    pools = options.get("pools") or {}
    if not pools:
        return bool(default == "subinterpreter")
    return any(
        isinstance(pool, Mapping) and pool.get("executor", default) == "subinterpreter"
        for pool in pools.values()
    )


__all__ = ["begin", "pool_backend", "take"]
