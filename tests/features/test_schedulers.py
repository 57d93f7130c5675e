"""Job schedulers: one job per tick across Workers and a supervisor, anchored
intervals, cron instants in time zones (DST table), limit/start/end, removal,
the missed-tick policy, bounded ticking per fetch, and cron batch refills."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
import pytest

from glidemq.engine import cron, schedulers
from glidemq.engine.connection import Connection
from glidemq.engine.consumer import Consumer
from glidemq.engine.job import Job, JobState
from glidemq.engine.queue import Queue
from glidemq.engine.schedulers import (
    JobScheduler,
    JobTemplate,
    SchedulerKeys,
    server_time_ms,
    tick_of,
)
from glidemq.engine.worker import Worker
from glidemq.errors import InvalidOptionError
from tests.engine.helpers import running, wait_for
from tests.supervisor.harness import Launcher

pytestmark = pytest.mark.anyio
T = JobTemplate("tick", {"k": 1})


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


# --- cron instants (no server) ------------------------------------------------------------
@pytest.mark.parametrize(("expr", "tz", "after", "expected"), [
    # Paris spring forward (02:00 -> 03:00): the missing 02:30 runs right after the gap.
    ("30 2 * * *", "Europe/Paris", "2024-03-30T12:00", ["2024-03-31T01:00", "2024-04-01T00:30"]),
    # Paris fall back (03:00 -> 02:00): a fixed 02:30 runs once, at its first occurrence.
    ("30 2 * * *", "Europe/Paris", "2024-10-26T12:00", ["2024-10-27T00:30", "2024-10-28T01:30"]),
    # ... but an hourly expression keeps its real-time cadence through the repeated hour.
    ("0 * * * *", "Europe/Paris", "2024-10-26T22:30",
     ["2024-10-26T23:00", "2024-10-27T00:00", "2024-10-27T01:00", "2024-10-27T02:00"]),
    ("*/30 * * * *", "America/New_York", "2024-11-03T04:45",
     ["2024-11-03T05:00", "2024-11-03T05:30", "2024-11-03T06:00", "2024-11-03T06:30"]),
    ("30 1 * * *", "America/New_York", "2024-11-02T12:00",
     ["2024-11-03T05:30", "2024-11-04T06:30"]),
    ("30 2 * * *", "America/New_York", "2024-03-09T12:00",
     ["2024-03-10T07:00", "2024-03-11T06:30"]),
    ("15 10 * * *", "Europe/London", "2024-03-30T12:00", ["2024-03-31T09:15", "2024-04-01T09:15"]),
    ("0 2 * * *", "Australia/Sydney", "2024-10-05T12:00", ["2024-10-05T16:00", "2024-10-06T15:00"]),
    ("0 9 * * 1-5", "Asia/Kolkata", "2024-06-07T12:00", ["2024-06-10T03:30", "2024-06-11T03:30"]),
    ("0 0 1 * *", "UTC", "2024-01-15T00:00", ["2024-02-01T00:00", "2024-03-01T00:00"]),
])
def test_cron_lands_on_the_right_utc_instants(expr: str, tz: str, after: str,
                                              expected: list[str]) -> None:
    got = cron.cron_ticks(expr, tz, utc(after), count=len(expected), span_ms=0)
    assert got == [utc(e) for e in expected]


def test_cron_batches_are_bounded_and_respect_the_end() -> None:
    t0 = utc("2024-01-01T00:00")
    minutely = cron.cron_ticks("* * * * *", "UTC", t0)
    assert len(minutely) == 64 and minutely[0] == t0 + 60_000  # strictly after
    assert len(cron.cron_ticks("* * * * * *", "UTC", t0)) == 600  # 10 minutes of seconds
    assert cron.cron_ticks("0 * * * *", "UTC", t0, until_ms=t0 + 3 * 3_600_000) == [
        t0 + 3_600_000, t0 + 7_200_000, t0 + 10_800_000]
    assert cron.cron_ticks("0 0 30 2 *", "UTC", t0) == []  # February 30th never comes
    assert cron.cron_prev("*/5 * * * *", "UTC", t0 + 7 * 60_000) == t0 + 5 * 60_000
    assert cron.cron_prev("*/5 * * * *", "UTC", t0 + 5 * 60_000) == t0 + 5 * 60_000


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"every": 1, "cron": "* * * * *"}, "exactly one"),
    ({}, "exactly one"),
    ({"every": 0}, "every"),
    ({"every": 1, "tz": "UTC"}, "tz"),
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "tz"),
    ({"every": 1, "limit": 0}, "limit"),
    ({"every": 1, "start": datetime(2030, 1, 1)}, "timezone-aware"),
    ({"every": 1, "start": 20, "end": 10}, "before start"),
    ({"every": 1, "misfire_grace": -1}, "misfire_grace"),
    ({"every": 1, "template": JobTemplate("t", opts={"delay": 5})}, "delay"),
    ({"every": 1, "template": JobTemplate("t", opts={"colour": 1})}, "colour"),
    ({"every": 1, "template": "t"}, "JobTemplate"),
])
async def test_bad_arguments_are_refused(conn: Connection, qname: str, kwargs: dict[str, Any],
                                         match: str) -> None:
    kwargs.setdefault("template", T)
    with pytest.raises(InvalidOptionError, match=match):
        await Queue(qname, conn).upsert_job_scheduler("s", **kwargs)
    for bad in ("", "a:b", "a b", "{x}", "x" * 201):
        with pytest.raises(InvalidOptionError, match="scheduler id"):
            await Queue(qname, conn).upsert_job_scheduler(bad, every=1, template=T)
    assert await Queue(qname, conn).get_job_schedulers() == []


def test_tick_of_parses_scheduled_job_ids() -> None:
    assert tick_of("sched-daily-report-1700000000000") == ("daily-report", 1700000000000)
    assert tick_of("sched--1") is None and tick_of("42") is None and tick_of("sched-x-y") is None


# --- helpers -------------------------------------------------------------------------------
async def scheduled_ids(q: Queue, sid: str) -> list[str]:
    """Ids of the jobs a scheduler made, in any state (a job moving between two
    states while they are listed one by one is counted once: ids are unique)."""
    ids: set[str] = set()
    for state in JobState:
        ids |= {j.id for j in await q.get_jobs(state) if (tick_of(j.id) or ("",))[0] == sid}
    return sorted(ids)


def ticks_of(ids: list[str]) -> list[int]:
    return sorted(t[1] for t in map(tick_of, ids) if t is not None)


async def scheduler(q: Queue, sid: str) -> JobScheduler:
    found = await q.get_job_scheduler(sid)
    assert found is not None
    return found


async def wait_jobs(q: Queue, sid: str, n: int, within: float = 30.0) -> list[str]:
    async def enough() -> list[str] | None:
        ids = await scheduled_ids(q, sid)
        return ids if len(ids) >= n else None

    return list(await wait_for(enough, within, f"{n} jobs of scheduler {sid}"))


async def prove_fetches_continue(q: Queue) -> None:
    """Synchronise on observed work instead of sleeping: a probe scheduler ticks 3 times."""
    await q.upsert_job_scheduler("probe", every=0.1, template=JobTemplate("probe"))
    await wait_jobs(q, "probe", 3)
    await q.remove_job_scheduler("probe")


def assert_exactly_one_per_tick(ticks: list[int], step_ms: int) -> None:
    assert len(ticks) == len(set(ticks)), f"duplicate ticks: {Counter(ticks)}"
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert set(gaps) == {step_ms}, f"gaps or drift between ticks: {gaps}"


# --- one job per tick ------------------------------------------------------------------------
@pytest.mark.slow
async def test_three_workers_make_exactly_one_job_per_tick(url: str, qname: str) -> None:
    """10 s of a 1 s interval raced by 3 Workers on connections of their own."""
    conns = [Connection(url) for _ in range(4)]
    q = Queue(qname, conns[3])
    processed: list[str] = []

    async def record(job: Job) -> str:
        processed.append(job.id)
        return job.id

    workers = [Worker(qname, record, c, block_timeout=2.0) for c in conns[:3]]
    async with running(workers[0]), running(workers[1]), running(workers[2]):
        await q.upsert_job_scheduler("every-second", every=1, template=T)
        await wait_for(lambda: len(processed) >= 11, 40, "11 scheduled jobs to run (10 s)")
        assert await q.remove_job_scheduler("every-second")
    ids = await scheduled_ids(q, "every-second")
    assert_exactly_one_per_tick(ticks_of(ids), 1000)
    assert len(processed) == len(set(processed)) and set(processed) <= set(ids)
    assert sum(w.completed for w in workers) == len(processed)
    for c in conns:
        await c.close()


@pytest.mark.slow
async def test_a_worker_and_a_supervisor_make_exactly_one_job_per_tick(
        flaunch: Launcher, conn: Connection, qname: str) -> None:
    """5 s suffice here: every tick is a fresh race, so duplicates or gaps would show at
    any tick; the 3-worker test above runs the full 10 s."""
    q = Queue(qname, conn)
    # A cron whose batch ran dry: the supervisor's refill actor (run at start) must
    # top it up, and the catch-up job then shows the supervisor consumes the queue.
    await q.upsert_job_scheduler("dry", cron="* * * * *", template=T)
    await _dry(conn, q, "dry")
    await flaunch([{"name": qname, "handler": "tests.handlers.sched_handlers:tick",
                    "min_children": 1, "max_children": 1, "autoscale": {"enabled": False}}])
    await wait_for(lambda: _completed_of(q, "dry", 1), what="the supervisor to refill and run")
    await q.remove_job_scheduler("dry")

    async def here(job: Job) -> dict[str, Any]:
        return {"by": "worker", "id": job.id}

    async with running(Worker(qname, here, conn, block_timeout=2.0)):
        await q.upsert_job_scheduler("mixed", every=1, template=T)
        await wait_for(lambda: _completed_of(q, "mixed", 6), 40, "6 scheduled jobs to complete")
        assert await q.remove_job_scheduler("mixed")
    ids = await scheduled_ids(q, "mixed")
    assert_exactly_one_per_tick(ticks_of(ids), 1000)
    done = [j for j in await q.get_jobs(JobState.COMPLETED) if j.id in ids]
    assert {j.return_value["by"] for j in done} <= {"worker", "supervisor"}
    assert all(j.return_value["id"] == j.id for j in done)


async def _dry(conn: Connection, q: Queue, sid: str) -> None:
    """Empty a cron scheduler's batch, as if its ticks passed with nobody running."""
    sk = SchedulerKeys(q.keys)
    c = conn.client()
    await c.delete(sk.ticks(sid))
    await c.zadd(sk.index, {sid: "+inf"})
    await c.sadd(sk.refill, sid)


