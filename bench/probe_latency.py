"""Probe: where an idle glidemq job's add -> completion time goes (a timeline).

Question: the suite's idle-latency p50 has glidemq behind Huey; which steps
cost what? Starts its own valkey-server, then a consumer in a separate
process whose ``Consumer.fetch`` / ``Consumer.wait`` (and, for the
supervisor, ``Child.run`` / ``Slot._handle``) are wrapped to record
``time.perf_counter()`` stamps (CLOCK_MONOTONIC: comparable across
processes). The handler (``peers._glidemq_handlers:stamp``) records when it
ran. The producer (this process) adds one job at a time, awaited through
``run_until_complete`` as in the suite, and polls ``ZCARD`` of the completed
set every 0.2 ms. Prints the p50 of each step over the jobs after 20
warm-ups.

Run: ``.venv/bin/python bench/probe_latency.py [--supervisor] [--jobs 400]``.
Diagnostic only: the wrappers add a few µs per step.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)


def _patch(log: list[Any], supervisor: bool) -> None:
    from glidemq.engine.consumer import Consumer

    fetch0, wait0 = Consumer.fetch, Consumer.wait

    async def fetch(self: Any, finishes: Any, claim: int) -> Any:
        t = time.perf_counter()
        r = await fetch0(self, finishes, claim)
        log.append(("fetch", t, time.perf_counter(), len(finishes), len(r.jobs)))
        return r

    async def wait(self: Any, seconds: float) -> bool:
        t = time.perf_counter()
        r = await wait0(self, seconds)
        log.append(("wait", t, time.perf_counter(), int(r), 0))
        return r

    Consumer.fetch, Consumer.wait = fetch, wait  # type: ignore[method-assign]
    if supervisor:
        from glidemq.supervisor import slot
        from glidemq.supervisor.child import Child

        run0, handle0 = Child.run, slot.Slot._handle

        async def run(self: Any, jobs: Any) -> None:
            log.append(("run", time.perf_counter(), 0, 0, 0))
            await run0(self, jobs)

        async def handle(self: Any, ev: Any) -> None:
            log.append(("ev:" + type(ev).__name__, time.perf_counter(), 0, 0, 0))
            await handle0(self, ev)

        Child.run, slot.Slot._handle = run, handle  # type: ignore[method-assign]


def consumer_main(kind: str, url: str, out: str, config: str) -> None:
    log: list[Any] = []
    _patch(log, kind == "supervisor")

    def dump(*_: Any) -> None:
        with open(out, "w") as f:
            json.dump(log, f)
        os._exit(0)

    signal.signal(signal.SIGUSR1, dump)
    if kind == "supervisor":
        from glidemq.supervisor.cli import main

        sys.exit(main(["--config", config]))

    from glidemq import Worker
    from peers import _glidemq_handlers as h

    async def run() -> None:
        w = Worker("bench", h.astamp, url, concurrency=1)
        await w.run()

    asyncio.run(run())


def step_table(
    prod: list[tuple[float, float, float]], log: list[Any], stamps: list[float], supervisor: bool
) -> dict[str, list[float]]:
    steps: dict[str, list[float]] = {}

    def put(k: str, v: float) -> None:
        steps.setdefault(k, []).append(v * 1e6)

    for t0, t1, t2 in prod[20:]:
        ev = [e for e in log if t0 <= e[1] <= t2 or (e[0] == "wait" and t0 <= e[2] <= t2)]
        wake = [e for e in ev if e[0] == "wait" and e[2] >= t0]
        ran = [s for s in stamps if t0 <= s <= t2]
        if not wake or not ran:
            continue
        wk = wake[0][2]
        claims = [e for e in ev if e[0] == "fetch" and e[4] >= 1 and e[1] >= wk - 1e-4]
        handled = ran[0]
        if supervisor:
            runs = [e for e in ev if e[0] == "run"]
            res = [e for e in ev if e[0] == "ev:Result"]
            if not runs or not res:
                continue
            handled = res[0][1]
        fins = [e for e in ev if e[0] == "fetch" and e[3] >= 1 and e[1] >= handled]
        if not claims or not fins:
            continue
        c, f = claims[0], fins[0]
        put("add call (producer, run_until_complete)", t1 - t0)
        put("add start -> marker BLPOP returns", wk - t0)
        put("wake -> claim FCALL sent", c[1] - wk)
        put("claim FCALL round trip", c[2] - c[1])
        if supervisor:
            put("claim done -> Run sent to child", runs[0][1] - c[2])
            put("Run sent -> handler runs (child)", ran[0] - runs[0][1])
            put("handler -> Result handled (supervisor)", res[0][1] - ran[0])
            put("Result -> completion FCALL sent", f[1] - res[0][1])
        else:
            put("claim done -> handler runs", ran[0] - c[2])
            put("handler -> completion FCALL sent", f[1] - ran[0])
        put("completion FCALL round trip", f[2] - f[1])
        put("total add -> completion seen (0.2 ms polls)", t2 - t0)
    return steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--supervisor", action="store_true", help="probe glidemq-supervisor b1-p1")
    ap.add_argument("--jobs", type=int, default=400)
    ap.add_argument("--consumer", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.consumer:
        consumer_main(*a.consumer)
        return 0

    from _common import Resp, ValkeyServer
    from glidemq import Queue
    from glidemq.engine.keys import QueueKeys

    kind = "supervisor" if a.supervisor else "worker"
    tmp = tempfile.mkdtemp(prefix="glidemq-probe-")
    out = os.path.join(tmp, "log.json")
    cfg = os.path.join(tmp, "glidemq.toml")
    srv = ValkeyServer().start()
    proc = None
    try:
        with open(cfg, "w") as f:
            f.write(
                f'[valkey]\nurl = "{srv.url}"\n[supervisor]\nlog_level = "WARNING"\n'
                '[[queues]]\nname = "bench"\nhandler = "peers._glidemq_handlers:stamp"\n'
                "min_children = 2\nmax_children = 2\nbatch = 1\nprefetch = 1\n"
                f'env = {{ BENCH_STAMP_DIR = "{tmp}" }}\n'
                "[queues.autoscale]\nenabled = false\n"
            )
        env = {**os.environ, "PYTHONPATH": BENCH, "BENCH_STAMP_DIR": tmp}
        proc = subprocess.Popen(
            [sys.executable, __file__, "--consumer", kind, srv.url, out, cfg], cwd=BENCH, env=env
        )
        loop = asyncio.new_event_loop()
        q = Queue("bench", srv.url)
        loop.run_until_complete(q.get_job_counts())
        r = Resp(srv.host, srv.port)
        key = QueueKeys("bench").completed
        time.sleep(2.5)  # consumer (and children) up
        prod: list[tuple[float, float, float]] = []
        done = 0
        for _ in range(a.jobs):
            t0 = time.perf_counter()
            loop.run_until_complete(q.add("noop"))
            t1 = time.perf_counter()
            while r.int("ZCARD", key) <= done:
                time.sleep(0.0002)
            done += 1
            prod.append((t0, t1, time.perf_counter()))
        proc.send_signal(signal.SIGUSR1)
        proc.wait(10)
        with open(out) as f:
            log = json.load(f)
        stamps = sorted(
            float(x) for p in glob.glob(os.path.join(tmp, "[0-9]*.txt")) for x in open(p)
        )
        print(f"glidemq {kind}: idle add -> completion, p50 per step (µs)")
        for k, v in step_table(prod, log, stamps, a.supervisor).items():
            print(f"  {k:46s} {statistics.median(v):7.0f}   (n={len(v)})")
        loop.run_until_complete(q.close())
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
