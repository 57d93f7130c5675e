"""Slot: the actor that owns one child process of a pool.

Spawns the child, waits for work from the pool's feeder, sends it as one
``Run`` frame, turns the child's events into job outcomes, enforces the hard
timeout, and recycles the child on ``max_jobs_per_child`` (a batch never
exceeds the child's remaining budget) / ``max_rss_mb`` (checked after every
job; an oversized child skips the rest of its batch).
When the child dies, the job it was running loses one attempt (reason
"child crashed: signal 11", "hard timeout (…)") and the jobs it never
started go back to the queue without penalty. An idle child is watched too:
if it dies between batches the slot ends (a crash) and the pool replaces it.

Must not: talk to Valkey except through the pool's consumer, or decide the
pool's size.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import msgspec
import psutil

from glidemq.engine import tracing
from glidemq.engine.backoff import retry_delay_ms
from glidemq.engine.consumer import Finish
from glidemq.engine.job import Backoff, Job
from glidemq.errors import (
    ChildBootError,
    ChildGoneError,
    FatalBootError,
    GlidemqError,
    UnrecoverableError,
)
from glidemq.sandbox.limits import Rlimits
from glidemq.sandbox.protocol import Failure, Idle, JobSpec, Log, Progress, Result, Started
from glidemq.supervisor.child import Child, Exited

if TYPE_CHECKING:
    from glidemq.supervisor.pool import Pool

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()


class Slot:
    """One child process and the jobs it holds."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.qc = pool.qc
        self.retiring = False
        self.abandon = False  # shutdown kill: give jobs back instead of failing them
        self.child: Child | None = None
        self.jobs: dict[str, Job] = {}
        self.jobs_done = 0  # as the child last reported it
        self._tg: anyio.abc.TaskGroup | None = None
        self._hard_timed_out: str | None = None
        self._span: object = None  # OpenTelemetry span of the running job, if tracing
        self._ps: psutil.Process | None = None
        self._send, self._recv = anyio.create_memory_object_stream[
            list[Job] | None | Exited](2)  # a batch (None: retire), or the idle child's death

    # --- called by the pool ----------------------------------------------------------
    def assign(self, jobs: list[Job]) -> None:
        try:
            self._send.send_nowait(jobs)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            for job in jobs:  # the slot ended meanwhile: the jobs go back
                self.pool.finish(Finish.released(job))

    def capacity(self) -> int:
        """Jobs the next batch may hold: ``batch``, within ``max_jobs_per_child``."""
        n = self.qc.batch
        if self.qc.max_jobs_per_child:
            n = min(n, self.qc.max_jobs_per_child - self.jobs_done)
        return max(1, n)

    def retire(self) -> None:
        """Exit after the running job: now if idle; a busy child skips the rest of its batch."""
        self.retiring = True
        if self in self.pool.idle:
            self.pool.idle.remove(self)
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._send.send_nowait(None)
        elif self.jobs and self.child is not None and self._tg is not None:
            self._tg.start_soon(self.child.retire)  # Shutdown: unstarted jobs come back

    async def kill(self) -> None:
        if self.child is not None and self.child.alive:
            await self.child.kill()
        elif self.child is None or not self.jobs:
            self.retire()

    def cpu_percent(self) -> float:
        try:
            if self._ps is None and self.child is not None:
                self._ps = psutil.Process(self.child.pid)
            return self._ps.cpu_percent(None) if self._ps else 0.0
        except psutil.Error:
            return 0.0

    # --- the actor ------------------------------------------------------------------
    async def run(self) -> None:
        crashed, boot_error = False, None
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                qc = self.qc
                r = qc.rlimits
                try:
                    self.child = await Child.spawn(
                        tg, qc.handler, path=self.pool.path, env_extra=qc.env,
                        rlimits=Rlimits(address_space_mb=r.address_space_mb,
                                        cpu_seconds=r.cpu_seconds, open_files=r.open_files)
                        if r else None,
                        kill_grace=qc.hard_timeout_grace)
                except FatalBootError as exc:
                    boot_error = str(exc)
                    return
                except (ChildBootError, ChildGoneError, OSError) as exc:
                    log.warning("queue %s: child failed to start: %s", qc.name, exc)
                    crashed = True
                    return
                try:
                    crashed = await self._serve(self.child)
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.child.aclose()
        finally:
            for job in list(self.jobs.values()):  # anything not accounted for goes back
                self.pool.finish(Finish.released(job))
            self.jobs.clear()
            self._send.close()
            self._recv.close()
            self.pool.gone(self, crashed, boot_error)

    async def _serve(self, child: Child) -> bool:
        """Run batches until retired or dead; True when the child crashed."""
        while True:
            if self.retiring:
                await child.retire()
                return self._on_exit(await self._until_exit(child))
            self.pool.ready(self)
            jobs = await self._next_batch(child)
            if isinstance(jobs, Exited):
                return self._on_exit(jobs)  # died idle
            if jobs is None:
                continue  # retire() sent it; loop to the retiring branch
            self.jobs = {j.id: j for j in jobs}
            sc = self.qc.soft_timeout
            try:
                await child.run([
                    JobSpec(id=j.id, name=j.name, data=_json.encode(j.data),
                            attempts_made=j.attempts_made, opts=msgspec.to_builtins(j.opts),
                            token=j.token, soft_timeout=sc) for j in jobs])
            except ChildGoneError:  # it died just now: these were never sent
                self._release_all()
                return self._on_exit(await self._until_exit(child))
            ev = await self._events(child)
            if isinstance(ev, Exited):
                return self._on_exit(ev)
            self._maybe_recycle(ev)

    async def _next_batch(self, child: Child) -> list[Job] | None | Exited:
        """Wait for the pool's next batch (None: retire) or for the idle child's death.

        The death arrives through the same stream as batches, so a batch handed
        over at the same moment is never lost to a cancelled receive.
        """
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while not isinstance(ev := await child.receive(), Exited):
                    await self._handle(ev)  # an idle child sends nothing, but just in case
                self._send.send_nowait(ev)

            tg.start_soon(watch)
            got = await self._recv.receive()
            tg.cancel_scope.cancel()
        if not isinstance(got, Exited):
            return got
        if self in self.pool.idle:
            self.pool.idle.remove(self)  # the feeder must not hand it more
        while True:  # a batch handed over as it died was never sent: it goes back
            try:
                late = self._recv.receive_nowait()
            except anyio.WouldBlock:
                break
            if isinstance(late, list):
                self.jobs.update((j.id, j) for j in late)
        self._release_all()
        return got

    def _release_all(self) -> None:
        for job in self.jobs.values():
            self.pool.finish(Finish.released(job))
        self.jobs.clear()

    def _maybe_recycle(self, idle: Idle) -> None:
        qc, stats = self.qc, self.pool.stats
        self.jobs_done = idle.jobs_done
        if self.retiring:
            return
        if qc.max_jobs_per_child and idle.jobs_done >= qc.max_jobs_per_child:
            stats.record_limit_kill("max_jobs_per_child")
            self.retiring = True
        elif qc.max_rss_mb and idle.rss_bytes > qc.max_rss_mb * 2**20:
            log.info("queue %s: child %s at %d MiB > max_rss_mb %d; recycling", qc.name,
                     self.child.pid if self.child else "?", idle.rss_bytes // 2**20, qc.max_rss_mb)
            stats.record_limit_kill("max_rss")
            self.retiring = True

    async def _until_exit(self, child: Child) -> Exited:
        while True:
            ev = await child.receive()
            if isinstance(ev, Exited):
                return ev
            await self._handle(ev)

    async def _events(self, child: Child) -> Idle | Exited:
        started = 0.0
        running: str | None = None
        hard = self.qc.hard_timeout
        while True:
            timeout = (started + hard - time.monotonic()) if (running and hard) else None
            with anyio.move_on_after(timeout) as scope:
                ev = await child.receive()
            if scope.cancelled_caught:
                log.warning("queue %s: job %s over hard_timeout %ss; killing child %d",
                            self.qc.name, running, hard, child.pid)
                self._hard_timed_out = running
                self.pool.stats.record_limit_kill("hard_timeout")
                await child.kill()
                running = None  # the child is dead: only its last events and Exited remain
                continue
            if isinstance(ev, Idle | Exited):
                return ev
            if isinstance(ev, Started):
                running, started = ev.job_id, time.monotonic()
                job = self.jobs.get(ev.job_id)
                if job is not None and tracing.active():
                    self._span = tracing.start_process_span(
                        self.qc.name, job.id, job.name, job.opts.trace)
            elif isinstance(ev, Result | Failure):
                running = None
                tracing.end_span(self._span, None if isinstance(ev, Result) else
                                 f"{ev.type}: {ev.message}")
                self._span = None
            await self._handle(ev)
            if isinstance(ev, Result | Failure) and self._over_rss(child):
                await child.retire()  # the rest of the batch comes back unstarted

    def _over_rss(self, child: Child) -> bool:
        """After each job: past ``max_rss_mb``? Then the child is recycled."""
        qc = self.qc
        if self.retiring or not qc.max_rss_mb:
            return False
        rss = child.rss()
        if rss is None or rss <= qc.max_rss_mb * 2**20:
            return False
        log.info("queue %s: child %d at %d MiB > max_rss_mb %d; recycling",
                 qc.name, child.pid, rss // 2**20, qc.max_rss_mb)
        self.pool.stats.record_limit_kill("max_rss")
        self.retiring = True
        return True

    async def _handle(self, ev: object) -> None:
        c = self.pool.consumer
        match ev:
            case Result(job_id=jid, value=value):
                job = self.jobs.pop(jid, None)
                if job is not None:
                    self.pool.finish(Finish(job.id, job.token, "c", value.decode()))
            case Failure(job_id=jid, type=etype, message=msg, traceback=tb, unrecoverable=u,
                         retry_after=retry_after):
                job = self.jobs.pop(jid, None)
                if job is not None and retry_after is not None:
                    # RateLimitedError: back to delayed, no attempt used.
                    self.pool.finish(Finish.deferred(job, int(retry_after * 1000)))
                elif job is not None:
                    delay = self._retry_delay(job, UnrecoverableError(msg) if u else None)
                    self.pool.finish(Finish.failed(job, f"{etype}: {msg}", tb, delay))
            case Progress(job_id=jid, progress=raw):
                job = self.jobs.get(jid)
                if job is not None:
                    await self._side(c.progress(job.id, job.token, raw), jid)
            case Log(job_id=jid, line=line):
                job = self.jobs.get(jid)
                if job is not None:
                    await self._side(c.log(job.id, job.token, line), jid)

    async def _side(self, call: object, jid: str) -> None:
        try:
            await call  # type: ignore[misc]
        except GlidemqError as exc:
            log.warning("queue %s: progress/log of job %s not stored: %s", self.qc.name, jid, exc)

    def _on_exit(self, ex: Exited) -> bool:
        """Account for the child's jobs; True when this counts as a crash."""
        tracing.end_span(self._span, f"child exited: {ex.status}")
        self._span = None
        for jid in ex.unstarted:
            job = self.jobs.pop(jid, None)
            if job is not None:
                self.pool.finish(Finish.released(job))
        job = self.jobs.pop(ex.running, None) if ex.running else None
        if job is not None:
            if self.abandon:
                self.pool.finish(Finish.released(job))
            else:
                if self._hard_timed_out == job.id:
                    reason = f"hard timeout ({self.qc.hard_timeout}s)"
                else:
                    reason = f"child crashed: {ex.status}"
                log.warning("queue %s: job %s failed: %s", self.qc.name, job.id, reason)
                self.pool.finish(Finish.failed(job, reason, "", self._retry_delay(job, None)))
        clean = ex.status.code == 0 and ex.running is None
        return not clean and not self.abandon and self._hard_timed_out is None

    def _retry_delay(self, job: Job, error: BaseException | None) -> int:
        """The queue's ``attempts``/``backoff`` apply where the job asked for less."""
        qc, o = self.qc, job.opts
        backoff = o.backoff
        if backoff is None and qc.backoff is not None:
            b = qc.backoff
            backoff = Backoff(type=b.type, delay=b.delay, jitter=b.jitter)
        opts = msgspec.structs.replace(o, attempts=max(o.attempts, qc.attempts), backoff=backoff)
        return retry_delay_ms(msgspec.structs.replace(job, opts=opts), error)
