"""The runtime inside one child process: :class:`Sandbox` and :class:`SandboxJob`.

A child serves one handler. It reads ``Run``/``Shutdown`` frames, runs each
job of a batch in its main thread (async handlers on one event loop that
lives as long as the child, so clients they cache survive between jobs), and
reports ``Started``, ``Progress``, ``Log``, ``Result``/``Failure`` and, after
each batch, ``Idle``. EOF on the protocol input, like ``Shutdown``, ends the
child after the job that is running.

Must not: import valkey or anything of ``glidemq.engine``/``glidemq.supervisor``,
hold credentials, or write to stdout/stderr itself (those carry the handler's
prints, forwarded to the supervisor's log, never protocol frames).
"""

from __future__ import annotations

import inspect
import os
import resource
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Awaitable
from types import FrameType
from typing import TYPE_CHECKING, Any

import msgspec

from glidemq.errors import RateLimitedError, SoftTimeoutError, UnrecoverableError
from glidemq.sandbox import exitcodes
from glidemq.sandbox.framing import BlockingChannel
from glidemq.sandbox.handler import Handler, is_async, resolve
from glidemq.sandbox.protocol import (
    PROTOCOL_VERSION,
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
    ToChild,
)

if TYPE_CHECKING:
    import asyncio


class Terminated(BaseException):
    """SIGTERM arrived: unwind the handler (its ``finally`` blocks run), then die of it."""


class SandboxJob:
    """The job object a handler receives inside a child.

    It holds no lock, token or connection: ``update_progress`` and ``log``
    write frames the supervisor turns into Valkey writes. Both are plain
    methods, usable from sync and async handlers alike; calls after the job
    ended (from a thread the handler left running) are dropped.
    """

    __slots__ = ("_channel", "_data", "_done", "_raw", "attempts_made", "id", "name", "opts")

    def __init__(self, spec: JobSpec, channel: BlockingChannel[ToChild]) -> None:
        self.id = spec.id
        self.name = spec.name
        self.attempts_made = spec.attempts_made
        self.opts = spec.opts
        self._raw = spec.data
        self._data: Any = _UNSET
        self._channel = channel
        self._done = False

    @property
    def data(self) -> Any:
        """The job's data, decoded from JSON on first access (a bad payload fails the job)."""
        if self._data is _UNSET:
            self._data = msgspec.json.decode(self._raw)
        return self._data

    def update_progress(self, value: Any) -> None:
        """Report progress (a number or any JSON value).

        Raises:
            TypeError: ``value`` is not JSON-serialisable.
        """
        if not self._done:
            self._channel.send(Progress(job_id=self.id, progress=msgspec.json.encode(value)))

    def log(self, line: str) -> None:
        """Append a line to the job's log."""
        if not self._done:
            self._channel.send(Log(job_id=self.id, line=str(line)))

    def __repr__(self) -> str:
        return f"<SandboxJob id={self.id!r} name={self.name!r}>"


_UNSET: Any = object()


