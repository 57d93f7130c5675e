"""Frames survive any split of the byte stream; the child's blocking channel works over a socket."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import msgspec
import pytest

from glidemq.errors import ProtocolError
from glidemq.sandbox.framing import (
    HEADER,
    BlockingChannel,
    ChannelClosed,
    FrameReader,
    encode_frame,
)
from glidemq.sandbox.protocol import (
    Idle,
    JobSpec,
    Log,
    Run,
    Shutdown,
    ToChild,
    ToSupervisor,
    child_codec,
    supervisor_codec,
)

MESSAGES = [Log(job_id=str(i), line="x" * i * 37) for i in range(20)]


def _stream() -> bytes:
    encoder = msgspec.msgpack.Encoder()
    return b"".join(encode_frame(encoder, m) for m in MESSAGES)


def test_frame_is_length_then_msgpack() -> None:
    encoder, _ = child_codec()
    frame = encode_frame(encoder, Idle(rss_bytes=1, jobs_done=2))
    (size,) = HEADER.unpack_from(frame)
    assert size == len(frame) - 4
    assert msgspec.msgpack.decode(frame[4:], type=Idle) == Idle(rss_bytes=1, jobs_done=2)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64, 4096, 1 << 20])
def test_partial_reads_yield_whole_frames(chunk: int) -> None:
    data = _stream()
    reader = FrameReader()
    _, decoder = supervisor_codec()
    out = []
    for start in range(0, len(data), chunk):
        reader.feed(data[start : start + chunk])
        while (frame := reader.next_frame()) is not None:
            out.append(decoder.decode(frame))
    assert out == MESSAGES
    assert reader.buffered == 0


def test_incomplete_frame_waits() -> None:
    data = _stream()
    reader = FrameReader()
    reader.feed(data[:3])
    assert reader.next_frame() is None
    reader.feed(data[3:6])
    assert reader.next_frame() is None
    assert reader.buffered == 6


def test_oversized_length_is_a_protocol_error() -> None:
    reader = FrameReader(max_frame=100)
    reader.feed(HEADER.pack(101) + b"x" * 10)
    with pytest.raises(ProtocolError, match="101"):
        reader.next_frame()


@pytest.fixture
def pair() -> Iterator[tuple[BlockingChannel[ToChild], BlockingChannel[ToSupervisor]]]:
    a, b = socket.socketpair()
    child_enc, child_dec = child_codec()
    sup_enc, sup_dec = supervisor_codec()
    yield (
        BlockingChannel(a.fileno(), child_enc, child_dec),
        BlockingChannel(b.fileno(), sup_enc, sup_dec),
    )
    a.close()
    b.close()


def test_blocking_channel_round_trip_and_poll(
    pair: tuple[BlockingChannel[ToChild], BlockingChannel[ToSupervisor]],
) -> None:
    child, supervisor = pair
    assert child.poll() is None  # nothing sent yet, and poll never blocks
    payload = b'"' + b"y" * 5000 + b'"'
    big = Run(jobs=[JobSpec(id=str(i), name="n", data=payload) for i in range(200)])
    # A frame bigger than the socket buffer: write from a thread while the child reads.
    writer = threading.Thread(target=supervisor.send, args=(big,))
    writer.start()
    assert child.receive() == big
    writer.join()
    supervisor.send(Shutdown())
    supervisor.send(Shutdown())
    assert child.poll() == Shutdown()
    assert child.poll() == Shutdown()  # the second frame was already buffered
    assert child.poll() is None
    child.send(Idle(rss_bytes=1, jobs_done=0))
    assert supervisor.receive() == Idle(rss_bytes=1, jobs_done=0)


def test_blocking_channel_eof_and_closed_peer() -> None:
    a, b = socket.socketpair()
    enc, dec = child_codec()
    child: BlockingChannel[ToChild] = BlockingChannel(a.fileno(), enc, dec)
    b.close()
    assert child.receive() is None
    assert child.eof
    with pytest.raises(ChannelClosed):
        child.send(Idle(rss_bytes=1, jobs_done=0))
    a.close()


def test_blocking_channel_rejects_garbage() -> None:
    a, b = socket.socketpair()
    enc, dec = child_codec()
    child: BlockingChannel[ToChild] = BlockingChannel(a.fileno(), enc, dec)
    b.sendall(HEADER.pack(3) + b"\x01\x02\x03")
    with pytest.raises(ProtocolError, match="malformed"):
        child.receive()
    a.close()
    b.close()
