"""Per-minute queue metrics: completed and failed counts and mean durations.

Recorded by the server inside the call that finishes a job
(``glidemq/lua/_metrics.lua``), so they cost no round trip and count every
consumer of the queue. A job counts as failed when it fails for good (no
retry left); a duration is finish time minus ``processed_on`` (server ms).
Minutes older than the retention window (default 24 h) are trimmed as new
minutes start.

Must not: compute metrics client-side.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import msgspec

from glidemq.errors import InvalidOptionError

if TYPE_CHECKING:
    from glidemq.engine.keys import QueueKeys

METRIC_KINDS = ("completed", "failed")
MINUTE_MS = 60_000


class MetricsPoint(msgspec.Struct, frozen=True):
    """One minute of one metric: ``minute`` is its start (epoch ms, server time)."""

    minute: int
    count: int
    avg_duration_ms: float


class MetricsMixin:
    """The metrics methods of :class:`glidemq.engine.queue.Queue`."""

    keys: QueueKeys

    if TYPE_CHECKING:
        async def _call(self, fn: str, *args: Any) -> Any: ...

    async def get_metrics(self, kind: str, start: int | None = None, end: int | None = None
                          ) -> list[MetricsPoint]:
        """Per-minute points of ``kind``, oldest first; minutes without jobs are left out.

        Args:
            kind: "completed" or "failed".
            start: first minute to include (epoch ms; any ms inside the minute).
            end: last minute to include (epoch ms, inclusive).

        Raises:
            InvalidOptionError: unknown ``kind`` or a bad bound.
        """
        if kind not in METRIC_KINDS:
            raise InvalidOptionError(f"kind must be 'completed' or 'failed', got {kind!r}")
        lo = "-inf" if start is None else str(_ms("start", start) // MINUTE_MS * MINUTE_MS)
        hi = "+inf" if end is None else str(_ms("end", end))
        flat = await self._call("glidemq_metrics", kind, lo, hi)
        return [MetricsPoint(int(flat[i]), int(flat[i + 1]),
                             int(flat[i + 2]) / int(flat[i + 1]) if int(flat[i + 1]) else 0.0)
                for i in range(0, len(flat), 3)]

    async def set_metrics_retention(self, seconds: float) -> None:
        """Keep per-minute metrics for ``seconds`` (default 24 h; at least one minute).

        Raises:
            InvalidOptionError: not a number >= 60.
        """
        ok = isinstance(seconds, int | float) and not isinstance(seconds, bool)
        if not ok or not math.isfinite(seconds) or seconds < 60:
            raise InvalidOptionError(f"seconds must be a number >= 60, got {seconds!r}")
        await self._call("glidemq_set_limits", "metrics", int(seconds * 1000))


def _ms(field: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidOptionError(f"{field} must be epoch milliseconds (int >= 0), got {value!r}")
    return value
