"""QueueEvents: typed events, lifecycle order, resuming from a last id,
waiting for one job's outcome, and the events stream cap."""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import pytest

from glidemq.engine.connection import Connection
from glidemq.engine.events import (
    Active,
    Added,
    Completed,
    Delayed,
    Event,
    Failed,
    Paused,
    Progress,
    QueueEvent,
    QueueEvents,
    Removed,
    Resumed,
    Retrying,
    Stalled,
    UnknownEvent,
    parse_event,
)
from glidemq.engine.job import Job
from glidemq.engine.queue import Queue
from glidemq.engine.worker import Worker
from glidemq.errors import (
    InvalidOptionError,
    JobFailedError,
    JobNotFoundError,
    UnrecoverableError,
    WaitTimeoutError,
)
from glidemq.supervisor.config import QueueConfig
from tests.engine.helpers import running, wait_for

pytestmark = pytest.mark.anyio


# --- parsing (no server) ---------------------------------------------------------------
@pytest.mark.parametrize(("fields", "expected"), [
    ({"event": "added", "jobId": "7", "name": "n"}, Added(id="1-0", job_id="7", name="n")),
    ({"event": "added", "jobId": "sched-s-1", "name": "n", "scheduler": "s"},
     Added(id="1-0", job_id="sched-s-1", name="n", scheduler="s")),
    ({"event": "active", "jobId": "7"}, Active(id="1-0", job_id="7")),
    ({"event": "progress", "jobId": "7", "data": '{"pct": 50}'},
     Progress(id="1-0", job_id="7", data={"pct": 50})),
    ({"event": "progress", "jobId": "7", "data": "not json"},
     Progress(id="1-0", job_id="7", data="not json")),
    ({"event": "completed", "jobId": "7"}, Completed(id="1-0", job_id="7")),
    ({"event": "failed", "jobId": "7", "failedReason": "boom"},
     Failed(id="1-0", job_id="7", failed_reason="boom")),
    ({"event": "retrying", "jobId": "7", "failedReason": "x", "delay": "250"},
     Retrying(id="1-0", job_id="7", failed_reason="x", delay=250)),
    ({"event": "delayed", "jobId": "7", "delay": "10"}, Delayed(id="1-0", job_id="7", delay=10)),
    ({"event": "stalled", "jobId": "7"}, Stalled(id="1-0", job_id="7")),
    ({"event": "removed", "jobId": "7", "reason": "debounced", "replacedBy": "8"},
     Removed(id="1-0", job_id="7", reason="debounced")),
    ({"event": "paused", "jobId": ""}, Paused(id="1-0")),
    ({"event": "resumed", "jobId": ""}, Resumed(id="1-0")),
])
def test_entries_become_typed_events(fields: dict[str, str], expected: QueueEvent) -> None:
    event = parse_event("1-0", fields)
    assert event == expected
    assert event.kind == fields["event"]
    assert event.timestamp == 1


@pytest.mark.parametrize("fields", [
    {"event": "group-parked", "jobId": "7", "group": "g"},  # a name this client lacks
    {"event": "delayed", "jobId": "7", "delay": "soon"},  # a field of the wrong type
    {"jobId": "7"},  # no name at all
])
def test_unknown_or_malformed_entries_never_raise(fields: dict[str, str]) -> None:
    event = parse_event("5-3", fields)
    assert isinstance(event, UnknownEvent)
    assert (event.job_id, event.fields, event.kind) == ("7", fields, fields.get("event", ""))


def test_events_round_trip_through_msgspec() -> None:
    events = [parse_event("9-1", {"event": "retrying", "jobId": "3", "failedReason": "r",
                                  "delay": "5"}),
              parse_event("9-2", {"event": "progress", "jobId": "3", "data": "[1, 2]"}),
              parse_event("9-3", {"event": "added", "jobId": "3", "name": "x"})]
    wire = msgspec.json.encode(events)
    assert msgspec.json.decode(wire, type=list[Event]) == events  # type: ignore[valid-type]
    assert b'"event":"retrying"' in wire and b'"failedReason":"r"' in wire


def test_options_are_validated() -> None:
    with pytest.raises(InvalidOptionError, match="block"):
        QueueEvents("q", "valkey://127.0.0.1:1", block=0)
    with pytest.raises(InvalidOptionError, match="count"):
        QueueEvents("q", "valkey://127.0.0.1:1", count=0)


# --- against a server --------------------------------------------------------------------
async def collect(events: QueueEvents, until: Any, limit: float = 30) -> list[QueueEvent]:
    """Iterate until ``until(event)`` holds for an event; return every event seen."""
    seen: list[QueueEvent] = []
    with anyio.fail_after(limit):
        async for event in events:
            seen.append(event)
            if until(event):
                return seen
    return seen


async def worker_fn(job: Job) -> Any:
    if job.data.get("fail"):
        raise UnrecoverableError("bad input")
    await job.update_progress(50)
    await job.update_progress({"pct": 100})
    return {"echo": job.data["v"]}


