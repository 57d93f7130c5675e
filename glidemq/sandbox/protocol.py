"""The supervisor <-> child pipe protocol: one tagged union per direction.

Every message is a frozen, keyword-only msgspec Struct tagged with its class
name (in the field ``msg``), msgpack-encoded and sent as one length-prefixed frame (see
:mod:`glidemq.sandbox.framing`). Receivers decode straight into the union of
their direction and dispatch with ``match``.

Schema evolution rules (msgspec's): the class name is the wire tag, so a
message class is never renamed; a new field always gets a default; a field is
never removed or retyped. Bump :data:`PROTOCOL_VERSION` only for a change old
peers cannot ignore; the supervisor refuses a ``Hello`` of another version.

JSON payloads (job data, progress, return values) travel as the raw JSON bytes
the engine stores in Valkey, so neither side re-encodes them on the hot path.

Must not: import anything but msgspec and the standard library; this module
is loaded by both the supervisor and every child.
"""

from __future__ import annotations

from typing import Any

import msgspec

PROTOCOL_VERSION = 1


class Message(
    msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="msg", omit_defaults=True
):
    """Base of every pipe message; the tag, in field ``msg``, is the class name.

    (The tag field is not msgspec's default ``type``: ``Failure`` and
    ``BootError`` carry the exception type in a field of that name.)
    """


class JobSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One job as a child sees it: no lock, no queue, no credentials.

    ``token`` is the fencing token of the claim; the child never uses it, but
    carrying it lets the supervisor match every event to the exact claim.
    """

    id: str
    name: str
    data: bytes = b"null"  # raw JSON
    attempts_made: int = 0
    opts: dict[str, Any] = msgspec.field(default_factory=dict)
    token: int = 0
    soft_timeout: float | None = None  # seconds; None = no soft timeout


# --- supervisor -> child ----------------------------------------------------
class Run(Message, frozen=True, kw_only=True):
    """Run these jobs one after another (a micro-batch), then send ``Idle``."""

    jobs: list[JobSpec]


class Shutdown(Message, frozen=True, kw_only=True):
    """Finish the running job, skip the batch's unstarted jobs, exit 0."""


ToChild = Run | Shutdown


# --- child -> supervisor ----------------------------------------------------
class Hello(Message, frozen=True, kw_only=True):
    """First frame of a child that booted: limits applied, handler imported."""

    protocol: int
    pid: int
    python: str
    handler: str


class BootError(Message, frozen=True, kw_only=True):
    """First (and last) frame of a child that cannot boot; it then exits."""

    type: str
    message: str
    traceback: str = ""


class Started(Message, frozen=True, kw_only=True):
    """The handler was called for this job (from now on a crash costs it an attempt)."""

    job_id: str


class Progress(Message, frozen=True, kw_only=True):
    """``job.update_progress(value)``; ``progress`` is raw JSON."""

    job_id: str
    progress: bytes


class Log(Message, frozen=True, kw_only=True):
    """``job.log(line)``."""

    job_id: str
    line: str


class Result(Message, frozen=True, kw_only=True):
    """The handler returned; ``value`` is the return value as raw JSON."""

    job_id: str
    value: bytes


class Failure(Message, frozen=True, kw_only=True):
    """The handler raised; ``unrecoverable`` skips the remaining attempts.

    ``retry_after`` (seconds) is set when it raised ``RateLimitedError``: the
    job goes back to delayed for that long without using an attempt.
    """

    job_id: str
    type: str
    message: str
    traceback: str = ""
    unrecoverable: bool = False
    retry_after: float | None = None


class Idle(Message, frozen=True, kw_only=True):
    """The batch is over; the child waits for the next ``Run``.

    ``rss_bytes`` is the child's resident set now and ``jobs_done`` counts
    every job it finished since it started, so the supervisor can recycle it
    (max RSS, max jobs per child) without a round trip of its own.
    """

    rss_bytes: int
    jobs_done: int


ToSupervisor = Hello | BootError | Started | Progress | Log | Result | Failure | Idle


def child_codec() -> tuple[msgspec.msgpack.Encoder, msgspec.msgpack.Decoder[ToChild]]:
    """The one encoder/decoder pair a child keeps for its pipe."""
    return msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(ToChild)


def supervisor_codec() -> tuple[msgspec.msgpack.Encoder, msgspec.msgpack.Decoder[ToSupervisor]]:
    """The one encoder/decoder pair the supervisor keeps per child pipe."""
    return msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(ToSupervisor)
