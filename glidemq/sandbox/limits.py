"""Resource limits a child applies to itself at boot, before importing the handler.

Owns :class:`Rlimits` (the optional rlimits of a queue, field names as in the
``[queues.rlimits]`` config table), :func:`apply_rlimits` and
:func:`die_with_parent`. Core dumps are always off: a crashing handler must
not fill the disk of a VM that restarts children all day.

Must not: decide what happens when a limit is hit. The kernel enforces
(``MemoryError`` or ``SIGSEGV`` for address space, ``SIGXCPU`` for CPU time,
``EMFILE`` for files) and the supervisor names the cause from the exit.
"""

from __future__ import annotations

import os
import resource
import signal
import sys

import msgspec

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Rlimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Optional per-child rlimits; None leaves the inherited limit alone."""

    address_space_mb: int | None = None  # RLIMIT_AS
    cpu_seconds: int | None = None  # RLIMIT_CPU, of the child's whole life
    open_files: int | None = None  # RLIMIT_NOFILE


def apply_rlimits(limits: Rlimits) -> None:
    """Lower this process's limits; core size is set to 0 whatever ``limits`` says.

    A soft limit is set at the value and the hard limit just above it where
    the kernel distinguishes them (CPU: ``SIGXCPU`` at the soft limit lets the
    supervisor see which limit was hit, ``SIGKILL`` at the hard one).

    Raises:
        ValueError: a value is not positive or is above the inherited hard
            limit (the message names the field, the value and the ceiling).
    """
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.address_space_mb is not None:
        _lower("address_space_mb", resource.RLIMIT_AS, limits.address_space_mb * 1024 * 1024)
    if limits.cpu_seconds is not None:
        _lower("cpu_seconds", resource.RLIMIT_CPU, limits.cpu_seconds, hard_slack=1)
    if limits.open_files is not None:
        _lower("open_files", resource.RLIMIT_NOFILE, limits.open_files)


def _lower(field: str, which: int, value: int, *, hard_slack: int = 0) -> None:
    if value <= 0:
        raise ValueError(f"rlimits.{field}: got {value}, expected a positive integer")
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY and value > hard:
        raise ValueError(
            f"rlimits.{field}: got {value}, expected at most the inherited hard limit {hard}"
        )
    new_hard = value + hard_slack
    if hard != resource.RLIM_INFINITY:
        new_hard = min(new_hard, hard)
    resource.setrlimit(which, (value, new_hard))


def die_with_parent(parent_pid: int) -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies.

    Pipe EOF already ends an idle child; the death signal also ends one stuck
    in a handler when the supervisor is killed with SIGKILL. Linux only, best
    effort elsewhere (there EOF on the next read is the only safeguard). The
    signal fires when the *thread* that spawned us exits, so the supervisor
    spawns children from its event-loop thread.

    Args:
        parent_pid: the supervisor's pid, to close the race where it died
            before the death signal was armed.

    Returns:
        False if the parent is already gone: the caller should exit.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    return os.getppid() == parent_pid
