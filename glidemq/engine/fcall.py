"""Error translation: the one place valkey-py and Lua errors become glidemq errors.

Lua functions fail with ``GLIDEMQ_<CODE> detail``; valkey-py raises its own
exception classes. Everything above the engine only ever sees the
:mod:`glidemq.errors` tree.
"""

from __future__ import annotations

from valkey import exceptions as vex

from glidemq.errors import (
    EngineError,
    GlidemqConnectionError,
    GlidemqError,
    JobNotFoundError,
    JobStateError,
    QueueNotEmptyError,
)

_CODES: dict[str, type[GlidemqError]] = {
    "GLIDEMQ_NOT_FOUND": JobNotFoundError,
    "GLIDEMQ_STALE": JobStateError,
    "GLIDEMQ_JOB_ACTIVE": JobStateError,
    "GLIDEMQ_BAD_STATE": JobStateError,
    "GLIDEMQ_NOT_EMPTY": QueueNotEmptyError,
}

#: valkey-py errors after which a retry on a fresh connection may succeed.
TRANSIENT: tuple[type[BaseException], ...] = (
    vex.ConnectionError,
    vex.TimeoutError,
    vex.BusyLoadingError,
    vex.ClusterDownError,
    vex.ClusterError,
    vex.ValkeyClusterException,  # e.g. no node of the cluster reachable (being restarted)
    vex.TryAgainError,
    ConnectionResetError,
    OSError,
)


def is_missing_function(exc: BaseException) -> bool:
    """True when the server has no glidemq library (restart without AOF, FLUSHALL)."""
    return isinstance(exc, vex.ResponseError) and "function not found" in str(exc).lower()


def translate(exc: BaseException) -> BaseException:
    """Map a valkey-py exception to the glidemq exception to raise instead."""
    if isinstance(exc, GlidemqError):
        return exc
    # Before ResponseError: CLUSTERDOWN and TRYAGAIN are error replies too, but
    # transient ones (a cluster node restarting), so callers retry them.
    if isinstance(exc, TRANSIENT):
        return GlidemqConnectionError(f"lost connection to Valkey: {exc}")
    if isinstance(exc, vex.ResponseError):
        text = str(exc)
        code, _, detail = text.partition(" ")
        cls = _CODES.get(code)
        if cls is not None:
            return cls(detail or text)
        return EngineError(text)
    return exc
