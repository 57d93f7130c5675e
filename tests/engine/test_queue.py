"""Queue: adding, reading, custom ids, job methods, consistent counts."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from glidemq.engine.connection import Connection
from glidemq.engine.consumer import Consumer, FetchResult, Finish
from glidemq.engine.job import Backoff, Job, JobOptions, JobState, KeepJobs
from glidemq.engine.queue import JobSpec, Queue
from glidemq.engine.worker import Worker
from glidemq.errors import InvalidJobIdError, JobNotFoundError
from tests.engine.helpers import counts, running, wait_counts, wait_for, wait_state

pytestmark = pytest.mark.anyio


async def test_add_and_get_job(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    job = await q.add("email", {"to": "a@b.c", "n": [1, 2]}, attempts=3)
    assert job.id == "1" and job.state == JobState.WAITING and job.timestamp > 0
    stored = await q.get_job(job.id)
    assert stored is not None
    assert (stored.name, stored.data) == ("email", {"to": "a@b.c", "n": [1, 2]})
    assert stored.opts.attempts == 3
    assert (stored.attempts_made, stored.timestamp, stored.state) == (0, job.timestamp, "waiting")
    assert await q.get_job("nope") is None
    assert await q.get_job_state("nope") is None
    assert await counts(q) == {"waiting": 1, "active": 0, "delayed": 0, "prioritized": 0,
                               "completed": 0, "failed": 0}


async def test_add_bulk_returns_jobs_in_order(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    jobs = await q.add_bulk([("a", 1), JobSpec("b", 2, opts={"delay": 60}),
                             JobSpec("c", 3, opts={"priority": 4}), JobSpec("d", 4, "custom")])
    assert [j.id for j in jobs] == ["1", "2", "3", "custom"]
    assert [j.state for j in jobs] == ["waiting", "delayed", "prioritized", "waiting"]
    c = await q.get_job_counts()
    assert (c["waiting"], c["delayed"], c["prioritized"]) == (2, 1, 1)
    big = await q.add_bulk([("x", i) for i in range(1200)])  # spans three server calls
    assert len({j.id for j in big}) == 1200
    assert (await q.get_job_counts())["waiting"] == 1202


async def test_existing_custom_id_returns_existing_job_and_adds_nothing(
        conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    first = await q.add("j", {"v": 1}, job_id="order-42")
    again = await q.add("j", {"v": 2}, job_id="order-42", priority=5)
    assert again.id == first.id == "order-42"
    assert again.data == {"v": 1} and again.opts.priority == 0
    assert (await q.get_job_counts())["waiting"] == 1
    assert (await q.get_job_counts())["prioritized"] == 0
    stored = await q.get_job("order-42")
    assert stored is not None and stored.data == {"v": 1}
    added = [e for _, e in await q.events() if e["event"] == "added"]
    assert len(added) == 1


async def test_all_digit_custom_id_rejected(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    with pytest.raises(InvalidJobIdError, match="job_id '123' is all digits"):
        await q.add("j", {}, job_id="123")
    for bad in ("", "a:b", "a{b", "a b", "x" * 257):
        with pytest.raises(InvalidJobIdError, match="job_id"):
            await q.add("j", {}, job_id=bad)
    assert sum((await q.get_job_counts()).values()) == 0
    assert (await q.add("j", {})).id == "1"  # the id counter was never touched


async def test_job_methods_from_the_queue(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    job = await q.add("j", {"v": 1})
    await job.update_data({"v": 2})
    await job.update_progress({"pct": 10})
    assert await job.log("first") == 1
    assert await job.log("second") == 2
    assert await job.get_state() == JobState.WAITING
    stored = await q.get_job(job.id)
    assert stored is not None
    assert (stored.data, stored.progress) == ({"v": 2}, {"pct": 10})
    assert await q.get_job_logs(job.id) == ["first", "second"]
    with pytest.raises(JobNotFoundError):
        await q.update_data("missing", {})
    progress = [e for _, e in await q.events() if e["event"] == "progress"]
    assert progress == [{"event": "progress", "jobId": job.id, "data": '{"pct":10}'}]


async def test_job_methods_inside_a_processor(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    seen: list[object] = []

    async def process(job: Job) -> str:
        seen.append(await job.get_state())
        await job.update_progress(50)
        await job.log("working")
        await job.update_data({"v": "updated"})
        await job.update_progress(100)
        return "ok"

    job = await q.add("j", {"v": "orig"})
    async with running(Worker(qname, process, conn)):
        await wait_counts(q, completed=1)
    done = await q.get_job(job.id)
    assert done is not None
    assert seen == [JobState.ACTIVE]
    assert (done.state, done.return_value, done.progress) == ("completed", "ok", 100)
    assert done.data == {"v": "updated"}
    assert await q.get_job_logs(job.id) == ["working"]
    assert done.processed_on is not None and done.finished_on is not None
    assert done.timestamp <= done.processed_on <= done.finished_on


async def test_get_jobs_by_state(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    ids = [(await q.add("j", i)).id for i in range(5)]
    delayed = await q.add("j", "d", delay=60)
    assert [j.id for j in await q.get_jobs("waiting")] == ids
    assert [j.id for j in await q.get_jobs("waiting", 1, 2)] == ids[1:3]
    assert [j.id for j in await q.get_jobs(JobState.DELAYED)] == [delayed.id]
    assert await q.get_jobs("completed") == []


async def test_idle_worker_wakes_on_add(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    done = anyio.Event()

    async def process(job: Job) -> None:
        done.set()

    # block_timeout far beyond the hang guard: only the add's wake-up can start the job.
    worker = Worker(qname, process, conn, block_timeout=120)
    async with running(worker):
        await wait_for(lambda: worker.idle, what="the worker to block on the empty queue")
        job = await q.add("j", {})
        with anyio.fail_after(10):  # hang guard only
            await done.wait()
        await wait_state(q, job.id, "completed", within=10)


async def test_counts_consistent_after_mixed_workload(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    release = anyio.Event()

    async def process(job: Job) -> str:
        if job.data["kind"] == "fail":
            raise ValueError("nope")
        if job.data["kind"] == "hold":
            await release.wait()
        return "ok"

    added = 0
    for kind, n in (("ok", 30), ("fail", 7), ("hold", 2)):
        await q.add_bulk([JobSpec("j", {"kind": kind}) for _ in range(n)])
        added += n
    await q.add_bulk([JobSpec("j", {"kind": "ok"}, opts={"delay": 60}) for _ in range(4)])
    await q.add_bulk([JobSpec("j", {"kind": "ok"}, opts={"priority": 3}) for _ in range(5)])
    added += 9
    removed = 0
    for jid in ("1", "2", "40"):  # two waiting, one delayed
        assert await q.remove(jid)
        removed += 1
    worker = Worker(qname, process, conn, concurrency=4)
    async with running(worker):
        try:
            await wait_counts(q, completed=28 + 5, failed=7, active=2)
            c = await counts(q)
            assert c == {"waiting": 0, "active": 2, "delayed": 3, "prioritized": 0,
                         "completed": 33, "failed": 7}
            assert sum((await q.get_job_counts()).values()) == added - removed
            # Removing and adding while jobs are in flight keeps the books balanced.
            assert await q.remove("41")
            removed += 1
            await q.add("j", {"kind": "ok"}, delay=60)
            added += 1
            assert sum((await q.get_job_counts()).values()) == added - removed
        finally:
            release.set()
        await wait_counts(q, active=0, completed=35)
    assert sum((await q.get_job_counts()).values()) == added - removed


async def test_consumer_fetch_returns_claimed_jobs_with_tokens(conn: Connection,
                                                               qname: str) -> None:
    q = Queue(qname, conn)
    await q.add_bulk([("j", i) for i in range(3)])
    consumer = Consumer(conn, qname, lock_ms=5000)
    await consumer.start()
    res = await consumer.fetch([], 2)
    assert [j.data for j in res.jobs] == [0, 1] and all(j.token == 1 for j in res.jobs)
    assert res.rejected == 0
    res2 = await consumer.fetch([], 5)
    assert [j.data for j in res2.jobs] == [2]
    assert res2.wake_ms is not None and 0 < res2.wake_ms <= 5000  # next lock deadline
    await consumer.close()


STRUCTS = [
    JobOptions(delay=1.5, priority=3, attempts=4, backoff=Backoff("exponential", 0.5, 0.2),
               timeout=9.0, remove_on_complete=KeepJobs(count=3, age=60.0), remove_on_fail=7),
    Backoff(),
    KeepJobs(age=1.0),
    JobSpec("n", {"a": [1, 2]}, "custom", {"priority": 2}),
    Job("7", "n", {"x": 1}, JobOptions(attempts=2), attempts_made=1, progress=50,
        stacktrace=["tb"], timestamp=5, processed_on=6, finished_on=7, state="completed"),
    Finish("7", 3, "f", "reason", "stack", 250),
    FetchResult([Job("1", "n")], 12, 0),
]


@pytest.mark.parametrize("value", STRUCTS, ids=lambda v: type(v).__name__)
def test_structs_round_trip(value: object) -> None:
    for enc, dec in ((msgspec.json.encode, msgspec.json.decode),
                     (msgspec.msgpack.encode, msgspec.msgpack.decode)):
        assert dec(enc(value), type=type(value)) == value
