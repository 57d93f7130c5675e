"""Limits enforced by a real supervisor: hard and soft timeouts, child recycling."""

from __future__ import annotations

import time

import pytest

from glidemq.engine.job import JobState
from glidemq.engine.queue import JobSpec, Queue
from tests.supervisor.harness import B, H, Launcher, wait_counts

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _one_child(name: str, handler: str, **extra: object) -> dict[str, object]:
    return {"name": name, "handler": handler, "min_children": 1, "max_children": 1, **extra}


async def test_hard_timeout_kills_a_child_that_ignores_sigterm(launch: Launcher,
                                                                qname: str) -> None:
    hard, grace = 1.0, 0.5
    sup = await launch([
        _one_child(qname, B + "sleep_forever", hard_timeout=hard, hard_timeout_grace=grace),
        _one_child(f"{qname}-ok", H + "pid")])
    async with Queue(qname, launch.url) as q, Queue(f"{qname}-ok", launch.url) as ok:
        t0 = time.monotonic()
        job = await q.add("spin", None)
        await wait_counts(q, failed=1)
        elapsed = time.monotonic() - t0
        failed = await q.get_job(job.id)
        assert failed is not None and failed.state == JobState.FAILED
        assert failed.failed_reason is not None
        assert failed.failed_reason.startswith("hard timeout"), failed.failed_reason
        assert failed.attempts_made == 1
        assert await q.get_job_logs(job.id) == ["ignoring SIGTERM"]
        assert failed.processed_on is not None and failed.finished_on is not None
        ran = (failed.finished_on - failed.processed_on) / 1000
        assert hard + grace - 0.1 <= ran < hard + grace + 3.0, ran  # SIGKILL after the grace
        assert elapsed < hard + grace + 10.0
        assert await sup.metric("glidemq_limit_kills_total", f"{qname}/hard_timeout") == 1
        # A hard timeout is a limit, not a crash: no restart penalty, the pool serves on.
        assert await sup.metric("glidemq_child_restarts_total", qname) == 0
        await sup.wait_metric("glidemq_pool_size", qname, lambda v: v == 1, "pool refilled")
        await ok.add_bulk([JobSpec("x", None) for _ in range(3)])
        await wait_counts(ok, completed=3)
        assert sup.alive()


@pytest.mark.parametrize("handler", ["soft_timeout_victim", "async_soft_timeout_victim"])
async def test_soft_timeout_raises_inside_the_handler(launch: Launcher, qname: str,
                                                      handler: str) -> None:
    sup = await launch([_one_child(qname, B + handler, soft_timeout=0.3, hard_timeout=20)])
    async with Queue(qname, launch.url) as q:
        job = await q.add("slow", None)
        await wait_counts(q, failed=1)
        failed = await q.get_job(job.id)
        assert failed is not None
        assert "SoftTimeoutError" in (failed.failed_reason or ""), failed.failed_reason
        assert failed.attempts_made == 1
        assert len(await q.get_job_logs(job.id)) == 1  # the handler saw it and logged
        # The handler raised; its child survives and takes the next job.
        assert await sup.metric("glidemq_child_restarts_total", qname) == 0
        assert await sup.metric("glidemq_limit_kills_total", f"{qname}/hard_timeout") == 0


async def test_max_jobs_per_child_recycles_children(launch: Launcher, qname: str) -> None:
    sup = await launch([_one_child(qname, H + "pid", max_jobs_per_child=2)])
    async with Queue(qname, launch.url) as q:
        jobs = await q.add_bulk([JobSpec("j", None) for _ in range(6)])
        await wait_counts(q, completed=6)
        pids = [(await q.get_job(j.id)).return_value for j in jobs]  # type: ignore[union-attr]
        assert len(set(pids)) >= 3, pids
        assert max(pids.count(p) for p in pids) <= 2, pids  # no child ran more than 2
        assert await sup.metric("glidemq_limit_kills_total", f"{qname}/max_jobs_per_child") >= 2
        assert await sup.metric("glidemq_child_restarts_total", qname) == 0


@pytest.mark.parametrize("batch", [1, 8])
async def test_max_rss_recycles_a_grown_child(launch: Launcher, qname: str, batch: int) -> None:
    sup = await launch([_one_child(qname, H + "grow", max_rss_mb=50, batch=batch)])
    async with Queue(qname, launch.url) as q:
        jobs = await q.add_bulk([JobSpec("j", 60) for _ in range(3)])
        await wait_counts(q, completed=3)
        pids = [(await q.get_job(j.id)).return_value for j in jobs]  # type: ignore[union-attr]
        if batch == 1:
            assert len(set(pids)) == 3, pids  # each job pushed its child past the limit
        else:  # checked after each job; the next one of the batch may have started already
            assert max(pids.count(p) for p in pids) <= 2, pids
        assert await sup.metric("glidemq_limit_kills_total", f"{qname}/max_rss") >= 1
        assert await sup.metric("glidemq_child_restarts_total", qname) == 0
        small = await q.add_bulk([JobSpec("j", 1) for _ in range(3)])
        await wait_counts(q, completed=6)
        rest = {(await q.get_job(j.id)).return_value for j in small}  # type: ignore[union-attr]
        assert len(rest) == 1  # small jobs stay under the limit: one child runs them all
