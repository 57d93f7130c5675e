"""Scenario: server work per job: round trips, commands and server CPU.

Method: two phases per peer, each with INFO snapshots (``stats``,
``commandstats``, ``cpu``) taken by the adapter at the window edges:

* ``enqueue``: N single adds (one by one); window = the adds only.
* ``drain:<setting>``: N pre-loaded no-op jobs drained by the peer's
  roundtrips setting; window = first observed completion -> last, divided
  by the jobs completed in the window.

Per job:

* ``round_trips`` = delta ``total_reads_processed`` / jobs. Valkey counts
  one read per socket read event, so a pipelined batch or a MULTI/EXEC sent
  in one write counts once: this is "client round trips", not commands.
* ``commands`` = sum of delta ``cmdstat_*`` calls / jobs. NOTE: Valkey counts
  commands run inside Lua scripts/functions too, so a peer that does its
  work in one EVALSHA shows the commands the script ran; ``script_calls``
  (EVAL/EVALSHA/FCALL) per job is in the JSON extra, with the top commands.
* ``server_cpu_us`` = delta (used_cpu_sys + used_cpu_user) / jobs, in µs.

The harness's own traffic is subtracted: its polling commands and their
reads (the RESP client counts them), and every INFO call. For Celery and
Huey, whose no-op task INCRs ``bench:done`` to be countable, the INCR/INCRBY
calls in the window and one read each are subtracted too. Server CPU
includes those few commands (not separable).

Usage: bench/.peers-venv/bin/python bench/scenario_roundtrips.py [--runs 3]
       [--jobs 3000] [--only rq,huey] [--out results.json]
"""

from __future__ import annotations

import statistics
import sys
from argparse import Namespace
from typing import Any

from _common import Result, Scenario, base_args, delta, listing, selected
from peers import PEERS

NAME = "roundtrips"
SCRIPT_CMDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")
INCR_CMDS = ("incr", "incrby")


def per_job(marks: dict[str, Any], a: str, b: str, jobs: int, incr_counted: bool) -> dict[str, Any]:
    d = delta(marks[a], marks[b])
    own = {
        k.lower(): marks[b]["own_sent"].get(k, 0) - marks[a]["own_sent"].get(k, 0)
        for k in marks[b]["own_sent"]
    }
    own_rt = marks[b]["own_round_trips"] - marks[a]["own_round_trips"]
    calls = dict(d["calls"])
    calls.pop("info", None)
    for k, v in own.items():
        if k != "info" and k in calls:
            calls[k] -= v
    reads = d["reads"] - own_rt
    if incr_counted:
        incrs = sum(calls.pop(k, 0) for k in INCR_CMDS)
        reads -= incrs
    calls = {k: v for k, v in calls.items() if v > 0}
    total = sum(calls.values())
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:8]
    return {
        "round_trips": reads / jobs,
        "commands": total / jobs,
        "server_cpu_us": d["cpu"] / jobs * 1e6,
        "script_calls": sum(calls.get(k, 0) for k in SCRIPT_CMDS) / jobs,
        "top": {k: v / jobs for k, v in top},
    }


def run(args: Namespace, server_url: str = "") -> Scenario:
    sc = Scenario(NAME, args, server_url)
    with sc.guard():
        _body(sc, args)
    return sc


def _body(sc: Scenario, args: Namespace) -> None:
    units = {"round_trips": "rt/job", "commands": "cmd/job", "server_cpu_us": "µs/job"}
    for peer in selected(args.only, args.skip):
        spec = PEERS[peer]
        incr_counted = "INCR" in spec.count
        phases: list[tuple[str, str, dict[str, Any], str, str, int | None]] = []
        if spec.settings.get("enqueue"):
            phases.append(("enqueue", "enqueue", {"bulk": False}, "start", "end", None))
        for s in spec.settings.get(NAME, []):
            phases.append(
                (f"drain:{s.key}", "drain", {"setting": s.key}, "first", "end", s.max_jobs)
            )
        for label, op, kw, a, b, cap in phases:
            n = min(args.jobs, cap or args.jobs)
            answers = sc.repeat(peer, label, op, args.runs, args.timeout, n=n, **kw)
            if answers is None:
                continue
            rows = []
            for ans in answers:
                jobs = ans["extra"].get("window_jobs", n) if op == "drain" else n
                rows.append(per_job(ans["marks"], a, b, jobs, incr_counted and op == "drain"))
            for metric, unit in units.items():
                sc.results.append(
                    Result(
                        NAME,
                        peer,
                        label,
                        metric,
                        [r[metric] for r in rows],
                        unit,
                        n=n,
                        note=f"N capped at {n}" if n < args.jobs else "",
                        higher_is_better=False,
                        group=f"{op}:{metric}",
                        extra={
                            "script_calls_per_job": statistics.median(
                                r["script_calls"] for r in rows
                            ),
                            "top_commands_per_job": rows[len(rows) // 2]["top"],
                        }
                        if metric == "commands"
                        else {},
                    )
                )


def main() -> int:
    args = base_args(__doc__ or "", 3000).parse_args()
    if args.list:
        listing(NAME)
        return 0
    run(args).finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
