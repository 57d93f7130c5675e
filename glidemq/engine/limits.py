"""Queue-wide and per-group limits: the admin API over ``glidemq_set_limits``.

What is enforced, and where: every limit is checked inside ``glidemq_fetch``
(``glidemq/lua/_limits.lua``), so it holds across every Worker and
supervisor of the queue, and a job held back by a limit is never active and
holds no lock:

* **global concurrency** - at most N active jobs across all consumers
  (the ``active`` zset is the count);
* **rate limit** - at most ``max`` claims in any window of ``duration``
  seconds (a true sliding window: a log of claim times);
* **groups** - a job's ``group`` key gets, per group, a concurrency limit
  (default 1: one job at a time, in add order), a sliding-window rate and a
  token bucket drawn by each job's ``cost``. One saturated group never
  blocks the others: its popped jobs are parked aside until it frees up.

Must not: hold limit state in Python; every check happens in the server.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import msgspec

from glidemq.errors import InvalidOptionError

if TYPE_CHECKING:
    from glidemq.engine.connection import Connection
    from glidemq.engine.keys import QueueKeys

DEFAULT_GROUP_CONCURRENCY = 1


class GroupLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Limits of one group (or the default of every group).

    ``concurrency``: active jobs of the group at once (0 = unlimited).
    ``rate``: ``(max, duration_s)``, at most ``max`` claims in any window of
    ``duration_s``. ``bucket``: ``(capacity, refill_per_s)`` tokens; a job
    claims only when the bucket holds its ``cost`` and takes it out.
    """

    concurrency: int = DEFAULT_GROUP_CONCURRENCY
    rate: tuple[int, float] | None = None
    bucket: tuple[int, float] | None = None


