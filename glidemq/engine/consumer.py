"""Consumer: the hot-path client of one queue, shared by Worker and supervisor.

One :meth:`Consumer.fetch` is one server call that applies a batch of
outcomes, promotes due delayed jobs, reclaims stalled ones and claims the
next jobs. Lock renewal is one call for every in-flight job. An idle caller
blocks server-side in :meth:`Consumer.wait` on the queue's marker list, which
every add pushes to. No task scheduling here: callers decide concurrency.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import msgspec

from glidemq.engine import codec
from glidemq.engine.connection import Connection, close_client
from glidemq.engine.job import Job, JobOptions, decode_options
from glidemq.engine.keys import QueueKeys, root, validate_queue_name
from glidemq.engine.queue import DEFAULT_EVENTS_MAXLEN, MAX_LOG_LINES
from glidemq.errors import GlidemqConnectionError, InvalidOptionError, PayloadTooLargeError

log = logging.getLogger(__name__)

_decode_json = msgspec.json.decode
_pack = msgspec.msgpack.Encoder().encode


class Finish(msgspec.Struct, frozen=True, array_like=True):
    """The outcome of one claimed job, applied by the next :meth:`Consumer.fetch`."""

    job_id: str
    token: int
    kind: str  # "c" completed, "f" failed, "r" released, "d" deferred
    value: str = ""
    stacktrace: str = ""
    retry_delay_ms: int = -1

    @classmethod
    def completed(cls, job: Job, value_json: bytes) -> Finish:
        """Completed with a JSON-encoded return value."""
        return cls(job.id, job.token, "c", value_json.decode())

    @classmethod
    def failed(cls, job: Job, reason: str, stacktrace: str = "", retry_delay_ms: int = -1
               ) -> Finish:
        """Failed; ``retry_delay_ms`` >= 0 retries after that delay, -1 is terminal."""
        return cls(job.id, job.token, "f", reason, stacktrace, retry_delay_ms)

    @classmethod
    def deferred(cls, job: Job, delay_ms: int) -> Finish:
        """Back to delayed for ``delay_ms`` without using an attempt (rate limited)."""
        return cls(job.id, job.token, "d", "", "", max(0, int(delay_ms)))

    @classmethod
    def released(cls, job: Job) -> Finish:
        """Back to the head of the queue, no attempt used (never started)."""
        return cls(job.id, job.token, "r")


class FetchResult(msgspec.Struct):
    """What one fetch returned."""

    jobs: list[Job]
    wake_ms: int | None
    rejected: int
    outbox: int = 0  # cross-slot flow notices to relay (see relay())


class Consumer:
    """Claims and finishes jobs of one queue in batches.

    Args:
        connection: Connection or URL.
        queue_name: the queue.
        lock_ms: lock duration of a claim; renew with :meth:`extend` before it lapses.
        max_stalled_count: reclaims allowed before a stalled job fails.
        dead_letter_queue: queue that receives terminally failed jobs. It must
            share the queue's root (the part before the first '.') so the move
            is atomic on one cluster slot, e.g. "orders.dead" for "orders".
        events: write lifecycle events.

    Raises:
        InvalidOptionError: bad lock, stall count or dead-letter queue name.
    """

    def __init__(
        self,
        connection: Connection | str | None,
        queue_name: str,
        *,
        lock_ms: int = 30_000,
        max_stalled_count: int = 1,
        dead_letter_queue: str | None = None,
        events: bool = True,
        events_maxlen: int = DEFAULT_EVENTS_MAXLEN,
        max_payload: int = codec.DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self.keys = QueueKeys(queue_name)
        self.name = queue_name
        self.connection = Connection.of(connection)
        if not isinstance(lock_ms, int) or lock_ms < 100:
            raise InvalidOptionError(f"lock_ms must be an int >= 100, got {lock_ms!r}")
        if not isinstance(max_stalled_count, int) or max_stalled_count < 0:
            raise InvalidOptionError(
                f"max_stalled_count must be an int >= 0, got {max_stalled_count!r}")
        if dead_letter_queue is not None:
            validate_queue_name(dead_letter_queue)
            if root(dead_letter_queue) != root(queue_name) or dead_letter_queue == queue_name:
                raise InvalidOptionError(
                    f"dead_letter_queue {dead_letter_queue!r} must differ from {queue_name!r} "
                    f"and share its root: name it '{root(queue_name)}.<suffix>' so the move "
                    "stays atomic on one cluster slot")
        self.lock_ms = lock_ms
        self.max_stalled_count = max_stalled_count
        self.dead_letter_queue = dead_letter_queue or ""
        self.events_maxlen = events_maxlen if events else 0
        self.max_payload = max_payload
        self._opts_cache: dict[bytes, JobOptions] = {}
        self._malformed: list[Finish] = []
        self._blocking: Any = None

    async def start(self) -> None:
        """Connect and make sure the server runs this library version."""
        await self.connection.ensure_library()

    async def fetch(self, finishes: Sequence[Finish], claim: int) -> FetchResult:
        """Apply ``finishes`` and claim up to ``claim`` jobs, in one server call.

        Jobs found malformed are not returned: they are failed with a
        "malformed" reason by a follow-up call at once (or, if that call
        does not get through, by the next fetch), and the caller carries on.

        Raises:
            GlidemqConnectionError: the call did not reach the server; the
                finishes were not applied (retry them).
        """
        pending = self._malformed
        if pending:
            self._malformed = []
            finishes = [*finishes, *pending]
        try:
            flat, wake_ms, rejected, outbox = await self.connection.fcall(
                "glidemq_fetch", self.keys.meta, self.lock_ms, claim, self.max_stalled_count,
                self.events_maxlen, self.dead_letter_queue, _pack(finishes) if finishes else "")
        except BaseException:
            self._malformed = pending + self._malformed
            raise
        jobs: list[Job] = []
        cache = self._opts_cache
        name = self.name
        for i in range(0, len(flat), 8):
            jid = flat[i].decode()
            token = int(flat[i + 1])
            raw_opts = flat[i + 4]
            try:
                opts = cache.get(raw_opts)
                if opts is None:
                    opts = decode_options(raw_opts)
                    if len(cache) < 256:
                        cache[raw_opts] = opts
                job = Job(jid, flat[i + 2].decode(), _decode_json(flat[i + 3]), opts,
                          int(flat[i + 5]), int(flat[i + 7]), timestamp=int(flat[i + 6]),
                          token=token, state="active", queue_name=name)
            except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("job %s of queue %s is malformed (%s); failing it", jid, name, exc)
                self._malformed.append(Finish(jid, token, "f", f"malformed: {exc}", "", -1))
                continue
            jobs.append(job)
        rejected = int(rejected)
        if self._malformed and claim > 0:
            # Fail them now: an idle caller may not fetch again for a long time.
            try:
                rejected += (await self.fetch((), 0)).rejected
            except GlidemqConnectionError as exc:
                log.warning("queue %s: could not fail malformed jobs yet: %s", name, exc)
        return FetchResult(jobs, None if wake_ms < 0 else int(wake_ms), rejected, int(outbox))

    async def relay(self) -> None:
        """Deliver this queue's cross-slot flow notices (see glidemq.engine.flows)."""
        from glidemq.engine.flows import relay_outbox

        await relay_outbox(self)

    async def extend(self, held: Sequence[tuple[str, int]]) -> list[str]:
        """Renew the locks of ``(job_id, token)`` pairs; returns ids we no longer hold."""
        if not held:
            return []
        args: list[Any] = [self.lock_ms]
        for jid, tok in held:
            args += (jid, tok)
        lost = await self.connection.fcall("glidemq_extend", self.keys.meta, *args)
        return [x.decode() for x in lost]

    async def wait(self, seconds: float) -> bool:
        """Block server-side until a job is added or ``seconds`` pass.

        Uses a client of its own so blocking never holds the shared pool.
        """
        if self._blocking is None:
            self._blocking = self.connection.new_client()
        try:
            got = await self._blocking.blpop([self.keys.marker], timeout=max(0.001, seconds))
        except Exception:
            # A fresh client next time: a cluster client that lost every node
            # never reconnects (see Connection.drop_client).
            client, self._blocking = self._blocking, None
            with contextlib.suppress(Exception):
                await close_client(client)
            raise
        return got is not None

    async def wake(self) -> None:
        """Push a marker back (a woken caller that could not take work)."""
        await self.connection.client().lpush(self.keys.marker, "1")

    async def progress(self, job_id: str, token: int, progress_json: bytes) -> None:
        """Store a job's progress (already JSON). Raises PayloadTooLargeError."""
        if len(progress_json) > self.max_payload:
            raise PayloadTooLargeError(
                f"progress of job {job_id!r} is {len(progress_json)} bytes encoded; "
                f"the limit is {self.max_payload} bytes")
        await self.connection.fcall("glidemq_progress", self.keys.meta, job_id, token,
                                    progress_json, self.events_maxlen)

    async def log(self, job_id: str, token: int, line: str) -> None:
        """Append a log line to a job. Raises PayloadTooLargeError."""
        if len(line.encode()) > self.max_payload:
            raise PayloadTooLargeError(
                f"log line of job {job_id!r} is over the {self.max_payload}-byte limit")
        await self.connection.fcall("glidemq_log", self.keys.meta, job_id, token, line,
                                    MAX_LOG_LINES)

    async def close(self) -> None:
        """Close the blocking client (the shared connection belongs to its owner)."""
        if self._blocking is not None:
            client, self._blocking = self._blocking, None
            await close_client(client)
