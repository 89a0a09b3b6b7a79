"""First mistakes, found before anything runs: each a few lines that name the one-line fix.

Used by the backends' system checks (``manage.py check``, and every ``tandem`` subcommand, which
runs them first) and by ``tandem serve`` / ``tandem worker`` before they start their pools.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

from tandem.conf import BackendOptions, unknown_keys

if TYPE_CHECKING:
    from tandem.backends.base import TandemBackend

#: The keys Django reads from ``settings.TASKS[alias]``.
BACKEND_KEYS = frozenset({"BACKEND", "QUEUES", "OPTIONS"})

NOT_INSTALLED = (
    "'tandem' is not in INSTALLED_APPS, so its tables and its manage.py command do not exist. "
    'Add "tandem" to INSTALLED_APPS in your settings, then run `python manage.py migrate`.'
)

#: The optional dependency behind each importable name, and the extra that installs it.
EXTRAS = {"redis": "redis", "psycopg": "postgres", "psycopg2": "postgres", "MySQLdb": "mysql"}


def extra_hint(module: str) -> str:
    """The message for a missing optional dependency ``module`` (a key of ``EXTRAS``)."""
    extra = EXTRAS[module]
    return (
        f"The Python package {module!r} is not installed; this store needs it. Install it with: "
        f'pip install "django-tandem[{extra}]"'
    )


def missing_extra(exc: BaseException) -> str | None:
    """``extra_hint`` for the optional dependency whose absence caused ``exc``, if one did.

    Follows the chain of causes: Django reports a missing database driver as an
    ``ImproperlyConfigured`` ("Error loading psycopg2 or psycopg module") raised from the
    ``ModuleNotFoundError``.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ModuleNotFoundError) and seen.name:
            root = seen.name.partition(".")[0]
            if root in EXTRAS:
                return extra_hint(root)
        if isinstance(seen, ImproperlyConfigured) and "psycopg" in str(seen):
            return extra_hint("psycopg")
        if isinstance(seen, ImproperlyConfigured) and "MySQLdb" in str(seen):
            return extra_hint("MySQLdb")
        seen = seen.__cause__ or seen.__context__
    return None


def unknown_backend_keys(alias: str, params: Mapping[str, Any]) -> str | None:
    """``TASKS[alias]`` keys Django ignores (``"QUEUE"`` for ``"QUEUES"``): a typo that would
    silently serve the wrong queues."""
    unknown = sorted(set(params) - BACKEND_KEYS, key=str)
    if not unknown:
        return None
    return (
        f"TASKS[{alias!r}] has unknown key(s) {', '.join(unknown_keys(unknown, BACKEND_KEYS))}; "
        f"Django reads only {', '.join(sorted(BACKEND_KEYS))}, and ignores the rest."
    )


def option_errors(backend: TandemBackend, first: ImproperlyConfigured) -> list[str]:
    """Every invalid key of ``TASKS[alias]['OPTIONS']``, not only the first one parsing met.

    ``first`` is the error of parsing the whole ``OPTIONS``. Each top-level key is then parsed on
    its own (with the ``executor`` it depends on), so two bad values give two messages.
    """
    messages = [str(first)]
    raw = backend.params.get("OPTIONS") or {}
    if not isinstance(raw, Mapping) or "unknown key" in str(first):
        return messages  # unknown keys are listed together already, and stop the parse
    for key in raw:
        pools = raw[key] if key == "pools" and isinstance(raw[key], Mapping) else None
        # Each pool on its own too: two bad pools give two messages.
        parts = (
            [{key: {name: pool}} for name, pool in pools.items()] if pools else [{key: raw[key]}]
        )
        for alone in parts:
            if key != "executor" and "executor" in raw:
                alone["executor"] = raw["executor"]
            try:
                parse_alone(backend, alone)
            except ImproperlyConfigured as exc:
                if str(exc) not in messages:
                    messages.append(str(exc))
    return messages


def parse_alone(backend: TandemBackend, options: dict[str, Any]) -> BackendOptions:
    from tandem.conf import parse_options

    return parse_options(
        backend.alias,
        {**backend.params, "OPTIONS": options},
        frozenset(backend.queues),
        backend.subinterpreter_blocker(),
        extra_keys=backend.extra_option_keys,
    )


def store_problem(backend: TandemBackend) -> str | None:
    """Why ``tandem serve``/``tandem worker`` cannot start on ``backend``'s store, if it cannot:
    the store does not answer, a driver is missing, or tandem's tables are not migrated."""
    try:
        return backend.broker.startup_problem()
    except ImproperlyConfigured as exc:
        return missing_extra(exc) or str(exc)
    except Exception as exc:  # any failure to reach the store is the message
        hint = missing_extra(exc)
        if hint:
            return hint
        return (
            f"The task store of TASKS[{backend.alias!r}] does not answer: "
            f"{type(exc).__name__}: {str(exc).strip().rstrip('.')}. Start it, or check its "
            "address and credentials in settings."
        )
