"""The one exception tree of glidemq.

Every error glidemq raises derives from :class:`GlidemqError`, with one
intermediate base per layer (config, connection, engine, job, sandbox,
supervisor) so callers can catch a whole layer. Messages name the field, the
value and what was expected. valkey-py errors and Lua error codes are
translated in exactly one place: :func:`glidemq.engine.fcall.translate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from glidemq.sandbox.exitcodes import ExitStatus


class GlidemqError(Exception):
    """Base of every error raised by glidemq."""


# --- config -----------------------------------------------------------------
class ConfigError(GlidemqError):
    """A configuration file, option or environment value is invalid."""


class ConfigFileError(ConfigError):
    """The configuration file is missing, unreadable, or not valid TOML."""


class ConfigValueError(ConfigError, ValueError):
    """A configuration key holds a wrong value; ``key`` is its path (``queues[0].batch``)."""

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class InvalidOptionError(ConfigError, ValueError):
    """An option passed to a public call is invalid (the message names it)."""


class InvalidQueueNameError(InvalidOptionError):
    """A queue name is empty, too long, or holds characters that break the hash tag."""


class InvalidJobIdError(InvalidOptionError):
    """A custom job id is empty, too long, numeric, or holds forbidden characters."""


class CycleError(InvalidOptionError):
    """Job dependencies would form a cycle (a job waiting, through others, for itself)."""


# --- connection ---------------------------------------------------------------
class GlidemqConnectionError(GlidemqError):
    """Valkey could not be reached, or the connection was lost."""


class LibraryVersionError(GlidemqConnectionError):
    """The server holds a newer glidemq function library than this client."""


# --- engine -------------------------------------------------------------------
class EngineError(GlidemqError):
    """A server function refused a state change."""


class JobNotFoundError(EngineError, KeyError):
    """The job id does not exist in the queue."""


class JobStateError(EngineError):
    """The job is not in a state that allows the operation."""


class QueueNotEmptyError(EngineError):
    """``obliterate()`` without ``force`` found active jobs."""


class FlowConflictError(EngineError):
    """A flow node's job id is taken by a job outside that flow (nothing was written)."""


# --- job ----------------------------------------------------------------------
class JobError(GlidemqError):
    """Errors about a job's content or outcome."""


class PayloadTooLargeError(JobError, ValueError):
    """Encoded data, return value, progress or log line is over the size limit."""


class UnrecoverableError(JobError):
    """Raise inside a handler to fail the job at once, skipping remaining retries."""


class RateLimitedError(JobError):
    """Raise inside a handler to retry the job after ``delay`` seconds without
    using an attempt (e.g. an upstream API said "slow down")."""

    def __init__(self, delay: float, message: str = "") -> None:
        super().__init__(message or f"rate limited; retry in {delay}s")
        self.delay = float(delay)


class JobTimeoutError(JobError, TimeoutError):
    """The job ran longer than its ``timeout`` (in-process) or ``soft_timeout``."""


class JobFailedError(JobError):
    """A job someone waited for (``add_and_wait``, ``wait_until_finished``) failed for good."""

    def __init__(self, job_id: str, failed_reason: str) -> None:
        super().__init__(f"job {job_id!r} failed: {failed_reason}")
        self.job_id = job_id
        self.failed_reason = failed_reason


class WaitTimeoutError(JobError):
    """A job someone waited for did not finish in time (it stays queued or running).

    Not a ``TimeoutError``: a handler awaiting another job must not look like
    a handler that overran its own ``timeout``.
    """

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id!r} did not finish within {timeout:g}s")
        self.job_id = job_id
        self.timeout = timeout


# --- sandbox ------------------------------------------------------------------
class SandboxError(GlidemqError):
    """Errors of the child-process runtime and its pipe protocol."""


class ProtocolError(SandboxError):
    """A frame on the supervisor/child pipe was malformed or unexpected."""


class HandlerImportError(SandboxError):
    """The handler named ``"package.module:function"`` could not be imported."""


class SoftTimeoutError(JobTimeoutError, SandboxError):
    """Raised inside a handler when the queue's ``soft_timeout`` elapses."""


# --- supervisor ---------------------------------------------------------------
class SupervisorError(GlidemqError):
    """Errors of the supervisor process and its pools."""


class ChildCrashedError(SupervisorError):
    """The child process died while running a job (signal or exit code)."""


class HardTimeoutError(SupervisorError):
    """The child overran the queue's ``hard_timeout`` and was killed."""


class ChildBootError(SupervisorError):
    """A child failed to start (handler import error, handshake deadline)."""


class FatalBootError(ChildBootError):
    """A child can never boot: its handler does not import, its rlimits are refused,
    or it speaks another protocol version. Restarting cannot help; the pool stops.
    """

    def __init__(
        self, message: str, *, status: ExitStatus | None = None, remote_traceback: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.remote_traceback = remote_traceback


class HandshakeError(ChildBootError):
    """A child died, hung or sent garbage before its ``Hello`` (restart it with backoff)."""

    def __init__(self, message: str, *, status: ExitStatus | None = None) -> None:
        super().__init__(message)
        self.status = status


class ChildGoneError(SupervisorError):
    """The child has exited or is retiring: it takes no more jobs."""
