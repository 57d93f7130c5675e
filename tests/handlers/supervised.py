"""Handlers for the supervisor integration tests (``tests/supervisor/test_supervisor_*.py``).

Imported in children as ``tests.handlers.supervised:<name>``. Like every
handler module they import nothing of ``glidemq.engine`` or valkey: the
security test checks that a child's ``sys.modules`` holds neither.

Most handlers return ``os.getpid()`` (or a dict holding it) so a test can tell
which child ran a job. ``behave`` is steered by the job's data::

    {"crash": "segv" | "exit3" | "hang" | None,   # how to die
     "when": "first" | "always",                  # only on attempt 0, or every time
     "record": "/tmp/.../starts.txt",             # append "<pid> <job id> <attempt>" first
     "sleep": 0.2}                                # seconds to sleep when not crashing
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any

_hoard: list[bytes] = []


def _record(path: str | None, job: Any) -> None:
    if path:
        with open(path, "a") as fh:
            fh.write(f"{os.getpid()} {job.id} {job.attempts_made}\n")


def behave(job: Any) -> dict[str, Any]:
    data = job.data or {}
    _record(data.get("record"), job)
    crash = data.get("crash")
    if crash and (data.get("when", "first") == "always" or job.attempts_made == 0):
        if crash == "segv":
            ctypes.string_at(0)
        elif crash == "exit3":
            os._exit(3)
        elif crash == "hang":  # the test SIGKILLs this child
            time.sleep(120)
    if data.get("sleep"):
        time.sleep(float(data["sleep"]))
    return {"pid": os.getpid(), "attempts": job.attempts_made}


def pid(job: Any) -> int:
    return os.getpid()


def nap(job: Any) -> int:
    """Sleep ``job.data`` seconds (a number), then return the pid."""
    time.sleep(float(job.data or 0))
    return os.getpid()


def grow(job: Any) -> int:
    """Keep ``job.data`` MiB more alive in this child, then return the pid."""
    _hoard.append(b"\x01" * (int(job.data) * 2**20))  # written, so resident
    return os.getpid()
