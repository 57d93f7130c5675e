"""Run the whole benchmark suite against ONE Valkey and write the results.

    bench/.peers-venv/bin/python bench/run_all.py                 # everything, 3 runs
    bench/.peers-venv/bin/python bench/run_all.py --only huey,glidemq-x --scenarios drain
    bench/.peers-venv/bin/python bench/run_all.py --compare bench/baseline.json
    bench/.peers-venv/bin/python bench/run_all.py --from bench/results/X.json \
        --compare bench/baseline.json                              # compare only, no run

Writes bench/results/<timestamp>.json, .md and .png (throughput per scenario).
Scenarios run in order enqueue, drain, cpu, latency, roundtrips; each is the
same code as its bench/scenario_*.py script (see their docstrings for the
method). Default N per scenario is chosen to keep the full suite near 15
minutes on the 2-core machine; slow peer settings are capped further in
bench/peers/__init__.py (``max_jobs``) and their rows say so.

``--compare BASELINE`` prints, for every (scenario, system, setting, metric)
present in both, the baseline median, the new median and the change, marked
better/worse by the metric's direction. Make a baseline by copying a results
JSON to bench/baseline.json.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from _common import (
    BENCH_DIR,
    Result,
    ValkeyServer,
    add_ratios,
    fmt,
    load_results,
    table,
    write_json,
    write_markdown,
)

SCENARIOS = {  # name: (module, default N)
    "enqueue": ("scenario_enqueue", 5000),
    "drain": ("scenario_drain", 20000),
    "cpu": ("scenario_cpu", 400),
    "latency": ("scenario_latency", 500),
    "roundtrips": ("scenario_roundtrips", 2000),
}


def compare(current: list[Result], baseline: list[Result]) -> str:
    base = {(r.scenario, r.system, r.setting, r.metric): r for r in baseline}
    lines = [
        "| scenario | system | setting | metric | baseline | now | change | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in current:
        b = base.get((r.scenario, r.system, r.setting, r.metric))
        if b is None or not b.median:
            continue
        change = (r.median - b.median) / b.median
        better = change > 0 if r.higher_is_better else change < 0
        verdict = "" if abs(change) < 0.05 else ("better" if better else "WORSE")
        lines.append(
            f"| {r.scenario} | {r.system} | {r.setting} | {r.metric} | {fmt(b.median)} "
            f"| {fmt(r.median)} | {change:+.1%} | {verdict} |"
        )
    return "\n".join(lines)


def chart(results: list[Result], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no chart")
        return
    panels = [
        ("enqueue single (jobs/s)", lambda r: r.scenario == "enqueue" and r.setting == "single"),
        ("enqueue bulk (jobs/s)", lambda r: r.scenario == "enqueue" and r.setting == "bulk"),
        ("drain no-op (jobs/s)", lambda r: r.scenario == "drain"),
        ("CPU jobs, fraction of 2-core ideal", lambda r: r.scenario == "cpu"),
        (
            "idle latency p50 (ms, lower is better)",
            lambda r: r.scenario == "latency" and r.metric == "p50",
        ),
        (
            "drain round trips per job (lower is better)",
            lambda r: (
                r.scenario == "roundtrips"
                and r.metric == "round_trips"
                and r.setting.startswith("drain")
            ),
        ),
    ]
    panels = [(t, [r for r in results if f(r)]) for t, f in panels]
    panels = [(t, rows) for t, rows in panels if rows]
    if not panels:
        return
    cols = 2
    rows_n = (len(panels) + 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(14, 3.2 * rows_n + 0.5), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (title, rows) in zip(axes.flat, panels, strict=False):
        labels = [f"{r.system} {r.setting}" + (f" (N={r.n})" if r.note else "") for r in rows]
        med = [r.median for r in rows]
        lo = [r.median - r.min for r in rows]
        hi = [r.max - r.median for r in rows]
        colors = ["tab:green" if r.system.startswith("glidemq") else "tab:blue" for r in rows]
        y = range(len(rows))
        ax.barh(list(y), med, xerr=[lo, hi], color=colors, capsize=2)
        ax.set_yticks(list(y), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        for yi, v in zip(y, med, strict=True):
            ax.text(v, yi, " " + fmt(v), va="center", fontsize=6)
    fig.suptitle("glidemq benchmark suite (median of runs; bars: min..max)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--only", default="", help="comma-separated systems (default: all)")
    p.add_argument("--skip", default="", help="comma-separated systems to leave out")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    for name, (_, n) in SCENARIOS.items():
        p.add_argument(f"--{name}-jobs", type=int, default=n, help=f"N for {name} (default {n})")
    p.add_argument("--ms", type=float, default=20.0, help="CPU job length target (ms)")
    p.add_argument("--timeout", type=float, default=120.0, help="time bound per adapter run (s)")
    p.add_argument("--out-dir", default=str(BENCH_DIR / "results"))
    p.add_argument("--compare", default="", help="baseline results JSON to compare against")
    p.add_argument("--from", dest="from_", default="", help="compare this results JSON; no run")
    args = p.parse_args()

    if args.from_:
        if not args.compare:
            raise SystemExit("--from needs --compare")
        print(compare(load_results(args.from_), load_results(args.compare)))
        return 0

    t_all = time.monotonic()
    results: list[Result] = []
    skips: list[dict[str, str]] = []
    server = ValkeyServer().start()
    pid = server.proc.pid if server.proc else "?"
    print(
        f"valkey-server on {server.url} (persistence off), pid {pid}; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    try:
        for name in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
            mod = importlib.import_module(SCENARIOS[name][0])
            ns = argparse.Namespace(
                runs=args.runs,
                jobs=getattr(args, f"{name}_jobs"),
                only=args.only,
                skip=args.skip,
                out="",
                url=server.url,
                timeout=args.timeout,
                list=False,
                ms=args.ms,
            )
            t0 = time.monotonic()
            print(f"\n=== {name} (N={ns.jobs}, runs={ns.runs})", flush=True)
            sc = mod.run(ns, server.url)
            sc.close()
            results += sc.results
            skips += sc.skips
            print(f"=== {name} took {time.monotonic() - t0:.0f}s", flush=True)
    finally:
        server.stop()
    add_ratios(results)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "wall_s": time.monotonic() - t_all,
        "runs": args.runs,
        "jobs": {n: getattr(args, f"{n}_jobs") for n in SCENARIOS},
    }
    write_json(out / f"{stamp}.json", results, skips, meta)
    write_markdown(out / f"{stamp}.md", results, skips, "glidemq benchmark suite")
    chart(results, out / f"{stamp}.png")
    print()
    print(table(results))
    if skips:
        print("\nskipped:")
        for s in skips:
            print(f"  {s['scenario']} / {s['system']} [{s['setting']}]: {s['reason']}")
    if args.compare:
        print("\nvs baseline " + args.compare)
        print(compare(results, load_results(args.compare)))
    print(f"\nwrote {out / stamp}.json/.md/.png; total {time.monotonic() - t_all:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
