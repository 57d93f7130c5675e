"""arq adapter (runs in bench/.peers-venv-arq: arq 0.28 pins redis<6).

Worker: ``arq peers.arq.WorkerSettings`` (one asyncio process each) with
``max_jobs`` (concurrency) and ``poll_delay`` from the setting. arq polls
its queue (a sorted set) and then sleeps ``poll_delay`` (default 0.5 s)
between polls even while busy, so the default caps a worker at about
``queue_read_limit`` jobs per poll; ``poll_delay=0.01`` with max_jobs=100 is
our tuned setting. Completion: ``n - ZCARD arq:queue`` (arq removes a job id
from the queue set in the same transaction that stores its result).
arq has no bulk enqueue.
"""

from __future__ import annotations

import asyncio
import os
import time

from arq import create_pool
from arq.connections import RedisSettings

from peers._base import Ctx, Skip
from peers._work import spin

QUEUE = "arq:queue"
URL = os.environ.get("BENCH_URL", "redis://127.0.0.1:6379/0")


async def noop(ctx: dict) -> None:
    return None


async def work(ctx: dict, iters: int) -> None:
    spin(iters)


class WorkerSettings:
    functions = [noop, work]
    redis_settings = RedisSettings.from_dsn(URL)
    max_jobs = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "10"))
    poll_delay = float(os.environ.get("BENCH_ARQ_POLL", "0.5"))
    handle_signals = True
    health_check_interval = 3600


def _workers(ctx: Ctx, count: int, max_jobs: int, poll: float) -> None:
    env = ctx.env(BENCH_ARQ_MAX_JOBS=max_jobs, BENCH_ARQ_POLL=poll)
    for _ in range(count):
        ctx.spawn([os.path.join(ctx.bin, "arq"), "peers.arq.WorkerSettings"], env=env, name="arq")


async def _enqueue(url: str, n: int, func: str, *args: int, concurrent: int = 1) -> float:
    pool = await create_pool(RedisSettings.from_dsn(url))
    await pool.ping()
    t0 = time.perf_counter()
    if concurrent == 1:
        for _ in range(n):
            await pool.enqueue_job(func, *args)
    else:  # preload only: overlap round trips
        for i in range(0, n, concurrent):
            await asyncio.gather(
                *(pool.enqueue_job(func, *args) for _ in range(min(concurrent, n - i)))
            )
    dt = time.perf_counter() - t0
    await pool.aclose()
    return dt


def enqueue(ctx: Ctx, n: int, bulk: bool) -> float:
    if bulk:
        raise Skip("arq has no bulk enqueue API")
    ctx.mark("start")
    dt = asyncio.run(_enqueue(ctx.url, n, "noop"))
    ctx.mark("end")
    return dt


def _setting(setting: str) -> tuple[int, int]:
    procs = 2 if setting.startswith("p2") else 1
    jobs = int(setting.split("-j")[1]) if "-j" in setting else 10
    return procs, jobs


def drain(ctx: Ctx, n: int, setting: str) -> float:
    asyncio.run(_enqueue(ctx.url, n, "noop", concurrent=100))
    procs, jobs = _setting(setting)
    _workers(ctx, procs, jobs, 0.01)
    return ctx.wait_completed(ctx.n_minus(n, "ZCARD", QUEUE), n)


def cpu(ctx: Ctx, n: int, iters: int, ms: float, setting: str) -> float:
    asyncio.run(_enqueue(ctx.url, n, "work", iters, concurrent=100))
    _workers(ctx, 2, 1, 0.01)
    return ctx.wait_completed(ctx.n_minus(n, "ZCARD", QUEUE), n)


def latency(ctx: Ctx, n: int, setting: str) -> list[float]:
    _workers(ctx, 1, 10, 0.01)
    loop = asyncio.new_event_loop()
    pool = loop.run_until_complete(create_pool(RedisSettings.from_dsn(ctx.url)))
    added = [0]

    def add() -> None:
        loop.run_until_complete(pool.enqueue_job("noop"))
        added[0] += 1

    try:
        return ctx.latency_loop(add, ctx.n_minus(lambda: added[0], "ZCARD", QUEUE), n)
    finally:
        loop.run_until_complete(pool.aclose())
        loop.close()
