"""Job, its options and states.

A :class:`Job` is a msgspec Struct decoded from the job hash. Field names in
the hash are short (see docs/ARCHITECTURE.md); this module is the only place
that maps them.
"""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING, Any

import msgspec

from glidemq.engine import codec
from glidemq.engine.deps import MAX_DEPENDENCIES, validate_ref
from glidemq.errors import InvalidOptionError

if TYPE_CHECKING:
    from glidemq.engine.events import QueueEvents
    from glidemq.engine.queue import Queue

MAX_PRIORITY = 2**21


class JobState(enum.StrEnum):
    """Where a job is. Named sets below group them."""

    WAITING = "waiting"
    ACTIVE = "active"
    DELAYED = "delayed"
    PRIORITIZED = "prioritized"
    COMPLETED = "completed"
    FAILED = "failed"
    WAITING_CHILDREN = "waiting-children"  # waits for its children / dependencies


PENDING_STATES = frozenset({JobState.WAITING, JobState.DELAYED, JobState.PRIORITIZED})
FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.FAILED})


class Backoff(msgspec.Struct, frozen=True, omit_defaults=True):
    """Retry delay policy.

    ``type`` is "fixed", "exponential" (delay * 2**(retry-1)) or the name of a
    custom strategy registered on the Worker. ``delay`` is in seconds;
    ``jitter`` in [0, 1] shortens each delay by up to that fraction at random.
    """

    type: str = "fixed"
    delay: float = 1.0
    jitter: float = 0.0


class KeepJobs(msgspec.Struct, frozen=True, omit_defaults=True):
    """Retention: keep at most ``count`` finished jobs and none older than ``age`` seconds."""

    count: int | None = None
    age: float | None = None


Retention = bool | int | KeepJobs


class Dedup(msgspec.Struct, frozen=True, omit_defaults=True):
    """Deduplication of adds by ``id``.

    ``mode``: "simple" (skip while a job with this id is not finished),
    "throttle" (skip within ``ttl`` seconds of the last accepted add),
    "debounce" (a newer add replaces a still-delayed job, within ``ttl``).
    """

    id: str
    mode: str = "simple"
    ttl: float | None = None


class JobOptions(msgspec.Struct, frozen=True, omit_defaults=True):
    """Options fixed at add time (stored with the job as JSON)."""

    delay: float = 0.0
    priority: int = 0
    lifo: bool = False
    attempts: int = 1
    backoff: Backoff | None = None
    timeout: float | None = None
    remove_on_complete: bool | int | KeepJobs = False
    remove_on_fail: bool | int | KeepJobs = False
    dedup: Dedup | None = None
    group: str | None = None  # group / ordering key (per-group limits and FIFO)
    cost: int = 1  # token-bucket cost
    depends_on: list[str] = []  # job ids this job waits for ("queue/id" across queues)
    parent: str | None = None  # "queue/id" of the flow parent (set by FlowProducer)
    trace: dict[str, str] | None = None  # OpenTelemetry context carrier


