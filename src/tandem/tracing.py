"""OpenTelemetry traces from the enqueue to every attempt — only when it is installed and used.

With ``opentelemetry-api`` installed (``pip install "django-tandem[otel]"``) and a tracer provider
set (``opentelemetry.trace.set_tracer_provider(...)``, or an auto-instrumentation agent):

- ``enqueue()`` runs in a PRODUCER span ``tandem enqueue <task path>``, whose W3C trace context
  (``traceparent``, ``tracestate``) is stored with the task;
- each attempt runs in a CONSUMER span ``tandem run <task path>`` whose parent is that context,
  with ``messaging.system="tandem"``, ``messaging.destination.name`` (the queue),
  ``messaging.message.id`` (the task id) and ``tandem.attempt``; a failed attempt's span has
  status ERROR and the exception recorded.

Without ``opentelemetry`` nothing is imported (the package is looked up once, without importing
it) and every function here returns at once; without a tracer provider set, nothing is recorded
or stored either — and while nothing has imported ``opentelemetry.trace`` (nor named a provider
in ``OTEL_PYTHON_TRACER_PROVIDER``), tandem does not import it either.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tandem.brokers.base import NewTask, StoredTask
    from tandem.execution import Outcome

TRACER_NAME = "tandem"
#: OpenTelemetry's variable naming a tracer provider to load (``OTEL_PYTHON_TRACER_PROVIDER``).
PROVIDER_VARIABLE = "OTEL_PYTHON_TRACER_PROVIDER"
SYSTEM = "tandem"

_installed: bool | None = None  # whether the ``opentelemetry`` package can be imported
_tracer: tuple[Any, Any] = (None, None)  # (provider, its tracer): made once per provider
_propagator: Any = None  # W3C trace context, made once


def _api() -> Any:
    """``opentelemetry.trace`` when installed and a tracer provider is set, else None."""
    global _installed
    if _installed is None:
        try:
            _installed = importlib.util.find_spec("opentelemetry") is not None
        except (ImportError, ValueError):  # blocked (``sys.modules[name] = None``)
            _installed = False
    if not _installed:
        return None
    if "opentelemetry.trace" not in sys.modules and PROVIDER_VARIABLE not in os.environ:
        # Nothing set a tracer provider: that takes importing ``opentelemetry.trace`` (an SDK,
        # an agent, the app), or this variable (the provider OpenTelemetry then loads on first
        # use). Importing it only to find that out cost a few ms on the first enqueue.
        return None
    from opentelemetry import trace

    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None  # no provider set: OpenTelemetry is installed but not in use
    return trace


def enabled() -> bool:
    return _api() is not None


def _tracer_and_propagator(trace: Any) -> tuple[Any, Any]:
    """tandem's tracer from the current provider (cached while it stays the same) and the W3C
    propagator."""
    global _tracer, _propagator
    provider = trace.get_tracer_provider()
    if _tracer[0] is not provider:
        _tracer = (provider, provider.get_tracer(TRACER_NAME))
    if _propagator is None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        _propagator = TraceContextTextMapPropagator()
    return _tracer[1], _propagator


def _attributes(queue: str, task_id: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.destination.name": queue,
        "messaging.message.id": task_id,
    }


@contextlib.contextmanager
def producer(new: NewTask) -> Iterator[NewTask]:
    """A PRODUCER span around storing ``new``; yields ``new`` with the span's trace context (or
    ``new`` itself when not tracing)."""
    trace = _api()
    if trace is None:
        yield new
        return
    from dataclasses import replace

    tracer, propagator = _tracer_and_propagator(trace)
    with tracer.start_as_current_span(
        f"tandem enqueue {new.task_path}",
        kind=trace.SpanKind.PRODUCER,
        attributes={**_attributes(new.queue_name, new.id), "messaging.operation.type": "send"},
    ):
        carrier: dict[str, str] = {}
        propagator.inject(carrier)
        yield replace(new, trace_context=carrier or None)


@contextlib.contextmanager
def consumer(stored: StoredTask) -> Iterator[Any]:
    """A CONSUMER span for one attempt of ``stored``, child of its stored trace context; yields
    the span (None when not tracing). The span is current inside: the task's own spans nest."""
    trace = _api()
    if trace is None:
        yield None
        return
    tracer, propagator = _tracer_and_propagator(trace)
    parent = propagator.extract(stored.trace_context or {})
    with tracer.start_as_current_span(
        f"tandem run {stored.task_path}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            **_attributes(stored.queue_name, stored.id),
            "messaging.operation.type": "process",
            "tandem.attempt": stored.attempts,
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def failed(span: Any, exc: BaseException) -> None:
    """Record ``exc`` on the attempt's ``span`` and set its status ERROR."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def ended(span: Any, outcome: Outcome) -> None:
    """An attempt that failed outside the task's code (it could not run): status ERROR."""
    if span is None or outcome.succeeded or outcome.error is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, outcome.error.exception_class_path))


__all__ = ["consumer", "enabled", "ended", "failed", "producer"]
