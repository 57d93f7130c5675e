"""Concurrency limits: global (across workers), per group (ordering keys,
strict FIFO at 1), saturated groups not blocking others, and group slots that
a double finish or a reclaim cannot skew (glide-mq's #217)."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import anyio
import pytest

from glidemq.engine.connection import Connection
from glidemq.engine.consumer import Consumer, FetchResult, Finish
from glidemq.engine.job import Job, JobState
from glidemq.engine.queue import JobSpec, Queue
from glidemq.engine.worker import Worker
from glidemq.errors import InvalidOptionError
from tests.engine.helpers import running, wait_counts, wait_for
from tests.supervisor.harness import Launcher

pytestmark = pytest.mark.anyio
F = "tests.features.feature_handlers:"


class Overlap:
    """Counts how many processors run at once, overall and per group."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.per_group: dict[str, int] = defaultdict(int)
        self.group_peak: dict[str, int] = defaultdict(int)
        self.order: dict[str, list[Any]] = defaultdict(list)

    async def __call__(self, job: Job) -> None:
        g = job.opts.group or ""
        self.order[g].append(job.data)
        self.now += 1
        self.per_group[g] += 1
        self.peak = max(self.peak, self.now)
        self.group_peak[g] = max(self.group_peak[g], self.per_group[g])
        await anyio.sleep(random.uniform(0.001, 0.02))
        self.now -= 1
        self.per_group[g] -= 1


async def test_global_concurrency_holds_across_four_workers(conn: Connection,
                                                            qname: str) -> None:
    q = Queue(qname, conn)
    await q.set_global_concurrency(2)
    assert await q.get_global_concurrency() == 2
    await q.add_bulk([JobSpec("j", i) for i in range(40)])
    probe = Overlap()
    conns = [Connection(conn.url) for _ in range(4)]
    workers = [Worker(qname, probe, c, concurrency=4) for c in conns]
    samples: list[int] = []
    async with running(workers[0]), running(workers[1]), running(workers[2]), \
            running(workers[3]):
        async def sampled() -> bool:
            samples.append((await q.get_job_counts())[JobState.ACTIVE])
            return (await q.get_job_counts())[JobState.COMPLETED] == 40

        await wait_for(sampled, what="40 completions", interval=0.005)
    assert probe.peak == 2, probe.peak  # reached, never exceeded
    assert max(samples) <= 2, max(samples)
    await q.set_global_concurrency(0)
    assert await q.get_global_concurrency() == 0
    with pytest.raises(InvalidOptionError, match="n must be"):
        await q.set_global_concurrency(-1)
    for c in conns:
        await c.close()


async def test_per_key_fifo_with_three_keys_under_concurrency_8(conn: Connection,
                                                                 qname: str) -> None:
    q = Queue(qname, conn)
    keys = ["a", "b", "c"]
    # Interleaved adds: a0 b0 c0 a1 b1 c1 ... (groups default to concurrency 1).
    await q.add_bulk([JobSpec("j", [k, i], opts={"group": k}) for i in range(15) for k in keys])
    probe = Overlap()
    async with running(Worker(qname, probe, conn, concurrency=8)):
        await wait_counts(q, completed=45)
    for k in keys:
        assert probe.order[k] == [[k, i] for i in range(15)], probe.order[k]
        assert probe.group_peak[k] == 1
        assert await q.get_group_counts(k) == {"active": 0, "parked": 0}
    assert probe.peak >= 2  # the keys ran side by side


