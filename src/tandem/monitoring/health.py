"""Liveness and readiness, for load balancers and container probes.

*Live*: the process answers (nothing else is checked: a live process that is not ready should be
left alone, not restarted). *Ready*: every tandem backend's store answers a query, and — where a
supervisor runs in this process (``tandem serve``) — that supervisor is running and not stopping.
Answers carry no details beyond a short reason: the endpoints are open to anyone who can reach
them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connections

from tandem.backends import tandem_backend
from tandem.monitoring.status import tandem_aliases

logger = logging.getLogger("tandem.monitoring")

#: Returns None when the supervisor is fine, else why it is not (one short phrase).
SupervisorProbe = Callable[[], str | None]


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...]

    @property
    def text(self) -> str:
        return "ready\n" if self.ready else "not ready: " + "; ".join(self.reasons) + "\n"


def store_problem(alias: str) -> str | None:
    """None when the store of ``TASKS[alias]`` answers, else a short reason (details logged)."""
    try:
        tandem_backend(alias).broker.ping()
    except Exception as exc:
        logger.warning("readiness: the store of backend %r does not answer: %s", alias, exc)
        return f"the task store of backend {alias!r} does not answer"
    return None


def readiness(supervisor: SupervisorProbe | None = None) -> Readiness:
    reasons = [r for alias in tandem_aliases() if (r := store_problem(alias))]
    if supervisor is not None and (problem := supervisor()):
        reasons.append(problem)
    return Readiness(ready=not reasons, reasons=tuple(reasons))


def close_connections() -> None:
    """Close this thread's database connections (a probe outside Django's request cycle)."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


__all__ = ["Readiness", "SupervisorProbe", "close_connections", "readiness", "store_problem"]
