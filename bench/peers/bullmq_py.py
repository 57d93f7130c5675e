"""BullMQ for Python adapter.

Worker: ``python -m peers.bullmq_py`` running ``bullmq.Worker("bench",
processor, {"concurrency": C})`` in one asyncio process per worker (the
setting gives processes and concurrency). Default job options (completed
jobs kept). Completion: ``ZCARD bull:bench:completed``. Bulk: ``addBulk``
in chunks of 1000. CPU jobs: the processor runs the spin loop inline (it
blocks the loop, so concurrency 1 per process, 2 processes).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from bullmq import Queue, Worker

from peers._base import Ctx, chunks
from peers._work import spin

COMPLETED = "bull:bench:completed"


def _setting(setting: str) -> tuple[int, int]:
    p, c = setting.split("-")[:2]
    return int(p[1:]), int(c[1:])


def _workers(ctx: Ctx, setting: str, iters: int = 0) -> None:
    procs, conc = _setting(setting)
    env = ctx.env(BENCH_CONCURRENCY=conc, BENCH_CPU_ITERS=iters)
    for _ in range(procs):
        ctx.spawn([ctx.python, "-m", "peers.bullmq_py"], env=env, name="bullmq-py")


async def _add(url: str, n: int, bulk: bool, data: dict | None = None) -> float:
    q = Queue("bench", {"connection": url})
    await q.client.ping() if hasattr(q, "client") else None
    data = data or {}
    t0 = time.perf_counter()
    if bulk:
        for size in chunks(n, 1000):
            await q.addBulk([{"name": "noop", "data": data} for _ in range(size)])
    else:
        for _ in range(n):
            await q.add("noop", data)
    dt = time.perf_counter() - t0
    await q.close()
    return dt


def enqueue(ctx: Ctx, n: int, bulk: bool) -> float:
    ctx.mark("start")
    dt = asyncio.run(_add(ctx.url, n, bulk))
    ctx.mark("end")
    return dt


def drain(ctx: Ctx, n: int, setting: str) -> float:
    asyncio.run(_add(ctx.url, n, True))
    _workers(ctx, setting)
    return ctx.wait_completed(ctx.zcard(COMPLETED), n)


def cpu(ctx: Ctx, n: int, iters: int, ms: float, setting: str) -> float:
    asyncio.run(_add(ctx.url, n, True))
    _workers(ctx, setting, iters)
    return ctx.wait_completed(ctx.zcard(COMPLETED), n)


def latency(ctx: Ctx, n: int, setting: str) -> list[float]:
    _workers(ctx, setting)
    loop = asyncio.new_event_loop()
    q = Queue("bench", {"connection": ctx.url})
    try:
        return ctx.latency_loop(
            lambda: loop.run_until_complete(q.add("noop", {})), ctx.zcard(COMPLETED), n
        )
    finally:
        loop.run_until_complete(q.close())
        loop.close()


async def _worker_main() -> None:
    url = os.environ["BENCH_URL"]
    iters = int(os.environ.get("BENCH_CPU_ITERS", "0"))

    async def process(job, token):  # noqa: ANN001 - bullmq's processor signature
        if iters:
            spin(iters)
        return None

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    worker = Worker(
        "bench", process, {"connection": url, "concurrency": int(os.environ["BENCH_CONCURRENCY"])}
    )
    await stop.wait()
    await worker.close(force=True)


if __name__ == "__main__":
    asyncio.run(_worker_main())
