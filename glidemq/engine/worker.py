"""Worker: runs a processor function on jobs of one queue, in this process.

The fetch loop claims up to ``concurrency`` jobs per server call and sends
the outcomes of finished jobs in the same call, so under load a batch of
completions costs one round trip together with the next claims. When the
queue is empty it blocks server-side (a marker list every add pushes to) and
wakes within milliseconds of an add, or when the next delayed job is due.
Locks of in-flight jobs are renewed by one heartbeat call for all of them.
"""

from __future__ import annotations

import inspect
import logging
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from glidemq.engine import codec, schedulers, tracing
from glidemq.engine.backoff import BackoffStrategy, retry_delay_ms
from glidemq.engine.connection import Connection
from glidemq.engine.consumer import Consumer, Finish
from glidemq.engine.idle import Idler
from glidemq.engine.job import Job
from glidemq.engine.queue import DEFAULT_EVENTS_MAXLEN
from glidemq.errors import (
    GlidemqConnectionError,
    InvalidOptionError,
    LibraryVersionError,
    RateLimitedError,
)

log = logging.getLogger(__name__)

Processor = Callable[[Job], Any] | Callable[[Job], Awaitable[Any]]


class Worker:
    """Consumes one queue with an async or sync processor.

    Args:
        queue_name: the queue.
        processor: ``fn(job) -> result``; async, or sync (run in a thread).
        connection: Connection or URL.
        concurrency: jobs processed at once.
        prefetch: extra jobs claimed ahead and held (locked) while the
            runners are busy, so claiming overlaps processing. Defaults to
            ``concurrency``; 0 claims only for idle runners.
        lock_duration: seconds a claim stays valid without renewal.
        max_stalled_count: reclaims allowed before a stalled job fails.
        block_timeout: longest server-side wait when idle, seconds.
        dead_letter_queue: see :class:`glidemq.engine.consumer.Consumer`.
        backoff_strategies: custom backoff functions by name.
        events: write lifecycle events.
        events_maxlen: approximate cap of the queue's events stream (each
            write trims it; readers falling further behind lose events).

    Raises:
        InvalidOptionError: a bad option, naming it.
    """

    def __init__(
        self,
        queue_name: str,
        processor: Processor,
        connection: Connection | str | None = None,
        *,
        concurrency: int = 1,
        prefetch: int | None = None,
        lock_duration: float = 30.0,
        max_stalled_count: int = 1,
        block_timeout: float = 5.0,
        dead_letter_queue: str | None = None,
        backoff_strategies: Mapping[str, BackoffStrategy] | None = None,
        events: bool = True,
        events_maxlen: int = DEFAULT_EVENTS_MAXLEN,
        max_payload: int = codec.DEFAULT_MAX_PAYLOAD,
    ) -> None:
        if not callable(processor):
            raise InvalidOptionError(f"processor must be callable, got {processor!r}")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidOptionError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if prefetch is None:
            prefetch = concurrency
        if not isinstance(prefetch, int) or prefetch < 0:
            raise InvalidOptionError(f"prefetch must be an int >= 0, got {prefetch!r}")
        if not isinstance(lock_duration, int | float) or lock_duration < 0.1:
            raise InvalidOptionError(f"lock_duration must be >= 0.1 s, got {lock_duration!r}")
        if not isinstance(block_timeout, int | float) or block_timeout <= 0:
            raise InvalidOptionError(f"block_timeout must be > 0 s, got {block_timeout!r}")
        self.consumer = Consumer(
            connection, queue_name, lock_ms=int(lock_duration * 1000),
            max_stalled_count=max_stalled_count, dead_letter_queue=dead_letter_queue,
            events=events, events_maxlen=events_maxlen, max_payload=max_payload)
        self.name = queue_name
        self._owns_connection = not isinstance(connection, Connection)
        self.processor = processor
        self._is_async = inspect.iscoroutinefunction(processor) or inspect.iscoroutinefunction(
            type(processor).__call__)
        self.concurrency = concurrency
        self.capacity = concurrency + prefetch
        self.block_timeout = float(block_timeout)
        self.lock_duration = float(lock_duration)
        self.backoff_strategies = dict(backoff_strategies or {})
        self.max_payload = max_payload
        self._in_flight: dict[str, Job] = {}
        self._ready: deque[Job] = deque()
        self._idle_runners: list[anyio.Event] = []
        self._done: list[Finish] = []
        self._wakeup = anyio.Event()
        self._idler = Idler(self.consumer, self.block_timeout,
                            lambda: not self._closing and len(self._in_flight) < self.capacity,
                            self._kick)
        self._closing = False
        self._force = False
        self._stopped = anyio.Event()
        self._jobs_scope: anyio.CancelScope | None = None
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._channel = _JobChannel(self)  # one per worker: no allocation or cycle per job
        self._outer: anyio.abc.TaskGroup | None = None
        #: counters for tests and metrics
        self.completed = 0
        self.failed = 0
        self.rejected = 0

    # --- lifecycle ----------------------------------------------------------------
    async def run(self) -> None:
        """Process jobs until :meth:`close`."""
        await self._retrying(self.consumer.start)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeat, name=f"heartbeat:{self.name}")
                tg.start_soon(self._idler.run, name=f"idler:{self.name}")
                tg.start_soon(schedulers.refill_forever, self.consumer.connection, self.name,
                              name=f"schedulers:{self.name}")
                with anyio.CancelScope() as jobs_scope:
                    self._jobs_scope = jobs_scope
                    async with anyio.create_task_group() as runners:
                        # A fixed set of runner actors: no task is created per job.
                        for i in range(self.concurrency):
                            runners.start_soon(self._runner, name=f"runner-{i}")
                        await self._loop()
                        runners.cancel_scope.cancel()
                await self._flush()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.consumer.close()
                if self._owns_connection:  # made from a URL: ours to close
                    await self.consumer.connection.close()
            self._stopped.set()

    async def close(self, force: bool = False) -> None:
        """Stop claiming; wait for in-flight jobs (or, with ``force``, return them
        to the queue at once) and return when the worker has stopped.

        Jobs claimed ahead (prefetch) but not started go back to the queue at
        once, without using an attempt: closing never starts new jobs."""
        self._closing = True
        while self._ready:
            job = self._ready.popleft()
            if self._in_flight.pop(job.id, None) is not None:
                self._done.append(Finish.released(job))
        if force:
            self._force = True
            if self._jobs_scope is not None:
                self._jobs_scope.cancel()
        self._kick()
        await self._stopped.wait()

    async def __aenter__(self) -> Worker:
        self._outer = anyio.create_task_group()
        await self._outer.__aenter__()
        self._outer.start_soon(self.run, name=f"worker:{self.name}")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
        assert self._outer is not None
        await self._outer.__aexit__(*exc)

    # --- fetch loop ---------------------------------------------------------------
    @property
    def idle(self) -> bool:
        """True while the worker found the queue empty and waits for an add."""
        return self._idler.armed

    def _kick(self) -> None:
        self._wakeup.set()

    async def _runner(self) -> None:
        """Runs ready jobs one at a time; parks itself when there are none.

        Claimed jobs wait in a deque and only idle runners are woken, which
        costs far less per job than a channel receive or a task spawn.
        """
        ready = self._ready
        while True:
            while ready:
                await self._process(ready.popleft())
            parked = anyio.Event()
            self._idle_runners.append(parked)
            await parked.wait()

    def _dispatch(self, jobs: list[Job]) -> None:
        self._ready.extend(jobs)
        idle = self._idle_runners
        for _ in range(min(len(jobs), len(idle))):
            idle.pop().set()

    async def _loop(self) -> None:
        half = max(1, self.capacity // 2)
        while True:
            held = len(self._in_flight)
            free = 0 if self._closing else self.capacity - held
            if self._closing and not held and not self._done:
                return
            # Batch: call when half the capacity is free, or a runner may idle.
            if (not self._done and free == 0) or (free < half and held >= self.concurrency):
                await self._sleep(None)
                continue
            finishes, self._done = self._done, []
            try:
                res = await self.consumer.fetch(finishes, free)
            except GlidemqConnectionError as exc:
                self._done[:0] = finishes
                await self._reconnect_pause(exc)
                continue
            self.rejected += res.rejected
            if res.outbox:
                await self._retrying(self.consumer.relay)
            for job in res.jobs:
                self._in_flight[job.id] = job
            self._dispatch(res.jobs)
            if len(res.jobs) < free and not self._done:
                # The queue ran dry: sleep until an add, a completion, or the
                # next delayed job / lock deadline.
                self._idler.arm()
                await self._sleep(res.wake_ms)

    async def _sleep(self, wake_ms: int | None) -> None:
        timeout = self.block_timeout if wake_ms is None else min(self.block_timeout,
                                                                 wake_ms / 1000)
        with anyio.move_on_after(timeout):
            await self._wakeup.wait()
        self._wakeup = anyio.Event()

    async def _reconnect_pause(self, exc: BaseException) -> None:
        delay = getattr(self, "_backoff", 0.05)
        log.warning("queue %s: %s; retrying in %.2fs", self.name, exc, delay)
        await anyio.sleep(delay)
        self._backoff = min(5.0, delay * 2)

    async def _retrying(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        while True:
            try:
                result = await fn()
                self._backoff = 0.05
                return result
            except LibraryVersionError:
                raise  # not transient: this client is too old for the server
            except GlidemqConnectionError as exc:
                await self._reconnect_pause(exc)
            except OSError as exc:
                await self._reconnect_pause(exc)

    async def _flush(self) -> None:
        """Send the last outcomes; with force, return unfinished jobs to the queue."""
        with anyio.CancelScope(shield=True):
            if self._in_flight:
                self._done.extend(Finish.released(j) for j in self._in_flight.values())
                self._in_flight.clear()
            with anyio.move_on_after(10):
                while self._done:
                    finishes, self._done = self._done, []
                    try:
                        res = await self.consumer.fetch(finishes, 0)
                        self.rejected += res.rejected
                    except GlidemqConnectionError as exc:
                        self._done[:0] = finishes
                        await self._reconnect_pause(exc)

    # --- processing ---------------------------------------------------------------
    async def _process(self, job: Job) -> None:
        finish: Finish | None = None
        try:
            try:
                if tracing.active():
                    result = await self._call_traced(job)
                elif job.opts.timeout is not None:
                    with anyio.fail_after(job.opts.timeout):
                        result = await self._call(job)
                else:
                    result = await self._call(job)
                value = codec.encode(result, f"return value of job {job.id!r}", self.max_payload)
                finish = Finish.completed(job, value)
                self.completed += 1
            except RateLimitedError as exc:
                finish = Finish.deferred(job, int(exc.delay * 1000))
            except TimeoutError as exc:
                finish = self._failure(job, exc, "job timeout exceeded")
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                finish = self._failure(job, exc, None)
        finally:
            if self._in_flight.pop(job.id, None) is not None:
                self._done.append(finish if finish is not None else Finish.released(job))
            self._kick()

    def _failure(self, job: Job, exc: BaseException, reason: str | None) -> Finish:
        self.failed += 1
        try:
            delay = retry_delay_ms(job, exc, self.backoff_strategies)
        except InvalidOptionError as bad:
            log.error("job %s: %s", job.id, bad)
            delay = -1
        stack = "".join(traceback.format_exception(exc))
        return Finish.failed(job, reason or f"{type(exc).__name__}: {exc}", stack, delay)

    async def _call_traced(self, job: Job) -> Any:
        with tracing.process_span(self.name, job.id, job.name, job.opts.trace) as span:
            try:
                if job.opts.timeout is not None:
                    with anyio.fail_after(job.opts.timeout):
                        return await self._call(job)
                return await self._call(job)
            except Exception as exc:
                tracing.record_failure(span, f"{type(exc).__name__}: {exc}")
                raise

    async def _call(self, job: Job) -> Any:
        job._bind(self._channel)  # type: ignore[arg-type]
        if self._is_async:
            return await self.processor(job)
        return await anyio.to_thread.run_sync(self.processor, job, limiter=self._limiter)

    async def _heartbeat(self) -> None:
        """Renews every in-flight lock in one call, three times per lock period."""
        while True:
            await anyio.sleep(self.lock_duration / 3)
            held = [(j.id, j.token) for j in self._in_flight.values()]
            if not held:
                continue
            try:
                lost = await self.consumer.extend(held)
            except GlidemqConnectionError as exc:
                log.warning("queue %s: lock renewal failed: %s", self.name, exc)
                continue
            for jid in lost:
                log.warning("queue %s: lost the lock of job %s (reclaimed elsewhere)",
                            self.name, jid)


class _JobChannel:
    """What a processor's job talks to for progress and logs: the worker's consumer."""

    def __init__(self, worker: Worker) -> None:
        self._c = worker.consumer

    async def _progress(self, job_id: str, token: int, progress: Any) -> None:
        await self._c.progress(job_id, token, codec.encode(
            progress, f"progress of job {job_id!r}", self._c.max_payload))

    async def _log(self, job_id: str, token: int, line: str) -> int:
        await self._c.log(job_id, token, line)
        return 0

    async def update_data(self, job_id: str, data: Any) -> None:
        from glidemq.engine.queue import Queue

        q = Queue(self._c.name, self._c.connection, max_payload=self._c.max_payload)
        await q.update_data(job_id, data)

    async def get_job_state(self, job_id: str) -> Any:
        from glidemq.engine.queue import Queue

        return await Queue(self._c.name, self._c.connection).get_job_state(job_id)
