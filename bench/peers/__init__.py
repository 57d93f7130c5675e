"""Registry of benchmark adapters (standard library only: the driver imports it).

Each adapter is a module ``bench/peers/<name>.py`` that runs INSIDE the
interpreter named by ``python`` ("peers" = bench/.peers-venv, "arq" =
bench/.peers-venv-arq, "glidemq" = /work/main/.venv) and exposes::

    def enqueue(ctx: Ctx, n: int, bulk: bool) -> float            # seconds to add n jobs
    def drain(ctx: Ctx, n: int, setting: str) -> float             # seconds, 1st..last completion
    def cpu(ctx: Ctx, n: int, iters: int, ms: float, setting: str) -> float  # CPU jobs
    def latency(ctx: Ctx, n: int, setting: str) -> list[float]     # add -> completion, seconds

``ctx`` (bench/peers/_base.py) carries the server URL, a RESP client for
counting completions in Valkey, ``spawn`` for worker processes (stopped by
PID), ``mark`` for INFO snapshots and the shared timing helpers. An adapter
raises ``Skip("reason")`` for an operation it does not support.

To add a system (e.g. glidemq) write the module and add one ``Peer`` entry
below with ``python="glidemq"``. Settings are what the scenario scripts
iterate over; ``max_jobs`` caps N for slow settings (the row says so).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Setting:
    key: str  # passed to the adapter as ``setting``
    doc: str  # shown in tables/README
    max_jobs: int | None = None  # cap on N for this setting (slow peers); row is labelled


@dataclasses.dataclass(frozen=True)
class Peer:
    module: str  # importable from bench/, e.g. "peers.huey"
    python: str  # key of _common.INTERPRETERS
    settings: dict[str, list[Setting]]  # op -> settings; missing op = not supported
    count: str = ""  # how completion is counted in Valkey (documentation)


PEERS: dict[str, Peer] = {
    "celery": Peer(
        module="peers.celery",
        python="peers",
        count="INCR bench:done in the task (ignore_result=True keeps no countable state)",
        settings={
            "enqueue": [Setting("single", "apply_async one by one (no bulk publish API)")],
            "drain": [
                Setting("prefork-c2", "prefork pool, 2 children, prefetch x64", max_jobs=3000),
                Setting("solo", "solo pool (in-process), prefetch x64", max_jobs=3000),
            ],
            "cpu": [Setting("prefork-c2", "prefork pool, 2 children, prefetch x1, -O fair")],
            "latency": [Setting("solo", "solo pool, idle worker (BRPOP)")],
            "roundtrips": [Setting("prefork-c2", "prefork pool, 2 children, prefetch x64")],
        },
    ),
    "rq": Peer(
        module="peers.rq",
        python="peers",
        count="ZCARD rq:finished:bench (FinishedJobRegistry)",
        settings={
            "enqueue": [
                Setting("single", "Queue.enqueue one by one"),
                Setting("bulk", "Queue.enqueue_many, pipelined, chunks of 1000"),
            ],
            "drain": [
                Setting("simple", "SimpleWorker (no fork), 1 process, --burst", max_jobs=2000),
                Setting("fork", "default forking Worker, 1 process (fork per job)", max_jobs=200),
            ],
            "cpu": [Setting("simple-x2", "2 SimpleWorker processes")],
            "latency": [Setting("simple", "SimpleWorker, idle (BLPOP)")],
            "roundtrips": [Setting("simple", "SimpleWorker, 1 process", max_jobs=1000)],
        },
    ),
    "arq": Peer(
        module="peers.arq",
        python="arq",
        count="n - ZCARD arq:queue (arq removes a job id when it finishes)",
        settings={
            "enqueue": [Setting("single", "ArqRedis.enqueue_job one by one (no bulk API)")],
            "drain": [
                Setting("p1-j100", "1 process, max_jobs=100, poll_delay=0.01s", max_jobs=6000)
            ],
            "cpu": [Setting("p2-j1", "2 processes, max_jobs=1")],
            "latency": [Setting("p1-poll10ms", "1 process, poll_delay=0.01s (default 0.5s)")],
            "roundtrips": [Setting("p1-j100", "1 process, max_jobs=100, poll_delay=0.01s")],
        },
    ),
    "saq": Peer(
        module="peers.saq",
        python="peers",
        count="n - ZCARD saq:bench:incomplete",
        settings={
            "enqueue": [Setting("single", "Queue.enqueue one by one (no bulk API)")],
            "drain": [
                Setting(
                    "w2-c50", "2 worker processes (one per core), concurrency 50", max_jobs=6000
                )
            ],
            "cpu": [Setting("w2-c1", "2 worker processes, concurrency 1")],
            "latency": [Setting("w1-c10", "1 worker, concurrency 10 (default), idle")],
            "roundtrips": [Setting("w2-c50", "2 worker processes, concurrency 50")],
        },
    ),
    "dramatiq": Peer(
        module="peers.dramatiq",
        python="peers",
        count="n - HLEN dramatiq:bench.msgs (a message leaves the hash on ack)",
        settings={
            "enqueue": [Setting("single", "actor.send one by one (no bulk API)")],
            "drain": [
                Setting(
                    "p2-t8", "2 processes x 8 threads (CLI default on 2 cores)", max_jobs=10000
                ),
                Setting("p1-t8", "1 process x 8 threads", max_jobs=10000),
            ],
            "cpu": [Setting("p2-t1", "2 processes x 1 thread")],
            "latency": [Setting("p1-t1", "1 process x 1 thread, idle")],
            "roundtrips": [Setting("p2-t8", "2 processes x 8 threads")],
        },
    ),
    "huey": Peer(
        module="peers.huey",
        python="peers",
        count="INCR bench:done in the task (a no-op task returning None stores nothing)",
        settings={
            "enqueue": [Setting("single", "task() one by one (no bulk API)")],
            "drain": [Setting("thread-w1", "huey_consumer -k thread -w 1")],
            "cpu": [Setting("process-w2", "huey_consumer -k process -w 2")],
            "latency": [Setting("thread-w1", "-k thread -w 1, idle (RedisHuey blocks on BRPOP)")],
            "roundtrips": [Setting("thread-w1", "huey_consumer -k thread -w 1")],
        },
    ),
    "bullmq-py": Peer(
        module="peers.bullmq_py",
        python="peers",
        count="ZCARD bull:bench:completed",
        settings={
            "enqueue": [
                Setting("single", "Queue.add one by one"),
                Setting("bulk", "Queue.addBulk, chunks of 1000"),
            ],
            "drain": [Setting("p1-c50", "1 process, Worker concurrency 50", max_jobs=6000)],
            "cpu": [Setting("p2-c1", "2 processes, concurrency 1 (sync work blocks the loop)")],
            "latency": [Setting("p1-c1", "1 process, concurrency 1, idle (BZPOPMIN)")],
            "roundtrips": [Setting("p1-c50", "1 process, concurrency 50")],
        },
    ),
    "bullmq-node": Peer(
        module="peers.bullmq_node",
        python="peers",
        count="ZCARD bull:bench:completed",
        settings={
            "enqueue": [
                Setting("single", "queue.add one by one (node)"),
                Setting("bulk", "queue.addBulk, chunks of 1000 (node)"),
            ],
            "drain": [Setting("p1-c100", "1 node process, Worker concurrency 100")],
            "cpu": [
                Setting(
                    "p2-c1-js",
                    "2 node processes, concurrency 1, JS spin loop calibrated to the same ms",
                )
            ],
            "latency": [
                Setting(
                    "p1-c1",
                    "1 node process, concurrency 1; jobs added with "
                    "bullmq-py Queue.add (same wire format)",
                )
            ],
            "roundtrips": [Setting("p1-c100", "1 node process, concurrency 100")],
        },
    ),
    # ------------------------------------------------------------------ glidemq
    # Not peers: rows whose system starts with "glidemq" are left out of "best peer".
    "glidemq-worker": Peer(
        module="peers.glidemq_worker",
        python="glidemq",
        count="ZCARD glidemq:{bench}:bench:completed (default options keep completed jobs)",
        settings={
            "enqueue": [
                Setting("single", "Queue.add one by one"),
                Setting("bulk", "Queue.add_bulk, chunks of 1000 (one server call per 500)"),
            ],
            "drain": [
                Setting("c1", "in-process Worker, 1 process, concurrency 1, events on"),
                Setting("c10", "in-process Worker, 1 process, concurrency 10, events on"),
                Setting("c50", "in-process Worker, 1 process, concurrency 50, events on"),
                Setting("2proc-c50", "2 Worker processes, concurrency 50 each, events on"),
                Setting(
                    "c50-noevents",
                    "in-process Worker, concurrency 50, events=False (producer and worker)",
                ),
            ],
            "cpu": [
                Setting(
                    "2proc-c1",
                    "2 Worker processes, concurrency 1, sync handler (in-process, no isolation)",
                )
            ],
            "latency": [Setting("c1", "1 Worker process, concurrency 1, idle, events on")],
            "roundtrips": [Setting("c50", "1 Worker process, concurrency 50, events on")],
            "memory": [Setting("c50", "1 Worker process, concurrency 50, events on")],
        },
    ),
    "glidemq-supervisor": Peer(
        module="peers.glidemq_supervisor",
        python="glidemq",
        count="ZCARD glidemq:{bench}:bench:completed (default options keep completed jobs)",
        settings={
            "drain": [
                Setting("b16-p16", "supervisor, 2 sandboxed children, batch 16, prefetch 16")
            ],
            "cpu": [
                Setting("b1-p1", "supervisor, 2 sandboxed children, batch 1, prefetch 1"),
                Setting(
                    "b4-p4",
                    "supervisor, 2 children, batch 4, prefetch 4 (fewer supervisor wake-ups)",
                ),
            ],
            "latency": [Setting("b1-p1", "supervisor, 2 children, batch 1, prefetch 1, idle")],
            "roundtrips": [Setting("b16-p16", "supervisor, 2 children, batch 16, prefetch 16")],
            "memory": [Setting("b16-p16", "supervisor, 2 children, batch 16, prefetch 16")],
        },
    ),
}
