"""SAQ (Redis queue) adapter.

Worker: ``saq peers.saq.settings --workers W -q`` with ``concurrency`` from
the setting (default 10; 50 for the no-op drain, as in SAQ's and streaq's
published benchmarks that run with high concurrency). SAQ dequeues with
BLMOVE, so an idle worker is woken by the push. Completion:
``n - ZCARD saq:bench:incomplete`` (SAQ removes a job from that set when it
finishes). SAQ has no bulk enqueue (``Queue.map`` enqueues and then waits
for results).
"""

from __future__ import annotations

import asyncio
import os
import time

from saq import Queue

from peers._base import Ctx, Skip
from peers._work import spin

URL = os.environ.get("BENCH_URL", "redis://127.0.0.1:6379/0")
INCOMPLETE = "saq:bench:incomplete"


async def noop(ctx: dict) -> None:
    return None


async def work(ctx: dict, *, iters: int) -> None:
    spin(iters)  # deliberately blocks the loop: a CPU-bound job


settings = {
    "queue": Queue.from_url(URL, name="bench"),
    "functions": [noop, work],
    "concurrency": int(os.environ.get("BENCH_SAQ_CONCURRENCY", "10")),
}


def _workers(ctx: Ctx, workers: int, concurrency: int) -> None:
    ctx.spawn(
        [os.path.join(ctx.bin, "saq"), "peers.saq.settings", "--workers", str(workers), "-q"],
        env=ctx.env(BENCH_SAQ_CONCURRENCY=concurrency),
        name="saq",
    )


async def _enqueue(url: str, n: int, func: str, concurrent: int = 1, **kw: int) -> float:
    # Preloads overlap up to 100 enqueues (SAQ's default cap is 20 concurrent ops).
    q = Queue.from_url(url, name="bench", max_concurrent_ops=max(20, concurrent))
    await q.connect()
    t0 = time.perf_counter()
    if concurrent == 1:
        for _ in range(n):
            await q.enqueue(func, **kw)
    else:  # preload only: overlap round trips
        for i in range(0, n, concurrent):
            await asyncio.gather(*(q.enqueue(func, **kw) for _ in range(min(concurrent, n - i))))
    dt = time.perf_counter() - t0
    await q.disconnect()
    return dt


def _setting(setting: str) -> tuple[int, int]:
    w, c = setting.split("-")
    return int(w[1:]), int(c[1:])


def enqueue(ctx: Ctx, n: int, bulk: bool) -> float:
    if bulk:
        raise Skip("saq has no bulk enqueue API")
    ctx.mark("start")
    dt = asyncio.run(_enqueue(ctx.url, n, "noop"))
    ctx.mark("end")
    return dt


def drain(ctx: Ctx, n: int, setting: str) -> float:
    asyncio.run(_enqueue(ctx.url, n, "noop", concurrent=100))
    _workers(ctx, *_setting(setting))
    return ctx.wait_completed(ctx.n_minus(n, "ZCARD", INCOMPLETE), n)


def cpu(ctx: Ctx, n: int, iters: int, ms: float, setting: str) -> float:
    asyncio.run(_enqueue(ctx.url, n, "work", concurrent=100, iters=iters))
    _workers(ctx, *_setting(setting))
    return ctx.wait_completed(ctx.n_minus(n, "ZCARD", INCOMPLETE), n)


def latency(ctx: Ctx, n: int, setting: str) -> list[float]:
    _workers(ctx, *_setting(setting))
    loop = asyncio.new_event_loop()
    q = Queue.from_url(ctx.url, name="bench")
    loop.run_until_complete(q.connect())
    added = [0]

    def add() -> None:
        loop.run_until_complete(q.enqueue("noop"))
        added[0] += 1

    try:
        return ctx.latency_loop(add, ctx.n_minus(lambda: added[0], "ZCARD", INCOMPLETE), n)
    finally:
        loop.run_until_complete(q.disconnect())
        loop.close()
