"""Scenario (f): memory of glidemq's processes over a long no-op drain.

Method: N (default 100,000) no-op jobs are bulk-loaded into a paused queue;
the consumer starts, and once it is ready the queue is resumed. While it
drains, the adapter samples the resident set size (psutil ``rss``, MiB) of
every consumer process at 0 jobs, every ``--every`` (default 5,000)
completed jobs, and at N:

* ``glidemq-supervisor``: the supervisor process and each of its 2 children
  (batch 16, prefetch 16, events on);
* ``glidemq-worker``: the one in-process Worker process (concurrency 50,
  events on).

Per process and run: ``rss_start_mb`` (sample at 0 jobs, i.e. after start-up
and the library load), ``rss_end_mb``, ``rss_max_mb`` and
``growth_mb_per_10k`` = least-squares slope of RSS against jobs done, over
the samples from 10,000 jobs on (allocator warm-up excluded), per 10,000
jobs. Peers are not measured here (they keep results and state in very
different ways). Each run is bounded by ``--timeout``.

Usage: bench/.peers-venv/bin/python bench/scenario_memory.py [--runs 3]
       [--jobs 100000] [--every 5000] [--out results.json]
"""

from __future__ import annotations

import math
import sys
from argparse import Namespace
from typing import Any

from _common import Result, Scenario, base_args, listing, selected
from peers import PEERS

NAME = "memory"


def slope_per_10k(samples: list[dict[str, Any]], key: str, skip_jobs: int = 10_000) -> float:
    pts = [(s["jobs"], s[key]) for s in samples if s["jobs"] >= skip_jobs and s[key] == s[key]]
    if len(pts) < 2:
        pts = [(s["jobs"], s[key]) for s in samples if s[key] == s[key]]
    if len(pts) < 2:
        return math.nan
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    sxy = sum((x - mx) * (y - my) for x, y in pts)
    return sxy / sxx * 10_000 if sxx else math.nan


def summarize_run(value: dict[str, Any]) -> dict[str, dict[str, float]]:
    samples = value["samples"]
    procs = [k for k in samples[0] if k not in ("jobs", "t")]
    out = {}
    for p in procs:
        vals = [s[p] for s in samples if s[p] == s[p]]
        out[p] = {
            "rss_start_mb": vals[0],
            "rss_end_mb": vals[-1],
            "rss_max_mb": max(vals),
            "growth_mb_per_10k": slope_per_10k(samples, p),
        }
    return out


def run(args: Namespace, server_url: str = "") -> Scenario:
    sc = Scenario(NAME, args, server_url)
    with sc.guard():
        _body(sc, args)
    return sc


def _body(sc: Scenario, args: Namespace) -> None:
    every = getattr(args, "every", 5000)
    units = {
        "rss_start_mb": "MiB",
        "rss_end_mb": "MiB",
        "rss_max_mb": "MiB",
        "growth_mb_per_10k": "MiB/10k jobs",
    }
    for peer in selected(args.only, args.skip):
        for s in PEERS[peer].settings.get(NAME, []):
            answers = sc.repeat(
                peer, s.key, NAME, args.runs, args.timeout, n=args.jobs, every=every
            )
            if answers is None:
                continue
            per_run = [summarize_run(a["value"]) for a in answers]
            for proc in per_run[0]:
                for metric, unit in units.items():
                    sc.results.append(
                        Result(
                            NAME,
                            peer,
                            f"{s.key}:{proc}",
                            metric,
                            [r[proc][metric] for r in per_run if proc in r],
                            unit,
                            n=args.jobs,
                            higher_is_better=False,
                            group=f"{peer}:{proc}:{metric}",
                            extra={"samples": answers[len(answers) // 2]["value"]["samples"]}
                            if metric == "rss_end_mb"
                            else {},
                        )
                    )


def main() -> int:
    p = base_args(__doc__ or "", 100_000)
    p.add_argument("--every", type=int, default=5000, help="sample RSS every N jobs")
    args = p.parse_args()
    if args.list:
        listing(NAME)
        return 0
    run(args).finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
