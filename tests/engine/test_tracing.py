"""OpenTelemetry: the processing span is a child of the add span, in-process
and for sandboxed jobs (spans made by the supervisor around the child's run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

pytest.importorskip("opentelemetry.sdk", reason="tracing tests need the otel test extra")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from glidemq import Job, JobState, Queue, Worker  # noqa: E402
from glidemq.engine import tracing  # noqa: E402
from glidemq.engine.connection import Connection  # noqa: E402

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    # Scoped to glidemq and to each test (never the process-global provider),
    # so spans do not pile up during later tests.
    exp = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exp))
    tracing.use_provider(tp)
    yield exp
    tracing.use_provider(None)
    tp.shutdown()


async def _until(cond, what: str) -> None:  # type: ignore[no-untyped-def]
    with anyio.fail_after(30, shield=False):
        while not await cond():
            await anyio.sleep(0.02)


def _spans(exp: InMemorySpanExporter, name: str, queue: str,
           job_id: str | None = None) -> list:  # type: ignore[type-arg]
    out = [s for s in exp.get_finished_spans() if s.name == name
           and s.attributes.get("messaging.destination.name") == queue]
    if job_id is not None:
        out = [s for s in out if s.attributes.get("messaging.message.id") == job_id]
    return out


async def test_worker_span_is_child_of_add_span(conn: Connection, qname: str,
                                                exporter: InMemorySpanExporter) -> None:
    q = Queue(qname, conn)
    job = await q.add("traced", {"x": 1})
    assert job.opts.trace, "the add stored the producer's trace context in the job"

    async def proc(j: Job) -> int:
        return 1

    async with Worker(qname, proc, conn):
        async def done() -> bool:
            return await q.get_job_state(job.id) == JobState.COMPLETED

        await _until(done, "job completed")
    [add] = _spans(exporter, "glidemq.add", qname)
    [proc_span] = _spans(exporter, "glidemq.process", qname, job.id)
    assert proc_span.parent is not None
    assert proc_span.parent.span_id == add.context.span_id
    assert proc_span.context.trace_id == add.context.trace_id


async def test_sandboxed_span_is_child_of_add_span(  # type: ignore[no-untyped-def]
        standalone, qname, tmp_path, monkeypatch, exporter) -> None:
    from glidemq.supervisor.config import load_config
    from glidemq.supervisor.supervisor import Supervisor, connection_for

    cfg = tmp_path / "glidemq.toml"
    cfg.write_text(f'[valkey]\nurl = "{standalone.url}"\n[[queues]]\nname = "{qname}"\n'
                   'handler = "tests.handlers.basic:noop"\nmin_children = 1\nmax_children = 1\n')
    config = load_config(str(cfg), {}, {})
    q = Queue(qname, standalone.url)
    job = await q.add("sandboxed", {})
    monkeypatch.chdir(ROOT)  # children import tests.handlers from the repo root
    sup = Supervisor(config, connection_for(config))
    async with anyio.create_task_group() as tg:
        tg.start_soon(sup.run)

        async def done() -> bool:
            return await q.get_job_state(job.id) == JobState.COMPLETED

        await _until(done, "sandboxed job completed")
        for pool in sup.pools.values():
            pool.stop_fetching()
    [add] = _spans(exporter, "glidemq.add", qname)
    [proc_span] = _spans(exporter, "glidemq.process", qname, job.id)
    assert proc_span.attributes.get("glidemq.sandboxed") is True
    assert proc_span.parent is not None and proc_span.parent.span_id == add.context.span_id
    await q.close()
