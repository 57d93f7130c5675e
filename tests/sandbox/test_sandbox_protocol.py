"""Every pipe message round-trips through the codec of its direction."""

from __future__ import annotations

import msgspec
import pytest

from glidemq.sandbox import protocol
from glidemq.sandbox.protocol import (
    BootError,
    Failure,
    Hello,
    Idle,
    JobSpec,
    Log,
    Progress,
    Result,
    Run,
    Shutdown,
    Started,
    child_codec,
    supervisor_codec,
)

SPEC = JobSpec(
    id="42",
    name="resize",
    data=b'{"w":640,"tags":["a","\\u00e9"]}',
    attempts_made=2,
    opts={"attempts": 3, "backoff": {"type": "fixed", "delay": 10}},
    token=7,
    soft_timeout=1.5,
)

TO_CHILD = [Run(jobs=[SPEC, JobSpec(id="43", name="x")]), Run(jobs=[]), Shutdown()]
TO_SUPERVISOR = [
    Hello(protocol=1, pid=1234, python="cpython 3.11.7", handler="app.jobs:handle"),
    BootError(type="HandlerImportError", message="no module", traceback="Traceback ..."),
    Started(job_id="42"),
    Progress(job_id="42", progress=b"50"),
    Log(job_id="42", line="step \u00e9 done"),
    Result(job_id="42", value=b'{"ok":true}'),
    Failure(job_id="42", type="ValueError", message="bad", traceback="tb", unrecoverable=True),
    Failure(job_id="42", type="ValueError", message="bad"),
    Idle(rss_bytes=50 * 1024 * 1024, jobs_done=3),
]


@pytest.mark.parametrize("message", TO_CHILD, ids=lambda m: type(m).__name__)
def test_to_child_round_trip(message: protocol.ToChild) -> None:
    encoder, _ = supervisor_codec()
    _, decoder = child_codec()
    assert decoder.decode(encoder.encode(message)) == message


@pytest.mark.parametrize("message", TO_SUPERVISOR, ids=lambda m: type(m).__name__)
def test_to_supervisor_round_trip(message: protocol.ToSupervisor) -> None:
    encoder, _ = child_codec()
    _, decoder = supervisor_codec()
    assert decoder.decode(encoder.encode(message)) == message


def test_every_message_class_is_covered() -> None:
    """A new message type must join a union and these tests."""
    covered = {type(m) for m in TO_CHILD + TO_SUPERVISOR}
    base = protocol.Message
    declared = {
        c for c in vars(protocol).values() if isinstance(c, type) and issubclass(c, base)
    } - {base}
    assert covered == declared


def test_tags_are_class_names_and_messages_are_frozen() -> None:
    """The tag is the wire contract: renaming a class would break old peers."""
    encoded = msgspec.msgpack.decode(msgspec.msgpack.encode(Started(job_id="1")))
    assert encoded == {"msg": "Started", "job_id": "1"}
    with pytest.raises(AttributeError):
        Started(job_id="1").job_id = "2"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Started("1")  # type: ignore[misc]  # keyword-only


def test_a_message_of_the_other_direction_is_refused() -> None:
    """One union per direction: a child never accepts a Hello, the supervisor never a Run."""
    _, child_decoder = child_codec()
    _, supervisor_decoder = supervisor_codec()
    with pytest.raises(msgspec.ValidationError):
        child_decoder.decode(msgspec.msgpack.encode(Started(job_id="1")))
    with pytest.raises(msgspec.ValidationError):
        supervisor_decoder.decode(msgspec.msgpack.encode(Shutdown()))


def test_unknown_fields_from_a_newer_peer_are_ignored() -> None:
    """Schema evolution: a newer peer may add fields (with defaults); older ones skip them."""
    _, decoder = supervisor_codec()
    newer = {"msg": "Idle", "rss_bytes": 1, "jobs_done": 2, "cpu_seconds": 0.5}
    assert decoder.decode(msgspec.msgpack.encode(newer)) == Idle(rss_bytes=1, jobs_done=2)


def test_job_spec_defaults_are_omitted_on_the_wire() -> None:
    small = msgspec.msgpack.decode(msgspec.msgpack.encode(JobSpec(id="1", name="n")))
    assert small == {"id": "1", "name": "n"}
    assert JobSpec(id="1", name="n").data == b"null"
