"""OpenTelemetry for the tests: the SDK's in-memory exporter in this process, and a file of
spans for a worker process (``TANDEM_TEST_SPANS``, read by ``tests/settings.py``)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once


def as_dict(span: ReadableSpan) -> dict[str, Any]:
    """What the tests compare of a span: names, ids (hex), kind, status, attributes, events."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "kind": span.kind.name,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "events": [event.name for event in span.events],
        "exception": [
            dict(event.attributes or {}) for event in span.events if event.name == "exception"
        ],
        "pid": os.getpid(),
    }


class FileExporter(SpanExporter):
    """Appends each span as one JSON line (one ``write`` with ``O_APPEND``: whole lines from
    every process and interpreter)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        text = "".join(json.dumps(as_dict(span), default=str) + "\n" for span in spans)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS


def export_to_file(path: str) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(path)))
    trace.set_tracer_provider(provider)


def read_file(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


@contextlib.contextmanager
def in_memory() -> Iterator[InMemorySpanExporter]:
    """This process's tracer provider, for one test: the SDK's in-memory exporter behind it.
    OpenTelemetry sets a global provider once per process; the test restores the one before
    (none), so no other test records spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    before = (trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE)
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = before
        provider.shutdown()
