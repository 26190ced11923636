"""Traces (OpenTelemetry): one trace per order, across the web, relays and workers.

Off unless an OTLP endpoint is configured by OpenTelemetry's standard variables
(`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_SDK_DISABLED=true` or
`OTEL_TRACES_EXPORTER=none` turn it off again). Off, no provider is set up and every function here
returns at its first line: a publish stores no trace context, a handler opens no span.

On, each process sets up its provider once (`setup`, from its entry point: `config.wsgi`, a Celery
worker's child, `manage.py`) with the Django, Celery and psycopg instrumentations, less those named
in `OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`. Unset, that is `psycopg`: a span per SQL statement is
most of what tracing costs (`make bench`), so statements are traced only when it is set otherwise
(empty, or naming other instrumentations). The rest of the platform joins the traces through the
W3C `traceparent` stored with each event: a handler's span continues the trace of the span that
published the event it handles (`handler_span`), a batch of many events links to each of them
(`batch_span`), and what leaves the process carries the active span's `traceparent`.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

_TRUE = ("true", "1", "yes", "on")
# What `OTEL_PYTHON_DISABLED_INSTRUMENTATIONS` is when unset: no span per SQL statement.
DISABLED_BY_DEFAULT = "psycopg"
_TRACER = "shelfwise"

# Set by `setup` in a process whose traces are exported; read on every publish and handler run.
_enabled = False
_setup_pid: int | None = None
# The process's tracer, made once by `setup`.
_tracer: Any = None


def configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard variables ask for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def enabled() -> bool:
    return _enabled


def setup(role: str) -> bool:
    """Set up this process's tracer provider, exporter and instrumentations, once; whether traces
    are on. `role` (`web`, `worker`, the management command's name) names the process in its
    resource (`shelfwise.process`) and, when `OTEL_SERVICE_NAME` is unset, its service
    (`shelfwise-<role>`).

    Called after a fork, never before: the exporter's thread and the resource's `process.pid` are
    the process's own."""
    global _enabled, _setup_pid, _tracer
    if _setup_pid == os.getpid() or not configured():
        return _enabled
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME") or f"shelfwise-{role}",
            "shelfwise.process": role,
            "process.pid": os.getpid(),
            "process.command": os.path.basename(sys.argv[0]) if sys.argv else "",
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _tracer = provider.get_tracer(_TRACER)
    _instrument()
    _enabled, _setup_pid = True, os.getpid()
    return True


def _instrument() -> None:
    named = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", DISABLED_BY_DEFAULT)
    disabled = {name.strip().lower() for name in named.split(",")}
    if "django" not in disabled:
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        if not DjangoInstrumentor().is_instrumented_by_opentelemetry:
            DjangoInstrumentor().instrument()
    if "celery" not in disabled:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        if not CeleryInstrumentor().is_instrumented_by_opentelemetry:
            CeleryInstrumentor().instrument()
    if "psycopg" not in disabled:
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        if not PsycopgInstrumentor().is_instrumented_by_opentelemetry:
            PsycopgInstrumentor().instrument()


# --- trace context --------------------------------------------------------------------------


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the active span; None with tracing off or no span active."""
    if not _enabled:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


@functools.lru_cache(maxsize=4096)
def _span_context_of(traceparent: str | None):
    """The span context a `traceparent` names (invalid for None or a malformed value). Kept for
    the next spans of the same event: each of its handlers, each batch it is in."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not traceparent:
        return trace.INVALID_SPAN_CONTEXT
    extracted = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    return trace.get_current_span(extracted).get_span_context()


def _parent_for(traceparent: str | None):
    """The context a span for an event published under `traceparent` starts in: the publishing
    span, unless the active span is a Celery task's in that trace (its message carried the
    context), which it then continues; the active context when the event has no trace."""
    from opentelemetry import trace

    published = _span_context_of(traceparent)
    if not published.is_valid:
        return None
    active_span = trace.get_current_span()
    active = active_span.get_span_context()
    consuming = getattr(active_span, "kind", None) is trace.SpanKind.CONSUMER
    if consuming and active.is_valid and active.trace_id == published.trace_id:
        return None
    return trace.set_span_in_context(trace.NonRecordingSpan(published))


def event_attributes(
    *, event_type: str, event_id: object, tenant_id: object, order_id: object | None
) -> dict[str, str]:
    """What every span about one event says of it: its type, id, bookstore and order."""
    attributes = {
        "shelfwise.event.type": event_type,
        "shelfwise.event.id": str(event_id),
        "shelfwise.tenant.id": str(tenant_id),
    }
    if order_id:
        attributes["shelfwise.order.id"] = str(order_id)
    return attributes


def handler_span(name: str, *, traceparent: str | None, attributes: Mapping[str, str]):
    """A span for one handler's run on one event, in the trace the event was published in.

    A context manager; with tracing off, one that does nothing."""
    if not _enabled:
        return nullcontext()
    return _span(name, traceparent, {"shelfwise.handler": name, **attributes})


@contextmanager
def _span(name: str, traceparent: str | None, attributes: Mapping[str, str]) -> Iterator[Any]:
    with _tracer.start_as_current_span(name, context=_parent_for(traceparent), attributes=attributes) as span:
        yield span


def batch_span(name: str, events: Sequence[tuple[str | None, Mapping[str, str]]], *, kind: str):
    """A span for a run over many events (a relay's batch, a position reader's): one link per
    event that has a trace, with that event's attributes (`event_attributes`). Each event's own
    handler span, if any, stays in the event's trace.

    A context manager; with tracing off, one that does nothing."""
    if not _enabled:
        return nullcontext()
    return _batch(name, events, kind)


@contextmanager
def _batch(name: str, events: Sequence[tuple[str | None, Mapping[str, str]]], kind: str) -> Iterator[Any]:
    from opentelemetry import context, trace

    links = []
    for traceparent, attributes in events:
        linked = _span_context_of(traceparent)
        if linked.is_valid:
            links.append(trace.Link(linked, attributes=dict(attributes)))
    attributes = {"shelfwise.handler": name, "shelfwise.batch.kind": kind, "shelfwise.batch.events": len(events)}
    # A root span of its own: the batch belongs to no one event's trace.
    with _tracer.start_as_current_span(name, context=context.Context(), links=links, attributes=attributes) as span:
        yield span


def within(traceparent: str | None):
    """Make the span named by `traceparent` the active one in the block (so that what the block
    sends, a Celery message, carries it); a block that does nothing when off or without one."""
    if not _enabled or not traceparent:
        return nullcontext()
    return _within(traceparent)


@contextmanager
def _within(traceparent: str) -> Iterator[None]:
    from opentelemetry import context, trace

    published = _span_context_of(traceparent)
    if not published.is_valid:
        yield
        return
    token = context.attach(trace.set_span_in_context(trace.NonRecordingSpan(published)))
    try:
        yield
    finally:
        context.detach(token)


def carried(function: Callable[[], None]) -> Callable[[], None]:
    """`function`, to run later (after commit) in the span active now; itself when tracing is off."""
    traceparent = current_traceparent()
    if traceparent is None:
        return function

    def in_the_span() -> None:
        with within(traceparent):
            function()

    return in_the_span
