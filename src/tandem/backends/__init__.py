"""tandem's ``django.tasks`` backends, and the one place that finds the one behind an alias."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured
from django.tasks.exceptions import InvalidTaskBackend

if TYPE_CHECKING:
    from tandem.backends.base import TandemBackend


class NotATandemBackend(ImproperlyConfigured, TypeError):
    """``TASKS[alias]`` is another ``django.tasks`` backend. An ``ImproperlyConfigured`` (a
    setting is wrong) and a ``TypeError`` (what ``tandem.pause()`` and friends raised before)."""


def tandem_backend(alias: str) -> TandemBackend:
    """The tandem backend ``TASKS[alias]``.

    ``InvalidTaskBackend`` (an ``ImproperlyConfigured``) when ``settings.TASKS`` has no such
    alias, ``NotATandemBackend`` when the alias uses another backend; a backend that cannot be
    loaded raises what Django raises (an ``ImproperlyConfigured``).
    """
    from django.tasks import task_backends

    from tandem.backends.base import TandemBackend

    if alias not in task_backends.settings:
        raise InvalidTaskBackend(f"No task backend {alias!r} in settings.TASKS.")
    backend = task_backends[alias]
    if not isinstance(backend, TandemBackend):
        raise NotATandemBackend(
            f"TASKS[{alias!r}] uses {type(backend).__module__}.{type(backend).__qualname__}, "
            "not a tandem backend (tandem.backends.database.DatabaseBackend or "
            "tandem.backends.redis.RedisBackend)."
        )
    return backend


__all__ = ["NotATandemBackend", "tandem_backend"]
