"""Pool: the children of one queue and the actors that feed them.

Actors (all in the pool's task group):

* **feeder** - the only caller of ``Consumer.fetch``: reports finished jobs
  and claims as many jobs as idle children can take (``batch`` each, fewer
  near ``max_jobs_per_child``) plus a small ``prefetch``, in one server call;
  hands claimed jobs to idle children (several per ``Run`` frame when the
  queue is backed up).
* **child actors** - one per process (see :mod:`glidemq.supervisor.slot`).
* **heartbeat** - renews the locks of every job the pool holds, in one call.
* **reconciler** - spawns or retires children until live == desired, with
  exponential restart backoff and a restart-intensity brake.
* **autoscaler** - samples load and sets ``desired`` through the pure policy.
* **schedulers** - tops up cron schedulers' tick batches every 30 s
  (:func:`glidemq.engine.schedulers.refill_forever`); the ticks themselves
  run inside the feeder's fetch.

Must not: run user code (children do) or parse config (it is given).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from typing import TYPE_CHECKING

import anyio
import psutil

from glidemq.engine import schedulers
from glidemq.engine.connection import Connection
from glidemq.engine.consumer import Consumer, Finish
from glidemq.engine.idle import Idler
from glidemq.engine.job import Job, JobState
from glidemq.engine.queue import Queue
from glidemq.errors import GlidemqConnectionError
from glidemq.supervisor import autoscale
from glidemq.supervisor.health import PoolStats
from glidemq.supervisor.slot import Slot

if TYPE_CHECKING:
    from glidemq.supervisor.config import QueueConfig, SupervisorConfig

log = logging.getLogger(__name__)

FLUSH_AFTER = 0.005  # s: longest an outcome waits to share a call with a claim
FLUSH_BATCH = 64  # outcomes that are sent at once without waiting


class Pool:
    """Children of one queue, reconciled towards ``desired``."""

    def __init__(self, qc: QueueConfig, sc: SupervisorConfig, conn: Connection,
                 path: list[str]) -> None:
        self.qc = qc
        self.sc = sc
        self.path = path
        self.consumer = Consumer(conn, qc.name, lock_ms=int(qc.lock_duration * 1000),
                                 max_stalled_count=qc.max_stalled_count,
                                 dead_letter_queue=qc.dead_letter_queue,
                                 events_maxlen=qc.events_maxlen)
        self.queue = Queue(qc.name, conn)
        self.stats = PoolStats(queue=qc.name)
        self.desired = qc.min_children
        self.slots: set[Slot] = set()
        self.idle: deque[Slot] = deque()
        self.buffer: deque[Job] = deque()
        self.held: dict[str, Job] = {}
        self.done: list[Finish] = []
        self.fetching = True
        self.stopping = False
        self.crashes: deque[float] = deque()
        self.consecutive_crashes = 0
        self.next_spawn_at = 0.0
        self.spawns = 0
        self._kick = anyio.Event()
        self._done_since = 0.0
        self._reconcile = anyio.Event()
        self._last_change = -math.inf
        self._last_busy = -math.inf
        self.idler = Idler(self.consumer, 5.0, lambda: bool(self.idle), self.kick)

    # --- public control ---------------------------------------------------------
    def kick(self) -> None:
        self._kick.set()

    def reconcile(self) -> None:
        self._reconcile.set()

    def resize(self, delta: int) -> None:
        """TTIN/TTOU: one child more or fewer, within [min, max]."""
        before = self.desired
        self.set_desired(self.desired + delta)
        if self.desired == before:
            log.info("queue %s: resize by %+d ignored: desired stays %d (bounds %d..%d)",
                     self.qc.name, delta, before, self.qc.min_children, self.qc.max_children)

    def set_desired(self, n: int) -> None:
        n = max(self.qc.min_children, min(self.qc.max_children, n))
        if n != self.desired:
            log.info("queue %s: desired children %d -> %d", self.qc.name, self.desired, n)
            self.desired = n
            self._last_change = time.monotonic()
        self.stats.pool_desired = self.desired
        self.reconcile()

    def update_config(self, qc: QueueConfig) -> None:
        """HUP: new limits apply to the next batch; size bounds apply now."""
        self.qc = qc
        for slot in self.slots:
            slot.qc = qc
        self.set_desired(self.desired)

    def stop_fetching(self) -> None:
        """TERM: claim nothing more, give back what is not yet started."""
        self.fetching = False
        self.stopping = True
        self._give_back()
        for slot in list(self.slots):
            slot.retire()
        self.kick()
        self.reconcile()

    async def kill_all(self) -> None:
        """Drain deadline passed or quick exit: kill children; their jobs go back."""
        self.stopping = True
        self.fetching = False
        for slot in list(self.slots):
            slot.abandon = True
            await slot.kill()

    def _give_back(self) -> None:
        """Release claimed jobs no child has started (no attempt used)."""
        for job in self.buffer:
            self.finish(Finish.released(job))
        self.buffer.clear()

    @property
    def in_flight(self) -> int:
        return len(self.held)

    # --- used by slots ------------------------------------------------------------
    def finish(self, f: Finish) -> None:
        if self.held.pop(f.job_id, None) is None:
            return
        if not self.done:
            self._done_since = time.monotonic()
        self.done.append(f)
        if f.kind == "c":
            self.stats.jobs_completed_total += 1
            self.consecutive_crashes = 0  # a child that completes jobs is healthy again
        elif f.kind == "f":
            self.stats.jobs_failed_total += 1
        self.kick()

    def ready(self, slot: Slot) -> None:
        self.idle.append(slot)
        self.stats.busy_children = len(self.slots) - len(self.idle)
        self.kick()

    def gone(self, slot: Slot, crashed: bool, boot_error: str | None) -> None:
        self.slots.discard(slot)
        if slot in self.idle:
            self.idle.remove(slot)
        self.stats.pool_size = len(self.slots)
        now = time.monotonic()
        if boot_error is not None:
            log.error("queue %s: handler %r cannot start, pool stopped: %s",
                      self.qc.name, self.qc.handler, boot_error)
            self._pool_stopped(f"boot error: {boot_error}")
        elif crashed and not self.stopping:
            self.stats.child_restarts_total += 1
            self.consecutive_crashes += 1
            self.crashes.append(now)
            while self.crashes and now - self.crashes[0] > self.sc.restart_period:
                self.crashes.popleft()
            if len(self.crashes) > self.sc.restart_intensity:
                log.error("queue %s: %d child crashes within %.0fs; pool stopped spawning",
                          self.qc.name, len(self.crashes), self.sc.restart_period)
                self._pool_stopped(f"restart intensity: {len(self.crashes)} crashes "
                                   f"within {self.sc.restart_period:g}s")
            delay = min(self.sc.restart_backoff_max, 0.1 * 2 ** (self.consecutive_crashes - 1))
            self.next_spawn_at = now + delay
        elif not crashed:
            self.consecutive_crashes = 0
        self.reconcile()
        self.kick()

    def _pool_stopped(self, reason: str) -> None:
        """Stop spawning and say so on the queue's events stream (``pool-stopped``),
        where operators' QueueEvents readers see it, besides the log and /healthz."""
        if self.stats.stopped:
            return
        self.stats.stopped = True
        self._tg.start_soon(self._emit_stopped, reason, name=f"pool-stopped:{self.qc.name}")

    async def _emit_stopped(self, reason: str) -> None:
        try:
            await self.consumer.connection.client().xadd(
                self.consumer.keys.events,
                {"event": "pool-stopped", "jobId": "", "reason": reason, "pid": str(os.getpid())},
                maxlen=self.consumer.events_maxlen or 10_000, approximate=True)
        except Exception as exc:  # the log line above already said it; never crash on this
            log.warning("queue %s: pool-stopped event not written: %s", self.qc.name, exc)

    # --- actors -------------------------------------------------------------------
    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run every actor of the pool until :meth:`stop_fetching` and drain."""
        await self.consumer.start()
        self.stats.pool_desired = self.desired
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self.idler.run, name=f"idler:{self.qc.name}")
            tg.start_soon(self._heartbeat, name=f"heartbeat:{self.qc.name}")
            tg.start_soon(self._reconciler, name=f"reconciler:{self.qc.name}")
            tg.start_soon(self._autoscaler, name=f"autoscaler:{self.qc.name}")
            tg.start_soon(schedulers.refill_forever, self.consumer.connection, self.qc.name,
                          name=f"schedulers:{self.qc.name}")
            task_status.started()
            await self._feeder()
            tg.cancel_scope.cancel()
        await self.consumer.close()

    async def _feeder(self) -> None:
        while True:
            if not self.fetching or self.stats.stopped:
                self._give_back()  # no child here will run them (also a fetch that raced TERM)
            self._dispatch()
            if self.stopping and not self.slots and not self.held and not self.done:
                return
            want = 0
            if self.fetching and not self.stats.stopped:
                room = sum(s.capacity() for s in self.idle)
                want = room + self.qc.prefetch - len(self.buffer)
                want = max(0, want) if self.idle or self.slots else 0
            if want <= 0:
                if not self.done:
                    await self._wait(None)
                    continue
                # Nothing to claim: hold outcomes briefly so they ride along with
                # the next claim (a child's Idle follows its Result at once)
                # instead of costing a call of their own.
                age = time.monotonic() - self._done_since
                if age < FLUSH_AFTER and len(self.done) < FLUSH_BATCH and not self.stopping:
                    await self._wait((FLUSH_AFTER - age) * 1000)
                    continue
            finishes, self.done = self.done, []
            try:
                res = await self.consumer.fetch(finishes, want)
            except GlidemqConnectionError as exc:
                self.done[:0] = finishes
                log.warning("queue %s: %s; retrying", self.qc.name, exc)
                await anyio.sleep(0.2)
                continue
            if res.outbox:
                await self._relay()
            for job in res.jobs:
                self.held[job.id] = job
                self.buffer.append(job)
            self._dispatch()
            if len(res.jobs) < want and not self.done:
                self.idler.arm()
                await self._wait(res.wake_ms)

    async def _relay(self) -> None:
        try:
            await self.consumer.relay()
        except GlidemqConnectionError as exc:
            log.warning("queue %s: flow notices not relayed yet: %s", self.qc.name, exc)

    async def _wait(self, wake_ms: float | None) -> None:
        timeout = 5.0 if wake_ms is None else min(5.0, wake_ms / 1000)
        with anyio.move_on_after(timeout):
            await self._kick.wait()
        self._kick = anyio.Event()

    def _dispatch(self) -> None:
        """Hand buffered jobs to idle children, sharing them out evenly."""
        while self.buffer and self.idle:
            share = math.ceil(len(self.buffer) / len(self.idle))
            slot = self.idle.popleft()
            take = min(slot.capacity(), share)
            jobs = [self.buffer.popleft() for _ in range(min(take, len(self.buffer)))]
            slot.assign(jobs)
        self.stats.busy_children = len(self.slots) - len(self.idle)

    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.qc.lock_duration / 3)
            held = [(j.id, j.token) for j in self.held.values()]
            try:
                lost = await self.consumer.extend(held)
            except GlidemqConnectionError as exc:
                log.warning("queue %s: lock renewal failed: %s", self.qc.name, exc)
                continue
            for jid in lost:
                log.warning("queue %s: lock of job %s lost", self.qc.name, jid)

    async def _reconciler(self) -> None:
        while True:
            live = len(self.slots)
            if not self.stopping and not self.stats.stopped and live < self.desired:
                delay = self.next_spawn_at - time.monotonic()
                if delay > 0:
                    with anyio.move_on_after(delay):
                        await self._reconcile.wait()
                    self._reconcile = anyio.Event()
                    continue
                slot = Slot(self)
                self.slots.add(slot)
                self.spawns += 1
                self.stats.pool_size = len(self.slots)
                self._tg.start_soon(slot.run, name=f"child:{self.qc.name}")
                continue
            if live > self.desired and not self.stopping:
                victim = self.idle[0] if self.idle else None
                for s in self.slots:
                    if not s.retiring and victim is None:
                        victim = s
                if victim is not None and not victim.retiring:
                    log.info("queue %s: retiring a child (%d > %d)",
                             self.qc.name, live, self.desired)
                    victim.retire()
            with anyio.move_on_after(1.0):
                await self._reconcile.wait()
            self._reconcile = anyio.Event()

    async def _autoscaler(self) -> None:
        a = self.qc.autoscale
        if not a.enabled or self.qc.min_children == self.qc.max_children:
            return
        policy = autoscale.AutoscalePolicy.from_config(a)
        cpus = psutil.cpu_count() or 1
        psutil.cpu_percent()
        while not self.stopping:
            await anyio.sleep(a.interval)
            try:
                counts = await self.queue.get_job_counts()
            except GlidemqConnectionError:
                continue
            backlog = counts[JobState.WAITING] + counts[JobState.PRIORITIZED]
            now = time.monotonic()
            if autoscale.is_busy(backlog, self.in_flight, self.desired):
                self._last_busy = now
            obs = autoscale.Observation(
                backlog=backlog, in_flight=self.in_flight,
                child_cpu_percent=[s.cpu_percent() for s in self.slots],
                system_cpu_percent=psutil.cpu_percent(),
                available_mb=psutil.virtual_memory().available / 2**20,
                current=len(self.slots), desired=self.desired,
                min_children=self.qc.min_children, max_children=self.qc.max_children,
                cpu_count=cpus, seconds_since_change=now - self._last_change,
                seconds_since_busy=now - self._last_busy)
            self.set_desired(autoscale.decide(obs, policy))
