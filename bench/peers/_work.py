"""The CPU-bound unit of work shared by every Python peer (standard library only)."""

from __future__ import annotations

import time


def spin(iters: int) -> int:
    """Pure-Python integer work: no I/O, holds the GIL throughout."""
    acc = 0
    for i in range(iters):
        acc = (acc * 31 + i) & 0xFFFFFFFF
    return acc


def calibrate(target_s: float = 0.020, rounds: int = 7) -> tuple[int, float]:
    """Iterations of ``spin`` that take ``target_s`` here; returns (iters, measured s).

    Uses the fastest of several rounds (the machine is noisy), then re-measures
    the chosen count and returns its median time, which defines the ideal."""
    iters = 100_000
    for _ in range(2):  # probe, then refine at the real size (warm caches, no probe bias)
        best = min(_time(iters) for _ in range(rounds))
        iters = max(1, int(iters * target_s / best))
    times = sorted(_time(iters) for _ in range(rounds))
    return iters, times[len(times) // 2]


def _time(iters: int) -> float:
    t0 = time.perf_counter()
    spin(iters)
    return time.perf_counter() - t0
