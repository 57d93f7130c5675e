"""Queue names and the key layout.

Every key of a queue is ``glidemq:{<root>}:<name>:<suffix>``. The hash tag is
the queue name's *root*: the part before the first ``.``. Queues sharing a
root ("orders", "orders.dlq") live on one cluster slot, which is what lets a
dead-letter move happen inside one atomic server call. Different roots spread
over the cluster.
"""

from __future__ import annotations

from glidemq.errors import InvalidJobIdError, InvalidQueueNameError

MAX_QUEUE_NAME = 128
MAX_JOB_ID = 256
_FORBIDDEN = set("{}:")


def _bad_char(text: str) -> str | None:
    for ch in text:
        if ch in _FORBIDDEN or ch.isspace() or ord(ch) < 32 or ord(ch) == 127:
            return ch
    return None


def validate_queue_name(name: object) -> str:
    """Return ``name`` if it can be a queue name.

    Raises:
        InvalidQueueNameError: empty, longer than 128 characters, not a str,
            or containing braces, colons, whitespace or control characters
            (they would break the hash tag or the key layout).
    """
    if not isinstance(name, str):
        raise InvalidQueueNameError(f"queue name must be a str, got {type(name).__name__}")
    if not name:
        raise InvalidQueueNameError("queue name must not be empty")
    if len(name) > MAX_QUEUE_NAME:
        raise InvalidQueueNameError(
            f"queue name {name[:20]!r}... is {len(name)} characters; the limit is {MAX_QUEUE_NAME}"
        )
    bad = _bad_char(name)
    if bad is not None:
        raise InvalidQueueNameError(
            f"queue name {name!r} contains {bad!r}; braces, colons, whitespace and "
            "control characters are not allowed"
        )
    if name.startswith(".") or name.endswith("."):
        raise InvalidQueueNameError(f"queue name {name!r} must not start or end with '.'")
    return name


def validate_job_id(job_id: object) -> str:
    """Return ``job_id`` if it can be a custom job id.

    Raises:
        InvalidJobIdError: not a non-empty str of at most 256 characters,
            all digits (those are reserved for generated ids, so a custom id
            can never collide with one), or holding braces, colons,
            whitespace or control characters.
    """
    if not isinstance(job_id, str) or not job_id:
        raise InvalidJobIdError(f"job_id must be a non-empty str, got {job_id!r}")
    if len(job_id) > MAX_JOB_ID:
        raise InvalidJobIdError(f"job_id is {len(job_id)} characters; the limit is {MAX_JOB_ID}")
    if job_id.isdigit():
        raise InvalidJobIdError(
            f"job_id {job_id!r} is all digits; numeric ids are reserved for generated ids"
        )
    bad = _bad_char(job_id)
    if bad is not None:
        raise InvalidJobIdError(f"job_id {job_id!r} contains forbidden character {bad!r}")
    return job_id


def root(name: str) -> str:
    """The hash-tag root of a queue name: everything before the first '.'."""
    return name.split(".", 1)[0]


def prefix(name: str) -> str:
    """Key prefix of queue ``name``: ``glidemq:{root}:name:``."""
    return f"glidemq:{{{root(name)}}}:{name}:"


class QueueKeys:
    """The keys of one queue, computed once."""

    __slots__ = ("name", "prefix", "meta", "wait", "prio", "delayed", "active",
                 "completed", "failed", "events", "marker")

    def __init__(self, name: str) -> None:
        self.name = validate_queue_name(name)
        p = self.prefix = prefix(name)
        self.meta = p + "meta"
        self.wait = p + "wait"
        self.prio = p + "prio"
        self.delayed = p + "delayed"
        self.active = p + "active"
        self.completed = p + "completed"
        self.failed = p + "failed"
        self.events = p + "events"
        self.marker = p + "marker"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def log(self, job_id: str) -> str:
        return f"{self.prefix}log:{job_id}"
