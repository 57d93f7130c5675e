"""Stalled jobs and fencing: a SIGKILLed worker process loses nothing; a job
stalled too often fails; a completion with a stale token is rejected."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest

from glidemq.engine.connection import Connection
from glidemq.engine.consumer import Consumer, FetchResult, Finish
from glidemq.engine.job import Job, JobState
from glidemq.engine.queue import Queue
from glidemq.engine.worker import Worker
from tests.engine.helpers import (
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


async def fetch_until(consumer: Consumer, claim: int = 1) -> FetchResult:
    """Fetch (claiming ``claim``) until a job comes back; the result that had it."""
    got: FetchResult | None = None

    async def once() -> bool:
        nonlocal got
        got = await consumer.fetch([], claim)
        return bool(got.jobs)

    await wait_for(once, what=f"{consumer.name} to claim a job", interval=0.05)
    assert got is not None
    return got


@pytest.mark.slow
async def test_sigkilled_worker_process_jobs_are_reclaimed(
        conn: Connection, url: str, qname: str, tmp_path: Path) -> None:
    q = Queue(qname, conn)
    ids = [(await q.add("j", {"i": i})).id for i in range(6)]
    out = tmp_path / "victim.txt"
    # Three runners, no prefetch: three jobs mid-flight when it dies, three waiting.
    victim = spawn_worker(url, qname, out, concurrency=3, prefetch=0, lock_duration=1.0,
                          hold=3600)
    try:
        await wait_ready([out])
        await wait_for(lambda: len(read_lines(out)) == 3, what="the victim to start 3 jobs")
        assert (await q.get_job_counts())["active"] >= 3
    finally:
        code = await to_thread(lambda: stop_process(victim, signal.SIGKILL))
    assert code == -signal.SIGKILL
    held = set(read_lines(out))
    c = await q.get_job_counts()
    assert c["active"] + c["waiting"] == 6 and c["completed"] == 0  # nothing lost so far

    done: list[str] = []

    async def rescue(job: Job) -> str:
        done.append(job.id)
        return "rescued"

    async with running(Worker(qname, rescue, conn, concurrency=2, lock_duration=1.0)):
        await wait_counts(q, completed=6, active=0, waiting=0)
    assert sorted(done) == sorted(ids)  # each exactly once in the rescuer
    for jid in ids:
        job = await q.get_job(jid)
        assert job is not None and job.state == "completed" and job.return_value == "rescued"
        assert job.attempts_made == 0  # a stall is not a failed attempt
        assert job.stalled_count == (1 if jid in held else 0)
    stalled = {e["jobId"] for _, e in await q.events(1000) if e["event"] == "stalled"}
    assert stalled == held


async def test_stalled_more_than_max_fails(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    job = await q.add("j", {})
    consumer = Consumer(conn, qname, lock_ms=150, max_stalled_count=1)
    await consumer.start()
    tokens = []
    for _ in range(2):  # claimed, abandoned, reclaimed: the first stall is forgiven
        res = await fetch_until(consumer)
        tokens.append(res.jobs[0].token)
    assert tokens == [1, 2]

    async def failed() -> bool:
        await consumer.fetch([], 0)  # a fetch reclaims expired locks
        return await q.get_job_state(job.id) == JobState.FAILED

    await wait_for(failed, what="the second stall to fail the job")
    stored = await q.get_job(job.id)
    assert stored is not None
    assert stored.failed_reason == "job stalled more than 1 time(s)"
    assert (stored.stalled_count, stored.attempts_made) == (2, 1)
    c = await q.get_job_counts()
    assert (c["failed"], c["active"], c["waiting"]) == (1, 0, 0)
    await consumer.close()


async def test_max_stalled_zero_fails_on_first_stall_into_dlq(conn: Connection,
                                                              qname: str) -> None:
    q = Queue(qname, conn)
    dlq = Queue(f"{qname}.dlq", conn)
    job = await q.add("j", {"keep": "me"})
    consumer = Consumer(conn, qname, lock_ms=150, max_stalled_count=0,
                        dead_letter_queue=dlq.name)
    await consumer.start()
    await fetch_until(consumer)

    async def failed() -> bool:
        await consumer.fetch([], 0)
        return await q.get_job_state(job.id) == JobState.FAILED

    await wait_for(failed, what="the stall to fail the job")
    [dead] = await dlq.get_jobs("waiting")
    assert dead.data == {"keep": "me"}
    await consumer.close()


async def test_stale_token_completion_is_rejected(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    job = await q.add("j", {})
    first = Consumer(conn, qname, lock_ms=150)
    second = Consumer(conn, qname, lock_ms=30_000)
    await first.start()
    mine = (await first.fetch([], 1)).jobs[0]
    assert mine.token == 1
    # The first holder stops renewing; once its lock lapses the second reclaims it.
    theirs = (await fetch_until(second)).jobs[0]
    assert (theirs.id, theirs.token) == (job.id, 2)
    before = await q.stale_rejections()

    late = await first.fetch([Finish.completed(mine, b'"from the zombie"')], 0)
    assert late.rejected == 1
    assert await q.stale_rejections() == before + 1
    stored = await q.get_job(job.id)
    assert stored is not None and stored.state == "active" and stored.return_value is None
    # A stale failure is rejected the same way, and does not burn an attempt.
    late = await first.fetch([Finish.failed(mine, "zombie failure", retry_delay_ms=-1)], 0)
    assert late.rejected == 1 and await q.stale_rejections() == before + 2
    assert await first.extend([(mine.id, mine.token)]) == [mine.id]  # the lock is lost
    stored = await q.get_job(job.id)
    assert stored is not None and (stored.attempts_made, stored.failed_reason) == (0, None)

    ok = await second.fetch([Finish.completed(theirs, b'"from the owner"')], 0)
    assert ok.rejected == 0
    stored = await q.get_job(job.id)
    assert stored is not None and (stored.state, stored.return_value) == ("completed",
                                                                          "from the owner")
    # Once finished, even the rightful token cannot finish it again.
    again = await second.fetch([Finish.completed(theirs, b'"twice"')], 0)
    assert again.rejected == 1
    assert (await q.get_job(job.id)).return_value == "from the owner"  # type: ignore[union-attr]
    await first.close()
    await second.close()


async def test_worker_renews_locks_of_long_jobs(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    release = anyio.Event()
    starts: list[int] = []

    async def long_job(job: Job) -> None:
        starts.append(job.token)
        await release.wait()

    job = await q.add("j", {})
    async with running(Worker(qname, long_job, conn, lock_duration=0.3)):
        await wait_for(lambda: starts, what="the job to start")
        rival = Consumer(conn, qname, lock_ms=1000)
        # Over three lock periods, a rival's fetches must never reclaim the job.
        with anyio.move_on_after(1.0):
            while True:
                res = await rival.fetch([], 1)
                assert res.jobs == [], "a renewed lock was reclaimed"
                await anyio.sleep(0.05)
        release.set()
        await wait_counts(q, completed=1)
    stored = await q.get_job(job.id)
    assert stored is not None and stored.stalled_count == 0 and starts == [1]
    await rival.close()
