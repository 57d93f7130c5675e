"""Worker: competing consumer processes, shutdown (graceful and forced),
malformed jobs, sync processors, timeouts."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import anyio
import pytest

from glidemq.engine.connection import Connection
from glidemq.engine.job import Job, JobState
from glidemq.engine.queue import JobSpec, Queue
from glidemq.engine.worker import Worker
from tests.engine.helpers import (
    hget,
    read_lines,
    running,
    spawn_worker,
    stop_process,
    to_thread,
    wait_counts,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.anyio


@pytest.mark.slow
async def test_competing_worker_processes_complete_each_job_once(
        conn: Connection, url: str, qname: str, tmp_path: Path) -> None:
    q = Queue(qname, conn)
    outs = [tmp_path / f"w{i}.txt" for i in range(4)]
    procs = [spawn_worker(url, qname, out, concurrency=8) for out in outs]
    try:
        await wait_ready(outs)
        ids: list[str] = []
        for start in range(0, 2000, 250):  # added while the workers already compete
            jobs = await q.add_bulk([JobSpec("j", {"i": i}) for i in range(start, start + 250)])
            ids.extend(j.id for j in jobs)
        await wait_counts(q, completed=2000, within=90)
    finally:
        codes = [await to_thread(lambda p=p: stop_process(p)) for p in procs]
    assert codes == [0, 0, 0, 0]
    per_worker = [read_lines(out) for out in outs]
    seen = collections.Counter(jid for lines in per_worker for jid in lines)
    assert set(seen) == set(ids) and len(ids) == 2000
    assert [jid for jid, n in seen.items() if n > 1] == []
    assert sum(1 for lines in per_worker if lines) >= 2, "the workers did not compete"
    c = await q.get_job_counts()
    assert (c["completed"], c["failed"], c["waiting"], c["active"]) == (2000, 0, 0, 0)
    assert await q.stale_rejections() == 0


async def test_force_close_returns_in_flight_jobs_to_waiting(conn: Connection,
                                                             qname: str) -> None:
    q = Queue(qname, conn)
    never = anyio.Event()
    started: list[str] = []

    async def stuck(job: Job) -> None:
        started.append(job.id)
        await never.wait()

    jobs = [await q.add("j", i, attempts=3) for i in range(4)]
    # Two running, one claimed ahead (prefetch) and not started, one left waiting.
    worker = Worker(qname, stuck, conn, concurrency=2, prefetch=1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await wait_counts(q, active=3, waiting=1)
        await wait_for(lambda: len(started) == 2, what="two jobs to start")
        with anyio.fail_after(10):
            await worker.close(force=True)
    assert sorted(started) == [jobs[0].id, jobs[1].id]
    c = await q.get_job_counts()
    assert (c["waiting"], c["active"], c["failed"], c["completed"]) == (4, 0, 0, 0)
    for added in jobs:
        job = await q.get_job(added.id)
        assert job is not None and job.state == "waiting" and job.attempts_made == 0
    # Released jobs go back to the head of the queue: they run first next time.
    order = [j.id for j in await q.get_jobs("waiting")]
    assert set(order[:3]) == {jobs[0].id, jobs[1].id, jobs[2].id} and order[3] == jobs[3].id


async def test_graceful_close_waits_for_in_flight_job(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    release = anyio.Event()

    async def slow(job: Job) -> str:
        await release.wait()
        return "finished"

    job = await q.add("j", {})
    await q.add("j", {"not": "started"})  # claimed ahead (prefetch), never started
    worker = Worker(qname, slow, conn)
    closed = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await wait_counts(q, active=2)

        async def close() -> None:
            await worker.close()
            closed.set()

        tg.start_soon(close)
        await wait_for(lambda: worker._closing, what="close() to begin")
        assert not closed.is_set()
        assert await q.get_job_state(job.id) == JobState.ACTIVE
        release.set()
        with anyio.fail_after(10):
            await closed.wait()
    done = await q.get_job(job.id)
    assert done is not None and done.state == "completed" and done.return_value == "finished"
    c = await q.get_job_counts()
    assert (c["completed"], c["waiting"], c["active"]) == (1, 1, 0)  # closing starts nothing
    [left] = await q.get_jobs("waiting")
    assert left.data == {"not": "started"} and left.attempts_made == 0


@pytest.mark.parametrize(("field", "garbage"), [("d", "not json{"), ("o", "garbage"),
                                                ("o", '{"attempts": "many"}')])
async def test_malformed_job_fails_and_worker_carries_on(
        conn: Connection, qname: str, field: str, garbage: str) -> None:
    q = Queue(qname, conn)
    ids = [(await q.add("j", {"i": i})).id for i in range(5)]
    bad = ids[2]
    await conn.client().hset(q.keys.job(bad), field, garbage)
    done: list[str] = []

    async def process(job: Job) -> None:
        done.append(job.id)

    async with running(Worker(qname, process, conn, concurrency=2)):
        await wait_counts(q, completed=4, failed=1, active=0)
        await q.add("j", {"after": True})
        await wait_counts(q, completed=5)
    assert bad not in done
    assert await q.get_job_state(bad) == JobState.FAILED
    reason = await hget(conn, q.keys.job(bad), "fr")
    assert reason is not None and reason.startswith("malformed"), reason


async def test_lone_malformed_job_fails_promptly(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    job = await q.add("j", {})
    await conn.client().hset(q.keys.job(job.id), "d", "not json{")
    await conn.client().delete(q.keys.marker)  # the add's wake-up was used up elsewhere
    # Nothing else happens on the queue: no completion, no add. block_timeout far
    # beyond the hang guard, so only the worker's own follow-up can fail the job.
    async with running(Worker(qname, lambda job: None, conn, block_timeout=120)):
        await wait_counts(q, failed=1, active=0, within=10)
    assert (await hget(conn, q.keys.job(job.id), "fr") or "").startswith("malformed")


async def test_job_key_of_wrong_type_fails_and_worker_carries_on(
        conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    ids = [(await q.add("j", {"i": i})).id for i in range(3)]
    c = conn.client()
    await c.delete(q.keys.job(ids[1]))
    await c.set(q.keys.job(ids[1]), "not a hash")
    async with running(Worker(qname, lambda job: None, conn)):
        await wait_counts(q, completed=2, failed=1)
    failed = [eid for eid, e in await q.events() if e["event"] == "failed"]
    assert len(failed) == 1


async def test_sync_processor_runs_in_a_thread(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)

    def work(job: Job) -> int:
        time.sleep(0.01)  # blocking on purpose: must not block the event loop
        return int(job.data) * 2

    await q.add_bulk([("j", i) for i in range(10)])
    async with running(Worker(qname, work, conn, concurrency=4)):
        await wait_counts(q, completed=10)
    assert sorted(j.return_value for j in await q.get_jobs("completed")) == \
        [i * 2 for i in range(10)]


async def test_job_timeout_fails_the_attempt(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)

    async def hang(job: Job) -> None:
        await anyio.sleep(60)

    job = await q.add("j", {}, timeout=0.1, attempts=2)
    async with running(Worker(qname, hang, conn)):
        await wait_counts(q, failed=1)
    failed = await q.get_job(job.id)
    assert failed is not None and failed.attempts_made == 2
    assert failed.failed_reason == "job timeout exceeded"


async def test_unserialisable_return_value_fails_the_job(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    job = await q.add("j", {})
    async with running(Worker(qname, lambda job: object(), conn)):
        await wait_counts(q, failed=1)
    failed = await q.get_job(job.id)
    assert failed is not None and "not JSON-serialisable" in (failed.failed_reason or "")


async def test_concurrency_limits_jobs_in_flight(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    running_now = 0
    peak = 0

    async def process(job: Job) -> None:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        await anyio.sleep(0.01)
        running_now -= 1

    await q.add_bulk([("j", i) for i in range(40)])
    async with running(Worker(qname, process, conn, concurrency=3)):
        await wait_counts(q, completed=40)
    assert 1 <= peak <= 3
