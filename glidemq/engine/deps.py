"""Job dependencies on the client side: refs, ``depends_on`` linking, the relay.

A dependency ref is ``"id"`` (a job of the same queue) or ``"queue/id"``; the
id is what follows the last ``/``. The server keeps every edge in the two job
hashes (``glidemq/lua/_flows.lua``); a dependency under another root (another
cluster slot) reports its end through a notice in its queue's outbox, which
:func:`relay` delivers: read a batch, apply it on the target slot
(``glidemq_flow_apply``, idempotent), then remove it (``glidemq_flow_ack``).
A relay that dies between the two leaves the notices in place; applying them
again changes nothing, so delivery is at-least-once and counting exactly-once.

Must not: keep state between calls (it all lives in Valkey), or import the
Queue (``queue.py`` imports this module).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from glidemq.engine import codec
from glidemq.engine.keys import MAX_JOB_ID, QueueKeys, root, validate_queue_name
from glidemq.errors import (
    CycleError,
    EngineError,
    GlidemqConnectionError,
    InvalidOptionError,
    JobNotFoundError,
)

if TYPE_CHECKING:
    from glidemq.engine.connection import Connection
    from glidemq.engine.job import Job, JobOptions
    from glidemq.engine.queue import JobSpec, Queue

log = logging.getLogger(__name__)

MAX_DEPENDENCIES = 1000  # DEP_CAP in _flows.lua: dependencies, and dependents, of one job
OUTBOX_BATCH = 100  # notices read and applied per round
MAX_RELAY_ROUNDS = 50  # rounds per relay() call; the next fetch relays the rest
_FORBIDDEN = set("{}:/")
_decode_notice = msgspec.msgpack.Decoder().decode


def validate_ref(ref: object, field: str = "depends_on") -> str:
    """Return ``ref`` if it names a job: ``"id"`` or ``"queue/id"``.

    Raises:
        InvalidOptionError: not a non-empty str, a bad queue name, or an id
            that is empty, too long, or holds braces, colons, slashes,
            whitespace or control characters.
    """
    if not isinstance(ref, str) or not ref:
        raise InvalidOptionError(f"{field}: a job ref must be a non-empty str, got {ref!r}")
    queue, _, job_id = ref.rpartition("/")
    if queue:
        validate_queue_name(queue)
    bad = [ch for ch in job_id if ch in _FORBIDDEN or ch.isspace() or ord(ch) < 32]
    if not job_id or len(job_id) > MAX_JOB_ID or bad:
        raise InvalidOptionError(
            f"{field}: {ref!r} is not a job ref; expected 'id' or 'queue/id' with an id of "
            f"1-{MAX_JOB_ID} characters without braces, colons, slashes or whitespace")
    return ref


def split_ref(ref: str, queue_name: str) -> tuple[str, str]:
    """``(queue, id)`` of a validated ref; a bare id belongs to ``queue_name``."""
    queue, _, job_id = ref.rpartition("/")
    return queue or queue_name, job_id


def full_ref(ref: str, queue_name: str) -> str:
    """The ``"queue/id"`` form of a ref (the form the server stores)."""
    return "/".join(split_ref(ref, queue_name))


# --- Queue.add(..., depends_on=[...]) -------------------------------------------------
async def check_dependencies(queue: Queue, specs: Sequence[JobSpec],
                             opts: Sequence[JobOptions]) -> None:
    """Refuse an add whose dependencies do not exist, before anything is written.

    A job may depend on a job added earlier in the same batch.

    Raises:
        CycleError: a job depends on itself.
        JobNotFoundError: a dependency does not exist.
    """
    earlier: set[str] = set()
    client = queue.connection.client()
    for spec, o in zip(specs, opts, strict=True):
        own = f"{queue.name}/{spec.job_id}" if spec.job_id else None
        for ref in o.depends_on:
            full = full_ref(ref, queue.name)
            if full == own:
                raise CycleError(f"depends_on: job {own!r} cannot depend on itself")
            if full in earlier:
                continue
            q, jid = split_ref(ref, queue.name)
            if not await client.exists(QueueKeys(q).job(jid)):
                raise JobNotFoundError(
                    f"depends_on: job {full!r} does not exist (add it first)")
        if own:
            earlier.add(own)


async def link_dependencies(queue: Queue, jobs: Sequence[Job]) -> None:
    """Register the added jobs with their dependencies under other roots.

    The add itself linked the dependencies under the queue's own root. Running
    this again for the same jobs changes nothing, so re-adding a job with the
    same custom id after an interruption completes its links.
    """
    to_relay: list[str] = []
    for job in jobs:
        me = f"{queue.name}/{job.id}"
        for ref in job.opts.depends_on:
            q, jid = split_ref(ref, queue.name)
            if root(q) == root(queue.name):
                continue
            if int(await queue.connection.fcall("glidemq_flow_register", QueueKeys(q).meta,
                                                jid, me)) and q not in to_relay:
                to_relay.append(q)
    for q in to_relay:
        await relay(queue.connection, q)


async def children_values(connection: Connection, queue_name: str, job_id: str
                          ) -> dict[str, Any]:
    """``{"queue/id": return value}`` of the completed dependencies of a job."""
    h = await connection.client().hgetall(QueueKeys(queue_name).job(job_id))
    return {k[3:].decode(): codec.decode(v) for k, v in h.items() if k.startswith(b"cv:")}


# --- the outbox relay -------------------------------------------------------------------
def outbox_key(queue_name: str) -> str:
    return QueueKeys(queue_name).prefix + "outbox"


async def read_outbox(connection: Connection, queue_name: str) -> list[bytes]:
    """The oldest notices of a queue's outbox (up to :data:`OUTBOX_BATCH`)."""
    return list(await connection.client().lrange(outbox_key(queue_name), 0, OUTBOX_BATCH - 1))


