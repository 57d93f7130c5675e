"""Deduplication of adds: simple, throttle and debounce modes, entry cleanup,
validation, and debounce of a grouped job (glide-mq's #206 deadlock)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from glidemq.engine.connection import Connection
from glidemq.engine.job import Dedup, Job, JobState
from glidemq.engine.queue import JobSpec, Queue
from glidemq.engine.worker import Worker
from glidemq.errors import InvalidOptionError
from tests.engine.helpers import running, wait_counts, wait_for

pytestmark = pytest.mark.anyio


def dedup_key(q: Queue, dedup_id: str) -> str:
    return f"{q.keys.prefix}dedup:{dedup_id}"


async def noop(job: Job) -> None:
    return None


async def test_fifty_concurrent_adds_with_one_id_make_one_job(conn: Connection,
                                                              qname: str) -> None:
    queues = [Queue(qname, Connection(conn.url)) for _ in range(5)]  # separate connections
    got: list[Job] = []

    async def add(i: int) -> None:
        got.append(await queues[i % 5].add("j", {"i": i}, dedup=Dedup("order-1")))

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(add, i)
    assert len({j.id for j in got}) == 1
    assert sum(not j.deduplicated for j in got) == 1
    assert sum(j.deduplicated for j in got) == 49
    assert (await queues[0].get_job_counts())[JobState.WAITING] == 1
    for q in queues:
        await q.close()


async def test_duplicates_inside_one_bulk_are_skipped(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    jobs = await q.add_bulk([JobSpec("j", i, opts={"dedup": Dedup("x")}) for i in range(5)])
    assert [j.deduplicated for j in jobs] == [False, True, True, True, True]
    assert {j.id for j in jobs} == {jobs[0].id}
    assert jobs[1].data == 0  # the existing job is returned, not the skipped one


async def test_simple_skips_until_the_job_finishes(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    first = await q.add("j", 1, dedup=Dedup("s"), delay=60)
    assert (await q.add("j", 2, dedup=Dedup("s"))).id == first.id  # delayed: still pending
    await q.promote(first.id)
    again = await q.add("j", 3, dedup=Dedup("s"))
    assert again.deduplicated and again.id == first.id and again.data == 1
    async with running(Worker(qname, noop, conn)):
        await wait_counts(q, completed=1)
    # Completion freed the id: the entry is gone, and the next add is a new job.
    assert not await conn.client().exists(dedup_key(q, "s"))
    second = await q.add("j", 4, dedup=Dedup("s"))
    assert not second.deduplicated and second.id != first.id


async def test_simple_is_freed_by_a_terminal_failure_and_by_removal(conn: Connection,
                                                                     qname: str) -> None:
    q = Queue(qname, conn)

    async def boom(job: Job) -> None:
        raise ValueError("no")

    first = await q.add("j", None, dedup=Dedup("f"))
    async with running(Worker(qname, boom, conn)):
        await wait_counts(q, failed=1)
    assert not await conn.client().exists(dedup_key(q, "f"))
    second = await q.add("j", None, dedup=Dedup("f"), delay=60)
    assert not second.deduplicated and second.id != first.id
    # Removed while pending: the stale entry is replaced by the next add.
    assert await q.remove(second.id)
    third = await q.add("j", None, dedup=Dedup("f"))
    assert not third.deduplicated and third.id not in (first.id, second.id)


async def test_simple_with_ttl_expires(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    first = await q.add("j", None, dedup=Dedup("t", ttl=0.2), delay=60)
    assert 0 < await conn.client().pttl(dedup_key(q, "t")) <= 200
    await wait_for(lambda: _gone(conn, dedup_key(q, "t")), what="the dedup entry to expire")
    assert (await q.add("j", None, dedup=Dedup("t"), delay=60)).id != first.id


async def _gone(conn: Connection, key: str) -> bool:
    return not await conn.client().exists(key)


async def test_throttle_skips_within_ttl_whatever_the_state(conn: Connection,
                                                            qname: str) -> None:
    q = Queue(qname, conn)
    d = Dedup("th", mode="throttle", ttl=1.0)
    first = await q.add("j", None, dedup=d)
    async with running(Worker(qname, noop, conn)):
        await wait_counts(q, completed=1)
    # Finished, but still inside the window: skipped.
    again = await q.add("j", None, dedup=d)
    assert again.deduplicated and again.id == first.id and again.state == JobState.COMPLETED
    assert await conn.client().pttl(dedup_key(q, "th")) > 0
    await wait_for(lambda: _gone(conn, dedup_key(q, "th")), what="the throttle window to end")
    after = await q.add("j", None, dedup=d)
    assert not after.deduplicated and after.id != first.id


async def test_throttle_of_a_removed_job_still_reports_the_skip(conn: Connection,
                                                                qname: str) -> None:
    q = Queue(qname, conn)
    d = Dedup("gone", mode="throttle", ttl=30)
    first = await q.add("j", None, dedup=d, delay=60)
    assert await q.remove(first.id)
    again = await q.add("j", None, dedup=d)
    assert again.deduplicated and again.id == first.id and again.state is None


async def test_debounce_replaces_a_delayed_job(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    d = Dedup("db", mode="debounce", ttl=30)
    first = await q.add("j", {"v": 1}, dedup=d, delay=60)
    second = await q.add("j", {"v": 2}, dedup=d, delay=60)
    assert not second.deduplicated and second.id != first.id
    assert await q.get_job(first.id) is None
    c = await q.get_job_counts()
    assert c[JobState.DELAYED] == 1
    removed = [f for _, f in await q.events() if f.get("jobId") == first.id]
    assert removed[-1]["event"] == "removed" and removed[-1]["reason"] == "debounced"
    # Once runnable (waiting) it is no longer replaced: the add is skipped.
    await q.promote(second.id)
    third = await q.add("j", {"v": 3}, dedup=d, delay=60)
    assert third.deduplicated and third.id == second.id and third.data == {"v": 2}


async def test_debounce_adds_after_the_window_or_after_finish(conn: Connection,
                                                              qname: str) -> None:
    q = Queue(qname, conn)
    d = Dedup("dw", mode="debounce", ttl=0.3)
    first = await q.add("j", None, dedup=d, delay=60)
    await wait_for(lambda: _gone(conn, dedup_key(q, "dw")), what="the debounce window to end")
    second = await q.add("j", None, dedup=d, delay=60)
    assert not second.deduplicated and await q.get_job(first.id) is not None  # both kept
    d2 = Dedup("df", mode="debounce", ttl=30)
    done = await q.add("j", None, dedup=d2)
    async with running(Worker(qname, noop, conn)):
        await wait_for(lambda: _state_is(q, done.id, JobState.COMPLETED), what="completion")
    assert not (await q.add("j", None, dedup=d2)).deduplicated


async def _state_is(q: Queue, job_id: str, state: JobState) -> bool:
    return await q.get_job_state(job_id) == state


async def test_debounce_of_a_grouped_job_leaves_the_group_runnable(conn: Connection,
                                                                   qname: str) -> None:
    # glide-mq #206: deleting a pending ordered job left a gap that blocked its group.
    q = Queue(qname, conn)
    d = Dedup("g", mode="debounce", ttl=30)
    await q.add("j", 0, group="k")
    await q.add("j", 1, group="k", dedup=d, delay=60)
    replacement = await q.add("j", 2, group="k", dedup=d, delay=0.05)
    await q.add_bulk([JobSpec("j", i, opts={"group": "k"}) for i in (3, 4)])
    seen: list[Any] = []

    async def record(job: Job) -> None:
        seen.append(job.data)

    async with running(Worker(qname, record, conn, concurrency=4)):
        await wait_counts(q, completed=4)
    assert sorted(seen) == [0, 2, 3, 4]
    assert await q.get_job_state(replacement.id) == JobState.COMPLETED
    assert await q.get_group_counts("k") == {"active": 0, "parked": 0}


@pytest.mark.parametrize(("dedup", "field"), [
    (Dedup("x", mode="sometimes"), "dedup.mode"),
    (Dedup("x", mode="throttle"), "dedup.ttl"),
    (Dedup("x", mode="debounce"), "dedup.ttl"),
    (Dedup("", mode="simple"), "dedup.id"),
    (Dedup("x", ttl=-1), "dedup.ttl"),
    ({"id": "x", "mode": "throttle", "ttl": "soon"}, "dedup"),
    ("x", "dedup"),
])
async def test_invalid_dedup_names_the_field(conn: Connection, qname: str, dedup: Any,
                                             field: str) -> None:
    q = Queue(qname, conn)
    with pytest.raises(InvalidOptionError, match=field):
        await q.add("j", None, dedup=dedup)
    assert (await q.get_job_counts())[JobState.WAITING] == 0


async def test_dedup_accepts_a_dict(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    a = await q.add("j", None, dedup={"id": "d", "mode": "throttle", "ttl": 5})
    b = await q.add("j", None, dedup={"id": "d", "mode": "throttle", "ttl": 5})
    assert b.deduplicated and b.id == a.id
