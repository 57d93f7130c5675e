"""Admin calls: pause/resume, drain, clean, obliterate, remove, retry_jobs,
promote; retention of finished jobs."""

from __future__ import annotations

import anyio
import pytest

from glidemq.engine.connection import Connection
from glidemq.engine.consumer import Consumer, Finish
from glidemq.engine.job import Job, JobState, KeepJobs
from glidemq.engine.queue import JobSpec, Queue
from glidemq.engine.worker import Worker
from glidemq.errors import JobNotFoundError, JobStateError, QueueNotEmptyError
from tests.engine.helpers import (
    counts,
    queue_keys,
    running,
    server_ms,
    wait_counts,
    wait_for,
    wait_state,
)

pytestmark = pytest.mark.anyio


async def ok(job: Job) -> str:
    return "ok"


async def fail(job: Job) -> None:
    raise ValueError("bad")


async def test_pause_and_resume(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    await q.pause()
    assert await q.is_paused()
    await q.add_bulk([("j", i) for i in range(3)])
    consumer = Consumer(conn, qname)
    assert (await consumer.fetch([], 10)).jobs == []  # a paused queue hands out nothing
    worker = Worker(qname, ok, conn)
    async with running(worker):
        await wait_for(lambda: worker.idle, what="the worker to go idle")
        await q.add("j", 3)  # the wake-up of an add must not start anything either
        with anyio.move_on_after(0.3):  # absence can only be shown by waiting a while
            await wait_for(lambda: worker.completed, what="nothing")
        assert worker.completed == 0
        assert (await q.get_job_counts())["waiting"] == 4
        await q.resume()
        assert not await q.is_paused()
        await wait_counts(q, completed=4, waiting=0)
    events = [e["event"] for _, e in await q.events() if e["event"] in ("paused", "resumed")]
    assert events == ["paused", "resumed"]


async def test_pause_lets_in_flight_job_finish(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    release = anyio.Event()

    async def hold(job: Job) -> str:
        await release.wait()
        return "done"

    job = await q.add("j", {})
    async with running(Worker(qname, hold, conn, prefetch=0)):
        await wait_state(q, job.id, "active")
        await q.pause()
        release.set()
        await wait_state(q, job.id, "completed")
        await q.resume()


async def test_drain_without_and_with_delayed(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    consumer = Consumer(conn, qname)
    await q.add("active", {})
    [active] = (await consumer.fetch([], 1)).jobs
    await q.add_bulk([("j", i) for i in range(5)])
    await q.add_bulk([JobSpec("j", i, opts={"priority": 2}) for i in range(3)])
    delayed = await q.add_bulk([JobSpec("j", i, opts={"delay": 60}) for i in range(2)])
    assert await q.drain() == 8
    c = await counts(q)
    assert (c["waiting"], c["prioritized"], c["delayed"], c["active"]) == (0, 0, 2, 1)
    assert await q.get_job("3") is None  # the hashes are gone too
    assert await q.drain(delayed=True) == 2
    assert await q.get_job(delayed[0].id) is None
    c = await counts(q)
    assert (c["delayed"], c["active"]) == (0, 1)
    assert await q.get_job(active.id) is not None  # active jobs are not drained
    assert await q.drain(delayed=True) == 0


async def test_drain_many(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    await q.add_bulk([("j", i) for i in range(2500)])  # more than one server call's cap
    assert await q.drain() == 2500
    assert sum((await q.get_job_counts()).values()) == 0


async def test_clean_by_grace_limit_and_state(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    await q.add_bulk([("j", i) for i in range(6)])
    async with running(Worker(qname, ok, conn)):
        await wait_counts(q, completed=6)
    await q.add_bulk([JobSpec("j", i, opts={"attempts": 1}) for i in range(3)])
    async with running(Worker(qname, fail, conn)):
        await wait_counts(q, failed=3)
    assert await q.clean(grace=3600, limit=100) == []  # nothing that old
    first = await q.clean(grace=0, limit=2)
    assert first == ["1", "2"]  # oldest first
    assert await q.get_job("1") is None
    assert (await q.get_job_counts())["completed"] == 4
    assert len(await q.clean(grace=0, limit=100, state="failed")) == 3
    await q.add_bulk([("j", i) for i in range(2)])
    assert len(await q.clean(grace=0, limit=100, state=JobState.WAITING)) == 2
    c = await counts(q)
    assert (c["completed"], c["failed"], c["waiting"]) == (4, 0, 0)
    with pytest.raises(JobStateError, match="active"):
        await q.clean(grace=0, limit=1, state="active")


async def test_obliterate_refuses_active_unless_forced(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    await q.add_bulk([("j", i) for i in range(5)])
    await q.add("d", {}, delay=60)
    await q.add("p", {}, priority=3)
    consumer = Consumer(conn, qname)
    await consumer.start()
    [claimed] = (await consumer.fetch([], 1)).jobs
    await consumer.fetch([Finish.completed(claimed, b'"ok"')], 1)
    await (await q.add("logged", {})).log("a line")
    await q.pause()
    assert await queue_keys(conn, q)
    with pytest.raises(QueueNotEmptyError, match="force"):
        await q.obliterate()
    assert sum((await q.get_job_counts()).values()) == 8  # nothing deleted
    await q.obliterate(force=True)
    assert await queue_keys(conn, q) == []
    assert sum((await q.get_job_counts()).values()) == 0
    assert not await q.is_paused()
    assert (await q.add("fresh", {})).id == "1"  # the queue starts over
    await consumer.close()


async def test_obliterate_many_jobs(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    await q.add_bulk([("j", i) for i in range(2300)])
    await q.obliterate()
    assert await queue_keys(conn, q) == []


async def test_remove(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    waiting = await q.add("j", 1)
    delayed = await q.add("j", 2, delay=60)
    prio = await q.add("j", 3, priority=1)
    active = await q.add("j", 4)
    assert await q.remove(waiting.id) is True
    assert await q.remove(delayed.id) is True
    assert await q.remove(prio.id) is True
    assert await q.remove(waiting.id) is False  # already gone
    assert await q.remove("no-such-job") is False
    consumer = Consumer(conn, qname)
    [claimed] = (await consumer.fetch([], 1)).jobs
    assert claimed.id == active.id
    with pytest.raises(JobStateError, match="being processed"):
        await q.remove(active.id)
    assert sum((await q.get_job_counts()).values()) == 1
    await consumer.fetch([Finish.completed(claimed, b'"ok"')], 0)
    assert await q.remove(active.id) is True
    assert sum((await q.get_job_counts()).values()) == 0
    assert [e["jobId"] for _, e in await q.events() if e["event"] == "removed"] == \
        [waiting.id, delayed.id, prio.id, active.id]


async def test_retry_jobs(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    jobs = await q.add_bulk([JobSpec("j", i, opts={"attempts": 2}) for i in range(4)])
    async with running(Worker(qname, fail, conn)):
        await wait_counts(q, failed=4)
    assert await q.retry_jobs(count=1) == 1
    assert (await q.get_job_counts())["waiting"] == 1
    assert await q.retry_jobs() == 3
    for added in jobs:
        job = await q.get_job(added.id)
        assert job is not None and job.state == "waiting"
        assert (job.attempts_made, job.failed_reason, job.finished_on) == (0, None, None)
    async with running(Worker(qname, ok, conn)):
        await wait_counts(q, completed=4, failed=0)
    assert await q.retry_jobs("completed") == 4
    assert (await q.get_job_counts())["waiting"] == 4
    with pytest.raises(ValueError, match="state"):
        await q.retry_jobs("waiting")


async def test_promote(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    later = await q.add("j", {}, delay=3600)
    prio = await q.add("j", {}, delay=3600, priority=2)
    waiting = await q.add("j", {})
    await q.promote(later.id)
    await q.promote(prio.id)
    c = await counts(q)
    assert (c["delayed"], c["waiting"], c["prioritized"]) == (0, 2, 1)
    assert await q.get_job_state(later.id) == JobState.WAITING
    with pytest.raises(JobStateError, match="not delayed"):
        await q.promote(waiting.id)
    with pytest.raises(JobNotFoundError):
        await q.promote("missing")
    async with running(Worker(qname, ok, conn)):
        await wait_counts(q, completed=3)


async def test_retention_by_count(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    jobs = await q.add_bulk([JobSpec("j", i, opts={"remove_on_complete": 5})
                             for i in range(12)])
    async with running(Worker(qname, ok, conn)):
        await wait_counts(q, waiting=0, active=0)
    assert (await q.get_job_counts())["completed"] == 5
    kept = {j.id for j in await q.get_jobs("completed")}
    # The newest five by finish time; jobs finished in the same millisecond tie, so
    # which of those survive is not pinned down here.
    assert len(kept) == 5 and kept <= {j.id for j in jobs}
    left = [await q.get_job(j.id) for j in jobs]
    assert sorted(j.id for j in left if j is not None) == sorted(kept)


async def test_retention_by_age(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    keep = KeepJobs(age=0.3)
    old = await q.add_bulk([JobSpec("j", i, opts={"remove_on_fail": keep}) for i in range(3)])
    async with running(Worker(qname, fail, conn)) as worker:
        await wait_counts(q, failed=3)
        newest = max([(await q.get_job(j.id)).finished_on or 0 for j in old])  # type: ignore[union-attr]

        async def aged() -> bool:  # the server clock, not ours, decides the age
            return await server_ms(conn, q.keys.meta) > newest + 300

        await wait_for(aged, what="the failed jobs to age")
        fresh = await q.add("j", "new", remove_on_fail=keep)
        await wait_counts(q, failed=1)
        assert worker.failed == 4
    assert [j.id for j in await q.get_jobs("failed")] == [fresh.id]
    for j in old:
        assert await q.get_job(j.id) is None


async def test_remove_on_complete_true_deletes_hash(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    gone = await q.add("j", {}, remove_on_complete=True, remove_on_fail=True)
    failing = await q.add("j", {"fail": True}, remove_on_fail=True)
    kept = await q.add("j", {})

    async def process(job: Job) -> None:
        if job.data.get("fail"):
            raise RuntimeError("x")

    async with running(Worker(qname, process, conn)):
        await wait_counts(q, waiting=0, active=0, completed=1)
    assert await q.get_job(gone.id) is None
    assert await q.get_job(failing.id) is None
    assert await q.get_job_logs(gone.id) == []
    assert (await q.get_job(kept.id)) is not None
    c = await counts(q)
    assert (c["completed"], c["failed"]) == (1, 0)
    assert [e["event"] for _, e in await q.events() if e["jobId"] == gone.id][-1] == "completed"
