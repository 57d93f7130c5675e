"""Retries: counts, fixed/exponential backoff gaps, exhaustion, dead-letter
queue, UnrecoverableError."""

from __future__ import annotations

import pytest

from glidemq.engine.backoff import retry_delay_ms
from glidemq.engine.connection import Connection
from glidemq.engine.job import Backoff, Job, JobOptions
from glidemq.engine.queue import Queue
from glidemq.engine.worker import Worker
from glidemq.errors import InvalidOptionError, UnrecoverableError
from tests.engine.helpers import hget, running, wait_counts

pytestmark = pytest.mark.anyio


def event_ms(event_id: str) -> int:
    """Server time of a stream entry: its id is "<ms>-<seq>"."""
    return int(event_id.split("-")[0])


async def attempts_timeline(q: Queue, job_id: str) -> tuple[list[int], list[int]]:
    """(server ms of each claim, retry delays announced), from the events stream."""
    claims, delays = [], []
    for eid, e in await q.events(1000):
        if e["jobId"] == job_id and e["event"] == "active":
            claims.append(event_ms(eid))
        if e["jobId"] == job_id and e["event"] == "retrying":
            delays.append(int(e["delay"]))
    return claims, delays


async def always_fail(job: Job) -> None:
    raise ValueError(f"boom {job.attempts_made}")


