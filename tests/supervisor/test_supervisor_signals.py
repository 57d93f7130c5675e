"""Signals to a real supervisor: TERM drains, KILL loses nothing, HUP/TTIN/TTOU resize."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from glidemq.engine.job import JobState
from glidemq.engine.queue import JobSpec, Queue
from tests.supervisor.harness import H, Launcher, counts, read_records, wait_counts, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _table(name: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "handler": H + "behave", "min_children": n, "max_children": n,
            "autoscale": {"enabled": False}, **extra}


async def _states(q: Queue, ids: list[str]) -> dict[str, tuple[str | None, int]]:
    out = {}
    for jid in ids:
        job = await q.get_job(jid)
        assert job is not None, f"job {jid} lost"
        out[jid] = (job.state, job.attempts_made)
    return out


async def test_sigterm_finishes_running_jobs_and_gives_back_the_rest(
        launch: Launcher, qname: str, tmp_path: Path) -> None:
    record = tmp_path / "starts.txt"
    sup = await launch([_table(qname, 2)], supervisor={"drain_timeout": 20})
    async with Queue(qname, launch.url) as q:
        jobs = await q.add_bulk(
            [JobSpec("j", {"sleep": 0.4, "record": str(record)}) for _ in range(10)])
        ids = [j.id for j in jobs]
        await wait_for(lambda: len(read_records(record)) >= 2, "two jobs running")
        children = sup.children()
        assert len(children) == 2
        t0 = time.monotonic()
        sup.send(signal.SIGTERM)
        assert await sup.wait_exit() == 0
        # Each child finished the job it was in (two at most), not its whole batch.
        assert time.monotonic() - t0 < 0.4 + 5.0
        assert sup.leaked() == []
        assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)

        started = {j for _, j, _ in read_records(record)}
        states = await _states(q, ids)
        assert {j for j, (s, _) in states.items() if s == JobState.COMPLETED} == started
        rest = {j: v for j, v in states.items() if j not in started}
        assert rest and all(v == (JobState.WAITING, 0) for v in rest.values()), rest
        c = await counts(q)
        assert (c["active"], c["failed"], c["waiting"]) == (0, 0, len(rest))

        # A second supervisor finishes the rest; no job ran twice.
        await launch([_table(qname, 2)])
        await wait_counts(q, completed=10)
        runs = [j for _, j, _ in read_records(record)]
        assert sorted(runs) == sorted(ids)
        assert all(a == 0 for *_, a in read_records(record))


async def test_sigterm_drain_deadline_returns_the_job_unpenalised(
        launch: Launcher, qname: str, tmp_path: Path) -> None:
    record = tmp_path / "starts.txt"
    sup = await launch([_table(qname, 1)], supervisor={"drain_timeout": 0.5})
    async with Queue(qname, launch.url) as q:
        job = await q.add("long", {"sleep": 60, "record": str(record)})
        await wait_for(lambda: read_records(record), "the job to start")
        t0 = time.monotonic()
        sup.send(signal.SIGTERM)
        assert await sup.wait_exit() == 0
        assert time.monotonic() - t0 < 0.5 + 4.0  # the drain deadline, then SIGTERM to the child
        assert sup.leaked() == []
        back = await q.get_job(job.id)
        assert back is not None
        assert (back.state, back.attempts_made) == (JobState.WAITING, 0)
        assert (await counts(q))["active"] == 0


async def test_sigquit_quick_exit_returns_in_flight_jobs(launch: Launcher, qname: str,
                                                         tmp_path: Path) -> None:
    record = tmp_path / "starts.txt"
    sup = await launch([_table(qname, 2, hard_timeout_grace=1.0)])
    async with Queue(qname, launch.url) as q:
        job = await q.add("long", {"sleep": 60, "record": str(record)})
        await wait_for(lambda: read_records(record), "the job to start")
        await wait_for(lambda: sup.count_log(r"child \d+ up") == 2, "both children up")
        await sup.wait_metric("glidemq_busy_children", qname, lambda v: v == 1,
                              "one child busy, one idle")
        t0 = time.monotonic()
        sup.send(signal.SIGQUIT)
        assert await sup.wait_exit() == 0
        assert time.monotonic() - t0 < 1.0 + 4.0
        assert sup.leaked() == []
        back = await q.get_job(job.id)
        assert back is not None
        assert (back.state, back.attempts_made) == (JobState.WAITING, 0)


async def test_sigkilled_supervisor_is_replaced_and_every_job_completes(
        launch: Launcher, qname: str, tmp_path: Path) -> None:
    record = tmp_path / "starts.txt"
    table = _table(qname, 1, lock_duration=2)
    sup = await launch([table])
    async with Queue(qname, launch.url) as q:
        jobs = await q.add_bulk(
            [JobSpec("j", {"sleep": 0.3, "record": str(record)}) for _ in range(6)])
        await wait_for(lambda: read_records(record), "the first job to start")
        children = sup.children()
        sup.send(signal.SIGKILL)
        assert await sup.wait_exit() == -signal.SIGKILL
        # Children die with their supervisor (parent-death signal).
        await wait_for(lambda: sup.leaked() == [], "the orphaned children to die", within=10)
        assert children
        c = await counts(q)
        assert c["active"] >= 1 and c["completed"] < 6  # claimed by a dead supervisor

        await launch([table])  # reclaims once the 2 s locks lapse
        await wait_counts(q, completed=6, active=0, waiting=0, failed=0)
        for j in jobs:
            assert (await q.get_job(j.id)).return_value["attempts"] == 0  # type: ignore[union-attr]


async def test_hup_ttin_ttou_resize_the_pool_live(launch: Launcher, qname: str) -> None:
    sup = await launch([_table(qname, 1)])

    async def size_is(desired: int, size: int, what: str) -> None:
        await sup.wait_metric("glidemq_pool_desired", qname, lambda v: v == desired, what)
        await sup.wait_metric("glidemq_pool_size", qname, lambda v: v == size, what)
        await wait_for(lambda: len(sup.children()) == size, f"{size} child processes")

    def rewrite(**table: Any) -> None:
        launch.write([table], name=sup.config_path.name, port=sup.port)

    await size_is(1, 1, "start at one child")
    rewrite(**_table(qname, 2, max_children=3))
    sup.send(signal.SIGHUP)
    await size_is(2, 2, "HUP raised min_children to 2")
    sup.send(signal.SIGTTIN)
    await size_is(3, 3, "TTIN adds one")
    sup.send(signal.SIGTTIN)
    # Wait until that TTIN was handled before the next signal, so the order
    # of the two is what this test says.
    await wait_for(lambda: "resize by +1 ignored" in sup.log(), "TTIN at max ignored")
    sup.send(signal.SIGTTOU)
    await size_is(2, 2, "TTIN at max does nothing, TTOU removes one")
    sup.send(signal.SIGTTOU)
    await size_is(2, 2, "TTOU at min does nothing")

    (sup.config_path).write_text("[[queues]]\nname = 1\n")  # a broken file is not applied
    sup.send(signal.SIGHUP)
    await wait_for(lambda: "config not reloaded" in sup.log(), "the reload error in the log")
    rewrite(**_table(qname, 1))
    sup.send(signal.SIGHUP)
    await size_is(1, 1, "HUP back to one child")

    async with Queue(qname, launch.url) as q:
        await q.add_bulk([JobSpec("j", {}) for _ in range(5)])
        await wait_counts(q, completed=5)
    assert await sup.metric("glidemq_child_restarts_total", qname) == 0
    assert sup.alive()