async def test_a_job_lifecycle_arrives_in_order(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    async with QueueEvents(qname, conn, block=0.5) as events:
        ok = await q.add("ok", {"v": 1})
        bad = await q.add("bad", {"fail": True})
        async with running(Worker(qname, worker_fn, conn)):
            seen = await collect(events, lambda e: isinstance(e, Failed))
    of_ok = [e for e in seen if e.job_id == ok.id]
    assert [type(e) for e in of_ok] == [Added, Active, Progress, Progress, Completed]
    assert [e.data for e in of_ok if isinstance(e, Progress)] == [50, {"pct": 100}]
    assert of_ok[0] == Added(id=of_ok[0].id, job_id=ok.id, name="ok")
    of_bad = [e for e in seen if e.job_id == bad.id]
    assert [type(e) for e in of_bad] == [Added, Active, Failed]
    assert isinstance(of_bad[-1], Failed)
    assert of_bad[-1].failed_reason == "UnrecoverableError: bad input"
    ids = [e.id for e in seen]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert events.last_id == seen[-1].id


async def test_dollar_skips_history_and_zero_reads_it(conn: Connection, qname: str) -> None:
    q = Queue(qname, conn)
    old = await q.add("old")
    async with QueueEvents(qname, conn, block=0.2) as live:  # "$" pinned here
        new = await q.add("new")
        seen = await collect(live, lambda e: e.job_id == new.id)
    assert [e.job_id for e in seen] == [new.id]
    async with QueueEvents(qname, conn, last_id="0", block=0.2) as history:
        seen = await collect(history, lambda e: e.job_id == new.id)
    assert [e.job_id for e in seen] == [old.id, new.id]


async def test_resuming_from_last_id_loses_and_repeats_nothing(conn: Connection,
                                                              qname: str) -> None:
    q = Queue(qname, conn)
    first = [j.id for j in await q.add_bulk([("a", i) for i in range(5)])]
    reader = QueueEvents(qname, conn, last_id="0", block=0.2, count=2)
    seen = await collect(reader, lambda e: e.job_id == first[2])
    resume_at = reader.last_id
    await reader.close()
    # Written while nobody reads: a new reader must get exactly these and the rest.
    more = [j.id for j in await q.add_bulk([("b", i) for i in range(5)])]
    await q.pause()
    async with QueueEvents(qname, conn, last_id=resume_at, block=0.2) as again:
        rest = await collect(again, lambda e: isinstance(e, Paused))
    assert [e.job_id for e in seen] == first[:3]
    assert [e.job_id for e in rest] == first[3:] + more + [""]
    assert len({e.id for e in seen + rest}) == len(seen) + len(rest)


async def test_wait_until_finished_returns_raises_and_times_out(conn: Connection,
                                                               qname: str) -> None:
    q = Queue(qname, conn)
    async with QueueEvents(qname, conn) as events:
        slow = await q.add("never", {"v": 0})  # nobody runs it
        with pytest.raises(WaitTimeoutError) as timed_out:
            await events.wait_until_finished(slow.id, timeout=0.3)
        assert timed_out.value.job_id == slow.id
        await q.remove(slow.id)
        ok = await q.add("ok", {"v": 42})
        bad = await q.add("bad", {"fail": True})
        async with running(Worker(qname, worker_fn, conn)):
            assert await ok.wait_until_finished(events, timeout=30) == {"echo": 42}
            with pytest.raises(JobFailedError) as failed:
                await events.wait_until_finished(bad.id, timeout=30)
        assert failed.value.failed_reason == "UnrecoverableError: bad input"
        # Already finished: answered from the hash at once.
        assert await events.wait_until_finished(ok.id, timeout=0.01) == {"echo": 42}
        # Removed on completion: the value is gone, which is an error, not None.
        after = await events.tail()
        gone = await q.add("gone", {"v": 1}, remove_on_complete=True)
        async with running(Worker(qname, worker_fn, conn)):
            with pytest.raises(JobNotFoundError, match="remove_on_complete"):
                await events.wait_until_finished(gone.id, timeout=30, after=after)


async def test_events_maxlen_caps_and_zero_turns_off(conn: Connection, qname: str) -> None:
    silent = Queue(qname, conn, events_maxlen=0)
    await silent.add_bulk([("a", i) for i in range(10)])
    assert await conn.client().xlen(silent.keys.events) == 0
    capped = Queue(qname, conn, events_maxlen=5)
    await capped.add_bulk([("a", i) for i in range(600)])
    # MAXLEN ~ trims whole nodes of 100 entries: well under 600, at least 5.
    assert 5 <= await conn.client().xlen(capped.keys.events) <= 200
    async with running(Worker(qname, worker_fn, conn, events_maxlen=0)):
        job = await silent.add("x", {"v": 1})
        await wait_for(lambda: _completed(silent, job.id), what="the job to complete")
    assert [f for _, f in await silent.events(1000) if f.get("jobId") == job.id] == []
    assert QueueConfig(name="q", handler="m:f", events_maxlen=0).events_maxlen == 0
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"name": "q", "handler": "m:f", "events_maxlen": -1}, QueueConfig)


async def _completed(q: Queue, job_id: str) -> bool:
    return str(await q.get_job_state(job_id)) == "completed"
