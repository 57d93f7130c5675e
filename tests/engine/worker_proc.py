"""A Worker in a process of its own, for the multi-process engine tests.

    python -m tests.engine.worker_proc URL QUEUE OUT CONCURRENCY LOCK_S HOLD_S PREFETCH

Appends "<job id>\\n" to OUT when a job starts (flushed at once, so a parent
that SIGKILLs this process still sees which jobs it had), holds each job
HOLD_S seconds, and on SIGTERM closes the worker gracefully and exits 0.
OUT.ready appears once SIGTERM is handled. PREFETCH "-" is the default.
"""

from __future__ import annotations

import signal
import sys

import anyio

from glidemq.engine.job import Job
from glidemq.engine.worker import Worker


async def main(url: str, queue: str, out: str, concurrency: int, lock: float,
               hold: float, prefetch: int | None) -> None:
    with open(out, "a", buffering=1) as f:  # noqa: ASYNC230 - one short line per job

        async def process(job: Job) -> str:
            f.write(job.id + "\n")
            f.flush()
            if hold:
                await anyio.sleep(hold)
            return job.id

        worker = Worker(queue, process, url, concurrency=concurrency, prefetch=prefetch,
                        lock_duration=lock)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                with open(out + ".ready", "w"):  # noqa: ASYNC230 - tells the parent
                    pass
                async for _ in signals:
                    await worker.close()
                    break


if __name__ == "__main__":
    url, queue, out, conc, lock, hold, prefetch = sys.argv[1:8]
    anyio.run(main, url, queue, out, int(conc), float(lock), float(hold),
              None if prefetch == "-" else int(prefetch))
