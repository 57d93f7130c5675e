"""Job handlers for glidemq's bench rows (standard library only).

Imported by supervisor children (``peers._glidemq_handlers:noop`` / ``:spin``:
a child never imports valkey) and by the in-process Worker processes of
``peers._glidemq``. On import, a supervisor child whose environment names
``BENCH_READY_DIR`` (set through the queue's ``env`` table) creates
``<dir>/<pid>``; Worker processes call ``mark_ready`` themselves once their
Worker exists. The adapter waits for one file per process before it resumes
the paused queue, so process start-up is kept out of the measured window.
"""

from __future__ import annotations

import os
import time
from typing import Any

from peers._work import spin as _spin


def mark_ready(d: str | None) -> None:
    if d:
        with open(os.path.join(d, str(os.getpid())), "w") as f:
            f.write("ready\n")


def noop(job: Any) -> None:
    """Does nothing: measures the framework, not the work."""
    return None


async def anoop(job: Any) -> None:
    """Async no-op for the in-process Worker (a sync processor runs in a thread)."""
    return None


_stamps: Any = None


def stamp(job: Any) -> None:
    """No-op that appends ``perf_counter()`` to ``$BENCH_STAMP_DIR/<pid>.txt``
    (bench/probe_latency.py: when the handler ran, same clock in every process)."""
    global _stamps
    if _stamps is None:
        path = os.path.join(os.environ["BENCH_STAMP_DIR"], f"{os.getpid()}.txt")
        _stamps = open(path, "w", buffering=1)  # noqa: SIM115 - lives as long as the child
    _stamps.write(f"{time.perf_counter()}\n")


async def astamp(job: Any) -> None:
    """Async ``stamp`` for the in-process Worker (like ``anoop``, no thread hop)."""
    stamp(job)


def spin(job: Any) -> None:
    """The shared CPU unit of work (``peers._work.spin``), ``job.data["iters"]`` iterations."""
    _spin(int(job.data["iters"]))


mark_ready(os.environ.get("BENCH_READY_DIR"))
