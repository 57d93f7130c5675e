"""OpenTelemetry spans, optional and free when absent.

With ``opentelemetry-api`` installed (the ``otel`` extra), glidemq makes
spans for adds (``glidemq.add``), flow adds (``glidemq.flow.add``) and
processing (``glidemq.process``, in the Worker and, for sandboxed jobs, in
the supervisor around the child's run). The producer's context travels in
the job's ``opts.trace`` carrier, so the processing span is a child of the
add span even across processes. Without the package every function here is a
no-op that allocates nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

try:
    from opentelemetry import context as _context
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
except ImportError:  # the extra is not installed
    _trace = None  # type: ignore[assignment]

ENABLED = _trace is not None
_TRACER_NAME = "glidemq"


_provider: Any = None


def use_provider(provider: Any) -> None:
    """Use this tracer provider for glidemq's spans instead of the global one
    (None goes back to the global). Lets tests and embedders scope tracing."""
    global _provider
    _provider = provider


def active() -> bool:
    """True when spans would be recorded: the API is installed and a provider
    is set (ours or a global SDK one). Without one, skip even no-op spans."""
    if _trace is None:
        return False
    return _provider is not None or not isinstance(
        _trace.get_tracer_provider(), _trace.ProxyTracerProvider)


def _tracer() -> Any:
    if _provider is not None:
        return _provider.get_tracer(_TRACER_NAME)
    return _trace.get_tracer(_TRACER_NAME)


@contextlib.contextmanager
def add_span(name: str, queue: str, count: int) -> Iterator[dict[str, str] | None]:
    """Span around an add; yields the carrier to store in each job (None if off)."""
    if _trace is None:
        yield None
        return
    with _tracer().start_as_current_span(
            name, kind=_trace.SpanKind.PRODUCER,
            attributes={"messaging.system": "glidemq", "messaging.destination.name": queue,
                        "messaging.batch.message_count": count}):
        carrier: dict[str, str] = {}
        _propagate.inject(carrier)
        yield carrier


@contextlib.contextmanager
def process_span(queue: str, job_id: str, job_name: str,
                 carrier: dict[str, str] | None) -> Iterator[Any]:
    """Span around processing one job, parented on the producer's context."""
    if _trace is None:
        yield None
        return
    ctx = _propagate.extract(carrier) if carrier else None
    token = _context.attach(ctx) if ctx is not None else None
    try:
        with _tracer().start_as_current_span(
                "glidemq.process", kind=_trace.SpanKind.CONSUMER,
                attributes={"messaging.system": "glidemq",
                            "messaging.destination.name": queue,
                            "messaging.message.id": job_id, "glidemq.job.name": job_name},
        ) as span:
            yield span
    finally:
        if token is not None:
            _context.detach(token)


def record_failure(span: Any, reason: str) -> None:
    """Mark a processing span failed (no-op without OpenTelemetry)."""
    if span is not None and _trace is not None:
        span.set_status(_trace.Status(_trace.StatusCode.ERROR, reason))


def start_process_span(queue: str, job_id: str, job_name: str,
                       carrier: dict[str, str] | None) -> Any:
    """Start (not enter) a processing span: the supervisor opens it when a child
    reports ``Started`` and closes it on the job's ``Result``/``Failure``."""
    if _trace is None:
        return None
    ctx = _propagate.extract(carrier) if carrier else None
    return _tracer().start_span(
        "glidemq.process", context=ctx, kind=_trace.SpanKind.CONSUMER,
        attributes={"messaging.system": "glidemq", "messaging.destination.name": queue,
                    "messaging.message.id": job_id, "glidemq.job.name": job_name,
                    "glidemq.sandboxed": True})


def end_span(span: Any, failure: str | None = None) -> None:
    """End a span from :func:`start_process_span`, failed if ``failure`` is given."""
    if span is None:
        return
    if failure is not None:
        record_failure(span, failure)
    span.end()
