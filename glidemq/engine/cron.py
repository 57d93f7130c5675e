"""Cron instants for job schedulers: croniter in a time zone, as UTC epoch ms.

Lua cannot parse cron, so the client computes upcoming tick instants and the
server stores them (see :mod:`glidemq.engine.schedulers`). Pure functions,
no I/O; the daylight-saving rules live here and are table-tested.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter  # type: ignore[import-untyped]

from glidemq.errors import InvalidOptionError

#: A batch holds at least this many ticks and reaches at least BATCH_SPAN_MS
#: ahead (the server asks for more below 32 ticks or 5 minutes).
BATCH_TICKS = 64
BATCH_SPAN_MS = 600_000
BATCH_CAP = 1024


def is_valid(cron: object) -> bool:
    """True if croniter accepts ``cron`` (5 fields, or 6 with seconds last)."""
    return isinstance(cron, str) and bool(croniter.is_valid(cron))


def zone(tz: str) -> ZoneInfo:
    """The IANA time zone ``tz``.

    Raises:
        InvalidOptionError: no such zone.
    """
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidOptionError(f"tz must be an IANA time zone name, got {tz!r}") from None


def cron_ticks(cron: str, tz: str, after_ms: int, *, until_ms: int = -1,
               count: int = BATCH_TICKS, span_ms: int = BATCH_SPAN_MS,
               cap: int = BATCH_CAP) -> list[int]:
    """Tick instants of ``cron`` in ``tz`` strictly after ``after_ms``, as UTC ms.

    Returns at least ``count`` ticks reaching ``span_ms`` ahead (at most
    ``cap``), none after ``until_ms`` (-1: no end). Daylight saving: a local
    time skipped by a spring-forward runs at the first instant after the gap
    (croniter); a local time repeated by a fall-back runs once, at its first
    occurrence, when the hour field is fixed ("30 1 * * *"), but an
    expression with ``*`` hours ("*/15 * * * *") keeps its real-time cadence
    through the repeated hour.
    """
    start = datetime.fromtimestamp(after_ms / 1000, zone(tz))
    it = croniter(cron, start)
    parts = cron.split()
    fixed_hour = parts[1] != "*" if len(parts) > 1 else cron.strip() != "@hourly"
    prev_wall = start.replace(tzinfo=None, microsecond=0)
    out: list[int] = []
    try:
        for _ in range(cap * 2):
            d: datetime = it.get_next(datetime)
            ms = round(d.timestamp() * 1000)
            if until_ms >= 0 and ms > until_ms:
                break
            wall = d.replace(tzinfo=None)
            if ms <= after_ms or (fixed_hour and wall == prev_wall):
                continue
            prev_wall = wall
            out.append(ms)
            if len(out) >= cap or (len(out) >= count and ms - after_ms >= span_ms):
                break
    except CroniterBadDateError:  # an expression that never matches again
        pass
    return out


def cron_prev(cron: str, tz: str, at_ms: int) -> int:
    """The newest tick of ``cron`` at or before ``at_ms`` (UTC ms)."""
    at = datetime.fromtimestamp(at_ms / 1000, zone(tz)) + timedelta(milliseconds=1)
    d: datetime = croniter(cron, at).get_prev(datetime)
    return round(d.timestamp() * 1000)