def _int(field: str, value: Any, lo: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise InvalidOptionError(f"{field} must be an int >= {lo}, got {value!r}")
    return value


def _seconds(field: str, value: Any) -> int:
    """Seconds (> 0, at least 1 ms) as whole milliseconds."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value * 1000 < 1:
        raise InvalidOptionError(f"{field} must be a number of seconds >= 0.001, got {value!r}")
    return int(round(value * 1000))


def _pair(field: str, value: Any) -> tuple[Any, Any]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise InvalidOptionError(f"{field} must be a pair, got {value!r}")
    return value[0], value[1]


def group_spec(limits: GroupLimits) -> str:
    """Encode for the server: ``"conc:rate_max:rate_ms:bucket_cap:refill_per_s"``.

    Raises:
        InvalidOptionError: naming the field, the value and what was expected.
    """
    conc = _int("concurrency", limits.concurrency, 0)
    rmax = rms = cap = 0
    refill = 0.0
    if limits.rate is not None:
        m, d = _pair("rate", limits.rate)
        rmax, rms = _int("rate[0] (max)", m, 1), _seconds("rate[1] (duration)", d)
    if limits.bucket is not None:
        c, r = _pair("bucket", limits.bucket)
        cap = _int("bucket[0] (capacity)", c, 1)
        ok = isinstance(r, int | float) and not isinstance(r, bool) and math.isfinite(r)
        if not ok or r <= 0:
            raise InvalidOptionError(f"bucket[1] (refill per second) must be > 0, got {r!r}")
        refill = float(r)
    return f"{conc}:{rmax}:{rms}:{cap}:{refill!r}"


def parse_group_spec(spec: str) -> GroupLimits:
    conc, rmax, rms, cap, refill = spec.split(":")
    return GroupLimits(
        concurrency=int(conc),
        rate=(int(rmax), int(rms) / 1000) if int(rmax) else None,
        bucket=(int(cap), float(refill)) if int(cap) else None)


class LimitsMixin:
    """The limit methods of :class:`glidemq.engine.queue.Queue`."""

    keys: QueueKeys
    connection: Connection

    if TYPE_CHECKING:
        async def _call(self, fn: str, *args: Any) -> Any: ...

    async def set_rate_limit(self, max: int, duration: float) -> None:
        """Let at most ``max`` jobs start in any window of ``duration`` seconds.

        Shared by every Worker and supervisor of the queue. Jobs over the
        limit stay waiting (not active, no lock); idle consumers wake when
        the window opens.

        Raises:
            InvalidOptionError: ``max`` < 1 or ``duration`` < 1 ms.
        """
        await self._call("glidemq_set_limits", "rate", _int("max", max, 1),
                         _seconds("duration", duration))

    async def remove_rate_limit(self) -> None:
        """Remove the queue's rate limit."""
        await self._call("glidemq_set_limits", "rate", 0, 0)

    async def get_rate_limit(self) -> tuple[int, float] | None:
        """``(max, duration_s)`` of the queue's rate limit, or None."""
        m, d = await self.connection.client().hmget(self.keys.meta, "rl_max", "rl_dur")
        return (int(m), int(d) / 1000) if m else None

    async def set_global_concurrency(self, n: int) -> None:
        """Allow at most ``n`` active jobs across every consumer (0 = no limit).

        Raises:
            InvalidOptionError: ``n`` is not an int >= 0.
        """
        await self._call("glidemq_set_limits", "concurrency", _int("n", n, 0))

    async def get_global_concurrency(self) -> int:
        """The global concurrency limit (0 = none)."""
        v = await self.connection.client().hget(self.keys.meta, "gc")
        return int(v) if v else 0

    async def set_group_limits(self, group: str | None, *,
                               concurrency: int = DEFAULT_GROUP_CONCURRENCY,
                               rate: tuple[int, float] | None = None,
                               bucket: tuple[int, float] | None = None) -> None:
        """Set the limits of jobs added with ``group=group``.

        ``group=None`` sets the default of every group without limits of its
        own (out of the box: concurrency 1, no rate, no bucket).

        Args:
            group: the group key, or None for the default.
            concurrency: active jobs of the group at once; 1 runs the group
                strictly in add order; 0 = unlimited.
            rate: ``(max, duration_s)``: at most ``max`` jobs of the group
                start in any window of ``duration_s`` seconds.
            bucket: ``(capacity, refill_per_s)``: a token bucket; each job
                takes its ``cost`` (default 1) when it starts. A job whose
                cost exceeds the capacity fails when it is claimed.

        Raises:
            InvalidOptionError: naming the bad argument.
        """
        spec = group_spec(GroupLimits(concurrency=concurrency, rate=rate, bucket=bucket))
        await self._call("glidemq_set_limits", "group", _group(group), spec)

    async def remove_group_limits(self, group: str | None) -> None:
        """Back to the default limits (for ``None``: to concurrency 1, nothing else)."""
        await self._call("glidemq_set_limits", "group", _group(group), "")

    async def get_group_limits(self, group: str | None) -> GroupLimits:
        """The limits that apply to ``group`` (its own, else the default)."""
        own, default = await self.connection.client().hmget(
            self.keys.prefix + "glimits", _group(group), "")
        spec = own or default
        return parse_group_spec(spec.decode()) if spec else GroupLimits()

    async def get_group_counts(self, group: str) -> dict[str, int]:
        """``{"active": n, "parked": n}`` for one group.

        Parked jobs were claimed-in-turn but held back by the group's limits;
        they are waiting, not active, and go back to the queue's head when
        the group frees up.
        """
        g = _group(group)
        p = self.keys.prefix
        client = self.connection.client()
        active = await client.scard(f"{p}gactive:{g}")
        parked = await client.zcard(f"{p}gpark:{g}")
        return {"active": int(active), "parked": int(parked)}


def _group(group: str | None) -> str:
    if group is None:
        return ""
    if not isinstance(group, str) or not group:
        raise InvalidOptionError(f"group must be a non-empty str or None, got {group!r}")
    return group
