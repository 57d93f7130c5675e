"""The exit codes of a child process, and how a supervisor reads them.

This is the one module that names exit codes. The child picks its exit code
from here; the supervisor describes an exit (``"exit 3"``, ``"signal 11"``)
and decides, with :func:`is_boot_error`, whether a child that died before its
``Hello`` cannot boot at all (stop the pool) or merely crashed (restart with
backoff). gunicorn's ``WORKER_BOOT_ERROR``/``APP_LOAD_ERROR`` are the model.

The codes sit in the sysexits band (64-79) rather than at 3 and 4 as in
gunicorn, so a handler that calls ``os._exit(3)`` is not mistaken for a boot
error. Must not: import anything beyond the standard library.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

__all__ = [
    "BOOT_ERROR",
    "HANDLER_IMPORT_ERROR",
    "OK",
    "ORPHANED",
    "PROTOCOL_ERROR",
    "USAGE_ERROR",
    "ExitStatus",
    "describe",
    "is_boot_error",
]

OK = 0
"""Clean exit: ``Shutdown`` received, or EOF on the protocol input."""

USAGE_ERROR = 64
"""Bad command line (EX_USAGE): the supervisor built a wrong argv."""

ORPHANED = 75
"""The supervisor was already gone at boot, or the protocol pipe broke."""

PROTOCOL_ERROR = 76
"""A frame from the supervisor was malformed or unexpected (EX_PROTOCOL)."""

BOOT_ERROR = 78
"""The child could not set itself up, e.g. an rlimit was refused (EX_CONFIG)."""

HANDLER_IMPORT_ERROR = 79
"""The handler ``"package.module:function"`` could not be imported."""

_BOOT_ERRORS = frozenset({USAGE_ERROR, BOOT_ERROR, HANDLER_IMPORT_ERROR})

_NAMES = {
    OK: "ok",
    USAGE_ERROR: "usage error",
    ORPHANED: "orphaned",
    PROTOCOL_ERROR: "protocol error",
    BOOT_ERROR: "boot error",
    HANDLER_IMPORT_ERROR: "handler import error",
}


def is_boot_error(returncode: int) -> bool:
    """Tell whether an exit means "this child can never boot".

    Restarting a child whose handler does not import only spins, so a pool
    stops on these codes instead (and emits an event). Every other exit,
    signals included, is a crash: restart with backoff under the pool's
    restart-intensity limit. Apply it to exits *before* the child's ``Hello``;
    after ``Hello`` any exit is a crash of the job that was running.

    Args:
        returncode: ``Popen.returncode`` style: negative for a signal.

    Returns:
        True for usage, boot and handler-import errors.
    """
    return returncode in _BOOT_ERRORS


def describe(returncode: int) -> str:
    """Describe an exit for a job's failure reason, e.g. ``"signal 11 (SIGSEGV)"``."""
    status = ExitStatus(returncode)
    if status.signal is not None:
        try:
            name = signal.Signals(status.signal).name
        except ValueError:
            return str(status)
        return f"{status} ({name})"
    label = _NAMES.get(returncode)
    return f"{status} ({label})" if label else str(status)


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a child process ended: an exit code or the signal that killed it.

    ``str()`` gives the short form used in failure reasons and tests
    (``"exit 3"``, ``"signal 9"``); :meth:`describe` adds names.
    """

    returncode: int

    @property
    def signal(self) -> int | None:
        """The signal number that killed the child, or None if it exited."""
        return -self.returncode if self.returncode < 0 else None

    @property
    def code(self) -> int | None:
        """The exit code, or None if a signal killed the child."""
        return self.returncode if self.returncode >= 0 else None

    @property
    def boot_error(self) -> bool:
        """See :func:`is_boot_error`."""
        return is_boot_error(self.returncode)

    def describe(self) -> str:
        """Long form, e.g. ``"exit 79 (handler import error)"``."""
        return describe(self.returncode)

    def __str__(self) -> str:
        if self.returncode < 0:
            return f"signal {-self.returncode}"
        return f"exit {self.returncode}"