async def _completed_of(q: Queue, sid: str, n: int) -> bool:
    done = [j for j in await q.get_jobs(JobState.COMPLETED) if (tick_of(j.id) or ("",))[0] == sid]
    return len(done) >= n


async def test_cron_ticks_run_on_whole_seconds_in_a_time_zone(conn: Connection,
                                                              qname: str) -> None:
    q = Queue(qname, conn)
    async with running(Worker(qname, _noop, conn)):
        s = await q.upsert_job_scheduler("cron", cron="* * * * * *", tz="Asia/Kolkata",
                                         template=T)
        assert s.cron == "* * * * * *" and s.tz == "Asia/Kolkata" and s.next_tick_ms
        ids = await wait_jobs(q, "cron", 3)
        await q.remove_job_scheduler("cron")
    ticks = ticks_of(ids)
    assert all(t % 1000 == 0 for t in ticks)
    assert_exactly_one_per_tick(ticks, 1000)


async def _noop(job: Job) -> None:
    return None


# --- limit, start, end, remove ---------------------------------------------------------------
async def test_limit_stops_after_that_many_jobs(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    async with running(Worker(qname, _noop, conn)):
        await q.upsert_job_scheduler("three", every=0.2, limit=3, template=T)
        await wait_for(lambda: _done(q, "three"), what="the scheduler to finish")
        await prove_fetches_continue(q)
    s = await scheduler(q, "three")
    assert (s.count, s.done, s.next_tick_ms, s.limit) == (3, True, None, 3)
    assert_exactly_one_per_tick(ticks_of(await scheduled_ids(q, "three")), 200)


async def _done(q: Queue, sid: str) -> bool:
    return (await scheduler(q, sid)).done


async def test_start_and_end_bound_the_ticks(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    start = await server_time_ms(conn, q.keys) + 1000
    async with running(Worker(qname, _noop, conn)):
        s = await q.upsert_job_scheduler("window", every=0.5, start=start / 1000,
                                         end=datetime.fromtimestamp((start + 2000) / 1000, UTC),
                                         template=T)
        assert (s.start_ms, s.end_ms, s.next_tick_ms) == (start, start + 2000, start)
        await wait_for(lambda: _done(q, "window"), what="the window to close")
        await prove_fetches_continue(q)
    assert ticks_of(await scheduled_ids(q, "window")) == [start + i * 500 for i in range(5)]
    assert (await scheduler(q, "window")).skipped == 0


async def test_remove_stops_the_ticks_and_keeps_made_jobs(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    async with running(Worker(qname, _noop, conn)):
        await q.upsert_job_scheduler("gone", every=0.2, template=T)
        await wait_jobs(q, "gone", 2)
        assert await q.remove_job_scheduler("gone")
        made = await scheduled_ids(q, "gone")
        await prove_fetches_continue(q)
    assert await scheduled_ids(q, "gone") == made
    assert await q.get_job_scheduler("gone") is None
    assert not await q.remove_job_scheduler("gone")
    sk = SchedulerKeys(q.keys)
    c = conn.client()
    assert not await c.exists(sk.scheduler("gone"), sk.ticks("gone"))
    assert await c.zscore(sk.index, "gone") is None


# --- missed ticks (white box: no consumer runs in between) -------------------------------
async def test_after_an_outage_only_the_newest_missed_tick_runs(conn: Connection,
                                                                qname: str) -> None:
    q = Queue(qname, conn)
    consumer = Consumer(conn, qname)
    first = (await q.upsert_job_scheduler("outage", every=0.1, template=T)).next_tick_ms
    assert first is not None
    await anyio.sleep(0.55)  # the outage itself: nobody fetches meanwhile
    res = await consumer.fetch((), 10)
    s = await scheduler(q, "outage")
    assert [j.id for j in res.jobs] == [f"sched-outage-{s.last_tick_ms}"]
    assert s.count == 1 and s.last_tick_ms is not None and s.next_tick_ms is not None
    assert s.skipped == (s.last_tick_ms - first) // 100 >= 5
    assert s.next_tick_ms == s.last_tick_ms + 100  # still on the grid: no drift
    assert s.next_tick_ms > await server_time_ms(conn, q.keys) - 100
    await consumer.close()


@pytest.mark.parametrize(("grace", "jobs", "skipped"), [(None, 1, 10), (0.05, 0, 11)])
async def test_misfire_grace_skips_a_tick_that_is_too_late(
        conn: Connection, qname: str, grace: float | None, jobs: int, skipped: int) -> None:
    q = Queue(qname, conn)
    await q.upsert_job_scheduler("late", every=1, misfire_grace=grace, template=T)
    # Pretend the last consumer left 10.1 s ago: 11 ticks are due, the newest 100 ms late.
    due = await server_time_ms(conn, q.keys) - 10_100
    await conn.client().zadd(SchedulerKeys(q.keys).index, {"late": due})
    consumer = Consumer(conn, qname)
    res = await consumer.fetch((), 10)
    s = await scheduler(q, "late")
    assert (len(res.jobs), s.count, s.skipped) == (jobs, jobs, skipped)
    assert s.next_tick_ms == due + 11_000
    await consumer.close()


async def test_one_fetch_ticks_at_most_100_schedulers(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    for i in range(150):
        await q.upsert_job_scheduler(f"s{i}", every=3600, template=T)
    consumer = Consumer(conn, qname)
    assert (await consumer.fetch((), 0)).wake_ms is None  # claim 0: no wake report
    assert (await q.get_job_counts())[JobState.WAITING] == 100
    await consumer.fetch((), 0)
    assert (await q.get_job_counts())[JobState.WAITING] == 150
    await consumer.fetch((), 0)
    assert (await q.get_job_counts())[JobState.WAITING] == 150
    await consumer.close()


# --- upserts, templates, listing ---------------------------------------------------------------
async def test_re_upserting_the_same_timing_keeps_the_schedule(conn: Connection,
                                                               qname: str) -> None:
    q = Queue(qname, conn)
    consumer = Consumer(conn, qname)
    s1 = await q.upsert_job_scheduler("deploy", every=60, template=T)
    await consumer.fetch((), 0)
    s2 = await q.upsert_job_scheduler("deploy", every=60, template=JobTemplate("tick", {"k": 2}))
    await consumer.fetch((), 0)
    assert (s2.count, s2.next_tick_ms) == (1, (s1.next_tick_ms or 0) + 60_000)
    assert s2.template.data == {"k": 2}
    assert len(await scheduled_ids(q, "deploy")) == 1  # the same timing fired nothing extra
    s3 = await q.upsert_job_scheduler("deploy", every=30, template=T)  # new timing: re-anchored
    assert s3.next_tick_ms is not None and s3.next_tick_ms > (s1.next_tick_ms or 0)
    await consumer.fetch((), 0)
    assert len(set(await scheduled_ids(q, "deploy"))) == 2
    await consumer.close()


async def test_template_options_and_listing(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    tpl = JobTemplate("report", {"to": "ops"}, {"priority": 5, "attempts": 3,
                                                "backoff": {"type": "fixed", "delay": 2}})
    await q.upsert_job_scheduler("b", every=3600, template=tpl, limit=7)
    await q.upsert_job_scheduler("a", cron="0 9 * * *", tz="Europe/Paris", template=T,
                                 end=4102444800)
    listed = await q.get_job_schedulers()
    assert [s.id for s in listed] == ["b", "a"]  # the next to tick first
    b = listed[0]
    assert (b.every, b.limit, b.template.name, b.template.data) == (3600, 7, "report",
                                                                     {"to": "ops"})
    assert b.template.opts["priority"] == 5 and b.template.opts["attempts"] == 3
    a = listed[1]
    assert (a.cron, a.tz, a.every, a.end_ms) == ("0 9 * * *", "Europe/Paris", None, 4102444800000)
    consumer = Consumer(conn, qname)
    job = (await consumer.fetch((), 1)).jobs[0]
    assert (job.name, job.data, job.opts.priority, job.opts.attempts) == ("report",
                                                                         {"to": "ops"}, 5, 3)
    assert (await q.get_job(job.id)) is not None
    await consumer.close()


# --- cron batches ------------------------------------------------------------------------------
async def test_refill_tops_up_a_low_batch_without_duplicates(conn: Connection,
                                                             qname: str) -> None:
    q = Queue(qname, conn)
    sk = SchedulerKeys(q.keys)
    c = conn.client()
    await q.upsert_job_scheduler("m", cron="* * * * *", template=T)
    full = [int(t) for t in await c.lrange(sk.ticks("m"), 0, -1)]
    assert len(full) == 64
    await c.ltrim(sk.ticks("m"), 0, 1)
    await c.sadd(sk.refill, "m")
    assert await schedulers.refill(conn, qname) == 64
    stored = [int(t) for t in await c.lrange(sk.ticks("m"), 0, -1)]
    assert stored == [full[0] + i * 60_000 for i in range(66)]
    assert await schedulers.refill(conn, qname) == 0  # nothing low any more: one SMEMBERS
    # A racing consumer that computed the same batch, or one for an older timing.
    rev = await c.hget(sk.scheduler("m"), "rev")
    batch = msgspec.msgpack.encode(stored[2:])
    assert await conn.fcall("glidemq_refill_scheduler", q.keys.meta, "m", rev, batch) == 0
    assert await conn.fcall("glidemq_refill_scheduler", q.keys.meta, "m", "0", batch) == -1
    assert [int(t) for t in await c.lrange(sk.ticks("m"), 0, -1)] == stored


async def test_a_dry_batch_catches_up_with_the_newest_past_tick(conn: Connection,
                                                                qname: str) -> None:
    q = Queue(qname, conn)
    sk = SchedulerKeys(q.keys)
    c = conn.client()
    await q.upsert_job_scheduler("dry", cron="* * * * *", template=T)
    await _dry(conn, q, "dry")
    now = await server_time_ms(conn, q.keys)
    async with running(Worker(qname, _noop, conn)):  # its refill actor runs at start
        ids = await wait_jobs(q, "dry", 1)
    assert ticks_of(ids)[0] in (now - now % 60_000, now - now % 60_000 + 60_000)  # a boundary
    assert len(await c.lrange(sk.ticks("dry"), 0, -1)) >= 63  # a full batch, minus that tick


async def test_a_cron_past_its_end_finishes(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    now = await server_time_ms(conn, q.keys)
    s = await q.upsert_job_scheduler("short", cron="* * * * * *", end=(now + 1500) / 1000,
                                     template=T)
    assert s.next_tick_ms is not None
    async with running(Worker(qname, _noop, conn)):
        await wait_for(lambda: _done_after_refill(conn, q, "short"), what="the cron to finish")
    ticks = ticks_of(await scheduled_ids(q, "short"))
    assert ticks and all(t <= now + 1500 for t in ticks)


async def test_a_cron_that_cannot_tick_is_refused_or_finished(conn: Connection,
                                                              qname: str) -> None:
    q = Queue(qname, conn)
    with pytest.raises(InvalidOptionError, match="never matches"):
        await q.upsert_job_scheduler("feb30", cron="0 0 30 2 *", template=T)
    s = await q.upsert_job_scheduler("over", cron="* * * * *", end=1_000_000, template=T)
    assert (s.done, s.next_tick_ms) == (True, None)
    assert not await conn.client().smembers(SchedulerKeys(q.keys).refill)


async def _done_after_refill(conn: Connection, q: Queue, sid: str) -> bool:
    await schedulers.refill(conn, q.name)  # do not wait for the 30 s actor
    return (await scheduler(q, sid)).done


async def test_obliterate_deletes_the_schedulers(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    await q.upsert_job_scheduler("e", every=0.05, template=T)
    await q.upsert_job_scheduler("c", cron="* * * * *", template=T)
    await q.obliterate(force=True)
    assert await q.get_job_schedulers() == []
    consumer = Consumer(conn, qname)
    await anyio.sleep(0.1)  # "e" would be due again by now
    assert (await consumer.fetch((), 10)).jobs == []
    sk = SchedulerKeys(q.keys)
    assert not await conn.client().exists(sk.index, sk.refill, sk.scheduler("c"), sk.ticks("c"))
    await consumer.close()
