"""QueueEvents: typed, resumable reading of a queue's lifecycle events stream.

Every state change the server functions make is appended to the queue's
``events`` stream (``XADD MAXLEN ~ events_maxlen``, see ``emit`` in
``glidemq/lua/_prelude.lua``). This module turns its entries into a tagged
union of msgspec Structs, reads them with ``XREAD BLOCK`` on a client of its
own (blocking never holds the shared pool), and waits for one job's outcome.
It owns no task and writes nothing.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
from valkey import exceptions as vex

from glidemq.engine import codec
from glidemq.engine.connection import Connection, close_client
from glidemq.engine.fcall import TRANSIENT, translate
from glidemq.engine.keys import QueueKeys
from glidemq.errors import InvalidOptionError, JobFailedError, JobNotFoundError, WaitTimeoutError

log = logging.getLogger(__name__)

#: How often a waiter re-reads the job hash while events keep it busy or are
#: off: the fallback for a trimmed stream or a queue with events disabled.
HASH_CHECK_INTERVAL = 2.0
_RETRY: tuple[type[BaseException], ...] = (*TRANSIENT, vex.ValkeyClusterException)


class QueueEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", rename="camel"):
    """Base of every event: ``id`` is the stream entry id, ``job_id`` the job ("" if none)."""

    id: str = ""
    job_id: str = ""

    @property
    def timestamp(self) -> int:
        """Server time of the event, ms since the epoch (from the entry id)."""
        return int(self.id.partition("-")[0] or 0)

    @property
    def kind(self) -> str:
        """The event's name as written by the server ("added", "completed", ...)."""
        return str(type(self).__struct_config__.tag)


class Added(QueueEvent, frozen=True, tag="added"):
    """A job was added (by a producer, a scheduler tick or a dead-letter move)."""

    name: str = ""
    scheduler: str | None = None  # the job scheduler that created it


class Active(QueueEvent, frozen=True, tag="active"):
    """A consumer claimed the job."""


class Progress(QueueEvent, frozen=True, tag="progress"):
    """The handler reported progress (``data`` is the decoded JSON value)."""

    data: Any = None


class Completed(QueueEvent, frozen=True, tag="completed"):
    """The job completed; its return value is in the job hash."""


class Failed(QueueEvent, frozen=True, tag="failed"):
    """The job failed for good (no attempt left, unrecoverable, or stalled too often)."""

    failed_reason: str = ""


class Retrying(QueueEvent, frozen=True, tag="retrying"):
    """An attempt failed; the job runs again after ``delay`` ms."""

    failed_reason: str = ""
    delay: int = 0


class Delayed(QueueEvent, frozen=True, tag="delayed"):
    """The handler deferred the job by ``delay`` ms (rate limited) without using an attempt."""

    delay: int = 0


class Stalled(QueueEvent, frozen=True, tag="stalled"):
    """The job's lock expired and a consumer reclaimed it."""


class Removed(QueueEvent, frozen=True, tag="removed"):
    """The job was removed."""

    reason: str = ""


class Retried(QueueEvent, frozen=True, tag="retried"):
    """A finished job was moved back to waiting (``Queue.retry_jobs``)."""


class Paused(QueueEvent, frozen=True, tag="paused"):
    """The queue was paused."""


class Resumed(QueueEvent, frozen=True, tag="resumed"):
    """The queue was resumed."""


class PoolStopped(QueueEvent, frozen=True, tag="pool-stopped"):
    """A supervisor stopped spawning children for this queue (boot error, or
    more crashes than its restart intensity allows); ``pid`` is the supervisor's."""

    reason: str = ""
    pid: str = ""


class UnknownEvent(QueueEvent, frozen=True, tag="unknown"):
    """An event this client has no type for (a newer server, another feature): never an error."""

    event_name: str = ""
    fields: dict[str, str] = {}

    @property
    def kind(self) -> str:
        return self.event_name


Event = (Added | Active | Progress | Completed | Failed | Retrying | Delayed | Stalled
         | Removed | Retried | Paused | Resumed | PoolStopped)
_JSON_FIELDS = {"progress": "data"}


