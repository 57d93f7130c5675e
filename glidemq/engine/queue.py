"""Queue: the producer and admin API of one queue.

Every state change is one server function call (see glidemq/lua/). Reads
that need no atomicity (a job hash, a range of ids) are plain commands.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from glidemq.engine import codec, deps, tracing
from glidemq.engine.connection import Connection
from glidemq.engine.events import QueueEvents
from glidemq.engine.job import (
    Job,
    JobOptions,
    JobState,
    from_hash,
    make_options,
    retention_spec,
)
from glidemq.engine.keys import QueueKeys, validate_job_id
from glidemq.engine.limits import LimitsMixin
from glidemq.engine.metrics import MetricsMixin
from glidemq.engine.schedulers import SchedulersMixin
from glidemq.errors import InvalidOptionError

DEFAULT_EVENTS_MAXLEN = 10_000
MAX_LOG_LINES = 1000
BULK_CHUNK = 500

_opts_encoder = msgspec.json.Encoder()
_pack = msgspec.msgpack.Encoder().encode


class JobSpec(msgspec.Struct, frozen=True):
    """One job for :meth:`Queue.add_bulk` (same options as :meth:`Queue.add`)."""

    name: str
    data: Any = None
    job_id: str | None = None
    opts: dict[str, Any] = {}


class Queue(LimitsMixin, MetricsMixin, SchedulersMixin):
    """Producer and admin handle on one queue.

    Args:
        name: queue name (see :func:`glidemq.engine.keys.validate_queue_name`).
        connection: a :class:`Connection` or URL.
        events: keep the lifecycle events stream (False skips the writes).
        events_maxlen: approximate cap of the events stream.
        max_payload: size limit in bytes for data, progress, logs.

    Raises:
        InvalidQueueNameError: the name is not valid.
    """

    def __init__(
        self,
        name: str,
        connection: Connection | str | None = None,
        *,
        events: bool = True,
        events_maxlen: int = DEFAULT_EVENTS_MAXLEN,
        max_payload: int = codec.DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self.keys = QueueKeys(name)
        self.name = name
        self.connection = Connection.of(connection)
        self.events_maxlen = events_maxlen if events else 0
        self.max_payload = max_payload
        self._waiter: QueueEvents | None = None  # add_and_wait's reader, made on first use

    async def __aenter__(self) -> Queue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close this queue's connection."""
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            await waiter.close()
        await self.connection.close()

    async def _call(self, fn: str, *args: Any) -> Any:
        return await self.connection.fcall(fn, self.keys.meta, *args)

    # --- adding -------------------------------------------------------------------
    def _encode_job(self, name: str, data: Any, job_id: str | None, opts: JobOptions) -> list[Any]:
        if not isinstance(name, str):
            raise InvalidOptionError(f"job name must be a str, got {name!r}")
        if job_id is not None:
            validate_job_id(job_id)
        raw = codec.encode(data, f"data of job {name!r}", self.max_payload)
        return [job_id or "", name, raw.decode(), _opts_encoder.encode(opts).decode(),
                int(opts.delay * 1000), opts.priority, 1 if opts.lifo else 0,
                retention_spec(opts.remove_on_complete), retention_spec(opts.remove_on_fail),
                self._ext(opts)]

    def _ext(self, opts: JobOptions) -> dict[str, Any] | None:
        """Feature options for the Lua hooks (_dedup.lua, _limits.lua, _flows.lua)."""
        ext: dict[str, Any] = {}
        if opts.dedup is not None:
            d = opts.dedup
            ext["dedup"] = {"id": d.id, "mode": d.mode,
                            "ttl": -1 if d.ttl is None else int(d.ttl * 1000)}
        if opts.group is not None:
            ext["group"] = opts.group
        if opts.cost != 1:
            ext["cost"] = opts.cost
        if opts.depends_on:
            ext["deps"] = opts.depends_on
        if opts.parent is not None:
            ext["parent"] = opts.parent
        return ext or None

    async def add(self, name: str, data: Any = None, *, job_id: str | None = None,
                  **options: Any) -> Job:
        """Add one job.

        Options: delay (s), priority (0 = highest), lifo, attempts, backoff,
        timeout, remove_on_complete, remove_on_fail. An existing ``job_id``
        returns the existing job and writes nothing. ``dedup=Dedup(id, mode,
        ttl)`` skips a duplicate add the same way (``job.deduplicated`` is
        True); ``group`` and ``cost`` are subject to the group's limits
        (:meth:`set_group_limits`).

        Raises:
            InvalidOptionError / InvalidJobIdError: a bad option, naming it.
            PayloadTooLargeError: data over the size limit (nothing written).
        """
        return (await self.add_bulk([JobSpec(name, data, job_id, options)]))[0]

    async def add_bulk(self, jobs: Iterable[JobSpec | tuple[str, Any]]) -> list[Job]:
        """Add many jobs, one server call per chunk of 500.

        Every job is validated before anything is written.

        Raises:
            Same as :meth:`add`; nothing is written if any job is invalid.
        """
        specs = [j if isinstance(j, JobSpec) else JobSpec(j[0], j[1]) for j in jobs]
        if not tracing.active():
            return await self._add_bulk(specs, None)
        with tracing.add_span("glidemq.add", self.name, len(specs)) as carrier:
            return await self._add_bulk(specs, carrier)

    async def _add_bulk(self, specs: list[JobSpec], trace: dict[str, str] | None
                        ) -> list[Job]:
        opts: list[JobOptions] = []
        encoded: list[list[Any]] = []
        for spec in specs:
            unknown = set(spec.opts) - set(JobOptions.__struct_fields__)
            if unknown:
                raise InvalidOptionError(f"unknown job option(s): {', '.join(sorted(unknown))}")
            o = make_options(**spec.opts)
            if trace and o.trace is None:
                o = msgspec.structs.replace(o, trace=trace)
            opts.append(o)
            encoded.append(self._encode_job(spec.name, spec.data, spec.job_id, o))
        linked = any(o.depends_on for o in opts)
        if linked:
            await deps.check_dependencies(self, specs, opts)
        out: list[Job] = []
        for start in range(0, len(specs), BULK_CHUNK):
            chunk = encoded[start:start + BULK_CHUNK]
            reply = await self._call("glidemq_add", self.events_maxlen, _pack(chunk))
            for i in range(len(chunk)):
                jid = reply[3 * i].decode()
                k = start + i
                if reply[3 * i + 1]:
                    existing = await self.get_job(jid)
                    if existing is not None:
                        existing.deduplicated = reply[3 * i + 1] == 2
                        out.append(existing)
                        continue
                    if reply[3 * i + 1] == 2:  # throttled by a job removed since
                        out.append(Job(id=jid, name=specs[start + i].name, state=None,
                                       queue_name=self.name, deduplicated=True)._bind(self))
                        continue
                spec = specs[k]
                state = (JobState.DELAYED if opts[k].delay > 0 else
                         JobState.PRIORITIZED if opts[k].priority else JobState.WAITING)
                out.append(Job(id=jid, name=spec.name, data=spec.data, opts=opts[k],
                               timestamp=int(reply[3 * i + 2]), state=state,
                               queue_name=self.name)._bind(self))
        if linked:
            await deps.link_dependencies(self, out)
            for job in out:  # waits, runs or failed: the server decided
                if job.opts.depends_on:
                    job.state = await self.get_job_state(job.id) or job.state
        return out

    # --- reading ------------------------------------------------------------------
    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        h = await self.connection.client().hgetall(self.keys.job(job_id))
        if not h:
            return None
        return from_hash(job_id, h, self.name)._bind(self)

    async def get_job_state(self, job_id: str) -> JobState | None:
        """The stored state of a job, or None if it does not exist."""
        s = await self.connection.client().hget(self.keys.job(job_id), "s")
        return JobState(s.decode()) if s else None

    async def get_children_values(self, job_id: str) -> dict[str, Any]:
        """Return values of a job's completed children and dependencies.

        Returns:
            ``{"queue/id": return value}``; children not completed are absent.
        """
        return await deps.children_values(self.connection, self.name, job_id)

    async def get_job_logs(self, job_id: str) -> list[str]:
        """The log lines of a job, oldest first."""
        rows = await self.connection.client().lrange(self.keys.log(job_id), 0, -1)
        return [r.decode() for r in rows]

    async def get_jobs(self, state: JobState | str, start: int = 0, end: int = -1) -> list[Job]:
        """Jobs in one state; waiting jobs in the order they will run."""
        state = JobState(state)
        c = self.connection.client()
        k = self.keys
        if state is JobState.WAITING:
            ids = await c.lrange(k.wait, -(end + 1) if end >= 0 else 0, -(start + 1))
            ids = list(reversed(ids))
        else:
            key = {JobState.ACTIVE: k.active, JobState.DELAYED: k.delayed,
                   JobState.PRIORITIZED: k.prio, JobState.COMPLETED: k.completed,
                   JobState.FAILED: k.failed,
                   JobState.WAITING_CHILDREN: k.prefix + "waiting-children"}[state]
            ids = await c.zrange(key, start, end)
        jobs = []
        for raw in ids:
            job = await self.get_job(raw.decode())
            if job is not None:
                jobs.append(job)
        return jobs

    async def get_job_counts(self) -> dict[JobState, int]:
        """Counts by state, read atomically in one call.

        Every job is in exactly one state, so the counts add up to the jobs
        added minus those removed (waiting-children included).
        """
        r = await self._call("glidemq_counts")
        counts = dict(zip(list(JobState)[:6], (int(x) for x in r[:6]), strict=True))
        counts[JobState.WAITING_CHILDREN] = int(r[8])
        return counts

    async def stale_rejections(self) -> int:
        """How many completions were rejected for a stale fencing token, ever."""
        return int((await self._call("glidemq_counts"))[7])

    # --- admin --------------------------------------------------------------------
    async def pause(self) -> None:
        """Stop every worker from claiming new jobs (in-flight jobs finish)."""
        await self._call("glidemq_pause", "1", self.events_maxlen)

    async def resume(self) -> None:
        """Let workers claim again."""
        await self._call("glidemq_pause", "0", self.events_maxlen)

    async def is_paused(self) -> bool:
        """True while the queue is paused."""
        return bool((await self._call("glidemq_counts"))[6])

    async def drain(self, delayed: bool = False) -> int:
        """Remove all waiting and prioritized jobs (and delayed ones if asked)."""
        total = 0
        while n := int(await self._call("glidemq_drain", "1" if delayed else "0")):
            total += n
        return total

    async def clean(self, grace: float, limit: int, state: JobState | str = JobState.COMPLETED
                    ) -> list[str]:
        """Remove up to ``limit`` jobs of ``state`` older than ``grace`` seconds.

        Raises:
            InvalidOptionError: negative grace or limit.
            JobStateError: ``state`` is active.
        """
        if grace < 0 or limit < 0:
            raise InvalidOptionError(f"grace and limit must be >= 0, got {grace!r}, {limit!r}")
        state = JobState(state)
        removed: list[str] = []
        while len(removed) < limit:
            batch = await self._call("glidemq_clean", state.value, int(grace * 1000),
                                     min(1000, limit - len(removed)))
            if not batch:
                break
            removed.extend(b.decode() for b in batch)
        return removed

    async def obliterate(self, force: bool = False) -> None:
        """Delete the queue and every job in it.

        Raises:
            QueueNotEmptyError: jobs are active and ``force`` is False.
        """
        while int(await self._call("glidemq_obliterate", "1" if force else "0")):
            pass

    async def remove(self, job_id: str) -> bool:
        """Remove a job that is not active; False if it did not exist.

        Raises:
            JobStateError: the job is active.
        """
        return bool(await self._call("glidemq_remove", job_id, self.events_maxlen))

    async def retry_jobs(self, state: JobState | str = JobState.FAILED, count: int = 0) -> int:
        """Move failed (or completed) jobs back to waiting; ``count`` 0 means all."""
        state = JobState(state)
        if state not in (JobState.FAILED, JobState.COMPLETED):
            raise InvalidOptionError(f"state must be 'failed' or 'completed', got {state.value!r}")
        moved = 0
        while count == 0 or moved < count:
            step = 1000 if count == 0 else min(1000, count - moved)
            n = int(await self._call("glidemq_retry_jobs", state.value, step, self.events_maxlen))
            moved += n
            if n == 0:
                break
        return moved

    async def promote(self, job_id: str) -> None:
        """Make a delayed job runnable now.

        Raises:
            JobNotFoundError / JobStateError: missing, or not delayed.
        """
        await self._call("glidemq_promote", job_id)

    async def update_data(self, job_id: str, data: Any) -> None:
        """Replace a job's data. Raises PayloadTooLargeError, JobNotFoundError."""
        raw = codec.encode(data, f"data of job {job_id!r}", self.max_payload)
        await self._call("glidemq_update_data", job_id, raw)

    async def _progress(self, job_id: str, token: int, progress: Any) -> None:
        raw = codec.encode(progress, f"progress of job {job_id!r}", self.max_payload)
        await self._call("glidemq_progress", job_id, str(token) if token else "", raw,
                         self.events_maxlen)

    async def _log(self, job_id: str, token: int, line: str) -> int:
        raw = codec.encode(line, f"log line of job {job_id!r}", self.max_payload)
        del raw
        return int(await self._call("glidemq_log", job_id, str(token) if token else "", line,
                                    MAX_LOG_LINES))

    async def events(self, count: int = 100) -> Sequence[tuple[str, dict[str, str]]]:
        """The latest ``count`` lifecycle events, oldest first (id, fields)."""
        rows = await self.connection.client().xrevrange(self.keys.events, count=count)
        return [(i.decode(), {k.decode(): v.decode() for k, v in f.items()})
                for i, f in reversed(rows)]

    # --- request-reply ------------------------------------------------------------
    async def add_and_wait(self, name: str, data: Any = None, *,
                           timeout: float = 30.0,  # noqa: ASYNC109 - bounds server-side reads
                           job_id: str | None = None, **options: Any) -> Any:
        """Add a job and wait for its result (request-reply).

        Records the events stream tail *before* adding, so the job's outcome
        cannot be missed however fast a worker is; the job hash is re-read
        every few seconds and at the deadline (see
        :meth:`QueueEvents.wait_until_finished`). The blocking reads use one
        client of this queue's, closed with it.

        Args:
            name / data / job_id / options: as for :meth:`add`.
            timeout: seconds to wait for the outcome.

        Returns:
            The job's return value.

        Raises:
            InvalidOptionError: remove_on_complete / remove_on_fail would delete
                the job as it finishes (its result must stay readable), or any
                :meth:`add` option error.
            JobFailedError: the job failed for good (``failed_reason``).
            WaitTimeoutError: no outcome within ``timeout`` (the job stays queued).
            GlidemqConnectionError: Valkey could not be reached.
        """
        for opt in ("remove_on_complete", "remove_on_fail"):
            value = options.get(opt, False)
            if value is True or (isinstance(value, int) and not isinstance(value, bool)
                                 and value == 0) or getattr(value, "count", None) == 0 \
                    or getattr(value, "age", None) == 0:
                raise InvalidOptionError(
                    f"add_and_wait needs the finished job to stay readable; got {opt}={value!r}")
        if self._waiter is None:
            self._waiter = QueueEvents(self.name, self.connection)
        after = await self._waiter.tail()
        job = await self.add(name, data, job_id=job_id, **options)
        return await self._waiter.wait_until_finished(job.id, timeout, after=after)
