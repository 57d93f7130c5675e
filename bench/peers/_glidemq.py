"""Shared parts of glidemq's two adapters (runs in glidemq's venv, /work/main/.venv).

* ``G``: one asyncio loop and one ``glidemq.Queue("bench")`` for the adapter
  process, driven synchronously (``G.run(coro)``), so the sync ``Ctx``
  helpers (``wait_completed``, ``latency_loop``) can call it.
* ``COMPLETED``: glidemq's completed zset of the queue,
  ``glidemq:{bench}:bench:completed`` (default job options keep completed
  jobs), counted with one raw ``ZCARD`` per poll through ``ctx.r``.
* ``wait_ready``: waits until every worker process / supervisor child wrote
  its ready file (``peers._glidemq_handlers``).
* ``python -m peers._glidemq``: one in-process ``glidemq.Worker`` process
  (``BENCH_CONCURRENCY``, ``BENCH_HANDLER`` = anoop | spin, ``BENCH_EVENTS``
  = 1 | 0), stopped gracefully by SIGTERM.

Everything runs at glidemq's defaults (lifecycle events on: every add,
claim and completion also appends to the queue's events stream inside the
same server call) unless a setting says otherwise.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from collections.abc import Coroutine
from typing import Any

from glidemq import Queue
from glidemq.engine.keys import QueueKeys
from peers._base import Ctx, chunks

QUEUE = "bench"
COMPLETED = QueueKeys(QUEUE).completed


class G:
    """The adapter's event loop and producer queue."""

    def __init__(self, ctx: Ctx, events: bool = True) -> None:
        self.loop = asyncio.new_event_loop()
        self.q = Queue(QUEUE, ctx.url, events=events)
        # Connect and load the function library before any clock starts.
        self.run(self.q.get_job_counts())

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.q.close())
        self.loop.close()

    async def add_single(self, n: int, data: Any = None) -> None:
        q = self.q
        for _ in range(n):
            await q.add("noop", data)

    async def add_chunks(self, n: int, data: Any = None) -> None:
        for size in chunks(n, 1000):
            await self.q.add_bulk([("noop", data)] * size)

    def preload(self, n: int, data: Any = None, paused: bool = True) -> None:
        """Bulk-load n jobs; with ``paused`` the queue stays paused (resume() later)."""
        if paused:
            self.run(self.q.pause())
        self.run(self.add_chunks(n, data))

    def resume(self) -> None:
        self.run(self.q.resume())


def ready_dir(ctx: Ctx) -> str:
    return tempfile.mkdtemp(prefix="ready-", dir=ctx.logdir)


def wait_ready(ctx: Ctx, d: str, want: int, settle: float = 0.3) -> float:
    """Wait for ``want`` ready files in ``d`` naming live processes; returns seconds
    waited (a child that died and was replaced does not count twice)."""
    t0 = time.perf_counter()
    while True:
        alive = 0
        for name in os.listdir(d):
            try:
                os.kill(int(name), 0)
                alive += 1
            except (ProcessLookupError, ValueError):
                pass
        if alive >= want:
            break
        ctx.check_alive()
        ctx.check_deadline(f"waiting for {want} glidemq processes to be ready (have {alive})")
        time.sleep(0.02)
    time.sleep(settle)  # let each loop reach its idle wait on the paused queue
    return time.perf_counter() - t0


def spawn_workers(
    ctx: Ctx, procs: int, concurrency: int, handler: str, events: bool, ready: str
) -> None:
    env = ctx.env(
        BENCH_CONCURRENCY=concurrency,
        BENCH_HANDLER=handler,
        BENCH_EVENTS=int(events),
        BENCH_WORKER_READY_DIR=ready,
    )
    for _ in range(procs):
        ctx.spawn([ctx.python, "-m", "peers._glidemq"], env=env, name="glidemq-worker")


# --------------------------------------------------------------------------- memory
def rss_samples(ctx: Ctx, procs: dict[str, Any], n: int, every: int) -> dict[str, Any]:
    """Poll completions; record each process's RSS (MiB, psutil) at 0 jobs, every
    ``every`` completed jobs, and at n. ``procs``: label -> psutil.Process."""
    import psutil

    def rss(p: Any) -> float:
        try:
            return float(p.memory_info().rss) / 2**20
        except psutil.Error:
            return float("nan")

    samples: list[dict[str, Any]] = []
    count = ctx.zcard(COMPLETED)
    t0 = time.perf_counter()

    def snap(c: int) -> None:
        samples.append(
            {"jobs": c, "t": time.perf_counter() - t0, **{k: rss(p) for k, p in procs.items()}}
        )

    snap(0)
    nxt, c = every, 0
    while c < n:
        time.sleep(0.002)
        c = count()
        if c >= nxt or c >= n:
            snap(c)
            nxt = (c // every + 1) * every
        ctx.check_alive()
        ctx.check_deadline(f"memory run: {c} of {n} jobs done")
    return {"samples": samples, "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- worker process
async def _worker_main() -> None:
    import anyio

    from glidemq import Worker
    from peers import _glidemq_handlers as h

    handler = {"anoop": h.anoop, "spin": h.spin, "noop": h.noop}[os.environ["BENCH_HANDLER"]]
    w = Worker(
        QUEUE,
        handler,
        os.environ["BENCH_URL"],
        concurrency=int(os.environ["BENCH_CONCURRENCY"]),
        events=os.environ.get("BENCH_EVENTS", "1") == "1",
    )
    h.mark_ready(os.environ.get("BENCH_WORKER_READY_DIR"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                await w.close(force=True)
                break


if __name__ == "__main__":
    asyncio.run(_worker_main())
