"""Scenario: enqueue throughput.

Method: N small no-op jobs are added to an empty queue (server flushed before
every run) from one producer process, (a) one by one, each add awaited
before the next ("single"), and (b) with the peer's bulk API in chunks of
1,000 ("bulk"; peers without one are listed as skipped with the reason).
Client objects are created and connected before the clock starts; the clock
covers only the N adds. Metric: jobs/s = N / elapsed (median, min, max of
--runs runs), ratio vs the best peer. No worker runs.

Usage: bench/.peers-venv/bin/python bench/scenario_enqueue.py [--runs 3]
       [--jobs 20000] [--only rq,huey] [--out results.json]
"""

from __future__ import annotations

import sys
from argparse import Namespace

from _common import Result, Scenario, base_args, listing, selected
from peers import PEERS

NAME = "enqueue"


def run(args: Namespace, server_url: str = "") -> Scenario:
    sc = Scenario(NAME, args, server_url)
    with sc.guard():
        _body(sc, args)
    return sc


def _body(sc: Scenario, args: Namespace) -> None:
    for peer in selected(args.only, args.skip):
        for s in PEERS[peer].settings.get(NAME, []):
            n = min(args.jobs, s.max_jobs or args.jobs)
            answers = sc.repeat(
                peer, s.key, NAME, args.runs, args.timeout, n=n, bulk=s.key == "bulk"
            )
            if answers is None:
                continue
            sc.results.append(
                Result(
                    NAME,
                    peer,
                    s.key,
                    "throughput",
                    [n / a["value"] for a in answers],
                    "jobs/s",
                    n=n,
                    group=f"{s.key}:throughput",
                    note=f"N capped at {n}" if n < args.jobs else "",
                )
            )
        keys = {s.key for s in PEERS[peer].settings.get(NAME, [])}
        if keys and "bulk" not in keys:
            sc.skip(peer, "bulk", "no bulk enqueue API")


def main() -> int:
    args = base_args(__doc__ or "", 20000).parse_args()
    if args.list:
        listing(NAME)
        return 0
    run(args).finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
