"""Job schedulers: the Queue methods, validation, decoding and the refill actor.

A scheduler creates one job per tick from a template. Ticks are materialised
server-side, inside the atomic ``glidemq_fetch`` every consumer calls (see
``glidemq/lua/_schedulers.lua``), so exactly one job is made per tick however
many workers and supervisors run, with no extra round trip. ``every``
schedules are computed in Lua (anchored grid). Lua cannot parse cron, so this
client computes upcoming cron instants (:mod:`glidemq.engine.cron`) and
stores a bounded batch; consumers top it up through :func:`refill`, which
the Worker and the supervisor's pools run every :data:`REFILL_INTERVAL`
seconds (one SMEMBERS when nothing is low).

Must not: decide when a tick runs (the server does, on its clock).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from valkey import exceptions as vex

from glidemq.engine import codec
from glidemq.engine.connection import Connection
from glidemq.engine.cron import cron_prev, cron_ticks, zone
from glidemq.engine.cron import is_valid as cron_is_valid
from glidemq.engine.job import JobOptions, decode_options, make_options
from glidemq.engine.keys import QueueKeys
from glidemq.errors import GlidemqError, InvalidOptionError

log = logging.getLogger(__name__)

REFILL_INTERVAL = 30.0
MAX_SCHEDULER_ID = 200  # "sched-<id>-<13 digits>" stays within the job id limit
_FORBIDDEN = set("{}:")
_REJECTED_OPTS = ("delay", "depends_on", "parent")
_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.decode


class JobTemplate(msgspec.Struct, frozen=True):
    """The job each tick creates: name, data and ``Queue.add`` options (``opts``)."""

    name: str
    data: Any = None
    opts: dict[str, Any] = {}


class JobScheduler(msgspec.Struct, frozen=True, kw_only=True):
    """A stored scheduler as read back. Instants are server ms since the epoch."""

    id: str
    template: JobTemplate
    every: float | None = None  # seconds
    cron: str | None = None
    tz: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    limit: int | None = None
    misfire_grace: float | None = None  # seconds
    count: int = 0  # jobs created so far
    skipped: int = 0  # missed ticks skipped (see the missed-tick policy)
    last_tick_ms: int | None = None
    next_tick_ms: int | None = None  # None: finished, or a cron batch awaiting refill
    done: bool = False


class SchedulerKeys:
    """The scheduler keys of one queue (all share the queue's hash tag)."""

    __slots__ = ("meta", "prefix", "index", "refill")

    def __init__(self, keys: QueueKeys) -> None:
        self.meta = keys.meta
        self.prefix = keys.prefix
        self.index = keys.prefix + "schedulers"
        self.refill = keys.prefix + "sched-refill"

    def scheduler(self, sid: str) -> str:
        return f"{self.prefix}sched:{sid}"

    def ticks(self, sid: str) -> str:
        return f"{self.prefix}sched:{sid}:ticks"


def validate_scheduler_id(sid: object) -> str:
    """Return ``sid`` if it can name a scheduler.

    Raises:
        InvalidOptionError: not a non-empty str of at most 200 characters, or
            holding braces, colons, whitespace or control characters.
    """
    if not isinstance(sid, str) or not sid or len(sid) > MAX_SCHEDULER_ID:
        raise InvalidOptionError(
            f"scheduler id must be a non-empty str of at most {MAX_SCHEDULER_ID} characters, "
            f"got {sid!r}")
    for ch in sid:
        if ch in _FORBIDDEN or ch.isspace() or ord(ch) < 32 or ord(ch) == 127:
            raise InvalidOptionError(f"scheduler id {sid!r} contains forbidden character {ch!r}")
    return sid


def tick_of(job_id: str) -> tuple[str, int] | None:
    """``(scheduler id, tick ms)`` of a job a scheduler created, else None."""
    if not job_id.startswith("sched-"):
        return None
    sid, _, tick = job_id[6:].rpartition("-")
    return (sid, int(tick)) if sid and tick.isdigit() else None


def _instant_ms(field: str, value: Any) -> int:
    if value is None:
        return -1
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidOptionError(f"{field} must be a timezone-aware datetime, got {value!r}")
        return int(value.timestamp() * 1000)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
            and value >= 0:
        return int(value * 1000)
    raise InvalidOptionError(
        f"{field} must be an aware datetime or epoch seconds >= 0, got {value!r}")


def encode_scheduler(encode_job: Any, sid: str, *, cron: str | None, tz: str | None,
                     every: float | None, template: JobTemplate, limit: int | None,
                     start: Any, end: Any, misfire_grace: float | None) -> dict[str, Any]:
    """Validate an upsert: the config map for glidemq_upsert_scheduler (no ticks yet)
    plus its packed template under "tpl" (the function's third argument).

    Raises:
        InvalidOptionError: naming the bad argument.
        PayloadTooLargeError: the template's data is over the size limit.
    """
    validate_scheduler_id(sid)
    if (cron is None) == (every is None):
        raise InvalidOptionError("give exactly one of cron= or every=")
    if not isinstance(template, JobTemplate):
        raise InvalidOptionError(f"template must be a JobTemplate, got {template!r}")
    unknown = set(template.opts) - set(JobOptions.__struct_fields__)
    if unknown:
        raise InvalidOptionError(f"template: unknown job option(s): {', '.join(sorted(unknown))}")
    for name in _REJECTED_OPTS:
        if template.opts.get(name):
            raise InvalidOptionError(
                f"template option {name!r} is not allowed: a scheduled job runs at its tick "
                "(use start= or cron=) and belongs to no flow")
    opts = make_options(**template.opts)
    spec = encode_job(template.name, template.data, None, opts)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise InvalidOptionError(f"limit must be an int >= 1 or None, got {limit!r}")
    if misfire_grace is not None and (not isinstance(misfire_grace, int | float)
                                      or not math.isfinite(misfire_grace) or misfire_grace < 0):
        raise InvalidOptionError(
            f"misfire_grace must be seconds >= 0 or None, got {misfire_grace!r}")
    start_ms, end_ms = _instant_ms("start", start), _instant_ms("end", end)
    if start_ms >= 0 and end_ms >= 0 and end_ms < start_ms:
        raise InvalidOptionError(f"end ({end!r}) is before start ({start!r})")
    every_ms = 0
    if every is not None:
        if tz is not None:
            raise InvalidOptionError("tz= applies to cron= only")
        if not isinstance(every, int | float) or isinstance(every, bool) \
                or not math.isfinite(every) or every < 0.001:
            raise InvalidOptionError(f"every must be seconds >= 0.001, got {every!r}")
        every_ms = round(every * 1000)
    else:
        if not cron_is_valid(cron):
            raise InvalidOptionError(f"cron must be a valid cron expression, got {cron!r}")
        tz = tz or "UTC"
        zone(tz)
    return {"kind": "every" if every is not None else "cron", "every": every_ms,
            "cron": cron or "", "tz": tz or "", "start": start_ms, "end": end_ms,
            "limit": limit or 0,
            "grace": -1 if misfire_grace is None else round(misfire_grace * 1000),
            "ticks": [], "tpl": _pack(spec)}


def first_cron_ticks(config: dict[str, Any], now_ms: int) -> list[int]:
    """The batch an upsert stores: ticks after ``now`` (and at or after ``start``)."""
    after = max(now_ms, config["start"] - 1)
    return cron_ticks(config["cron"], config["tz"], after, until_ms=config["end"])


def _ms(raw: Any) -> int | None:
    v = int(raw) if raw not in (None, b"") else -1
    return None if v < 0 else v


def decode_scheduler(sid: str, h: dict[bytes, bytes], score: float | None) -> JobScheduler:
    """Build a JobScheduler from its hash and index score."""
    spec = _unpack(h[b"tpl"])
    defaults = JobOptions()
    opts = decode_options(spec[3])
    tpl_opts = {f: getattr(opts, f) for f in JobOptions.__struct_fields__
                if getattr(opts, f) != getattr(defaults, f)}
    kind = h.get(b"kind")
    last = int(h.get(b"last") or 0)
    grace = int(h.get(b"grace") or -1)
    limit = int(h.get(b"limit") or 0)
    return JobScheduler(
        id=sid, template=JobTemplate(spec[1], codec.decode(spec[2]), tpl_opts),
        every=int(h[b"every"]) / 1000 if kind == b"every" else None,
        cron=h[b"cron"].decode() if kind == b"cron" else None,
        tz=h[b"tz"].decode() if kind == b"cron" else None,
        start_ms=_ms(h.get(b"start")), end_ms=_ms(h.get(b"end")),
        limit=limit or None, misfire_grace=None if grace < 0 else grace / 1000,
        count=int(h.get(b"count") or 0), skipped=int(h.get(b"skipped") or 0),
        last_tick_ms=last or None,
        next_tick_ms=None if score is None or math.isinf(score) else int(score),
        done=h.get(b"done") == b"1")


async def server_time_ms(connection: Connection, keys: QueueKeys) -> int:
    """The clock of the server holding the queue (cron instants start from it)."""
    return int(await connection.fcall("glidemq_server_time", keys.meta))


async def refill(connection: Connection, queue_name: str) -> int:
    """Top up every cron scheduler of a queue whose batch of ticks runs low.

    Costs one SMEMBERS when none does. Safe to run from any number of
    consumers at once: the server ignores ticks it already holds.

    Returns:
        The number of ticks stored.
    """
    keys = QueueKeys(queue_name)
    sk = SchedulerKeys(keys)
    c = connection.client()
    low = await c.smembers(sk.refill)
    stored = 0
    for raw in sorted(low):
        sid = raw.decode()
        kind, cron, tz, rev, start, end, last = await c.hmget(
            sk.scheduler(sid), "kind", "cron", "tz", "rev", "start", "end", "last")
        ticks: list[int] = []
        if kind == b"cron":
            tail = await c.lindex(sk.ticks(sid), -1)
            last_ms = int(last or 0)
            if tail is not None:
                after = max(int(tail), last_ms)
            else:
                # The batch ran dry (nobody refilled in time, or nobody ran):
                # include the newest past tick so the missed-tick policy can
                # run it, unless it already ran.
                now = await server_time_ms(connection, keys)
                prev = cron_prev(cron.decode(), tz.decode(), now)
                after = max(last_ms, int(start or -1) - 1, prev - 1)
            ticks = cron_ticks(cron.decode(), tz.decode(), after, until_ms=int(end or -1))
        n = int(await connection.fcall("glidemq_refill_scheduler", keys.meta, sid,
                                       rev or b"", _pack(ticks)))
        stored += max(0, n)
    return stored


async def refill_forever(connection: Connection, queue_name: str,
                         interval: float = REFILL_INTERVAL) -> None:
    """Actor: :func:`refill` at start and every ``interval`` seconds; never raises."""
    while True:
        try:
            n = await refill(connection, queue_name)
            if n:
                log.debug("queue %s: stored %d cron ticks", queue_name, n)
        except (GlidemqError, vex.ValkeyError, OSError) as exc:
            log.warning("queue %s: scheduler refill failed: %s", queue_name, exc)
        except Exception:  # a refill bug must not stop the consumer that hosts it
            log.exception("queue %s: scheduler refill failed", queue_name)
        await anyio.sleep(interval)


class SchedulersMixin:
    """The job scheduler methods of :class:`glidemq.engine.queue.Queue`."""

    keys: QueueKeys
    connection: Connection

    if TYPE_CHECKING:
        async def _call(self, fn: str, *args: Any) -> Any: ...

        def _encode_job(self, name: str, data: Any, job_id: str | None, opts: JobOptions
                        ) -> list[Any]: ...

    async def upsert_job_scheduler(
        self, scheduler_id: str, *, template: JobTemplate, cron: str | None = None,
        tz: str | None = None, every: float | None = None, limit: int | None = None,
        start: Any = None, end: Any = None, misfire_grace: float | None = None,
    ) -> JobScheduler:
        """Create or update a scheduler that adds ``template`` as a job on every tick.

        Exactly one job per tick however many consumers run: a tick is made
        inside the atomic fetch of whichever consumer passes its instant
        first, with the id ``sched-<scheduler_id>-<tick ms>``. ``every`` ticks
        sit on a grid anchored at ``start`` (or at the first upsert, which
        ticks at once), so they never drift. Missed ticks (nobody fetched in
        time): only the newest due tick runs, late; older ones are skipped
        and counted. With ``misfire_grace`` a tick later than that is skipped
        too. Re-upserting the same timing keeps the schedule's position and
        count; a new timing never re-runs a tick at or before the last one.

        Args:
            scheduler_id: the scheduler's name (no braces, colons, whitespace).
            template: the job to create: ``JobTemplate(name, data, opts)``,
                ``opts`` as for ``Queue.add`` except delay, depends_on, parent.
            cron: a cron expression (5 fields, or 6 with seconds last).
            tz: IANA zone the cron expression is read in (default UTC).
            every: interval in seconds (instead of cron).
            limit: stop after this many jobs.
            start / end: aware datetime or epoch seconds; no tick outside.
            misfire_grace: seconds a tick may be late and still run.

        Returns:
            The stored scheduler.

        Raises:
            InvalidOptionError: a bad argument, naming it.
            PayloadTooLargeError: the template's data is over the size limit.
        """
        config = encode_scheduler(
            self._encode_job, scheduler_id, cron=cron, tz=tz, every=every, template=template,
            limit=limit, start=start, end=end, misfire_grace=misfire_grace)
        if config["kind"] == "cron":
            now = await server_time_ms(self.connection, self.keys)
            config["ticks"] = first_cron_ticks(config, now)
            if not config["ticks"] and config["end"] < 0:
                raise InvalidOptionError(f"cron {cron!r} never matches again")
        tpl = config.pop("tpl")
        await self._call("glidemq_upsert_scheduler", scheduler_id, _pack(config), tpl)
        found = await self.get_job_scheduler(scheduler_id)
        if found is None:  # removed between the two calls
            raise InvalidOptionError(f"scheduler {scheduler_id!r} was removed while upserting")
        return found

    async def get_job_scheduler(self, scheduler_id: str) -> JobScheduler | None:
        """One scheduler, or None."""
        sk = SchedulerKeys(self.keys)
        c = self.connection.client()
        h = await c.hgetall(sk.scheduler(scheduler_id))
        if not h:
            return None
        return decode_scheduler(scheduler_id, h, await c.zscore(sk.index, scheduler_id))

    async def get_job_schedulers(self) -> list[JobScheduler]:
        """Every scheduler of this queue, the next to tick first."""
        out = []
        for raw in await self.connection.client().zrange(SchedulerKeys(self.keys).index, 0, -1):
            found = await self.get_job_scheduler(raw.decode())
            if found is not None:
                out.append(found)
        return out

    async def remove_job_scheduler(self, scheduler_id: str) -> bool:
        """Delete a scheduler; no tick runs after this. Jobs it made stay.

        Returns:
            False if there was no such scheduler.
        """
        return bool(await self._call("glidemq_remove_scheduler", scheduler_id))
