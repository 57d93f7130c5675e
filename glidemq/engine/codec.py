"""JSON payloads (msgspec, never pickle) and the payload size limit.

Data, return values, progress and log lines are limited to ``max_payload``
bytes once encoded (default 1 MiB): over it, :class:`PayloadTooLargeError`
is raised before anything is written.
"""

from __future__ import annotations

from typing import Any

import msgspec

from glidemq.errors import PayloadTooLargeError

DEFAULT_MAX_PAYLOAD = 1024 * 1024

_encoder = msgspec.json.Encoder()
_decode = msgspec.json.decode


def encode(value: Any, what: str, limit: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    """Encode ``value`` as JSON and enforce the size limit.

    Raises:
        PayloadTooLargeError: the encoded value is longer than ``limit`` bytes.
        TypeError: the value is not JSON-serialisable (names ``what``).
    """
    try:
        raw = _encoder.encode(value)
    except (TypeError, msgspec.EncodeError) as exc:
        raise TypeError(f"{what} is not JSON-serialisable: {exc}") from None
    if len(raw) > limit:
        raise PayloadTooLargeError(
            f"{what} is {len(raw)} bytes encoded; the limit is {limit} bytes")
    return raw


def decode(raw: bytes | str | None) -> Any:
    """Decode JSON stored by glidemq (None for a missing field)."""
    if raw is None or raw == b"" or raw == "":
        return None
    return _decode(raw)