async def test_group_concurrency_above_one(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    await q.set_group_limits("g", concurrency=3)
    await q.set_group_limits(None, concurrency=2)  # default of every other group
    await q.add_bulk([JobSpec("j", i, opts={"group": "g"}) for i in range(30)]
                     + [JobSpec("j", i, opts={"group": "h"}) for i in range(30)])
    probe = Overlap()
    async with running(Worker(qname, probe, conn, concurrency=16)):
        await wait_counts(q, completed=60)
    assert probe.group_peak["g"] == 3 and probe.group_peak["h"] == 2, probe.group_peak
    await q.remove_group_limits("g")
    assert (await q.get_group_limits("g")).concurrency == 2  # falls back to the default


async def test_a_saturated_group_never_blocks_others(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    release = anyio.Event()
    fast_done: list[Any] = []

    async def proc(job: Job) -> None:
        if job.opts.group == "slow":
            await release.wait()
        else:
            fast_done.append(job.data)

    await q.add_bulk([JobSpec("j", i, opts={"group": "slow"}) for i in range(50)])
    await q.add_bulk([JobSpec("j", i, opts={"group": f"fast{i}"}) for i in range(5)])
    async with running(Worker(qname, proc, conn, concurrency=4)):
        await wait_for(lambda: len(fast_done) == 5, what="the other groups to run")
        # The slow group holds one slot; its backlog is parked, not active, unlocked.
        c = await q.get_job_counts()
        assert c[JobState.ACTIVE] == 1
        counts = await q.get_group_counts("slow")
        assert counts["active"] == 1 and counts["parked"] >= 1
        release.set()
        await wait_counts(q, completed=55)
    assert await q.get_group_counts("slow") == {"active": 0, "parked": 0}


async def fetch_until(consumer: Consumer, claim: int = 1) -> FetchResult:
    got: FetchResult | None = None

    async def once() -> bool:
        nonlocal got
        got = await consumer.fetch([], claim)
        return bool(got.jobs)

    await wait_for(once, what=f"{consumer.name} to claim a job", interval=0.05)
    assert got is not None
    return got


async def test_double_finish_does_not_skew_the_group_slot(conn: Connection,
                                                          qname: str) -> None:
    q = Queue(qname, conn)
    c = Consumer(conn, qname)
    await c.start()
    await q.add("j", 0, group="k")
    [a] = (await c.fetch([], 5)).jobs
    done = Finish.completed(a, b"null")
    assert (await c.fetch([done], 0)).rejected == 0
    assert (await c.fetch([done], 0)).rejected == 1  # the second finish is refused
    await q.add_bulk([JobSpec("j", i, opts={"group": "k"}) for i in (1, 2)])
    # A skewed (negative) slot count would now let two of the group run at once.
    got = await c.fetch([], 5)
    assert [j.data for j in got.jobs] == [1]
    assert await q.get_group_counts("k") == {"active": 1, "parked": 1}
    await c.close()


async def test_reclaim_then_late_complete_does_not_skew_the_group_slot(
        conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    first = Consumer(conn, qname, lock_ms=150)
    second = Consumer(conn, qname, lock_ms=30_000)
    await first.start()
    await q.add("j", "a", group="k")
    [mine] = (await first.fetch([], 1)).jobs
    # The first holder stops renewing; the second reclaims the job and runs it.
    [theirs] = (await fetch_until(second, 5)).jobs
    assert theirs.id == mine.id and theirs.token == mine.token + 1
    await q.add("j", "b", group="k")
    late = await first.fetch([Finish.completed(mine, b'"zombie"')], 0)
    assert late.rejected == 1
    assert await q.get_group_counts("k") == {"active": 1, "parked": 0}
    assert (await second.fetch([], 5)).jobs == []  # "b" waits: the group is busy
    assert await q.get_group_counts("k") == {"active": 1, "parked": 1}
    # The real finish frees the slot and the same call claims "b".
    got = await second.fetch([Finish.completed(theirs, b'"ok"')], 5)
    assert [j.data for j in got.jobs] == ["b"]
    assert await q.get_group_counts("k") == {"active": 1, "parked": 0}
    await second.fetch([Finish.completed(got.jobs[0], b"null")], 0)
    assert await q.get_group_counts("k") == {"active": 0, "parked": 0}
    await first.close()
    await second.close()


async def test_removed_parked_job_does_not_stall_its_group(conn: Connection,
                                                           qname: str) -> None:
    q = Queue(qname, conn)
    c = Consumer(conn, qname)
    await c.start()
    jobs = await q.add_bulk([JobSpec("j", i, opts={"group": "k"}) for i in range(3)])
    got = await c.fetch([], 5)
    assert [j.data for j in got.jobs] == [0]
    assert await q.remove(jobs[1].id)  # parked, then removed
    got = await c.fetch([Finish.completed(got.jobs[0], b"null")], 5)
    assert [j.data for j in got.jobs] == [2]
    await c.close()


@pytest.mark.slow
async def test_supervisor_honours_global_and_group_concurrency(flaunch: Launcher,
                                                                qname: str) -> None:
    async with Queue(qname, flaunch.url) as q:
        await q.set_global_concurrency(2)
        await flaunch([{"name": qname, "handler": F + "span", "min_children": 3,
                        "max_children": 3, "batch": 1}])
        jobs = await q.add_bulk([JobSpec("j", {"sleep": 0.05, "k": k, "i": i},
                                         opts={"group": k}) for i in range(6) for k in "xyz"])
        await wait_counts(q, completed=18)
        spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
        everything = []
        for j in jobs:
            got = await q.get_job(j.id)
            assert got is not None
            start, end = got.return_value
            spans[got.data["k"]].append((start, end))
            everything.append((start, end))
        for k, rows in spans.items():
            # FIFO per key, one at a time: each starts after the previous ended.
            assert all(b[0] >= a[1] for a, b in zip(rows, rows[1:], strict=False)), (k, rows)
        events = sorted([(s, 1) for s, _ in everything] + [(e, -1) for _, e in everything])
        running_now = peak = 0
        for _, step in events:
            running_now += step
            peak = max(peak, running_now)
        assert peak <= 2, peak


async def test_group_slot_of_a_deleted_active_job_heals(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    c = Consumer(conn, qname)
    await c.start()
    await q.add("j", "old", group="k")
    assert len((await c.fetch([], 1)).jobs) == 1
    await q.obliterate(force=True)  # deletes the active job without finishing it
    await q.add("j", "new", group="k")
    got = await c.fetch([], 1)
    assert [j.data for j in got.jobs] == ["new"]
    assert await q.get_group_counts("k") == {"active": 1, "parked": 0}
    await c.close()
