"""Per-minute metrics recorded inside the finishing call: counts, mean
durations, retention trimming, reads by range, and the supervisor path."""

from __future__ import annotations

import anyio
import pytest

from glidemq.engine.connection import Connection
from glidemq.engine.job import Job
from glidemq.engine.metrics import MetricsPoint
from glidemq.engine.queue import JobSpec, Queue
from glidemq.engine.worker import Worker
from glidemq.errors import InvalidOptionError
from tests.engine.helpers import running, server_ms, wait_counts
from tests.supervisor.harness import Launcher

pytestmark = pytest.mark.anyio
F = "tests.features.feature_handlers:"


async def test_counts_equal_the_jobs_processed(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)

    async def proc(job: Job) -> None:
        await anyio.sleep(0.03)
        if job.data % 5 == 0:
            raise ValueError("every fifth fails")

    # 20 pass, 5 fail for good (one attempt each).
    await q.add_bulk([JobSpec("j", i) for i in range(1, 26)])
    async with running(Worker(qname, proc, conn, concurrency=8)):
        await wait_counts(q, completed=20, failed=5)
    done = await q.get_metrics("completed")
    failed = await q.get_metrics("failed")
    assert sum(p.count for p in done) == 20 and sum(p.count for p in failed) == 5
    for p in done + failed:
        assert p.minute % 60_000 == 0
        assert 30 <= p.avg_duration_ms < 5_000, p
    # The per-minute mean is the mean of finish - processed_on.
    jobs = await q.get_jobs("completed")
    durations = [j.finished_on - j.processed_on for j in jobs]  # type: ignore[operator]
    total = sum(p.count * p.avg_duration_ms for p in done)
    assert total == pytest.approx(sum(durations))


async def test_retries_count_once_when_they_finish(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    tries: dict[str, int] = {}

    async def flaky(job: Job) -> None:
        tries[job.id] = tries.get(job.id, 0) + 1
        if tries[job.id] == 1:
            raise ValueError("once")

    await q.add_bulk([JobSpec("j", i, opts={"attempts": 2}) for i in range(4)])
    async with running(Worker(qname, flaky, conn)):
        await wait_counts(q, completed=4)
    assert sum(p.count for p in await q.get_metrics("completed")) == 4
    assert await q.get_metrics("failed") == []


async def test_range_and_retention_trim(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    key = q.keys.prefix + "metrics:completed"
    await q.get_job_counts()  # connects (and learns the cluster's slots)
    now = await server_ms(conn, q.keys.meta)
    minute = now - now % 60_000
    old = [minute - 2 * 86_400_000, minute - 86_400_000 - 60_000]  # beyond 24 h
    kept = minute - 3_600_000
    client = conn.client()
    for m in [*old, kept]:
        await client.hset(key, mapping={f"{m}:c": 2, f"{m}:d": 50})
        await client.zadd(key + ":idx", {str(m): m})
    assert [p.minute for p in await q.get_metrics("completed")] == [*old, kept]

    async def noop(job: Job) -> None:
        return None

    await q.add("j", None)
    async with running(Worker(qname, noop, conn)):
        await wait_counts(q, completed=1)
    # The first finish of a new minute dropped what is older than 24 h.
    points = await q.get_metrics("completed")
    assert [p.minute for p in points][:1] == [kept]
    assert points[0] == MetricsPoint(kept, 2, 25.0)
    assert not await client.hexists(key, f"{old[0]}:c")
    assert [p.minute for p in await q.get_metrics("completed", start=kept, end=kept)] == [kept]
    # A bound inside a minute selects that minute; an end before it does not.
    assert [p.minute for p in await q.get_metrics("completed", start=kept + 1)][:1] == [kept]
    assert await q.get_metrics("completed", start=kept - 60_000, end=kept - 1) == []
    late = await q.get_metrics("completed", start=kept + 60_000)
    assert len(late) == 1 and late[0].count == 1


async def test_shorter_retention(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    await q.set_metrics_retention(600)
    key = q.keys.prefix + "metrics:completed"
    now = await server_ms(conn, q.keys.meta)
    stale = now - now % 60_000 - 20 * 60_000
    await conn.client().hset(key, mapping={f"{stale}:c": 1, f"{stale}:d": 1})
    await conn.client().zadd(key + ":idx", {str(stale): stale})

    async def noop(job: Job) -> None:
        return None

    await q.add("j", None)
    async with running(Worker(qname, noop, conn)):
        await wait_counts(q, completed=1)
    assert [p.count for p in await q.get_metrics("completed")] == [1]


async def test_bad_arguments(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    with pytest.raises(InvalidOptionError, match="kind"):
        await q.get_metrics("stalled")
    with pytest.raises(InvalidOptionError, match="start"):
        await q.get_metrics("completed", start=-5)
    with pytest.raises(InvalidOptionError, match="seconds"):
        await q.set_metrics_retention(10)


@pytest.mark.slow
async def test_supervisor_jobs_are_counted(flaunch: Launcher, qname: str) -> None:
    await flaunch([{"name": qname, "handler": F + "span", "min_children": 2,
                    "max_children": 2}])
    async with Queue(qname, flaunch.url) as q:
        await q.add_bulk([JobSpec("j", {"sleep": 0.01}) for _ in range(12)])
        await wait_counts(q, completed=12)
        points = await q.get_metrics("completed")
        assert sum(p.count for p in points) == 12
        assert all(p.avg_duration_ms >= 10 for p in points)
