"""The supervisor's handle on one child process: :class:`Child`.

Owns one process from spawn to reap: the ``python -P -m glidemq.sandbox``
command line, the allow-listed environment, the ``Hello`` handshake, the
protocol socket, the forwarding of the child's stdout/stderr to this
process's log (one record per line, tagged with the pid), and the two-stage
kill. Must not: decide policy. When to spawn, what to run, when to kill or
retire, and what a death means for a job belong to the pool.

How a pool drives a child::

    async with anyio.create_task_group() as tg:
        child = await Child.spawn(tg, "app.jobs:handle", path=[project_dir])
        try:                              # FatalBootError: stop the pool
            await child.run([spec1, spec2])   # JobSpec micro-batch, 1..k jobs
            async for event in child.events():
                match event:
                    case Started(job_id=j): ...      # now a crash costs j an attempt
                    case Progress() | Log(): ...     # write to Valkey
                    case Result() | Failure(): ...   # Finish.completed / failed
                    case Idle(rss_bytes=rss, jobs_done=n):
                        break                        # batch over: run() again or retire()
                    case Exited(status=s, running=j, unstarted=rest): ...
        finally:
            await child.aclose()          # kill (TERM, KILL after grace) if alive

``Exited`` is the last event: ``running`` is the job that was in the handler
when the child died (the last ``Started`` without ``Result``/``Failure``) and
``unstarted`` lists the jobs sent but never ``Started``, to be released
without penalty. A hard timeout is ``await child.kill()`` from a watchdog
task, after which ``Exited.killed`` is true. ``await child.retire()`` sends
``Shutdown``: the child finishes its running job, skips the rest of its batch
(they come back in ``Exited.unstarted``) and exits 0.

Three tasks per child live in the caller's task group: the event reader and
two output forwarders; all end on their own once the process is gone.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

import anyio
import msgspec
import psutil
from anyio.abc import ByteReceiveStream, Process, TaskGroup, UNIXSocketStream

from glidemq.errors import ChildGoneError, FatalBootError, HandshakeError, ProtocolError
from glidemq.sandbox.exitcodes import ExitStatus
from glidemq.sandbox.framing import FrameReader, encode_frame
from glidemq.sandbox.limits import Rlimits
from glidemq.sandbox.protocol import (
    PROTOCOL_VERSION,
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
    ToSupervisor,
    supervisor_codec,
)
from glidemq.supervisor.environment import child_env

logger = logging.getLogger(__name__)


_READ_SIZE = 256 * 1024
_MAX_LINE = 64 * 1024
_DRAIN_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Exited:
    """The child process is gone; always the last event of a child.

    Attributes:
        status: how it ended (``str(status)`` is e.g. ``"signal 11"``).
        running: job id that was in the handler, or None if it died idle.
        unstarted: job ids sent but never started (release them, no attempt used).
        killed: :meth:`Child.kill` was called (hard timeout, shutdown, limit).
        error: a protocol violation that made the supervisor kill it, if any.
    """

    status: ExitStatus
    running: str | None
    unstarted: tuple[str, ...]
    killed: bool
    error: str | None = None


ChildEvent = Started | Progress | Log | Result | Failure | Idle | Exited


class Child:
    """One child process, from spawn to reap. Create it with :meth:`spawn`."""

    def __init__(self, process: Process, sock: UNIXSocketStream, kill_grace: float) -> None:
        self.pid: int = process.pid
        self.hello: Hello | None = None
        self.last_idle: Idle | None = None
        self._process = process
        self._sock = sock
        self._kill_grace = kill_grace
        self._encoder, self._decoder = supervisor_codec()
        self._frames = FrameReader()
        self._send_lock = anyio.Lock()
        self._events_tx, self._events_rx = anyio.create_memory_object_stream[ChildEvent](
            float("inf")  # never block the reader: see run() about pipelined frames
        )
        self._outstanding: dict[str, None] = {}  # sent, not finished; insertion-ordered
        self._running: str | None = None
        self._retiring = False
        self._killed = False
        self._exit: Exited | None = None
        self._closed = anyio.Event()
        self._finishing = False
        self._reading = False
        self._streams_open = 2
        self._streams_done = anyio.Event()
        self._ps: psutil.Process | None = None

    @classmethod
    async def spawn(
        cls,
        tg: TaskGroup,
        handler: str,
        *,
        python: str = sys.executable,
        path: Iterable[str | os.PathLike[str]] = (),
        env_extra: Mapping[str, str] | None = None,
        rlimits: Rlimits | None = None,
        hello_timeout: float = 10.0,
        kill_grace: float = 5.0,
        cwd: str | os.PathLike[str] | None = None,
    ) -> Child:
        """Start a child and wait for its ``Hello``.

        The process is spawned and exec'd (never a fork of the supervisor),
        in a session of its own so terminal signals reach only the
        supervisor and :meth:`kill` reaches the handler's own subprocesses.

        Args:
            tg: task group that hosts the child's reader and output forwarders.
            handler: ``"package.module:function"``, imported in the child.
            python: interpreter to run the child with.
            path: directories prepended to the child's ``sys.path``; the
                working directory is *not* on it implicitly (``-P``).
            env_extra: variables added to the allow-listed environment.
            rlimits: limits the child applies before importing the handler.
            hello_timeout: seconds to wait for ``Hello``.
            kill_grace: default seconds between SIGTERM and SIGKILL.
            cwd: working directory of the child.

        Returns:
            The child, booted and idle.

        Raises:
            FatalBootError: the handler does not import, the rlimits were
                refused, or the protocol version differs; do not restart.
            HandshakeError: no ``Hello`` in time, death or garbage before it;
                the child is reaped, a restart with backoff may succeed.
            OSError: the interpreter could not be started.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [python, "-P", "-m", "glidemq.sandbox", "--fd", str(theirs.fileno())]
        argv += ["--handler", handler, "--parent-pid", str(os.getpid())]
        for entry in path:
            argv += ["--path", os.fspath(entry)]
        if rlimits is not None:
            argv += ["--rlimits", msgspec.json.encode(rlimits).decode()]
        try:
            process = await anyio.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                env=child_env(env_extra),
                cwd=cwd,
                start_new_session=True,
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        child = cls(process, await UNIXSocketStream.from_socket(ours), kill_grace)
        assert process.stdout is not None and process.stderr is not None
        tg.start_soon(child._forward, process.stdout, logging.INFO, "stdout")
        tg.start_soon(child._forward, process.stderr, logging.WARNING, "stderr")
        try:
            await child._handshake(handler, hello_timeout)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await child._terminate(0)
                child._finishing = True
                child._events_tx.close()
                child._events_rx.close()
                await child._close_io()
            raise
        tg.start_soon(child._read_events, name=f"glidemq child {child.pid}")
        return child

    @property
    def running(self) -> str | None:
        """Id of the job in the handler right now, as far as events read so far show."""
        return self._running

    @property
    def outstanding(self) -> tuple[str, ...]:
        """Ids of jobs sent and not yet finished, in order."""
        return tuple(self._outstanding)

    @property
    def alive(self) -> bool:
        """False once the process has exited or :class:`Exited` is ready."""
        return self._exit is None and self._process.returncode is None

    @property
    def exited(self) -> Exited | None:
        """The final event, once the process is gone."""
        return self._exit

    async def run(self, jobs: Iterable[JobSpec]) -> None:
        """Send one ``Run`` frame; the child runs the jobs in order, then sends ``Idle``.

        A second ``Run`` may be sent before ``Idle`` (the child queues it).
        If the child dies while this frame is in flight, its jobs are listed
        in ``Exited.unstarted``; events are buffered without bound so that a
        large frame never deadlocks against a child blocked on writing.

        Raises:
            ChildGoneError: the child has exited or is retiring.
        """
        batch = list(jobs)
        if self._retiring or not self.alive:
            raise ChildGoneError(f"child {self.pid} takes no more jobs (retiring or exited)")
        for spec in batch:
            self._outstanding[spec.id] = None
        await self._send(Run(jobs=batch))

    async def retire(self) -> None:
        """Ask the child to exit after its running job (``Shutdown``); idempotent."""
        if not self._retiring:
            self._retiring = True
            await self._send(Shutdown())

    async def receive(self) -> ChildEvent:
        """Wait for the next event; after the child is gone, return its :class:`Exited`."""
        try:
            return await self._events_rx.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self._exit is None:
                raise
            return self._exit

    def events(self) -> AsyncIterator[ChildEvent]:
        """Iterate events; the iteration ends after yielding :class:`Exited`."""
        return _Events(self)

    async def kill(self, grace: float | None = None) -> ExitStatus:
        """Kill the child and its process group: SIGTERM, then SIGKILL after ``grace``.

        SIGTERM unwinds the handler (its ``finally`` blocks run) and the child
        then dies of the signal; a handler that ignores it gets SIGKILL.
        Shielded from cancellation, so a kill always completes.

        Args:
            grace: seconds before SIGKILL; 0 kills at once; None uses the
                ``kill_grace`` given to :meth:`spawn`.

        Returns:
            How the process ended.
        """
        self._killed = True
        with anyio.CancelScope(shield=True):
            status = await self._terminate(self._kill_grace if grace is None else grace)
        return status

    async def reap(self) -> ExitStatus:
        """Wait for the process to end (this child only) and describe how."""
        return ExitStatus(await self._process.wait())

    def rss(self) -> int | None:
        """Resident set size of the process in bytes, or None if it is gone."""
        if not self.alive:
            return None  # its pid may already belong to another process
        try:
            if self._ps is None:
                self._ps = psutil.Process(self.pid)
            return int(self._ps.memory_info().rss)
        except psutil.Error:
            return None

    async def aclose(self) -> None:
        """Kill the child if it is alive and wait until its tasks have let go."""
        with anyio.CancelScope(shield=True):
            if self.alive:
                await self.kill()
            if self._reading:
                await self._closed.wait()
            else:  # the reader task never ran (its task group was cancelled first)
                await self._finish(None, cancelled=False)
            self._events_rx.close()

    async def __aenter__(self) -> Child:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- internals ------------------------------------------------------------
    async def _handshake(self, handler: str, deadline: float) -> None:
        try:
            with anyio.fail_after(deadline):
                message = await self._next_message()
        except TimeoutError:
            status = await self._terminate(0)
            raise HandshakeError(
                f"child {self.pid} ({handler}) sent no Hello within {deadline:g}s; killed",
                status=status,
            ) from None
        except ProtocolError as exc:
            status = await self._terminate(0)
            raise HandshakeError(f"child {self.pid} ({handler}): {exc}", status=status) from None
        match message:
            case Hello(protocol=version) if version == PROTOCOL_VERSION:
                self.hello = message
                logger.debug("child %d up: %s, handler %s", self.pid, message.python, handler)
            case Hello(protocol=version):
                status = await self._terminate(0)
                raise FatalBootError(
                    f"child {self.pid} speaks protocol {version}, expected {PROTOCOL_VERSION}",
                    status=status,
                )
            case BootError(type=kind, message=text, traceback=tb):
                status = await self._reap_after_eof()
                raise FatalBootError(
                    f"child {self.pid} cannot boot ({status.describe()}): {kind}: {text}",
                    status=status,
                    remote_traceback=tb,
                )
            case None:
                status = await self._reap_after_eof()
                error = FatalBootError if status.boot_error else HandshakeError
                raise error(
                    f"child {self.pid} ({handler}) died before its Hello: {status.describe()}",
                    status=status,
                )
            case _:
                status = await self._terminate(0)
                raise HandshakeError(
                    f"child {self.pid} sent {type(message).__name__} before Hello", status=status
                )

    async def _read_events(self) -> None:
        """Turn frames into events, track the running job, and produce ``Exited``."""
        error: str | None = None
        cancelled = False
        self._reading = True
        try:
            while (message := await self._next_message()) is not None:
                match message:
                    case Started(job_id=job_id):
                        self._running = job_id
                    case Result(job_id=job_id) | Failure(job_id=job_id):
                        self._outstanding.pop(job_id, None)
                        if self._running == job_id:
                            self._running = None
                    case Idle():
                        self.last_idle = message
                    case Hello() | BootError():
                        error = f"protocol error: {type(message).__name__} after Hello"
                        break
                try:
                    self._events_tx.send_nowait(message)
                except anyio.ClosedResourceError:
                    break  # aclose() finished the child while we were still reading
        except ProtocolError as exc:
            error = f"protocol error: {exc}"
        except anyio.get_cancelled_exc_class():
            cancelled = True
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._finish(error, cancelled)

    async def _finish(self, error: str | None, cancelled: bool) -> None:
        """Reap, build ``Exited``, close every pipe. Runs once; later callers wait for it."""
        if self._finishing:
            await self._closed.wait()
            return
        self._finishing = True
        if error is not None:
            logger.error("child %d: %s; killing it", self.pid, error)
        if error is not None or (cancelled and self._process.returncode is None):
            status = await self._terminate(0 if error else self._kill_grace)
        else:
            status = await self._reap_after_eof()
        running = self._running
        self._exit = Exited(
            status=status,
            running=running,
            unstarted=tuple(j for j in self._outstanding if j != running),
            killed=self._killed,
            error=error,
        )
        self._events_tx.close()
        await self._close_io()

    async def _next_message(self) -> ToSupervisor | None:
        """Read until one whole frame is buffered; None at EOF (a torn last frame too)."""
        while (frame := self._frames.next_frame()) is None:
            try:
                chunk = await self._sock.receive(_READ_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return None
            self._frames.feed(chunk)
        try:
            return self._decoder.decode(frame)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed frame from child {self.pid}: {exc}") from exc

    async def _send(self, message: Run | Shutdown) -> None:
        frame = encode_frame(self._encoder, message)
        async with self._send_lock:
            try:
                await self._sock.send(bytes(frame))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the reader sees EOF and reports Exited with these jobs unstarted

    async def _reap_after_eof(self) -> ExitStatus:
        """EOF normally means exit; a child that closed its pipe but lives is killed."""
        with anyio.move_on_after(self._kill_grace):
            return await self.reap()
        return await self._terminate(0)

    async def _terminate(self, grace: float) -> ExitStatus:
        if self._process.returncode is None:
            if grace > 0:
                self._signal(signal.SIGTERM)
                with anyio.move_on_after(grace):
                    return await self.reap()
            self._signal(signal.SIGKILL)
        return await self.reap()

    def _signal(self, signum: signal.Signals) -> None:
        # The child leads its own process group, so this also stops whatever
        # its handler spawned. Reaping is ours alone, so the pid is still this child's.
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            self._process.send_signal(signum)

    async def _forward(self, stream: ByteReceiveStream, level: int, name: str) -> None:
        """Log the child's output line by line, tagged with its pid."""
        pending = b""
        try:
            async for chunk in stream:
                *lines, pending = (pending + chunk).split(b"\n")
                if len(pending) > _MAX_LINE:
                    lines.append(pending)
                    pending = b""
                for line in lines:
                    self._log_line(level, name, line)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            if pending:
                self._log_line(level, name, pending)
            self._streams_open -= 1
            if not self._streams_open:
                self._streams_done.set()

    def _log_line(self, level: int, name: str, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        logger.log(level, "child %d %s: %s", self.pid, name, text, extra={"child_pid": self.pid})

    async def _close_io(self) -> None:
        """After exit: let the forwarders drain, then close every pipe (shielded by callers)."""
        with anyio.move_on_after(_DRAIN_SECONDS):
            await self._streams_done.wait()  # grandchildren may hold the pipes open
        await self._sock.aclose()
        await self._process.aclose()
        self._closed.set()


class _Events:
    """Async iterator over a child's events that stops after :class:`Exited`."""

    def __init__(self, child: Child) -> None:
        self._child = child
        self._done = False

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> ChildEvent:
        if self._done:
            raise StopAsyncIteration
        event = await self._child.receive()
        self._done = isinstance(event, Exited)
        return event