async def test_fixed_backoff_gaps(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    job = await q.add("j", {}, attempts=3, backoff=Backoff("fixed", 0.25))
    async with running(Worker(qname, always_fail, conn)):
        await wait_counts(q, failed=1)
    claims, delays = await attempts_timeline(q, job.id)
    assert delays == [250, 250]
    assert len(claims) == 3
    for gap in (b - a for a, b in zip(claims, claims[1:], strict=False)):
        # Never early; the upper bound is a generous guard against a lost wake-up.
        assert 250 <= gap < 250 + 2000
    failed = await q.get_job(job.id)
    assert failed is not None and failed.attempts_made == 3
    assert failed.failed_reason == "ValueError: boom 2"


async def test_exponential_backoff_gaps(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    job = await q.add("j", {}, attempts=4, backoff={"type": "exponential", "delay": 0.1})
    async with running(Worker(qname, always_fail, conn)):
        await wait_counts(q, failed=1)
    claims, delays = await attempts_timeline(q, job.id)
    assert delays == [100, 200, 400]
    assert len(claims) == 4
    for delay, a, b in zip(delays, claims, claims[1:], strict=False):
        assert delay <= b - a < delay + 2000
    failed = await q.get_job(job.id)
    assert failed is not None and failed.attempts_made == 4


async def test_attempts_made_persisted_between_attempts(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    seen: list[int] = []

    async def flaky(job: Job) -> str:
        seen.append(job.attempts_made)
        if job.attempts_made < 2:
            raise RuntimeError("not yet")
        return "third time lucky"

    job = await q.add("j", {}, attempts=5)
    async with running(Worker(qname, flaky, conn)):
        await wait_counts(q, completed=1)
    done = await q.get_job(job.id)
    assert seen == [0, 1, 2]
    assert done is not None and done.attempts_made == 2  # failures recorded
    assert done.return_value == "third time lucky"
    events = [e["event"] for _, e in await q.events() if e["jobId"] == job.id]
    assert events == ["added", "active", "retrying", "active", "retrying", "active", "completed"]


def test_jitter_shortens_delay_within_bounds() -> None:
    job = Job("1", "j", opts=JobOptions(attempts=10, backoff=Backoff("fixed", 1.0, jitter=0.5)))
    delays = {retry_delay_ms(job, ValueError()) for _ in range(200)}
    assert all(500 <= d <= 1000 for d in delays) and len(delays) > 1


async def test_exhaustion_fails_with_reason_and_stacktrace(conn: Connection,
                                                           qname: str) -> None:
    q = Queue(qname, conn)
    job = await q.add("j", {}, attempts=2)
    async with running(Worker(qname, always_fail, conn)):
        await wait_counts(q, failed=1, waiting=0, active=0)
    failed = await q.get_job(job.id)
    assert failed is not None
    assert (failed.state, failed.attempts_made) == ("failed", 2)
    assert failed.failed_reason == "ValueError: boom 1"
    trace = "".join(failed.stacktrace)
    assert "Traceback" in trace and "always_fail" in trace and "ValueError: boom 1" in trace
    assert failed.finished_on is not None
    assert [e["event"] for _, e in await q.events() if e["jobId"] == job.id][-1] == "failed"


async def test_dead_letter_queue_receives_exhausted_job(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    dlq = Queue(f"{qname}.dlq", conn)
    job = await q.add("charge", {"amount": 7}, attempts=2)
    async with running(Worker(qname, always_fail, conn, dead_letter_queue=dlq.name)):
        await wait_counts(q, failed=1)
        # The move happens in the same server call that failed the source job:
        # nothing to wait for once the source is failed.
        assert (await dlq.get_job_counts())["waiting"] == 1
    src = await q.get_job(job.id)
    assert src is not None and src.state == "failed"
    [dead] = await dlq.get_jobs("waiting")
    assert (dead.name, dead.data, dead.state) == ("charge", {"amount": 7}, "waiting")
    key = dlq.keys.job(dead.id)
    assert await hget(conn, key, "oq") == qname
    assert await hget(conn, key, "oid") == job.id
    assert await hget(conn, key, "fr") == "ValueError: boom 1"
    assert await hget(conn, key, "oatm") == "2"
    assert await hget(conn, q.keys.job(job.id), "dlq") == f"{dlq.name}:{dead.id}"


async def test_dead_letter_queue_can_be_consumed(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    dlq = Queue(f"{qname}.dead", conn)
    await q.add("j", {"x": 1})
    async with running(Worker(qname, always_fail, conn, dead_letter_queue=dlq.name)):
        await wait_counts(q, failed=1)

    async def replay(job: Job) -> int:
        return int(job.data["x"]) + 1

    async with running(Worker(dlq.name, replay, conn)):
        await wait_counts(dlq, completed=1, waiting=0)


@pytest.mark.parametrize("name", ["other.dlq", "{q}.dlq", "SELF"])
def test_dead_letter_queue_must_share_root(name: str, qname: str, url: str) -> None:
    name = qname if name == "SELF" else name
    with pytest.raises(InvalidOptionError, match="dead_letter_queue|queue name"):
        Worker(qname, always_fail, url, dead_letter_queue=name)


async def test_unrecoverable_error_skips_retries(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    calls: list[int] = []

    async def fatal(job: Job) -> None:
        calls.append(job.attempts_made)
        raise UnrecoverableError("card declined for good")

    job = await q.add("j", {}, attempts=5, backoff=Backoff("fixed", 0.1))
    async with running(Worker(qname, fatal, conn)):
        await wait_counts(q, failed=1)
    failed = await q.get_job(job.id)
    assert calls == [0]
    assert failed is not None and failed.attempts_made == 1
    assert failed.failed_reason == "UnrecoverableError: card declined for good"
    assert not [e for _, e in await q.events() if e["event"] == "retrying"]


async def test_custom_backoff_strategy(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    job = await q.add("j", {}, attempts=3, backoff={"type": "linear", "delay": 0})
    worker = Worker(qname, always_fail, conn,
                    backoff_strategies={"linear": lambda made, exc: 0.05 * made})
    async with running(worker):
        await wait_counts(q, failed=1)
    _, delays = await attempts_timeline(q, job.id)
    assert delays == [50, 100]


async def test_unknown_backoff_strategy_fails_terminally(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    job = await q.add("j", {}, attempts=3, backoff={"type": "nosuch", "delay": 1})
    async with running(Worker(qname, always_fail, conn)):
        await wait_counts(q, failed=1)
    failed = await q.get_job(job.id)
    assert failed is not None and failed.attempts_made == 1
