"""Celery (Redis broker) adapter.

App: broker = the bench Valkey, ``task_ignore_result=True`` (no result
backend: Celery's fastest documented setting), queue ``bench``, acks early
(default). Worker: ``celery -A peers.celery worker -Q bench -P <pool> -c <n>
--without-gossip --without-mingle --without-heartbeat -l WARNING
--prefetch-multiplier <m>``. For the no-op drain the prefetch multiplier is
64 (Celery's docs: raise it for many short tasks); for CPU jobs it is 1 with
``-O fair`` (the docs' advice for long tasks). Completion: the task INCRs
``bench:done`` (with results ignored Celery keeps no countable state).
Celery has no bulk publish (``group`` publishes message by message).
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

from peers._base import DONE_KEY, Ctx, Skip
from peers._work import spin

URL = os.environ.get("BENCH_URL", "redis://127.0.0.1:6379/0")
app = Celery("bench", broker=URL)
app.conf.update(
    task_ignore_result=True,
    task_default_queue="bench",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
)
_r: redis.Redis | None = None


def _done() -> None:
    global _r
    if _r is None:  # per process: prefork children create their own after fork
        _r = redis.Redis.from_url(URL)
    _r.incr(DONE_KEY)


@app.task(name="noop")
def noop() -> None:
    _done()


@app.task(name="work")
def work(iters: int) -> None:
    spin(iters)
    _done()


def _worker(ctx: Ctx, pool: str, conc: int, prefetch: int, fair: bool = False) -> None:
    argv = [
        ctx.python,
        "-m",
        "celery",
        "-A",
        "peers.celery",
        "worker",
        "-Q",
        "bench",
        "-P",
        pool,
        "-c",
        str(conc),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "WARNING",
        "--prefetch-multiplier",
        str(prefetch),
    ]
    if fair:
        argv += ["-O", "fair"]
    ctx.spawn(argv, name="celery")


def _preload(task, n: int, *args: int) -> None:
    with app.producer_or_acquire() as producer:
        for _ in range(n):
            task.apply_async(args, producer=producer)


def enqueue(ctx: Ctx, n: int, bulk: bool) -> float:
    if bulk:
        raise Skip("celery has no bulk publish (group() publishes one by one)")
    noop.apply_async()  # warm the connection pool (not timed)
    ctx.r.call("DEL", "bench")
    ctx.mark("start")
    t0 = time.perf_counter()
    for _ in range(n):
        noop.apply_async()
    dt = time.perf_counter() - t0
    ctx.mark("end")
    return dt


def drain(ctx: Ctx, n: int, setting: str) -> float:
    _preload(noop, n)
    if setting == "solo":
        _worker(ctx, "solo", 1, 64)
    else:
        _worker(ctx, "prefork", 2, 64)
    return ctx.wait_completed(ctx.get_int(), n)


def cpu(ctx: Ctx, n: int, iters: int, ms: float, setting: str) -> float:
    _preload(work, n, iters)
    _worker(ctx, "prefork", 2, 1, fair=True)
    return ctx.wait_completed(ctx.get_int(), n)


def latency(ctx: Ctx, n: int, setting: str) -> list[float]:
    _worker(ctx, "solo", 1, 1)
    return ctx.latency_loop(lambda: noop.apply_async(), ctx.get_int(), n)
