"""Scenario: idle latency, add -> completion observed.

Method: one idle worker (the peer's latency setting, see ``--list``) and one
producer in the adapter process. 500 jobs (after 5 unsampled warm-up jobs,
which also wait for the worker to come up) are added strictly one after
another: the clock starts before the add call and stops when the peer's
completion state in Valkey (same keys as the drain scenario) shows the job
done; the adapter polls every 0.5 ms, so samples carry up to ~0.5 ms of
polling granularity (the same for every peer). p50/p95/p99 are computed per
run; the table shows median/min/max of each percentile over runs (lower is
better). Peers that poll instead of blocking are set to poll every 10 ms
(arq ``poll_delay``, Dramatiq ``dramatiq_worker_timeout``).

Usage: bench/.peers-venv/bin/python bench/scenario_latency.py [--runs 3]
       [--jobs 500] [--only rq,huey] [--out results.json]
"""

from __future__ import annotations

import sys
from argparse import Namespace

from _common import Result, Scenario, base_args, listing, selected
from peers import PEERS

NAME = "latency"


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    k = max(0, min(len(s) - 1, round(q / 100 * (len(s) - 1))))
    return s[k]


def run(args: Namespace, server_url: str = "") -> Scenario:
    sc = Scenario(NAME, args, server_url)
    with sc.guard():
        _body(sc, args)
    return sc


def _body(sc: Scenario, args: Namespace) -> None:
    for peer in selected(args.only, args.skip):
        for s in PEERS[peer].settings.get(NAME, []):
            n = min(args.jobs, s.max_jobs or args.jobs)
            answers = sc.repeat(peer, s.key, NAME, args.runs, args.timeout, n=n, setting=s.key)
            if answers is None:
                continue
            for q in (50, 95, 99):
                sc.results.append(
                    Result(
                        NAME,
                        peer,
                        s.key,
                        f"p{q}",
                        [pct(a["value"], q) * 1000 for a in answers],
                        "ms",
                        n=n,
                        higher_is_better=False,
                    )
                )


def main() -> int:
    args = base_args(__doc__ or "", 500).parse_args()
    if args.list:
        listing(NAME)
        return 0
    run(args).finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
