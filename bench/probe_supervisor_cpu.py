"""Probe: where the supervisor's CPU-bound efficiency goes.

Question: with 2 children on ~20-ms pure-Python jobs the supervisor row
reaches ~0.83-0.90 of the 2-core ideal; who uses the rest? Starts its own
valkey-server, bulk-loads N ``peers._glidemq_handlers:spin`` jobs into a
paused queue, starts ``python -m glidemq.supervisor`` (2 children, autoscale
off, ``--batch``/``--prefetch``), resumes once both children are up, and
prints jobs/s (and the fraction of 2 / t_job, t_job calibrated here) plus,
over the drain, the CPU seconds (user+system, psutil) of the supervisor,
each child and valkey-server, per job, and the supervisor's context
switches per job. ``--cprofile`` runs the supervisor under cProfile and
prints its top functions and calls per job (inflates its CPU).

Run: ``.venv/bin/python bench/probe_supervisor_cpu.py [--batch 1] [--prefetch 1]
[--jobs 400] [--cprofile]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import subprocess
import sys
import tempfile
import time

import psutil

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)

from _common import Resp, ValkeyServer  # noqa: E402
from glidemq import Queue  # noqa: E402
from glidemq.engine.keys import QueueKeys  # noqa: E402
from peers._work import calibrate  # noqa: E402


def cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=400)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prefetch", type=int, default=1)
    ap.add_argument("--cprofile", action="store_true")
    a = ap.parse_args()
    iters, t_job = calibrate(0.020)
    tmp = tempfile.mkdtemp(prefix="glidemq-probe-")
    cfg, prof = os.path.join(tmp, "glidemq.toml"), os.path.join(tmp, "sup.prof")
    srv = ValkeyServer().start()
    sup = None
    try:
        assert srv.proc is not None
        vk = psutil.Process(srv.proc.pid)
        loop = asyncio.new_event_loop()
        q = Queue("bench", srv.url)
        loop.run_until_complete(q.pause())
        loop.run_until_complete(q.add_bulk([("spin", {"iters": iters})] * a.jobs))
        with open(cfg, "w") as f:
            f.write(
                f'[valkey]\nurl = "{srv.url}"\n[supervisor]\nlog_level = "WARNING"\n'
                "drain_timeout = 2\n"
                '[[queues]]\nname = "bench"\nhandler = "peers._glidemq_handlers:spin"\n'
                f"min_children = 2\nmax_children = 2\nbatch = {a.batch}\n"
                f"prefetch = {a.prefetch}\n[queues.autoscale]\nenabled = false\n"
            )
        argv = [sys.executable]
        if a.cprofile:
            argv += ["-m", "cProfile", "-o", prof]
        argv += ["-m", "glidemq.supervisor", "--config", cfg]
        sup = subprocess.Popen(argv, cwd=BENCH)
        sp = psutil.Process(sup.pid)
        while len(sp.children()) < 2:
            time.sleep(0.05)
        time.sleep(1.5)  # both children have imported the handler
        kids = sorted(sp.children(), key=lambda c: c.pid)
        procs = {"supervisor": sp, "valkey": vk} | {f"child-{i}": k for i, k in enumerate(kids)}
        c0 = {k: cpu(p) for k, p in procs.items()}
        s0 = sp.num_ctx_switches()
        r = Resp(srv.host, srv.port)
        key = QueueKeys("bench").completed
        t = time.perf_counter()
        loop.run_until_complete(q.resume())
        while r.int("ZCARD", key) < a.jobs:
            time.sleep(0.002)
        dt = time.perf_counter() - t
        c1 = {k: cpu(p) for k, p in procs.items()}
        s1 = sp.num_ctx_switches()
        rate = a.jobs / dt
        print(
            f"batch {a.batch} prefetch {a.prefetch}: t_job {t_job * 1000:.2f} ms; "
            f"{rate:.1f} jobs/s = {rate * t_job / 2:.3f} of 2 / t_job; {dt:.2f} s"
        )
        for k in procs:
            used = c1[k] - c0[k]
            print(f"  CPU {k:10s} {used:6.3f} s = {used / a.jobs * 1e3:6.3f} ms/job")
        print(
            "  supervisor context switches per job: "
            f"voluntary {(s1.voluntary - s0.voluntary) / a.jobs:.2f}, "
            f"involuntary {(s1.involuntary - s0.involuntary) / a.jobs:.2f}"
        )
        sup.terminate()
        sup.wait(30)
        if a.cprofile:
            st = pstats.Stats(prof)
            wanted = ("_run_once", "<method 'run' of '_contextvars.Context' objects>")
            for (_, _, func), v in st.stats.items():  # type: ignore[attr-defined]
                if func in wanted:
                    print(f"  {func}: {v[1] / a.jobs:.1f} calls per job (whole run)")
            st.sort_stats("tottime").print_stats(12)
        loop.run_until_complete(q.close())
    finally:
        if sup is not None and sup.poll() is None:
            sup.kill()
            sup.wait(5)
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