class Job(msgspec.Struct, dict=True):
    """One job. ``token`` is the fencing token of the current claim (0 if none)."""

    id: str
    name: str
    data: Any = None
    opts: JobOptions = JobOptions()
    attempts_made: int = 0
    stalled_count: int = 0
    progress: Any = None
    return_value: Any = None
    failed_reason: str | None = None
    stacktrace: list[str] = []
    timestamp: int = 0
    processed_on: int | None = None
    finished_on: int | None = None
    state: str | None = None
    token: int = 0
    queue_name: str = ""
    deduplicated: bool = False  # add() returned an existing job because of ``dedup``

    def _bind(self, queue: Queue | None) -> Job:
        self.__dict__["_queue"] = queue
        return self

    def _require_queue(self) -> Queue:
        q = self.__dict__.get("_queue")
        if q is None:
            raise RuntimeError("this Job is not bound to a Queue")
        return q  # type: ignore[no-any-return]

    async def update_data(self, data: Any) -> None:
        """Replace the job's data. Raises PayloadTooLargeError, JobNotFoundError."""
        await self._require_queue().update_data(self.id, data)
        self.data = data

    async def update_progress(self, progress: Any) -> None:
        """Store progress (any JSON value) and emit a progress event."""
        await self._require_queue()._progress(self.id, self.token, progress)
        self.progress = progress

    async def log(self, line: str) -> int:
        """Append a line to the job's log; returns the number of lines kept."""
        return await self._require_queue()._log(self.id, self.token, line)

    async def get_state(self) -> JobState | None:
        """The job's current state as stored in Valkey (None if it is gone)."""
        return await self._require_queue().get_job_state(self.id)

    async def wait_until_finished(self, events: QueueEvents,
                                  timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Wait for this job's outcome through ``events`` (a QueueEvents of its queue).

        Returns:
            The return value.

        Raises:
            JobFailedError / WaitTimeoutError / JobNotFoundError: see
                :meth:`QueueEvents.wait_until_finished`.
        """
        return await events.wait_until_finished(self.id, timeout)

    async def get_children_values(self) -> dict[str, Any]:
        """Return values of this job's completed children and dependencies.

        Returns:
            ``{"queue/id": return value}``; a child that has not completed
            (or failed under ``on_child_failure="ignore"``) is absent.
        """
        owner = self._require_queue()
        getter = getattr(owner, "get_children_values", None)
        if getter is not None:
            return await getter(self.id)  # type: ignore[no-any-return]
        # The Worker's job channel: read through its consumer's connection.
        from glidemq.engine.deps import children_values

        consumer = getattr(owner, "_c")  # noqa: B009
        return await children_values(consumer.connection, self.queue_name, self.id)


def _number(field: str, value: Any, *, lo: float = 0.0, integer: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and integer:
        ok = isinstance(value, int)
    if not ok or not math.isfinite(value) or value < lo:
        kind = "an int" if integer else "a number"
        raise InvalidOptionError(f"{field} must be {kind} >= {lo:g}, got {value!r}")


def _retention(field: str, value: Any) -> Retention:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        _number(field, value, integer=True)
        return value
    if isinstance(value, KeepJobs):
        if value.count is not None:
            _number(f"{field}.count", value.count, integer=True)
        if value.age is not None:
            _number(f"{field}.age", value.age)
        return value
    raise InvalidOptionError(f"{field} must be a bool, an int >= 0 or KeepJobs, got {value!r}")


DEDUP_MODES = ("simple", "throttle", "debounce")
MAX_KEY_PART = 256  # dedup ids and group names become part of a key


def _dedup(value: Any) -> Dedup:
    if isinstance(value, dict):
        try:
            value = msgspec.convert(value, Dedup)
        except msgspec.ValidationError as exc:
            raise InvalidOptionError(f"dedup: {exc}") from None
    if not isinstance(value, Dedup):
        raise InvalidOptionError(f"dedup must be a Dedup or dict, got {value!r}")
    if not isinstance(value.id, str) or not value.id or len(value.id) > MAX_KEY_PART:
        raise InvalidOptionError(
            f"dedup.id must be a non-empty str of at most {MAX_KEY_PART} characters, "
            f"got {value.id!r}")
    if value.mode not in DEDUP_MODES:
        raise InvalidOptionError(
            f"dedup.mode must be one of {', '.join(DEDUP_MODES)}, got {value.mode!r}")
    if value.ttl is None:
        if value.mode != "simple":
            raise InvalidOptionError(f"dedup.ttl is required for mode {value.mode!r} (seconds > 0)")
    else:
        _number("dedup.ttl", value.ttl)
        if value.ttl * 1000 < 1:
            raise InvalidOptionError(f"dedup.ttl must be at least 0.001 s, got {value.ttl!r}")
    return value


def retention_spec(value: Retention) -> str:
    """Encode retention for the Lua side: "" keep all, "count:age_ms"."""
    if value is False:
        return ""
    if value is True:
        return "0:-1"
    if isinstance(value, int):
        return f"{value}:-1"
    count = -1 if value.count is None else value.count
    age = -1 if value.age is None else int(value.age * 1000)
    return f"{count}:{age}"


def make_options(
    *, delay: Any = 0.0, priority: Any = 0, lifo: Any = False, attempts: Any = 1,
    backoff: Any = None, timeout: Any = None, remove_on_complete: Any = False,
    remove_on_fail: Any = False, dedup: Any = None, group: Any = None, cost: Any = 1,
    depends_on: Any = (), parent: Any = None, trace: Any = None,
) -> JobOptions:
    """Validate add() options into a JobOptions.

    Raises:
        InvalidOptionError: naming the option, the value and what was expected.
    """
    _number("delay", delay)
    _number("priority", priority, integer=True)
    if priority > MAX_PRIORITY:
        raise InvalidOptionError(f"priority must be <= {MAX_PRIORITY}, got {priority}")
    if not isinstance(lifo, bool):
        raise InvalidOptionError(f"lifo must be a bool, got {lifo!r}")
    _number("attempts", attempts, lo=1, integer=True)
    if backoff is not None:
        if isinstance(backoff, dict):
            unknown = set(backoff) - set(Backoff.__struct_fields__)
            if unknown:  # a typo ("dealy") would otherwise silently mean the default
                raise InvalidOptionError(
                    f"backoff: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                    f"expected {', '.join(Backoff.__struct_fields__)}")
            try:
                backoff = msgspec.convert(backoff, Backoff)
            except msgspec.ValidationError as exc:
                raise InvalidOptionError(f"backoff: {exc}") from None
        if not isinstance(backoff, Backoff):
            raise InvalidOptionError(f"backoff must be a Backoff or dict, got {backoff!r}")
        _number("backoff.delay", backoff.delay)
        if not 0.0 <= backoff.jitter <= 1.0:
            raise InvalidOptionError(f"backoff.jitter must be in [0, 1], got {backoff.jitter!r}")
        if not isinstance(backoff.type, str) or not backoff.type:
            raise InvalidOptionError(f"backoff.type must be a non-empty str, got {backoff.type!r}")
    if timeout is not None:
        _number("timeout", timeout)
        if timeout == 0:
            raise InvalidOptionError("timeout must be > 0 or None, got 0")
    if lifo and priority:
        raise InvalidOptionError("lifo=True cannot be combined with priority > 0")
    if dedup is not None:
        dedup = _dedup(dedup)
    if group is not None and (not isinstance(group, str) or not group or len(group) > MAX_KEY_PART):
        raise InvalidOptionError(
            f"group must be a non-empty str of at most {MAX_KEY_PART} characters, got {group!r}")
    _number("cost", cost, lo=1, integer=True)
    if cost != 1 and group is None:
        raise InvalidOptionError(
            f"cost={cost!r} needs a group: cost is drawn from the group's token bucket")
    if isinstance(depends_on, str | bytes) or not isinstance(depends_on, list | tuple):
        raise InvalidOptionError(
            f"depends_on must be a list of job refs ('id' or 'queue/id'), got {depends_on!r}")
    depends_on = list(dict.fromkeys(validate_ref(d) for d in depends_on))
    if len(depends_on) > MAX_DEPENDENCIES:
        raise InvalidOptionError(
            f"depends_on has {len(depends_on)} jobs; the limit is {MAX_DEPENDENCIES}")
    if parent is not None:
        raise InvalidOptionError(
            f"parent is set by FlowProducer.add, got {parent!r}; to wait for existing jobs "
            "pass depends_on")
    return JobOptions(
        dedup=dedup, group=group, cost=cost, depends_on=list(depends_on), parent=parent,
        trace=trace,
        delay=float(delay), priority=priority, lifo=lifo, attempts=attempts, backoff=backoff,
        timeout=timeout, remove_on_complete=_retention("remove_on_complete", remove_on_complete),
        remove_on_fail=_retention("remove_on_fail", remove_on_fail),
    )


_opts_decoder = msgspec.json.Decoder(JobOptions)


def decode_options(raw: bytes | str | None) -> JobOptions:
    """Decode stored options; a missing field gives defaults."""
    if not raw:
        return JobOptions()
    return _opts_decoder.decode(raw)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _int(v: Any) -> int | None:
    if v is None or v == b"" or v == "":
        return None
    return int(v)


def from_hash(job_id: str, h: dict[bytes, bytes], queue_name: str = "") -> Job:
    """Build a Job from HGETALL of its hash.

    Raises:
        ValueError / msgspec.DecodeError: the hash is malformed.
    """
    g = h.get
    st = g(b"st")
    stack = codec.decode(st) if st and st.startswith(b"[") else ([_s(st)] if st else [])
    fr = g(b"fr")
    return Job(
        id=job_id, name=_s(g(b"n", b"")), data=codec.decode(g(b"d")),
        opts=decode_options(g(b"o")), attempts_made=_int(g(b"atm")) or 0,
        stalled_count=_int(g(b"stc")) or 0, progress=codec.decode(g(b"pg")),
        return_value=codec.decode(g(b"rv")), failed_reason=_s(fr) if fr is not None else None,
        stacktrace=stack, timestamp=_int(g(b"ts")) or 0, processed_on=_int(g(b"pon")),
        finished_on=_int(g(b"fon")), state=_s(g(b"s")) if g(b"s") else None,
        queue_name=queue_name,
    )
