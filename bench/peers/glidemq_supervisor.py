"""``glidemq-supervisor`` adapter (glidemq's venv): sandboxed child processes.

Worker: ``python -m glidemq.supervisor --config <tmp>/glidemq.toml`` with
``[valkey] url`` = the bench server and one ``[[queues]]`` entry for
"bench": ``min_children = max_children = 2``, autoscale off, events at the
default (``events_maxlen = 10000``: on), ``drain_timeout = 2`` (only so that
stopping is quick). Handlers live in ``peers._glidemq_handlers`` (sync; a
child never imports valkey). Settings:

* ``b16-p16`` (drain, round trips): batch 16, prefetch 16: the supervisor
  claims ahead and sends each child micro-batches of up to 16 jobs;
* ``b1-p1`` (CPU, latency): one job per batch, one claimed ahead.

Drain/CPU: jobs are bulk-loaded into a *paused* queue; the supervisor starts;
the queue is resumed once both children have imported the handler (ready
files), so the window (first observed completion -> last, as for every peer)
has both children up. Completion: raw ``ZCARD glidemq:{bench}:bench:completed``.
``memory``: RSS of the supervisor and of each child sampled every ~5,000
jobs over a 100,000-job drain (see ``bench/scenario_memory.py``).
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

from peers._base import Ctx, Skip
from peers._glidemq import COMPLETED, QUEUE, G, ready_dir, rss_samples, wait_ready

CHILDREN = 2


def _setting(setting: str) -> tuple[int, int]:
    b, p = setting.split("-")
    if not (b.startswith("b") and p.startswith("p")):
        raise Skip(f"unknown setting {setting!r}")
    return int(b[1:]), int(p[1:])


def _start(ctx: Ctx, setting: str, handler: str, ready: str) -> psutil.Process:
    batch, prefetch = _setting(setting)
    path = os.path.join(ctx.logdir, "glidemq.toml")
    with open(path, "w") as f:
        f.write(
            f"""
[valkey]
url = "{ctx.url}"

[supervisor]
log_level = "WARNING"
drain_timeout = 2

[[queues]]
name = "{QUEUE}"
handler = "peers._glidemq_handlers:{handler}"
min_children = {CHILDREN}
max_children = {CHILDREN}
batch = {batch}
prefetch = {prefetch}
env = {{ BENCH_READY_DIR = "{ready}" }}

[queues.autoscale]
enabled = false
"""
        )
    p = ctx.spawn(
        [ctx.python, "-m", "glidemq.supervisor", "--config", path], name="glidemq-supervisor"
    )
    return psutil.Process(p.pid)


def _run(ctx: Ctx, n: int, setting: str, handler: str, data: Any = None) -> float:
    g = G(ctx)
    try:
        g.preload(n, data)
        ready = ready_dir(ctx)
        t0 = time.perf_counter()
        _start(ctx, setting, handler, ready)
        ctx.extra["boot_s"] = wait_ready(ctx, ready, CHILDREN)
        g.resume()
        dt = ctx.wait_completed(ctx.zcard(COMPLETED), n)
        ctx.extra["spawn_to_end_s"] = time.perf_counter() - t0
        return dt
    finally:
        g.close()


def enqueue(ctx: Ctx, n: int, bulk: bool) -> float:
    raise Skip("same Queue.add as the glidemq-worker row")


def drain(ctx: Ctx, n: int, setting: str) -> float:
    return _run(ctx, n, setting, "noop")


def cpu(ctx: Ctx, n: int, iters: int, ms: float, setting: str) -> float:
    return _run(ctx, n, setting, "spin", {"iters": iters})


def latency(ctx: Ctx, n: int, setting: str) -> list[float]:
    g = G(ctx)
    try:
        ready = ready_dir(ctx)
        _start(ctx, setting, "noop", ready)
        wait_ready(ctx, ready, CHILDREN)
        return ctx.latency_loop(lambda: g.run(g.q.add("noop")), ctx.zcard(COMPLETED), n)
    finally:
        g.close()


# --------------------------------------------------------------------------- memory
def memory(ctx: Ctx, n: int, every: int) -> dict[str, Any]:
    """RSS of the supervisor and its 2 children over an n-job no-op drain (b16-p16)."""
    g = G(ctx)
    try:
        g.preload(n)
        ready = ready_dir(ctx)
        sup = _start(ctx, "b16-p16", "noop", ready)
        wait_ready(ctx, ready, CHILDREN)
        kids = sorted(sup.children(), key=lambda c: c.pid)
        procs = {"supervisor": sup, **{f"child-{i}": c for i, c in enumerate(kids)}}
        g.resume()
        return rss_samples(ctx, procs, n, every)
    finally:
        g.close()
