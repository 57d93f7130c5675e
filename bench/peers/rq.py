"""RQ adapter.

Workers: ``rq worker -w rq.worker.SimpleWorker --burst -q
--disable-job-desc-logging -u URL bench`` (SimpleWorker runs jobs in the
worker process; RQ's own docs/benchmark.md measures it ~6x faster than the
default forking ``Worker``). The forking ``Worker`` (RQ's production
recommendation: isolation and hard timeouts) runs on a smaller N; its
per-job rate is reported as is (labelled N). Completion: ZCARD of RQ's
FinishedJobRegistry ``rq:finished:bench`` (result_ttl defaults to 500 s).
Bulk: ``Queue.enqueue_many`` (one pipeline per chunk of 1000).
"""

from __future__ import annotations

import os
import time

from redis import Redis
from rq import Queue

from peers._base import Ctx, chunks
from peers._work import spin

FINISHED = "rq:finished:bench"


def noop() -> None:
    return None


def work(iters: int) -> None:
    spin(iters)


def _q(ctx: Ctx) -> Queue:
    return Queue("bench", connection=Redis.from_url(ctx.url))


def _workers(ctx: Ctx, count: int, klass: str, burst: bool) -> None:
    for i in range(count):
        argv = [
            os.path.join(ctx.bin, "rq"),
            "worker",
            "-w",
            klass,
            "-q",
            "--disable-job-desc-logging",
            "-n",
            f"bench-{i}-{os.getpid()}",
            "-u",
            ctx.url,
        ]
        if burst:
            argv.append("--burst")
        ctx.spawn(argv + ["bench"], name="rq")


def _bulk(q: Queue, n: int, func, args: tuple = ()) -> None:
    for size in chunks(n, 1000):
        q.enqueue_many([Queue.prepare_data(func, args) for _ in range(size)])


def enqueue(ctx: Ctx, n: int, bulk: bool) -> float:
    q = _q(ctx)
    q.connection.ping()
    ctx.mark("start")
    t0 = time.perf_counter()
    if bulk:
        _bulk(q, n, noop)
    else:
        for _ in range(n):
            q.enqueue(noop)
    dt = time.perf_counter() - t0
    ctx.mark("end")
    return dt


def drain(ctx: Ctx, n: int, setting: str) -> float:
    _bulk(_q(ctx), n, noop)
    if setting == "fork":
        _workers(ctx, 1, "rq.worker.Worker", burst=True)
    elif setting == "simple-x2":
        _workers(ctx, 2, "rq.worker.SimpleWorker", burst=True)
    else:
        _workers(ctx, 1, "rq.worker.SimpleWorker", burst=True)
    return ctx.wait_completed(ctx.zcard(FINISHED), n, allow_exit=True)


def cpu(ctx: Ctx, n: int, iters: int, ms: float, setting: str) -> float:
    _bulk(_q(ctx), n, work, (iters,))
    _workers(ctx, 2, "rq.worker.SimpleWorker", burst=True)
    return ctx.wait_completed(ctx.zcard(FINISHED), n, allow_exit=True)


def latency(ctx: Ctx, n: int, setting: str) -> list[float]:
    q = _q(ctx)
    _workers(ctx, 1, "rq.worker.SimpleWorker", burst=False)
    return ctx.latency_loop(lambda: q.enqueue(noop), ctx.zcard(FINISHED), n)
