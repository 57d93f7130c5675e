"""Run the whole benchmark suite against ONE Valkey and write the results.

    bench/.peers-venv/bin/python bench/run_all.py                 # everything, 3 runs
    bench/.peers-venv/bin/python bench/run_all.py --only huey,glidemq-worker --scenarios drain
    bench/.peers-venv/bin/python bench/run_all.py --compare bench/baseline.json
    bench/.peers-venv/bin/python bench/run_all.py --from bench/results/X.json \
        --compare bench/baseline.json                              # compare only, no run

Writes bench/results/<timestamp>.json, .md and .png (throughput per scenario).
Scenarios run in order enqueue, drain, cpu, latency, roundtrips, memory; each
is the same code as its bench/scenario_*.py script (see their docstrings for
the method). glidemq's rows (systems ``glidemq-worker`` and
``glidemq-supervisor``) run in every scenario; at the end the issue-5 targets
are checked against the same run and printed (PASS/MISS with the numbers);
they are also written into the JSON (``meta.targets``) and the Markdown.
Default N per scenario is chosen to keep the full suite near 15 minutes on
the 2-core machine; slow peer settings are capped further in
bench/peers/__init__.py (``max_jobs``) and their rows say so. The load
average is recorded at the start and after every scenario (``meta``).

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
    is_reference,
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
    "memory": ("scenario_memory", 100_000),
}


def compare(current: list[Result], baseline: list[Result]) -> str:
    base = {(r.scenario, r.system, r.setting, r.metric): r for r in baseline}
    lines = [
        "| scenario | system | setting | metric | baseline | now | change | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    missing = 0
    for r in current:
        b = base.get((r.scenario, r.system, r.setting, r.metric))
        if b is None or not b.median:
            missing += 1
            continue
        change = (r.median - b.median) / b.median
        better = change > 0 if r.higher_is_better else change < 0
        verdict = "" if abs(change) < 0.05 else ("better" if better else "WORSE")
        lines.append(
            f"| {r.scenario} | {r.system} | {r.setting} | {r.metric} | {fmt(b.median)} "
            f"| {fmt(r.median)} | {change:+.1%} | {verdict} |"
        )
    if missing:
        lines.append(f"\n({missing} row(s) have no baseline row to compare with)")
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
        colors = [
            "tab:green"
            if r.system.startswith("glidemq")
            else ("tab:gray" if is_reference(r.system) else "tab:blue")
            for r in rows
        ]
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


# --------------------------------------------------------------------------- targets
PY_PEERS_EXCLUDED = ("bullmq-node",)  # not Python


def _rows(results: list[Result], **kw: str) -> list[Result]:
    return [r for r in results if all(getattr(r, k) == v for k, v in kw.items()) and r.runs]


def _best(rows: list[Result], higher: bool = True) -> Result | None:
    if not rows:
        return None
    return (max if higher else min)(rows, key=lambda r: r.median)


def _span(r: Result, unit: str = "") -> str:
    return f"{fmt(r.median)}{unit} ({fmt(r.min)}..{fmt(r.max)})"


def _name(r: Result) -> str:
    return f"{r.system} {r.setting}"


def targets(results: list[Result]) -> list[dict[str, str]]:
    """The issue-5 targets, checked on this run's medians (min..max shown)."""
    out: list[dict[str, str]] = []

    def add(target: str, ok: bool | None, detail: str) -> None:
        verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
        out.append({"target": target, "verdict": verdict, "detail": detail})

    drain = _rows(results, scenario="drain", metric="throughput")
    gw = _best([r for r in drain if r.system == "glidemq-worker" and "noevents" not in r.setting])
    gw1 = _best(
        [r for r in drain if r.system == "glidemq-worker" and r.setting in ("c50", "c10", "c1")]
    )
    py = _best(
        [r for r in drain if not is_reference(r.system) and r.system not in PY_PEERS_EXCLUDED]
    )
    node = _best([r for r in drain if r.system == "bullmq-node"])
    if gw and py:
        ratio = gw.median / py.median
        extra = f"; 1 process ({_name(gw1)}): {gw1.median / py.median:.1f}x" if gw1 else ""
        add(
            "in-process no-op >= 8x best Python peer",
            ratio >= 8,
            f"{_name(gw)} {_span(gw)} / {_name(py)} {_span(py)} = {ratio:.1f}x{extra}",
        )
    else:
        add("in-process no-op >= 8x best Python peer", None, "rows missing")
    if gw and node:
        ratio = gw.median / node.median
        extra = f"; 1 process ({_name(gw1)}): {gw1.median / node.median:.2f}x" if gw1 else ""
        add(
            "in-process no-op >= 2x BullMQ Node",
            ratio >= 2,
            f"{_name(gw)} {_span(gw)} / {_name(node)} {_span(node)} = {ratio:.2f}x{extra}",
        )
    else:
        add("in-process no-op >= 2x BullMQ Node", None, "rows missing")

    sup = _best([r for r in drain if r.system == "glidemq-supervisor"])
    cel = _best([r for r in drain if r.system == "celery" and r.setting == "prefork-c2"])
    if sup and cel:
        ratio = sup.median / cel.median
        add(
            "supervisor no-op >= 8x Celery prefork (2 procs)",
            ratio >= 8,
            f"{_name(sup)} {_span(sup)} / {_name(cel)} {_span(cel)} = {ratio:.1f}x",
        )
    else:
        add("supervisor no-op >= 8x Celery prefork (2 procs)", None, "rows missing")

    cpu = _rows(results, scenario="cpu", metric="fraction_of_ideal")
    bare = _best([r for r in cpu if r.system == "bare"])
    for sys_, setting in (
        ("glidemq-supervisor", "b1-p1"),
        ("glidemq-supervisor", "b4-p4"),
        ("glidemq-worker", "2proc-c1"),
    ):
        r = _best([x for x in cpu if x.system == sys_ and x.setting == setting])
        label = f"CPU-bound >= 95% of ideal ({sys_} {setting})"
        if r is None:
            add(label, None, "row missing")
            continue
        fb = r.extra.get("fraction_of_bare")
        detail = f"{_span(r)} of 2 / t_job"
        if fb is not None and bare is not None:
            detail += f"; {fb:.3f} of 2 bare processes in the same run ({_span(bare)} of ideal)"
        add(label, r.median >= 0.95, detail)

    lat = _rows(results, scenario="latency", metric="p50")
    best_lat = _best([r for r in lat if not is_reference(r.system)], higher=False)
    for sys_ in ("glidemq-worker", "glidemq-supervisor"):
        r = _best([x for x in lat if x.system == sys_], higher=False)
        label = f"idle latency p50 below the best peer's ({sys_})"
        if r is None or best_lat is None:
            add(label, None, "rows missing")
            continue
        add(
            label,
            r.median < best_lat.median,
            f"{_name(r)} {_span(r, ' ms')} vs {_name(best_lat)} {_span(best_lat, ' ms')}",
        )

    rt = [
        r
        for r in _rows(results, scenario="roundtrips", metric="round_trips")
        if r.setting.startswith("drain")
    ]
    for sys_ in ("glidemq-worker", "glidemq-supervisor"):
        r = _best([x for x in rt if x.system == sys_], higher=False)
        label = f"<= 0.2 round trips per job under backlog ({sys_})"
        if r is None:
            add(label, None, "row missing")
            continue
        add(label, r.median <= 0.2, f"{_name(r)} {_span(r, ' rt/job')}")
    return out


