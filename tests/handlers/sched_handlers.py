"""Handlers of the job scheduler tests run in supervisor children.

Imported in children as ``tests.handlers.sched_handlers:<name>``. Like every
handler module they import nothing of ``glidemq.engine`` or valkey.
"""

from __future__ import annotations

import os
from typing import Any


def tick(job: Any) -> dict[str, Any]:
    """Say who ran the job, so a test can tell the supervisor's jobs apart."""
    return {"by": "supervisor", "pid": os.getpid(), "id": job.id}
