"""Handlers the benchmarks run in supervisor children (not part of glidemq)."""

from __future__ import annotations

from typing import Any


def noop(job: Any) -> None:
    """Does nothing: measures the framework, not the work."""
    return None


def spin(job: Any) -> int:
    """Pure-Python CPU work: ``job.data["n"]`` loop iterations (calibrated by the caller)."""
    total = 0
    for i in range(int(job.data["n"])):
        total += i * i % 7
    return total
