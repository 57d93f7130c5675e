"""Rate limits: the queue's sliding window across consumers (Worker and
supervisor), per-group windows, token buckets with job cost, and
RateLimitedError raised by a handler (no attempt used)."""

from __future__ import annotations

from pathlib import Path

import pytest

from glidemq.engine.connection import Connection
from glidemq.engine.job import Job, JobState
from glidemq.engine.limits import GroupLimits
from glidemq.engine.queue import JobSpec, Queue
from glidemq.engine.worker import Worker
from glidemq.errors import InvalidOptionError, RateLimitedError
from tests.engine.helpers import running, wait_counts, wait_for
from tests.supervisor.harness import Launcher

pytestmark = pytest.mark.anyio
F = "tests.features.feature_handlers:"


async def noop(job: Job) -> None:
    return None


def assert_window(starts: list[int], limit: int, window_ms: int) -> None:
    """No ``window_ms`` interval of server claim times holds more than ``limit`` starts."""
    starts = sorted(starts)
    for i in range(len(starts) - limit):
        span = starts[i + limit] - starts[i]
        assert span >= window_ms, (
            f"{limit + 1} starts within {span} ms (limit {limit} per {window_ms} ms): "
            f"{starts[i:i + limit + 1]}")


async def starts_of(q: Queue, jobs: list[Job]) -> list[int]:
    out = []
    for j in jobs:
        got = await q.get_job(j.id)
        assert got is not None and got.processed_on is not None
        out.append(got.processed_on)
    return out


@pytest.mark.slow
async def test_sliding_window_holds_across_three_workers(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    await q.set_rate_limit(10, 1.0)
    assert await q.get_rate_limit() == (10, 1.0)
    jobs = await q.add_bulk([JobSpec("j", i) for i in range(50)])
    conns = [Connection(conn.url) for _ in range(3)]
    workers = [Worker(qname, noop, c, concurrency=4) for c in conns]
    async with running(workers[0]), running(workers[1]), running(workers[2]):
        await wait_counts(q, completed=50)
    starts = await starts_of(q, jobs)
    assert_window(starts, 10, 1000)
    # Per second from the first claim, as a reader would count it.
    per_second: dict[int, int] = {}
    for s in starts:
        per_second[(s - min(starts)) // 1000] = per_second.get((s - min(starts)) // 1000, 0) + 1
    assert max(per_second.values()) <= 10 and len(per_second) >= 5, per_second
    for c in conns:
        await c.close()


async def test_jobs_over_the_limit_stay_waiting_without_locks(conn: Connection,
                                                              qname: str) -> None:
    q = Queue(qname, conn)
    await q.set_rate_limit(2, 60)
    await q.add_bulk([JobSpec("j", i) for i in range(6)])
    w = Worker(qname, noop, conn, concurrency=4)
    async with running(w):
        await wait_counts(q, completed=2)
        await wait_for(lambda: w.idle, what="the worker to go idle")
        c = await q.get_job_counts()
        assert (c[JobState.ACTIVE], c[JobState.WAITING]) == (0, 4)
        # Removing the limit wakes the idle worker at once (not after the window).
        await q.remove_rate_limit()
        assert await q.get_rate_limit() is None
        await wait_counts(q, completed=6)


async def test_group_rate_limit_and_other_groups_unaffected(conn: Connection,
                                                            qname: str) -> None:
    q = Queue(qname, conn)
    await q.set_group_limits("a", concurrency=0, rate=(2, 0.5))
    assert await q.get_group_limits("a") == GroupLimits(concurrency=0, rate=(2, 0.5))
    a = await q.add_bulk([JobSpec("j", i, opts={"group": "a"}) for i in range(8)])
    b = await q.add_bulk([JobSpec("j", i, opts={"group": "b"}) for i in range(4)])
    async with running(Worker(qname, noop, conn, concurrency=8)):
        await wait_counts(q, completed=12)
    a_starts = await starts_of(q, a)
    assert_window(a_starts, 2, 500)
    # Group b was never held back by a's window: it finished before a's last start.
    assert max(await starts_of(q, b)) < max(a_starts)
    assert await q.get_group_counts("a") == {"active": 0, "parked": 0}


async def test_token_bucket_spends_job_cost(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    await q.set_group_limits("t", concurrency=0, bucket=(3, 6.0))
    jobs = await q.add_bulk([JobSpec("j", i, opts={"group": "t", "cost": 3}) for i in range(4)])
    async with running(Worker(qname, noop, conn, concurrency=4)):
        await wait_counts(q, completed=4)
    starts = sorted(await starts_of(q, jobs))
    # Each job empties the bucket; refilling 3 tokens at 6/s takes 500 ms.
    assert all(b - a >= 500 for a, b in zip(starts, starts[1:], strict=False)), starts


async def test_cost_over_capacity_fails_at_claim(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    await q.set_group_limits("t", bucket=(2, 1.0))
    job = await q.add("j", None, group="t", cost=5)
    ok = await q.add("j", None, group="t", cost=2)
    async with running(Worker(qname, noop, conn)):
        await wait_counts(q, failed=1, completed=1)
    failed = await q.get_job(job.id)
    assert failed is not None and failed.state == JobState.FAILED
    assert "cost 5 exceeds the token bucket capacity 2" in (failed.failed_reason or "")
    assert await q.get_job_state(ok.id) == JobState.COMPLETED


async def test_rate_limited_error_retries_without_an_attempt(conn: Connection,
                                                             qname: str) -> None:
    q = Queue(qname, conn)
    runs: list[int] = []

    async def limited(job: Job) -> str:
        runs.append(job.attempts_made)
        if len(runs) == 1:
            raise RateLimitedError(0.3)
        return "ok"

    job = await q.add("j", None)  # attempts=1: a used attempt would fail it for good
    w = Worker(qname, limited, conn)
    async with running(w):
        await wait_counts(q, completed=1)
    done = await q.get_job(job.id)
    assert done is not None and (done.attempts_made, done.return_value) == (0, "ok")
    assert runs == [0, 0] and w.failed == 0
    events = [f["event"] for _, f in await q.events() if f.get("jobId") == job.id]
    assert "delayed" in events and "failed" not in events and "retrying" not in events


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"max": 0, "duration": 1}, "max"),
    ({"max": 5, "duration": 0}, "duration"),
    ({"max": 5, "duration": "1s"}, "duration"),
])
async def test_invalid_rate_limit_names_the_argument(conn: Connection, qname: str,
                                                     kwargs: dict[str, object],
                                                     field: str) -> None:
    with pytest.raises(InvalidOptionError, match=field):
        await Queue(qname, conn).set_rate_limit(**kwargs)  # type: ignore[arg-type]


