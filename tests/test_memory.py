"""Memory-leak regression: RSS and traced allocations must stay flat per job.

In-process: 25,000 no-op jobs through a Worker (5,000 warm-up, then 20,000
measured). Supervisor: 7,000 jobs through 2 children (2,000 warm-up). The
bounds are per 1,000 jobs after warm-up:

* traced Python allocations (tracemalloc, in-process only) < 16 KiB per 1k
  jobs: a leak of anything per job (a Job struct alone is ~400 B, a finish
  record ~150 B) would be >= 150 KiB per 1k, ten times over the bound;
  caches that settle during warm-up stay under it.
* RSS < 256 KiB per 1k jobs: the allocator returns memory in pages and
  arenas, so RSS is noisier than tracemalloc; a real per-job leak of even
  100 B shows as ~100 KiB per 1k and grows without end, while noise does not
  scale with the job count (see the two-window check below).

On failure the message names the top growing allocation sites.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path

import anyio
import psutil
import pytest

from glidemq import Job, JobState, Queue, Worker

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
KIB = 1024


def _top_growth(a: tracemalloc.Snapshot, b: tracemalloc.Snapshot) -> str:
    stats = b.compare_to(a, "lineno")[:8]
    return "\n".join(str(s) for s in stats)


async def _drain(worker: Worker, until: int) -> None:
    with anyio.fail_after(120):
        while worker.completed < until:
            await anyio.sleep(0.01)


async def test_worker_memory_is_flat(standalone) -> None:  # type: ignore[no-untyped-def]
    name = f"mem-worker-{os.getpid()}"
    q = Queue(name, standalone.url, events=False)
    total, warm = 25_000, 5_000
    for start in range(0, total, 5_000):
        await q.add_bulk([("n", i) for i in range(start, start + 5_000)])

    async def noop(job: Job) -> None:
        return None

    proc = psutil.Process()
    w = Worker(name, noop, standalone.url, concurrency=50, events=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run)
        await _drain(w, warm)
        tracemalloc.start(10)
        gc.collect()
        snap0 = tracemalloc.take_snapshot()
        rss0 = proc.memory_info().rss
        done0 = w.completed
        await _drain(w, done0 + (total - warm) // 2)
        rss_mid = proc.memory_info().rss
        await _drain(w, total)
        gc.collect()
        snap1 = tracemalloc.take_snapshot()
        rss1 = proc.memory_info().rss
        measured = w.completed - done0
        await w.close()
    tracemalloc.stop()
    traced = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
    per_k_traced = traced / (measured / 1000)
    per_k_rss = (rss1 - rss0) / (measured / 1000)
    assert per_k_traced < 16 * KIB, (
        f"traced allocations grew {per_k_traced / KIB:.1f} KiB per 1k jobs; top sites:\n"
        + _top_growth(snap0, snap1))
    # RSS: bounded per job, and the second half must not grow more than the first
    # plus noise (a leak grows in both halves alike).
    assert per_k_rss < 256 * KIB, f"RSS grew {per_k_rss / KIB:.1f} KiB per 1k jobs"
    assert rss1 - rss_mid <= max(0, rss_mid - rss0) + 4 * 1024 * KIB
    assert (await q.get_job_counts())[JobState.COMPLETED] == total
    await q.obliterate(force=True)
    await q.close()


async def test_supervisor_memory_is_flat(standalone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name = f"mem-sup-{os.getpid()}"
    cfg = tmp_path / "glidemq.toml"
    cfg.write_text(f'[valkey]\nurl = "{standalone.url}"\n[supervisor]\nlog_level = "WARNING"\n'
                   f'[[queues]]\nname = "{name}"\nhandler = "tests.handlers.basic:noop"\n'
                   'min_children = 2\nmax_children = 2\nbatch = 16\nprefetch = 16\n'
                   '[queues.autoscale]\nenabled = false\n')
    q = Queue(name, standalone.url, events=False)
    sup = subprocess.Popen([sys.executable, "-m", "glidemq.supervisor", "--config", str(cfg)],
                           cwd=ROOT)
    try:
        proc = psutil.Process(sup.pid)

        async def completed_at_least(n: int) -> None:
            with anyio.fail_after(120):
                while (await q.get_job_counts())[JobState.COMPLETED] < n:
                    await anyio.sleep(0.02)

        def rss() -> tuple[int, dict[int, int]]:
            return proc.memory_info().rss, {k.pid: k.memory_info().rss for k in proc.children()}

        # Both children must be up and warm before the baseline: a child still
        # importing when the baseline is taken would look like growth.
        with anyio.fail_after(60):
            while len(proc.children()) < 2:
                await anyio.sleep(0.05)
        await q.add_bulk([("n", i) for i in range(2_000)])
        await completed_at_least(2_000)
        sup0, kids0 = rss()
        await q.add_bulk([("n", i) for i in range(5_000)])
        await completed_at_least(7_000)
        sup1, kids1 = rss()
    finally:
        os.kill(sup.pid, signal.SIGTERM)
        sup.wait(timeout=60)
    assert set(kids0) == set(kids1), "a child was replaced mid-test; its RSS is not comparable"
    per_k_sup = (sup1 - sup0) / 5
    per_k_kids = max(kids1[pid] - kids0[pid] for pid in kids0) / 5
    # Same reasoning as the in-process bound, per 1k jobs.
    assert per_k_sup < 256 * KIB, f"supervisor RSS grew {per_k_sup / KIB:.1f} KiB per 1k jobs"
    assert per_k_kids < 256 * KIB, f"children RSS grew {per_k_kids / KIB:.1f} KiB per 1k jobs"
    await q.obliterate(force=True)
    await q.close()