class Sandbox:
    """Serve one handler over one protocol channel until told to stop.

    Signals: SIGALRM raises :class:`~glidemq.errors.SoftTimeoutError` inside a
    sync handler; SIGTERM raises :class:`Terminated` so the handler unwinds
    before the process dies of the signal (the supervisor's grace period).
    """

    def __init__(
        self, channel: BlockingChannel[ToChild], handler: Handler, handler_name: str
    ) -> None:
        self.jobs_done = 0
        self._channel = channel
        self._handler = handler
        self._handler_name = handler_name
        self._pending: deque[ToChild] = deque()
        self._stopping = False
        self._alarm_armed = False
        self._alarm_seconds = 0.0
        self._runner: asyncio.Runner | None = None
        signal.signal(signal.SIGALRM, self._on_alarm)
        signal.signal(signal.SIGTERM, _on_term)

    def serve(self) -> int:
        """Say ``Hello``, then run batches until ``Shutdown`` or EOF.

        Returns:
            The exit code (:data:`~glidemq.sandbox.exitcodes.OK`).

        Raises:
            ProtocolError: the supervisor sent a malformed frame.
            ChannelClosed: the supervisor end of the pipe is gone.
        """
        self._channel.send(
            Hello(
                protocol=PROTOCOL_VERSION,
                pid=os.getpid(),
                python=f"{sys.implementation.name} {'.'.join(map(str, sys.version_info[:3]))}",
                handler=self._handler_name,
            )
        )
        try:
            while True:
                message = self._pending.popleft() if self._pending else self._channel.receive()
                match message:
                    case Run(jobs=jobs):
                        self._run_batch(jobs)
                        self._channel.send(Idle(rss_bytes=_rss_bytes(), jobs_done=self.jobs_done))
                        if self._stopping:
                            return exitcodes.OK
                    case Shutdown() | None:
                        return exitcodes.OK
        finally:
            if self._runner is not None:
                self._runner.close()

    def _run_batch(self, jobs: list[JobSpec]) -> None:
        for index, spec in enumerate(jobs):
            if index and self._stop_requested():
                return  # the rest were never Started: the supervisor releases them
            self._run_job(spec)

    def _stop_requested(self) -> bool:
        """Between jobs, take in frames already sent (a Shutdown, or a pipelined Run)."""
        while (message := self._channel.poll()) is not None:
            if isinstance(message, Shutdown):
                self._stopping = True
            else:
                self._pending.append(message)
        if self._channel.eof:
            self._stopping = True
        return self._stopping

    def _run_job(self, spec: JobSpec) -> None:
        job = SandboxJob(spec, self._channel)
        self._channel.send(Started(job_id=spec.id))
        try:
            value = self._call(spec, job)
            try:
                payload = msgspec.json.encode(value)
            except TypeError as exc:
                raise TypeError(
                    f"return value of type {type(value).__name__} is not JSON-serialisable: {exc}"
                ) from None
        except Exception as exc:
            job._done = True
            self._channel.defer(  # goes out with the next Started or Idle
                Failure(
                    job_id=spec.id,
                    type=_type_name(type(exc)),
                    message=str(exc),
                    traceback="".join(traceback.format_exception(exc)),
                    unrecoverable=isinstance(exc, UnrecoverableError),
                    retry_after=exc.delay if isinstance(exc, RateLimitedError) else None,
                )
            )
        else:
            job._done = True
            self._channel.defer(Result(job_id=spec.id, value=payload))  # see defer()
        self.jobs_done += 1

    def _call(self, spec: JobSpec, job: SandboxJob) -> Any:
        fn = resolve(self._handler, spec.name)
        timeout = spec.soft_timeout
        if is_async(fn):
            return self._run_async(fn(job), timeout)
        started = time.monotonic()
        self._arm_alarm(timeout)
        try:
            result = fn(job)
        finally:
            self._disarm_alarm()
        if inspect.isawaitable(result):  # a sync function that returned a coroutine
            left = None if timeout is None else max(timeout - (time.monotonic() - started), 0.0)
            return self._run_async(result, left)
        return result

    def _run_async(self, awaitable: Awaitable[Any], timeout: float | None) -> Any:
        import asyncio  # only children with async handlers pay for it

        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(_soft_timeout(awaitable, timeout))

    def _arm_alarm(self, timeout: float | None) -> None:
        if timeout is not None and timeout > 0:
            self._alarm_seconds = timeout
            self._alarm_armed = True
            signal.setitimer(signal.ITIMER_REAL, timeout)

    def _disarm_alarm(self) -> None:
        # Clear the flag first: an alarm landing between the two lines is ignored.
        self._alarm_armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self._alarm_armed and self._channel.sending:
            signal.setitimer(signal.ITIMER_REAL, 0.005)  # after the frame is out
        elif self._alarm_armed:
            self._alarm_armed = False
            raise SoftTimeoutError(f"soft timeout of {self._alarm_seconds:g}s elapsed")


async def _soft_timeout(awaitable: Awaitable[Any], seconds: float | None) -> Any:
    """Await under the soft timeout.

    The handler sees ``CancelledError`` at its current ``await`` (the asyncio
    idiom, so its cleanup runs); the job fails with SoftTimeoutError.
    """
    import asyncio

    if seconds is None:
        return await awaitable
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise SoftTimeoutError(f"soft timeout of {seconds:g}s elapsed") from None
        raise


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _type_name(cls: type) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _rss_bytes() -> int:
    """Resident set size now (Linux ``/proc``), else the peak from getrusage."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
