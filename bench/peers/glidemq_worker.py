"""glidemq in-process ``Worker`` adapter (glidemq's venv).

Worker: ``python -m peers._glidemq``, one ``glidemq.Worker("bench", handler,
url, concurrency=C)`` per process at default options (prefetch = C, events
ON), async no-op handler. Settings: ``c1``, ``c10``, ``c50`` (1 process) and
``2proc-c50`` (2 processes); ``c50-noevents`` is the one row with
``events=False`` (producer and Worker), labelled as such. CPU: 2 processes,
concurrency 1, the sync ``peers._work.spin`` handler (glidemq runs a sync
processor in a thread): in-process, no isolation (for that see
``glidemq-supervisor``).

Drain/CPU method (same window as every peer: first observed completion ->
last): jobs are bulk-loaded into a *paused* queue, the worker process(es)
start, and the queue is resumed once every process has built its Worker
(ready file), so interpreter start-up of a second process is not inside the
window. Completion: raw ``ZCARD glidemq:{bench}:bench:completed``.
Enqueue: ``Queue.add`` one by one (each awaited) and ``Queue.add_bulk`` in
chunks of 1000 (glidemq sends one server call per 500 jobs).
"""

from __future__ import annotations

import time
from typing import Any

import psutil

from peers._base import Ctx, Skip
from peers._glidemq import COMPLETED, G, ready_dir, rss_samples, spawn_workers, wait_ready


def _setting(setting: str) -> tuple[int, int, bool]:
    """'c50' -> (1 proc, 50, events on); '2proc-c50'; 'c50-noevents'."""
    procs, conc, events = 1, 1, True
    for part in setting.split("-"):
        if part.endswith("proc"):
            procs = int(part[:-4])
        elif part.startswith("c"):
            conc = int(part[1:])
        elif part == "noevents":
            events = False
        else:
            raise Skip(f"unknown setting {setting!r}")
    return procs, conc, events


def enqueue(ctx: Ctx, n: int, bulk: bool) -> float:
    g = G(ctx)
    try:
        ctx.mark("start")
        t0 = time.perf_counter()
        g.run(g.add_chunks(n) if bulk else g.add_single(n))
        dt = time.perf_counter() - t0
        ctx.mark("end")
        return dt
    finally:
        g.close()


def _run(
    ctx: Ctx, n: int, procs: int, conc: int, handler: str, events: bool, data: object = None
) -> float:
    g = G(ctx, events=events)
    try:
        g.preload(n, data)
        ready = ready_dir(ctx)
        t0 = time.perf_counter()
        spawn_workers(ctx, procs, conc, handler, events, ready)
        ctx.extra["boot_s"] = wait_ready(ctx, ready, procs)
        g.resume()
        dt = ctx.wait_completed(ctx.zcard(COMPLETED), n)
        ctx.extra["spawn_to_end_s"] = time.perf_counter() - t0
        return dt
    finally:
        g.close()


def drain(ctx: Ctx, n: int, setting: str) -> float:
    procs, conc, events = _setting(setting)
    return _run(ctx, n, procs, conc, "anoop", events)


def cpu(ctx: Ctx, n: int, iters: int, ms: float, setting: str) -> float:
    procs, conc, events = _setting(setting)
    return _run(ctx, n, procs, conc, "spin", events, {"iters": iters})


def latency(ctx: Ctx, n: int, setting: str) -> list[float]:
    procs, conc, events = _setting(setting)
    g = G(ctx, events=events)
    try:
        spawn_workers(ctx, procs, conc, "anoop", events, ready_dir(ctx))
        return ctx.latency_loop(lambda: g.run(g.q.add("noop")), ctx.zcard(COMPLETED), n)
    finally:
        g.close()


def memory(ctx: Ctx, n: int, every: int) -> dict[str, Any]:
    """RSS of one Worker process (c50, events on) over an n-job no-op drain."""
    g = G(ctx)
    try:
        g.preload(n)
        ready = ready_dir(ctx)
        spawn_workers(ctx, 1, 50, "anoop", True, ready)
        wait_ready(ctx, ready, 1)
        procs = {"worker": psutil.Process(ctx.procs[-1][0].pid)}
        g.resume()
        return rss_samples(ctx, procs, n, every)
    finally:
        g.close()
