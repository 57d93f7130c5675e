"""Dramatiq (RedisBroker) adapter.

Worker: ``dramatiq peers.dramatiq -p P -t T -Q bench`` (the CLI default is
one process per core x 8 threads). Default middleware. The Redis consumer
polls with exponential backoff capped at ``dramatiq_worker_timeout`` ms
(default 1000); the latency setting sets it to 10 ms (a documented env
var) so idle polling does not dominate. Completion: ``n - HLEN
dramatiq:bench.msgs`` (the broker deletes a message from that hash when it
is acked, after the actor ran). Dramatiq has no bulk enqueue.
"""

from __future__ import annotations

import os
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from peers._base import Ctx, Skip
from peers._work import spin

URL = os.environ.get("BENCH_URL", "redis://127.0.0.1:6379/0")
MSGS = "dramatiq:bench.msgs"
broker = RedisBroker(url=URL)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop() -> None:
    return None


@dramatiq.actor(queue_name="bench", max_retries=0)
def work(iters: int) -> None:
    spin(iters)


def _workers(ctx: Ctx, procs: int, threads: int, timeout_ms: int | None = None) -> None:
    env = ctx.env(**({"dramatiq_worker_timeout": timeout_ms} if timeout_ms else {}))
    ctx.spawn(
        [
            os.path.join(ctx.bin, "dramatiq"),
            "peers.dramatiq",
            "-p",
            str(procs),
            "-t",
            str(threads),
            "-Q",
            "bench",
        ],
        env=env,
        name="dramatiq",
    )


def _setting(setting: str) -> tuple[int, int]:
    p, t = setting.split("-")
    return int(p[1:]), int(t[1:])


def enqueue(ctx: Ctx, n: int, bulk: bool) -> float:
    if bulk:
        raise Skip("dramatiq has no bulk enqueue API")
    broker.client.ping()
    ctx.mark("start")
    t0 = time.perf_counter()
    for _ in range(n):
        noop.send()
    dt = time.perf_counter() - t0
    ctx.mark("end")
    return dt


def drain(ctx: Ctx, n: int, setting: str) -> float:
    for _ in range(n):
        noop.send()
    _workers(ctx, *_setting(setting))
    return ctx.wait_completed(ctx.n_minus(n, "HLEN", MSGS), n)


def cpu(ctx: Ctx, n: int, iters: int, ms: float, setting: str) -> float:
    for _ in range(n):
        work.send(iters)
    _workers(ctx, *_setting(setting))
    return ctx.wait_completed(ctx.n_minus(n, "HLEN", MSGS), n)


def latency(ctx: Ctx, n: int, setting: str) -> list[float]:
    _workers(ctx, 1, 1, timeout_ms=10)
    added = [0]

    def add() -> None:
        noop.send()
        added[0] += 1

    return ctx.latency_loop(add, ctx.n_minus(lambda: added[0], "HLEN", MSGS), n)
