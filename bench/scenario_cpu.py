"""Scenario: CPU-bound jobs on 2 worker processes, as a fraction of the 2-core ideal.

Method: the driver calibrates, once per invocation, how many iterations of
the pure-Python loop in ``peers/_work.py`` take ~20 ms here (fastest of 7
probes, then the median of 7 timings of the chosen count = ``t_job``). N
such jobs (default 400) are pre-loaded, then each peer runs exactly 2
worker processes with one job at a time per process. Throughput is measured
from the first to the last observed completion (as in the drain scenario).
Ideal on 2 cores = 2 / t_job jobs/s; the metric is throughput / ideal
(1.0 = both cores doing nothing but job work; Valkey, the harness and the
peer's own overhead share the same 2 cores, so 1.0 is not reachable).
BullMQ Node runs a JS loop calibrated inside each node worker to the same
milliseconds.

Reference: each run of the scenario also times the same N jobs split over 2
bare processes (no queue, no Valkey traffic; each process times its own loop,
start-up excluded), reported as the row ``bare`` / ``2proc`` (not a peer: it
is left out of "best peer"). It shows what 2 processes reach on the machine
as it is loaded during the run; every row's JSON also carries
``fraction_of_bare`` = its throughput / the bare median.

Usage: bench/.peers-venv/bin/python bench/scenario_cpu.py [--runs 3]
       [--jobs 400] [--ms 20] [--only rq,huey] [--out results.json]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from argparse import Namespace

from _common import Result, Scenario, base_args, listing, selected
from peers import PEERS
from peers._work import calibrate

NAME = "cpu"
BARE = "bare"  # reference row's system name (excluded from "best peer")
_BARE_CODE = """
import json, sys, time
from peers._work import spin
iters, k = int(sys.argv[1]), int(sys.argv[2])
t = time.perf_counter()
for _ in range(k):
    spin(iters)
print(json.dumps(time.perf_counter() - t))
"""


def bare_rate(iters: int, n: int) -> float:
    """n jobs of ``spin(iters)`` over 2 bare processes: jobs/s (slower process bounds)."""
    from _common import BENCH_DIR

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _BARE_CODE, str(iters), str(k)],
            cwd=BENCH_DIR,
            env={"PYTHONPATH": str(BENCH_DIR), "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in (n // 2, n - n // 2)
    ]
    times = [float(json.loads(p.communicate(timeout=600)[0])) for p in procs]
    return n / max(times)


def run(args: Namespace, server_url: str = "") -> Scenario:
    sc = Scenario(NAME, args, server_url)
    with sc.guard():
        _body(sc, args)
    return sc


def _body(sc: Scenario, args: Namespace) -> None:
    iters, t_job = calibrate(args.ms / 1000.0)
    ideal = 2.0 / t_job
    print(
        f"calibrated: {iters} iterations = {t_job * 1000:.1f} ms; "
        f"2-core ideal = {ideal:.1f} jobs/s",
        flush=True,
    )
    bare = [bare_rate(iters, args.jobs) for _ in range(args.runs)]
    bare_med = statistics.median(bare)
    print(
        f"bare 2 processes: {bare_med:.1f} jobs/s = {bare_med / ideal:.3f} of ideal "
        f"(runs {', '.join(f'{b:.1f}' for b in bare)})",
        flush=True,
    )
    sc.results.append(
        Result(
            NAME,
            BARE,
            "2proc",
            "fraction_of_ideal",
            [b / ideal for b in bare],
            "x ideal",
            n=args.jobs,
            note="reference: same work, 2 bare processes, no queue",
            extra={"jobs_per_s": bare, "iters": iters, "t_job_ms": [t_job * 1000]},
        )
    )
    for peer in selected(args.only, args.skip):
        for s in PEERS[peer].settings.get(NAME, []):
            n = min(args.jobs, s.max_jobs or args.jobs)
            answers = sc.repeat(
                peer,
                s.key,
                NAME,
                args.runs,
                args.timeout,
                n=n,
                iters=iters,
                ms=t_job * 1000,
                setting=s.key,
            )
            if answers is None:
                continue
            rates = [a["extra"]["window_jobs"] / a["value"] for a in answers]
            # An adapter whose work is not peers._work.spin (BullMQ Node's JS
            # loop) reports its own measured job time; its ideal follows it.
            t_jobs = [a["extra"].get("t_job_ms", t_job * 1000) / 1000 for a in answers]
            sc.results.append(
                Result(
                    NAME,
                    peer,
                    s.key,
                    "fraction_of_ideal",
                    [r * tj / 2.0 for r, tj in zip(rates, t_jobs, strict=True)],
                    "x ideal",
                    n=n,
                    extra={
                        "jobs_per_s": rates,
                        "fraction_of_bare": statistics.median(rates) / bare_med,
                        "ideal_jobs_per_s": [2.0 / tj for tj in t_jobs],
                        "iters": iters,
                        "t_job_ms": [tj * 1000 for tj in t_jobs],
                    },
                )
            )


def main() -> int:
    p = base_args(__doc__ or "", 400)
    p.add_argument("--ms", type=float, default=20.0, help="target milliseconds per job")
    args = p.parse_args()
    if args.list:
        listing(NAME)
        return 0
    run(args).finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
