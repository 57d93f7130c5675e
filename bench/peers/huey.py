"""Huey (RedisHuey) adapter.

Worker: ``huey_consumer peers.huey.huey -k thread -w 1 -n -C -q`` (thread
worker, 1 thread, no periodic tasks, no health check). RedisHuey dequeues
with BRPOP (``blocking=True`` is the default), so an idle worker is woken
by the push. Completion: the task INCRs ``bench:done`` because a no-op task
returning None stores no result (huey keeps no countable completion state).
Huey has no bulk enqueue (``Task.map`` loops over ``enqueue``).
"""

from __future__ import annotations

import os
import time

import redis
from huey import RedisHuey

from peers._base import DONE_KEY, Ctx, Skip
from peers._work import spin

URL = os.environ.get("BENCH_URL", "redis://127.0.0.1:6379/0")
huey = RedisHuey("bench", url=URL)
_r: redis.Redis | None = None


def _done() -> None:
    global _r
    if _r is None:
        _r = redis.Redis.from_url(URL)
    _r.incr(DONE_KEY)


@huey.task()
def noop() -> None:
    _done()


@huey.task()
def work(iters: int) -> None:
    spin(iters)
    _done()


def _consumer(ctx: Ctx, kind: str, workers: int) -> None:
    ctx.spawn(
        [
            os.path.join(ctx.bin, "huey_consumer"),
            "peers.huey.huey",
            "-k",
            kind,
            "-w",
            str(workers),
            "-n",
            "-C",
            "-q",
        ],
        name="huey",
    )


def _huey(ctx: Ctx) -> RedisHuey:
    return RedisHuey("bench", url=ctx.url)


def enqueue(ctx: Ctx, n: int, bulk: bool) -> float:
    if bulk:
        raise Skip("huey has no bulk enqueue API")
    ctx.mark("start")
    t0 = time.perf_counter()
    for _ in range(n):
        noop()
    dt = time.perf_counter() - t0
    ctx.mark("end")
    return dt


def drain(ctx: Ctx, n: int, setting: str) -> float:
    for _ in range(n):
        noop()
    _consumer(ctx, "thread", 1)
    return ctx.wait_completed(ctx.get_int(), n)


def cpu(ctx: Ctx, n: int, iters: int, ms: float, setting: str) -> float:
    for _ in range(n):
        work(iters)
    _consumer(ctx, "process", 2)
    return ctx.wait_completed(ctx.get_int(), n)


def latency(ctx: Ctx, n: int, setting: str) -> list[float]:
    _consumer(ctx, "thread", 1)
    return ctx.latency_loop(noop, ctx.get_int(), n)
