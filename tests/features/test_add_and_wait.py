"""Queue.add_and_wait: request-reply over the events stream, with the job hash
as the fallback; failures, timeouts and refused retention options."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from glidemq.engine.connection import Connection
from glidemq.engine.job import Job, JobState, KeepJobs
from glidemq.engine.queue import Queue
from glidemq.engine.worker import Worker
from glidemq.errors import InvalidOptionError, JobFailedError, WaitTimeoutError
from tests.engine.helpers import running

pytestmark = pytest.mark.anyio


async def double(job: Job) -> Any:
    if job.data.get("fail"):
        raise ValueError(f"cannot double {job.data['n']}")
    return job.data["n"] * 2


async def test_returns_the_value(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    async with running(Worker(qname, double, conn)):
        assert await q.add_and_wait("double", {"n": 21}, timeout=30) == 42
        assert await q.add_and_wait("double", {"n": 5}, timeout=30, priority=3) == 10
    await q.close()


async def test_many_concurrent_requests_each_get_their_own_reply(conn: Connection,
                                                                 qname: str) -> None:
    q = Queue(qname, conn)
    got: dict[int, Any] = {}

    async def ask(n: int) -> None:
        got[n] = await q.add_and_wait("double", {"n": n}, timeout=30)

    async with running(Worker(qname, double, conn, concurrency=8)):
        async with anyio.create_task_group() as tg:
            for n in range(40):
                tg.start_soon(ask, n)
    assert got == {n: 2 * n for n in range(40)}
    await q.close()


async def test_raises_with_the_failed_reason(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    async with running(Worker(qname, double, conn)):
        with pytest.raises(JobFailedError) as failed:
            await q.add_and_wait("double", {"n": 3, "fail": True}, timeout=30,
                                 attempts=2, backoff={"delay": 0.01})
    assert failed.value.failed_reason == "ValueError: cannot double 3"
    job = await q.get_job(failed.value.job_id)
    assert job is not None and job.attempts_made == 2  # retried first, then failed for good
    await q.close()


async def test_times_out_and_leaves_the_job_queued(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    with pytest.raises(WaitTimeoutError) as timed_out:
        await q.add_and_wait("double", {"n": 1}, timeout=0.3)  # no worker
    assert await q.get_job_state(timed_out.value.job_id) == JobState.WAITING
    assert timed_out.value.timeout == 0.3
    await q.close()


async def test_works_without_events_through_the_job_hash(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn, events=False)
    async with running(Worker(qname, double, conn, events=False)):
        assert await q.add_and_wait("double", {"n": 8}, timeout=30) == 16
    assert await conn.client().xlen(q.keys.events) == 0
    await q.close()


@pytest.mark.parametrize("opts", [
    {"remove_on_complete": True}, {"remove_on_fail": True}, {"remove_on_complete": 0},
    {"remove_on_fail": KeepJobs(count=0)}, {"remove_on_complete": KeepJobs(age=0)},
])
async def test_refuses_retention_that_deletes_the_result(conn: Connection, qname: str,
                                                         opts: dict[str, Any]) -> None:
    q = Queue(qname, conn)
    with pytest.raises(InvalidOptionError, match=next(iter(opts))):
        await q.add_and_wait("double", {"n": 1}, timeout=1, **opts)
    assert sum((await q.get_job_counts()).values()) == 0  # nothing was added
    await q.close()


async def test_keeping_some_finished_jobs_is_allowed(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    async with running(Worker(qname, double, conn)):
        assert await q.add_and_wait("double", {"n": 2}, timeout=30,
                                    remove_on_complete=KeepJobs(count=10, age=60)) == 4
    await q.close()
