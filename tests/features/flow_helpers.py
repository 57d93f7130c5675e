"""Helpers shared by the flow, DAG and workflow tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from glidemq import Queue, UnrecoverableError, Worker
from glidemq.engine.connection import Connection
from glidemq.engine.job import Job
from tests.engine.helpers import running, wait_for


class Recorder:
    """A processor that records runs; jobs with data {"fail": true} fail on their first run."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.runs: Counter[str] = Counter()
        self.values: dict[str, dict[str, Any]] = {}

    async def __call__(self, job: Job) -> str:
        self.order.append(job.name)
        self.runs[job.name] += 1
        self.values[job.name] = await job.get_children_values()
        if isinstance(job.data, dict) and job.data.get("fail") and self.runs[job.name] == 1:
            raise UnrecoverableError("boom")
        return f"{job.name}-done"


def settled(w: Worker) -> bool:
    """Idle, with its blocking client initialized. valkey-py's cluster client
    closes nothing when closed during its first initialize (aclose skips an
    uninitialized client), so closing a worker then leaks a socket."""
    blocking = w.consumer._blocking
    return w.idle and blocking is not None and not getattr(blocking, "_initialize", False)


@asynccontextmanager
async def workers(conn: Connection, handlers: dict[str, Callable[[Job], Any]],
                  concurrency: int = 1) -> AsyncIterator[None]:
    ws: list[Worker] = []
    async with AsyncExitStack() as stack:
        for queue, fn in handlers.items():
            worker = Worker(queue, fn, conn, concurrency=concurrency, block_timeout=0.5)
            ws.append(await stack.enter_async_context(running(worker)))
        yield
        await wait_for(lambda: all(map(settled, ws)), what="idle workers")


async def counts(q: Queue) -> dict[str, int]:
    """Counts of every state, waiting-children included."""
    return {str(k): v for k, v in (await q.get_job_counts()).items()}


def ref(job: Job) -> str:
    return f"{job.queue_name}/{job.id}"
