"""Shared helpers of the engine tests (not a test module).

Tests synchronise on observed state: :func:`wait_for` polls a condition
until it holds, with a generous deadline that only guards against hangs.
"""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio

from glidemq.engine.connection import Connection
from glidemq.engine.job import JobState
from glidemq.engine.queue import Queue
from glidemq.engine.worker import Worker
from glidemq.errors import GlidemqConnectionError
from tests.servers import Cluster, Server

REPO = Path(__file__).resolve().parents[2]
HANG_GUARD = 30.0  # seconds; only a hang ever gets this close
CORE_STATES = ("waiting", "active", "delayed", "prioritized", "completed", "failed")


async def wait_for(cond: Callable[[], Any], within: float = HANG_GUARD,
                   what: str = "condition", interval: float = 0.02) -> Any:
    """Poll ``cond`` (sync or async) until it returns a truthy value; return it."""
    deadline = anyio.current_time() + within
    last: Any = None
    while True:
        last = cond()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if anyio.current_time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await anyio.sleep(interval)


async def counts(q: Queue) -> dict[str, int]:
    """Counts by state name; states this suite does not exercise (those of flows)
    are left out, so comparing whole dicts stays meaningful."""
    return {str(k): v for k, v in (await q.get_job_counts()).items() if str(k) in CORE_STATES}


async def counts_or_none(q: Queue) -> dict[str, int] | None:
    """Counts, or None while the server cannot be reached (a restart test's poller)."""
    try:
        return await counts(q)
    except GlidemqConnectionError:
        return None


async def wait_counts(q: Queue, within: float = HANG_GUARD, **expected: int) -> dict[str, int]:
    """Wait until the queue's counts include ``expected`` (e.g. completed=5)."""
    seen: dict[str, int] = {}

    async def check() -> bool:
        nonlocal seen
        seen = await counts_or_none(q) or {}
        return bool(seen) and all(seen[k] == v for k, v in expected.items())

    try:
        await wait_for(check, within, f"counts {expected}")
    except AssertionError:
        raise AssertionError(f"counts never reached {expected}; last {seen}") from None
    return seen


async def wait_state(q: Queue, job_id: str, state: JobState | str,
                     within: float = HANG_GUARD) -> None:
    async def check() -> bool:
        return await q.get_job_state(job_id) == JobState(state)

    await wait_for(check, within, f"job {job_id} to be {state}")


@asynccontextmanager
async def running(worker: Worker, force: bool = False) -> AsyncIterator[Worker]:
    """Run ``worker`` in the background for the block; close it afterwards."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        try:
            yield worker
        except BaseException:  # a failed test must not wait on jobs it left hanging
            with anyio.fail_after(HANG_GUARD), anyio.CancelScope(shield=True):
                await worker.close(force=True)
            raise
        with anyio.fail_after(HANG_GUARD):
            await worker.close(force=force)


async def hget(conn: Connection, key: str, field: str) -> str | None:
    v = await conn.client().hget(key, field)
    return v.decode() if v is not None else None


async def server_ms(conn: Connection, key: str) -> int:
    """The server clock in ms, read from the node that owns ``key``."""
    c = conn.client()
    if conn.cluster:
        sec, usec = await c.execute_command("TIME", target_nodes=c.get_node_from_key(key))
    else:
        sec, usec = await c.execute_command("TIME")
    return int(sec) * 1000 + int(usec) // 1000


async def queue_keys(conn: Connection, q: Queue) -> list[str]:
    """Every key of queue ``q`` (its job hashes, lists, sets, meta)."""
    c = conn.client()
    return sorted([k.decode() async for k in c.scan_iter(match=q.keys.prefix + "*")])


# --- dedicated servers (tests that restart or poison the server) ---------------------
@contextmanager
def dedicated(mode: str, aof: bool = False) -> Iterator[Server | Cluster]:
    """A server of the test's own: a standalone Server, or a one-node cluster.

    The session fixtures are shared by every test, so a test that restarts,
    flushes or poisons its server gets a fresh one instead.
    """
    srv: Server | Cluster
    if mode == "cluster":
        srv = Cluster(1)
        for n in srv.nodes:
            n.aof = aof
    else:
        srv = Server(aof=aof)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def nodes(srv: Server | Cluster) -> list[Server]:
    return srv.nodes if isinstance(srv, Cluster) else [srv]


# --- worker subprocesses --------------------------------------------------------------
def spawn_worker(url: str, queue: str, out: Path, *, concurrency: int = 8,
                 lock_duration: float = 30.0, hold: float = 0.0,
                 prefetch: int | None = None) -> subprocess.Popen[bytes]:
    """Start ``tests/engine/worker_proc.py`` in a real child process."""
    args = [sys.executable, "-m", "tests.engine.worker_proc", url, queue, str(out),
            str(concurrency), str(lock_duration), str(hold),
            "-" if prefetch is None else str(prefetch)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(str(out) + ".err", "wb") as err:  # the child keeps its own descriptor
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)


async def wait_ready(outs: list[Path]) -> None:
    """Wait until every worker process handles SIGTERM (its OUT.ready exists)."""
    await wait_for(lambda: all(Path(str(o) + ".ready").exists() for o in outs),
                   what="the worker processes to start")


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
                 timeout: float = HANG_GUARD) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"worker process {proc.pid} ignored signal {sig}") from None


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


async def to_thread(fn: Callable[[], Any]) -> Any:
    return await anyio.to_thread.run_sync(fn)