async def test_invalid_group_limits_name_the_argument(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    with pytest.raises(InvalidOptionError, match="concurrency"):
        await q.set_group_limits("g", concurrency=-1)
    with pytest.raises(InvalidOptionError, match="rate"):
        await q.set_group_limits("g", rate=(0, 1.0))
    with pytest.raises(InvalidOptionError, match="bucket"):
        await q.set_group_limits("g", bucket=(5, 0))
    with pytest.raises(InvalidOptionError, match="cost"):
        await q.add("j", None, cost=3)  # cost without a group


@pytest.mark.slow
async def test_supervisor_defers_rate_limited_jobs(flaunch: Launcher, qname: str,
                                                   tmp_path: Path) -> None:
    await flaunch([{"name": qname, "handler": F + "limited_once", "min_children": 1,
                    "max_children": 1}])
    record = tmp_path / "runs.txt"
    async with Queue(qname, flaunch.url) as q:
        job = await q.add("j", {"record": str(record), "after": 0.3})
        await wait_counts(q, completed=1)
        done = await q.get_job(job.id)
        assert done is not None and done.attempts_made == 0
        assert done.return_value == {"attempts": 0}
        assert record.read_text().split("\n")[:2] == [f"{job.id} 0", f"{job.id} 0"]
        events = [f["event"] for _, f in await q.events() if f.get("jobId") == job.id]
        assert "delayed" in events and "failed" not in events


@pytest.mark.slow
async def test_supervisor_and_worker_share_the_queue_rate_limit(flaunch: Launcher,
                                                                qname: str) -> None:
    async with Queue(qname, flaunch.url) as q:
        await q.set_rate_limit(5, 1.0)
        await flaunch([{"name": qname, "handler": F + "span", "min_children": 2,
                        "max_children": 2, "batch": 1}])
        jobs = await q.add_bulk([JobSpec("j", {"sleep": 0}) for _ in range(15)])
        w = Worker(qname, noop, Connection(flaunch.url), concurrency=4)
        async with running(w):
            await wait_counts(q, completed=15)
        assert_window(await starts_of(q, jobs), 5, 1000)
        await w.consumer.connection.close()


async def test_deferred_grouped_job_frees_its_group_slot(conn: Connection, qname: str) -> None:
    # glide-mq #230: deferred outcomes leaked group slots.
    q = Queue(qname, conn)
    runs: list[int] = []

    async def proc(job: Job) -> None:
        runs.append(job.data)
        if job.data == 0 and runs.count(0) == 1:
            raise RateLimitedError(0.2)

    await q.add_bulk([JobSpec("j", i, opts={"group": "k"}) for i in range(3)])
    async with running(Worker(qname, proc, conn, concurrency=4)):
        await wait_counts(q, completed=3)
    assert runs[:3] == [0, 1, 2] and runs.count(0) == 2  # the others did not wait for it
    assert await q.get_group_counts("k") == {"active": 0, "parked": 0}
