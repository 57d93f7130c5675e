"""Feature overhead: round trips and throughput per job with dedup, limits, groups.

Question: does turning on a feature (dedup, a queue rate limit that does not
throttle, group keys, global concurrency) cost extra round trips per job, and
how much throughput?

Method: one valkey-server (bench_engine's ``start_server``); for each case a
backlog of ``--jobs`` jobs is added, then an in-process Worker at concurrency
50 with a no-op processor drains it. Round trips per job = Δ
``total_reads_processed`` / jobs over the drain only (bench_engine's
``stats``); medians of ``--runs`` runs (default 3). Metrics are recorded in
every case (they have no switch: the finishing call records them server-side).

Target: every case <= 0.2 round trips per job.

Run: ``.venv/bin/python bench/bench_features.py [--runs 3] [--jobs 20000]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import anyio
from valkey import Valkey

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.bench_engine import drain_measured, start_server  # noqa: E402
from glidemq import Dedup, Queue  # noqa: E402
from glidemq.engine.queue import JobSpec  # noqa: E402

Setup = Callable[[Queue, int], Awaitable[list[JobSpec]]]


async def plain(q: Queue, n: int) -> list[JobSpec]:
    return [JobSpec("noop", None) for _ in range(n)]


async def dedup(q: Queue, n: int) -> list[JobSpec]:
    return [JobSpec("noop", None, opts={"dedup": Dedup(f"d{i}")}) for i in range(n)]


async def rate_limit(q: Queue, n: int) -> list[JobSpec]:
    await q.set_rate_limit(10_000_000, 1.0)  # never reached: measures the bookkeeping
    return await plain(q, n)


async def global_concurrency(q: Queue, n: int) -> list[JobSpec]:
    await q.set_global_concurrency(10_000)  # never reached
    return await plain(q, n)


async def groups_50(q: Queue, n: int) -> list[JobSpec]:
    await q.set_group_limits(None, concurrency=50)
    return [JobSpec("noop", None, opts={"group": f"g{i % 10}"}) for i in range(n)]


async def groups_fifo(q: Queue, n: int) -> list[JobSpec]:
    # Default group concurrency 1: at most 10 jobs in flight, strict order per group.
    return [JobSpec("noop", None, opts={"group": f"g{i % 10}"}) for i in range(n)]


CASES: list[tuple[str, Setup]] = [
    ("plain", plain),
    ("dedup (simple, every job)", dedup),
    ("queue rate limit (not throttling)", rate_limit),
    ("global concurrency (not limiting)", global_concurrency),
    ("10 groups, group concurrency 50", groups_50),
    ("10 groups, group concurrency 1", groups_fifo),
]


async def run_case(url: str, port: int, n: int, setup: Setup) -> tuple[float, dict[str, float]]:
    name = f"feat-{time.monotonic_ns()}"
    q = Queue(name, url, events=False)
    specs = await setup(q, n)
    await q.add_bulk(specs)
    rate, per = await drain_measured(url, port, name, n, 50)
    await q.close()
    return rate, per


async def main(runs: int, jobs: int) -> None:
    proc, port = start_server()
    url = f"valkey://127.0.0.1:{port}"
    worst = 0.0
    try:
        print(f"Worker c=50 no-op, {jobs} jobs, median of {runs} runs", flush=True)
        for label, setup in CASES:
            rates, rts = [], []
            for _ in range(runs):
                rate, extra = await run_case(url, port, jobs, setup)
                rates.append(rate)
                rts.append(extra["reads_per_job"])
                Valkey(port=port).flushall()
            rt = statistics.median(rts)
            worst = max(worst, rt)
            print(f"{label:<36} jobs/s median {statistics.median(rates):>8.0f} "
                  f"(min {min(rates):.0f}, max {max(rates):.0f})   round trips/job {rt:.3f}",
                  flush=True)
        print(f"\nworst round trips/job {worst:.3f} (target <= 0.2)")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=20_000)
    args = ap.parse_args()
    anyio.run(main, args.runs, args.jobs)