def targets_text(rows: list[dict[str, str]]) -> str:
    return "\n".join(f"  {t['verdict']:4s}  {t['target']}: {t['detail']}" for t in rows)


def targets_markdown(rows: list[dict[str, str]]) -> str:
    lines = ["| target | verdict | numbers (median (min..max)) |", "|---|---|---|"]
    lines += [f"| {t['target']} | **{t['verdict']}** | {t['detail']} |" for t in rows]
    return "\n".join(lines)


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
    p.add_argument("--memory-every", type=int, default=5000, help="RSS sample interval (jobs)")
    p.add_argument("--timeout", type=float, default=120.0, help="time bound per adapter run (s)")
    p.add_argument("--out-dir", default=str(BENCH_DIR / "results"))
    p.add_argument("--compare", default="", help="baseline results JSON to compare against")
    p.add_argument("--from", dest="from_", default="", help="compare this results JSON; no run")
    args = p.parse_args()

    if args.from_:
        if not args.compare:
            raise SystemExit("--from needs --compare")
        current = load_results(args.from_)
        print(compare(current, load_results(args.compare)))
        print("\nissue-5 targets (from " + args.from_ + "):")
        print(targets_text(targets(current)))
        return 0

    t_all = time.monotonic()
    results: list[Result] = []
    skips: list[dict[str, str]] = []
    load_start = list(os.getloadavg())
    loads: dict[str, list[float]] = {}
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
                every=args.memory_every,
            )
            t0 = time.monotonic()
            print(f"\n=== {name} (N={ns.jobs}, runs={ns.runs})", flush=True)
            sc = mod.run(ns, server.url)
            sc.close()
            results += sc.results
            skips += sc.skips
            loads[name] = list(os.getloadavg())
            print(
                f"=== {name} took {time.monotonic() - t0:.0f}s; load average {loads[name][0]:.1f}",
                flush=True,
            )
    finally:
        server.stop()
    add_ratios(results)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checked = targets(results)
    meta = {
        "wall_s": time.monotonic() - t_all,
        "runs": args.runs,
        "jobs": {n: getattr(args, f"{n}_jobs") for n in SCENARIOS},
        "loadavg_start": load_start,
        "loadavg_after_scenario": loads,
        "targets": checked,
    }
    write_json(out / f"{stamp}.json", results, skips, meta)
    write_markdown(out / f"{stamp}.md", results, skips, "glidemq benchmark suite")
    with open(out / f"{stamp}.md", "a") as f:
        f.write(
            f"\n## issue-5 targets\n\n{targets_markdown(checked)}\n\n"
            f"Wall clock {meta['wall_s']:.0f} s; load average at start "
            f"{', '.join(f'{x:.2f}' for x in load_start)}; after each scenario: "
            + "; ".join(f"{k} {v[0]:.2f}" for k, v in loads.items())
            + "\n"
        )
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
    print("\nissue-5 targets (this run):")
    print(targets_text(checked))
    print(f"\nwrote {out / stamp}.json/.md/.png; total {time.monotonic() - t_all:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
