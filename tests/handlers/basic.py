"""Handlers for sandbox and Child tests, imported in children as ``tests.handlers.basic:<name>``.

Each one exercises one behaviour of the child runtime: a result, a crash of a
given kind, a limit, output forwarding, the environment the child sees.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import resource
import signal
import sys
import time
from typing import Any

from glidemq.errors import SoftTimeoutError, UnrecoverableError

_hoard: list[bytes] = []


def noop(job: Any) -> None:
    return None


def echo(job: Any) -> Any:
    return {
        "id": job.id,
        "name": job.name,
        "data": job.data,
        "attempts": job.attempts_made,
        "opts": job.opts,
    }


async def async_echo(job: Any) -> Any:
    await asyncio.sleep(0)
    return {"id": job.id, "data": job.data}


def crash_segv(job: Any) -> None:
    ctypes.string_at(0)


def exit3(job: Any) -> None:
    os._exit(3)


def sleep_forever(job: Any) -> None:
    """Ignore SIGTERM and spin, so only SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    job.log("ignoring SIGTERM")
    while True:
        pass


def sleep_long(job: Any) -> None:
    """Block in a sleep that SIGTERM interrupts (the cooperative case)."""
    try:
        job.log("sleeping")
        time.sleep(600)
    finally:
        print("cleanup ran", flush=True)


def soft_timeout_victim(job: Any) -> str:
    try:
        time.sleep(30)
    except SoftTimeoutError:
        job.log("caught soft timeout")
        raise
    return "not reached"


async def async_soft_timeout_victim(job: Any) -> str:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        job.log("cancelled by soft timeout")
        raise
    return "not reached"


def leak_memory(job: Any) -> int:
    megabytes = int(job.data["mb"])
    _hoard.append(os.urandom(megabytes * 1024 * 1024))
    return sum(len(b) for b in _hoard)


def progress_and_log(job: Any) -> str:
    for step in (25, 50, 100):
        job.update_progress(step)
        job.log(f"step {step}")
    job.update_progress({"done": True})
    return "ok"


def raise_value_error(job: Any) -> None:
    raise ValueError(f"bad value {job.data!r}")


def raise_unrecoverable(job: Any) -> None:
    raise UnrecoverableError("give up")


def print_to_stdout(job: Any) -> None:
    print(f"hello from the handler {job.id}")
    print("to stderr", file=sys.stderr)


def env_dump(job: Any) -> dict[str, Any]:
    return {
        "env": dict(os.environ),
        "modules": sorted(sys.modules),
        "cwd": os.getcwd(),
        "path": sys.path,
    }


def rlimits(job: Any) -> dict[str, list[int]]:
    return {
        "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "cpu": list(resource.getrlimit(resource.RLIMIT_CPU)),
    }


def unserialisable(job: Any) -> object:
    return object()


def slow_then_ok(job: Any) -> str:
    """A job long enough for a Shutdown to arrive while it runs."""
    job.log("started")
    time.sleep(float(job.data))
    return "done"


by_name = {"echo": echo, "noop": noop, "boom": raise_value_error}
