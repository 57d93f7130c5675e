"""Length-prefixed frames: a 4-byte big-endian length, then one msgpack message.

:class:`FrameReader` is sans-IO: feed it whatever bytes a read returned, pull
complete frames out; partial frames wait in its buffer. The supervisor drives
it from async socket reads, the child from blocking ``os.read`` through
:class:`BlockingChannel`, so both sides cut frames the same way.

Must not: know message types (that is :mod:`glidemq.sandbox.protocol`) or
import an async library (the child stays synchronous and small).
"""

from __future__ import annotations

import os
import select
import struct
import threading
from typing import Any, Generic, TypeVar

import msgspec

from glidemq.errors import ProtocolError

T = TypeVar("T")

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024
"""A length above this is garbage on the pipe, not a message (payload limits are far lower)."""

_READ_SIZE = 256 * 1024


def encode_frame(encoder: msgspec.msgpack.Encoder, message: Any) -> bytearray:
    """Encode ``message`` behind its length prefix in one buffer (no extra copy)."""
    buf = bytearray(HEADER.size)
    encoder.encode_into(message, buf, HEADER.size)
    HEADER.pack_into(buf, 0, len(buf) - HEADER.size)
    return buf


class FrameReader:
    """Cut a byte stream into frames, whatever sizes the reads return."""

    __slots__ = ("_buf", "_max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max_frame = max_frame

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes read from the pipe."""
        self._buf += data

    def next_frame(self) -> bytes | None:
        """Return the next complete frame's payload, or None until more bytes arrive.

        Raises:
            ProtocolError: the length prefix is over ``max_frame``; the stream
                cannot be resynchronised after that.
        """
        buf = self._buf
        if len(buf) < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(buf, 0)
        if size > self._max_frame:
            raise ProtocolError(f"frame length {size} is over the limit of {self._max_frame} bytes")
        end = HEADER.size + size
        if len(buf) < end:
            return None
        frame = bytes(buf[HEADER.size : end])
        del buf[:end]  # bytearray deletes from the front in O(1)
        return frame

    @property
    def buffered(self) -> int:
        """Bytes held back as an incomplete frame."""
        return len(self._buf)


class ChannelClosed(BaseException):
    """The peer closed the pipe. A BaseException so handler code cannot swallow it."""


class BlockingChannel(Generic[T]):
    """The child's end of the protocol pipe: blocking reads, locked writes.

    Writes take a lock because a handler may call ``job.log()`` from a thread
    of its own, and two interleaved frames would corrupt the stream.
    """

    def __init__(
        self,
        fd: int,
        encoder: msgspec.msgpack.Encoder,
        decoder: msgspec.msgpack.Decoder[T],
    ) -> None:
        self.fd = fd
        self._encoder = encoder
        self._decoder = decoder
        self._reader = FrameReader()
        self._lock = threading.Lock()
        self.eof = False
        self.sending = False  # a signal handler must not raise into a half-written frame
        self._deferred = b""

    def defer(self, message: Any) -> None:
        """Queue a frame to go out with the next :meth:`send`, in the same write.

        A job's outcome is deferred until the next ``Started`` or ``Idle``
        (microseconds later): one write and one supervisor wake-up instead of two.
        """
        with self._lock:
            self._deferred += encode_frame(self._encoder, message)

    def send(self, message: Any) -> None:
        """Write one frame whole, after any deferred ones.

        Raises:
            ChannelClosed: the supervisor end is gone.
        """
        frame = memoryview(encode_frame(self._encoder, message))
        with self._lock:
            if self._deferred:
                frame, self._deferred = memoryview(self._deferred + bytes(frame)), b""
            self.sending = True
            try:
                while frame:
                    frame = frame[os.write(self.fd, frame) :]
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise ChannelClosed from exc
            finally:
                self.sending = False

    def receive(self) -> T | None:
        """Block until the next message; None at EOF.

        Raises:
            ProtocolError: a frame was malformed or of an unknown type.
        """
        while True:
            frame = self._reader.next_frame()
            if frame is not None:
                return self._decode(frame)
            if self.eof or not self._fill():
                return None

    def poll(self) -> T | None:
        """Return a message that is already buffered or readable, never block.

        The child calls this between the jobs of a batch to notice a
        ``Shutdown`` (or EOF) without a thread of its own.
        """
        frame = self._reader.next_frame()
        if frame is None and not self.eof:
            readable, _, _ = select.select([self.fd], [], [], 0)
            if readable:
                self._fill()
                frame = self._reader.next_frame()
                while frame is None and not self.eof and self._reader.buffered:
                    # A frame is half-written; the rest follows at once.
                    self._fill()
                    frame = self._reader.next_frame()
        return None if frame is None else self._decode(frame)

    def _fill(self) -> bool:
        try:
            data = os.read(self.fd, _READ_SIZE)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self._reader.feed(data)
        return True

    def _decode(self, frame: bytes) -> T:
        try:
            return self._decoder.decode(frame)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed frame from the supervisor: {exc}") from exc