def parse_event(entry_id: str, fields: dict[str, str]) -> QueueEvent:
    """One stream entry as a typed event; unknown or malformed ones become :class:`UnknownEvent`."""
    name = fields.get("event", "")
    data: dict[str, Any] = {**fields, "id": entry_id}
    json_field = _JSON_FIELDS.get(name)
    if json_field is not None and json_field in data:
        try:
            data[json_field] = codec.decode(data[json_field])
        except msgspec.DecodeError:
            pass
    try:
        return msgspec.convert(data, Event, strict=False)  # type: ignore[no-any-return]
    except msgspec.ValidationError:
        return UnknownEvent(id=entry_id, job_id=fields.get("jobId", ""), event_name=name,
                            fields=fields)


def _text(raw: Any) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


class QueueEvents:
    """The events of one queue, as an async iterator of :class:`QueueEvent`.

    ``async for event in QueueEvents("orders", conn): match event: case Completed(): ...``

    Reading is resumable: :attr:`last_id` is the id of the last event handed
    out; pass it as ``last_id`` to a new QueueEvents to continue after it
    without loss (as long as the stream, capped at about ``events_maxlen``
    entries, still holds it). ``"$"`` starts after the newest event at the
    moment of the first read, ``"0"`` at the oldest kept.

    Args:
        queue_name: the queue.
        connection: a :class:`Connection` or URL; only its settings are used
            for the blocking reads, which run on a client of their own.
        last_id: ``"$"``, ``"0"`` or an entry id to continue after.
        block: longest server-side wait per read, seconds.
        count: entries fetched per read.

    Raises:
        InvalidQueueNameError: the name is not valid.
        InvalidOptionError: ``block`` or ``count`` out of range.
    """

    def __init__(self, queue_name: str, connection: Connection | str | None = None, *,
                 last_id: str = "$", block: float = 5.0, count: int = 100) -> None:
        self.keys = QueueKeys(queue_name)
        self.name = queue_name
        self.connection = Connection.of(connection)
        if not isinstance(block, int | float) or block <= 0:
            raise InvalidOptionError(f"block must be > 0 s, got {block!r}")
        if not isinstance(count, int) or count < 1:
            raise InvalidOptionError(f"count must be an int >= 1, got {count!r}")
        self.last_id = "0-0" if last_id in ("0", "0-0") else last_id
        self.block = float(block)
        self.count = count
        self._client: Any = None
        self._buffer: deque[QueueEvent] = deque()
        self._backoff = 0.05

    async def __aenter__(self) -> QueueEvents:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the blocking client (a shared Connection stays open)."""
        if self._client is not None:
            client, self._client = self._client, None
            await close_client(client)

    async def start(self) -> None:
        """Pin ``"$"`` to the newest entry id now, so nothing added later is missed.

        Called by ``async with`` and by the first read; call it yourself to
        mark "from here on" before doing something whose events you want.
        """
        if self.last_id == "$":
            self.last_id = await self.tail()

    async def tail(self) -> str:
        """The id of the newest entry in the stream ("0-0" when it is empty).

        Raises:
            GlidemqConnectionError: Valkey could not be reached.
        """
        try:
            rows = await self._run("XREVRANGE", self.keys.events, "+", "-", "COUNT", 1)
        except (vex.ValkeyError, OSError) as exc:
            await self._drop()
            raise translate(exc) from exc
        return _text(rows[0][0]) if rows else "0-0"

    def __aiter__(self) -> AsyncIterator[QueueEvent]:
        return self

    async def __anext__(self) -> QueueEvent:
        await self.start()
        while not self._buffer:
            for event in await self._read(self.last_id, self.block):
                self._buffer.append(event)
        event = self._buffer.popleft()
        self.last_id = event.id
        return event

    async def _read(self, after: str, block: float) -> list[QueueEvent]:
        """One XREAD; connection trouble is retried with backoff (the cursor is kept)."""
        try:
            reply = await self._run("XREAD", "COUNT", self.count, "BLOCK",
                                    max(1, int(block * 1000)), "STREAMS", self.keys.events,
                                    after)
        except _RETRY as exc:
            log.warning("events of %s: %s; retrying in %.2fs", self.name, exc, self._backoff)
            await self._drop()
            await anyio.sleep(self._backoff)
            self._backoff = min(5.0, self._backoff * 2)
            return []
        self._backoff = 0.05
        out: list[QueueEvent] = []
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                out.append(parse_event(_text(entry_id),
                                       {_text(k): _text(v) for k, v in fields.items()}))
        return out

    async def _run(self, *args: Any) -> Any:
        if self._client is None:
            self._client = self.connection.new_client()
        c = self._client
        if not self.connection.cluster:
            return await c.execute_command(*args)
        # Route by our key ourselves: valkey-py would otherwise ask the
        # server for the keys of XREAD (a round trip per read).
        try:
            await c.initialize()
            return await c.execute_command(
                *args, target_nodes=c.get_node_from_key(self.keys.events))
        except (vex.MovedError, vex.AskError):
            await self._drop()
            raise vex.ConnectionError("cluster slots moved") from None

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await close_client(client)
            except Exception as exc:  # already broken: nothing to release
                log.debug("closing events client of %s: %s", self.name, exc)

    # --- waiting for one job ----------------------------------------------------
    # A timeout argument, not fail_after: it bounds the server-side BLOCK of
    # each read (a cancelled blocking read would cost the connection) and
    # ends with a last look at the job hash.
    async def wait_until_finished(self, job_id: str, timeout: float | None = None,  # noqa: ASYNC109
                                  *, after: str | None = None) -> Any:
        """Wait for a job to complete and return its return value.

        Reads from the stream tail as of this call (or from ``after``), with a
        cursor of its own: iterating the same QueueEvents is not disturbed. A
        job that already finished answers at once from its hash, and the hash
        is re-read every few seconds and at the deadline, so a trimmed stream
        or a queue with events disabled still gets an answer.

        Args:
            job_id: the job.
            timeout: seconds; None waits for ever.
            after: a stream id recorded before the job was added (so its
                events cannot be missed); default: the tail now.

        Returns:
            The job's return value (decoded JSON).

        Raises:
            JobFailedError: the job failed for good (``failed_reason`` set).
            WaitTimeoutError: it did not finish within ``timeout``.
            JobNotFoundError: it finished but its hash is gone (removed on
                completion), so its return value cannot be read.
            GlidemqConnectionError: Valkey could not be reached for the
                first or last look at the job (reads in between retry).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        cursor = after if after is not None else await self.tail()
        finished, value = await self._outcome(job_id)
        if finished:
            return value
        checked = time.monotonic()
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                finished, value = await self._outcome(job_id)
                if finished:
                    return value
                raise WaitTimeoutError(job_id, float(timeout or 0))
            block = self.block if left is None else min(self.block, left)
            events = await self._read(cursor, min(block, HASH_CHECK_INTERVAL))
            for event in events:
                cursor = event.id
                if event.job_id != job_id:
                    continue
                if isinstance(event, Failed):
                    raise JobFailedError(job_id, event.failed_reason)
                if isinstance(event, Completed):
                    finished, value = await self._outcome(job_id, completed=True)
                    if finished:
                        return value
            if not events or time.monotonic() - checked >= HASH_CHECK_INTERVAL:
                checked = time.monotonic()
                finished, value = await self._outcome(job_id)
                if finished:
                    return value

    async def _outcome(self, job_id: str, completed: bool = False) -> tuple[bool, Any]:
        """(finished, return value) from the job hash; raises for a failed job."""
        try:
            state, rv, reason = await self.connection.client().hmget(
                self.keys.job(job_id), "s", "rv", "fr")
        except (vex.ValkeyError, OSError) as exc:
            raise translate(exc) from exc
        if state == b"completed":
            return True, codec.decode(rv)
        if state == b"failed":
            raise JobFailedError(job_id, _text(reason) if reason is not None else "")
        if completed and state is None:
            raise JobNotFoundError(
                f"job {job_id!r} completed but was removed (remove_on_complete); "
                "its return value is gone")
        return False, None
