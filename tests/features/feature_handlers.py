"""Handlers of the feature tests that run in supervisor children.

Imported in children as ``tests.features.feature_handlers:<name>``. Like every
handler module they import nothing of ``glidemq.engine`` or valkey.
"""

from __future__ import annotations

import os
import time
from typing import Any

from glidemq.errors import RateLimitedError


def limited_once(job: Any) -> dict[str, Any]:
    """Raise RateLimitedError(data["after"]) the first time (marked by a file), then succeed.

    Appends ``"<job id> <attempts_made>"`` to ``data["record"]`` on every run.
    """
    data = job.data
    with open(data["record"], "a") as fh:
        fh.write(f"{job.id} {job.attempts_made}\n")
    marker = data["record"] + "." + job.id
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RateLimitedError(float(data["after"]))
    return {"attempts": job.attempts_made}


def span(job: Any) -> list[float]:
    """Sleep ``data["sleep"]`` s; return [start, end] (wall clock) for overlap checks."""
    start = time.time()
    time.sleep(float((job.data or {}).get("sleep", 0)))
    return [start, time.time()]
