"""BullMQ (Node.js) adapter: drives bench/node/bullmq_bench.js.

Worker: ``node bench/node/bullmq_bench.js worker --concurrency C`` (one
``Worker`` per node process; BullMQ's docs recommend high concurrency for
I/O-light async processors). Enqueue timing is done inside node (the
process prints READY, the adapter marks, then tells it to go). For the
latency scenario jobs are added from Python with bullmq-py ``Queue.add``
(BullMQ Python shares the Lua scripts and key layout) so every peer's
add -> completion path is polled the same way; the node worker runs them.
Completion: ``ZCARD bull:bench:completed``. CPU: a JS spin loop calibrated
inside each node worker to the same milliseconds as the Python work.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

from peers._base import Ctx, Skip

COMPLETED = "bull:bench:completed"


def _script(ctx: Ctx) -> list[str]:
    node = shutil.which("node")
    script = ctx.bench_dir / "node" / "bullmq_bench.js"
    if node is None:
        raise Skip("node is not on PATH")
    if not (ctx.bench_dir / "node" / "node_modules" / "bullmq").exists():
        raise Skip("bench/node/node_modules/bullmq missing (run bash bench/setup_peers.sh)")
    return [node, str(script)]


def _run(ctx: Ctx, args: list[str], handshake: bool = False) -> float:
    p = subprocess.Popen(
        _script(ctx) + args + ["--url", ctx.url],
        cwd=ctx.bench_dir / "node",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if handshake:
            line = p.stdout.readline() if p.stdout else ""
            if line.strip() != "READY":
                raise RuntimeError(f"node enqueue did not start: {line!r}")
            ctx.mark("start")
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        out, _ = p.communicate(timeout=max(1.0, ctx.remaining()))
        if handshake:
            ctx.mark("end")
        if p.returncode != 0:
            raise RuntimeError(f"node exited {p.returncode}")
        return float(json.loads(out.strip().splitlines()[-1])["elapsed"])
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)


def _setting(setting: str) -> tuple[int, int]:
    p, c = setting.split("-")[:2]
    return int(p[1:]), int(c[1:])


def _workers(ctx: Ctx, setting: str, cpu_ms: float = 0) -> None:
    procs, conc = _setting(setting)
    argv = _script(ctx) + ["worker", "--url", ctx.url, "--concurrency", str(conc)]
    if cpu_ms:
        argv += ["--cpu-ms", str(cpu_ms)]
    for _ in range(procs):
        ctx.spawn(argv, name="bullmq-node", cwd=ctx.bench_dir / "node")


def enqueue(ctx: Ctx, n: int, bulk: bool) -> float:
    return _run(ctx, ["enqueue", "--n", str(n)] + (["--bulk"] if bulk else []), handshake=True)


def drain(ctx: Ctx, n: int, setting: str) -> float:
    _run(ctx, ["preload", "--n", str(n)])
    _workers(ctx, setting)
    return ctx.wait_completed(ctx.zcard(COMPLETED), n)


def cpu(ctx: Ctx, n: int, iters: int, ms: float, setting: str) -> float:
    """Each node worker calibrates its JS loop to ``ms`` after JIT warm-up and
    reports the median time of the chosen count; their mean becomes this
    system's ``t_job_ms`` (the scenario's ideal uses it instead of Python's)."""
    _run(ctx, ["preload", "--n", str(n)])
    _workers(ctx, setting, cpu_ms=ms)
    elapsed = ctx.wait_completed(ctx.zcard(COMPLETED), n)
    t = [float(x) for x in ctx.r.call("LRANGE", "bench:node_t_job_ms", 0, -1) or []]
    if t:
        ctx.extra["t_job_ms"] = sum(t) / len(t)
    return elapsed


def latency(ctx: Ctx, n: int, setting: str) -> list[float]:
    from bullmq import Queue

    _workers(ctx, setting)
    loop = asyncio.new_event_loop()
    q = Queue("bench", {"connection": ctx.url})
    try:
        return ctx.latency_loop(
            lambda: loop.run_until_complete(q.add("noop", {})), ctx.zcard(COMPLETED), n
        )
    finally:
        loop.run_until_complete(q.close())
        loop.close()
