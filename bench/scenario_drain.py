"""Scenario: drain throughput of no-op jobs.

Method: N no-op jobs are pre-loaded (bulk API where there is one, else
enqueued one by one / with overlapped round trips; not timed), then the
peer's worker process(es) start. The adapter polls the peer's own
completion state in Valkey every 2 ms (see each adapter / README for the
key: BullMQ ``completed`` zset, RQ FinishedJobRegistry, SAQ ``incomplete``
zset, arq queue zset, Dramatiq ``.msgs`` hash; Celery and Huey keep no
countable state at their fastest settings, so their task INCRs a counter).
Throughput = jobs completed between the FIRST observed completion and the
last / that time, so worker start-up (reported as ``startup_s`` in the
JSON) is excluded. Each peer runs at its best documented settings (see
``--list``); slow settings run a smaller N, which the row's note states.

Usage: bench/.peers-venv/bin/python bench/scenario_drain.py [--runs 3]
       [--jobs 20000] [--only huey,celery] [--out results.json]
"""

from __future__ import annotations

import statistics
import sys
from argparse import Namespace

from _common import Result, Scenario, base_args, listing, selected
from peers import PEERS

NAME = "drain"


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
            rates = [a["extra"]["window_jobs"] / a["value"] for a in answers]
            startup = statistics.median(a["extra"]["startup_s"] for a in answers)
            sc.results.append(
                Result(
                    NAME,
                    peer,
                    s.key,
                    "throughput",
                    rates,
                    "jobs/s",
                    n=n,
                    note=(
                        f"N={n}, not {args.jobs} (slow); rate per job extrapolates "
                        f"to ~{args.jobs / statistics.median(rates):.0f}s for {args.jobs}"
                    )
                    if n < args.jobs
                    else "",
                    extra={"startup_s_median": startup, "doc": s.doc},
                )
            )


def main() -> int:
    args = base_args(__doc__ or "", 20000).parse_args()
    if args.list:
        listing(NAME)
        return 0
    run(args).finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