async def apply_notices(connection: Connection, notices: Sequence[bytes]
                        ) -> tuple[list[bytes], list[str]]:
    """Apply notices on their target slots, one call per target root.

    Returns:
        The notices applied (safe to remove) and the target queues whose own
        outbox now holds notices (a parent that finished in turn).
    """
    by_root: dict[str, list[bytes]] = {}
    first_queue: dict[str, str] = {}
    for raw in notices:
        target = _decode_notice(raw)[0]
        r = root(target)
        by_root.setdefault(r, []).append(raw)
        first_queue.setdefault(r, target)
    applied: list[bytes] = []
    more: list[str] = []
    for r, batch in by_root.items():
        target = first_queue[r]
        try:
            _, left = await connection.fcall("glidemq_flow_apply", QueueKeys(target).meta,
                                             *batch)
        except (EngineError, GlidemqConnectionError) as exc:
            # Kept for a later relay; a slot that is down must not stop the others.
            log.warning("flow notices for root %r not applied (kept for retry): %s", r, exc)
            continue
        applied.extend(batch)
        if int(left):
            more.append(target)
    return applied, more


async def ack_notices(connection: Connection, queue_name: str, notices: Sequence[bytes]
                      ) -> int:
    """Remove applied notices from a queue's outbox; returns how many are left."""
    if not notices:
        return -1
    return int(await connection.fcall("glidemq_flow_ack", QueueKeys(queue_name).meta,
                                      *notices))


async def relay(connection: Connection, queue_name: str) -> int:
    """Deliver a queue's cross-slot flow notices; returns how many were delivered.

    Follows notices that finishing a parent produced in its own queue's
    outbox, for at most :data:`MAX_RELAY_ROUNDS` rounds (a later call, e.g.
    the next fetch that reports an outbox, carries on).

    Raises:
        GlidemqConnectionError: the queue's own slot could not be reached; the
            notices stay in the outbox and a later relay delivers them (a
            target slot that cannot be reached only keeps its notices back).
    """
    todo = [queue_name]
    delivered = 0
    for _ in range(MAX_RELAY_ROUNDS):
        if not todo:
            break
        q = todo.pop(0)
        notices = await read_outbox(connection, q)
        if not notices:
            continue
        applied, more = await apply_notices(connection, notices)
        left = await ack_notices(connection, q, applied)
        delivered += len(applied)
        for m in more:
            if m not in todo:
                todo.append(m)
        if applied and left > 0 and q not in todo:
            todo.append(q)
    return delivered
