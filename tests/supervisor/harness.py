"""Harness of the supervisor integration tests (not a test module).

Runs ``python -m glidemq.supervisor --config <toml>`` as a real subprocess
from the repository root (so ``tests.handlers.*`` imports in its children),
reads its ``/healthz`` and ``/metrics`` over a real socket, and cleans up by
pid: SIGTERM first; if the supervisor is still up after a grace period it is
frozen (SIGSTOP, so it spawns nothing more), every child ever seen is
SIGKILLed, then the supervisor is. A child still running after its
supervisor exited is a leak and fails the test.

Tests synchronise on observed state with :func:`wait_for`; its deadline only
guards against hangs, it is never the pass condition.
"""

from __future__ import annotations

import inspect
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import psutil

from glidemq.engine.queue import Queue
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
H = "tests.handlers.supervised:"  # handlers written for these tests
B = "tests.handlers.basic:"  # the sandbox tests' handlers
HANG_GUARD = 30.0


async def wait_for(cond: Callable[[], Any], what: str, within: float = HANG_GUARD,
                   interval: float = 0.05) -> Any:
    """Poll ``cond`` (sync or async) until it returns something truthy; return that."""
    deadline = time.monotonic() + within
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await anyio.sleep(interval)


async def counts(q: Queue) -> dict[str, int]:
    return {str(k): v for k, v in (await q.get_job_counts()).items()}


async def wait_counts(q: Queue, within: float = HANG_GUARD, **expected: int) -> dict[str, int]:
    """Wait until the queue's counts include ``expected``, e.g. ``completed=5``."""
    seen: dict[str, int] = {}

    async def check() -> bool:
        nonlocal seen
        seen = await counts(q)
        return all(seen[k] == v for k, v in expected.items())

    try:
        await wait_for(check, f"counts {expected}", within)
    except AssertionError:
        raise AssertionError(f"counts never reached {expected}; last {seen}") from None
    return seen


def read_records(path: Path) -> list[tuple[int, str, int]]:
    """The ``"<pid> <job id> <attempt>"`` lines ``supervised:behave`` appends."""
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(int(p), j, int(a)) for p, j, a in rows]


# --- config files -----------------------------------------------------------------
def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def render_config(valkey: Mapping[str, Any], supervisor: Mapping[str, Any],
                  queues: list[Mapping[str, Any]]) -> str:
    """A glidemq.toml; nested tables of a queue are written inline."""
    lines = ["[valkey]", *(f"{k} = {_toml(v)}" for k, v in valkey.items()), "",
             "[supervisor]", *(f"{k} = {_toml(v)}" for k, v in supervisor.items())]
    for q in queues:
        lines += ["", "[[queues]]", *(f"{k} = {_toml(v)}" for k, v in q.items())]
    return "\n".join(lines) + "\n"


# --- the supervisor process ----------------------------------------------------------
class SupervisorProcess:
    """One ``glidemq-supervisor`` subprocess and what the test can observe of it."""

    def __init__(self, config_path: Path, log_path: Path, health_port: int,
                 env: Mapping[str, str] | None = None) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.port = health_port
        self.seen: dict[int, psutil.Process] = {}  # every child process ever observed
        full_env = dict(os.environ)
        full_env.update(env or {})
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "glidemq.supervisor", "--config", str(config_path)],
                cwd=REPO, env=full_env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.pid = self.proc.pid

    # --- observation ----------------------------------------------------------------
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def count_log(self, pattern: str) -> int:
        return len(re.findall(pattern, self.log()))

    def children(self) -> list[psutil.Process]:
        """Live descendants now; each is remembered for the cleanup."""
        try:
            kids = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for k in kids:
            self.seen.setdefault(k.pid, k)
        return kids

    def alive(self) -> bool:
        return self.proc.poll() is None

    async def http(self, path: str) -> tuple[int, str]:
        """GET ``path`` from the health endpoint: (status, body)."""
        with anyio.fail_after(5):
            async with await anyio.connect_tcp("127.0.0.1", self.port) as stream:
                await stream.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                data = b""
                while True:
                    try:
                        data += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        break
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode()

    async def metrics(self) -> dict[str, dict[str, float]]:
        """``{metric name: {queue: value}}`` (limit kills keyed ``"queue/limit"``)."""
        status, body = await self.http("/metrics")
        assert status == 200, body
        out: dict[str, dict[str, float]] = {}
        for line in body.splitlines():
            m = re.fullmatch(r'(\w+)\{queue="([^"]*)"(?:,limit="([^"]*)")?\} (\S+)', line)
            if m:
                key = m[2] if m[3] is None else f"{m[2]}/{m[3]}"
                out.setdefault(m[1], {})[key] = float(m[4])
        self.children()
        return out

    async def metric(self, name: str, queue: str) -> float:
        return (await self.metrics()).get(name, {}).get(queue, 0.0)

    async def wait_metric(self, name: str, queue: str, cond: Callable[[float], bool],
                          what: str, within: float = HANG_GUARD) -> float:
        last: list[float] = []

        async def check() -> bool:
            last[:] = [await self.metric(name, queue)]
            return cond(last[0])

        try:
            await wait_for(check, what, within)
        except AssertionError:
            raise AssertionError(f"{name}{{queue={queue}}}: {what}; last {last}") from None
        return last[0]

    async def ready(self, within: float = HANG_GUARD) -> SupervisorProcess:
        """Wait until the health endpoint answers (the pools are started by then)."""

        async def up() -> bool:
            if not self.alive():
                raise AssertionError(f"supervisor exited {self.proc.returncode}:\n{self.log()}")
            try:
                await self.http("/metrics")
            except OSError:
                return False
            return "supervising" in self.log()

        await wait_for(up, "the supervisor's health endpoint", within)
        return self

    # --- control --------------------------------------------------------------------
    def send(self, sig: int) -> None:
        self.children()
        os.kill(self.pid, sig)

    async def wait_exit(self, within: float = HANG_GUARD) -> int:
        def done() -> bool:
            if self.alive():
                self.children()
                return False
            return True

        await wait_for(done, "the supervisor to exit", within, interval=0.02)
        return int(self.proc.returncode)

    def leaked(self) -> list[int]:
        """Children seen at any time that are still running."""
        return [p.pid for p in self.seen.values() if _running(p)]

    def cleanup(self, grace: float = 3.0) -> list[int]:
        """Stop everything by pid; returns children left running by an exited supervisor.

        SIGTERM first (a drain of idle pools is quick); after ``grace`` the
        supervisor is frozen, its children are SIGKILLed, then it is.
        """
        if self.alive():
            self.send(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        orphans = [] if self.alive() else self._settled_leaks()
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGSTOP)  # frozen: it spawns nothing more
            except ProcessLookupError:
                pass
            self.children()
        for p in self.seen.values():
            if _running(p):
                try:
                    p.kill()
                except psutil.Error:
                    pass
        if self.alive():
            self.proc.kill()
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while self.leaked() and time.monotonic() < deadline:
            time.sleep(0.01)  # a zombie counts as gone: whoever adopted it reaps it
        return orphans

    def _settled_leaks(self) -> list[int]:
        """Children alive a moment after their supervisor exited (they should all be gone)."""
        deadline = time.monotonic() + 2
        while self.leaked() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.leaked()


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Launcher:
    """The ``launch`` fixture: writes a config and starts supervisors; cleans them all up."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.tmp_path = tmp_path
        self.url = url
        self.started: list[SupervisorProcess] = []

    def write(self, queues: list[Mapping[str, Any]], *, url: str | None = None,
              cluster: bool = False, valkey: Mapping[str, Any] | None = None,
              supervisor: Mapping[str, Any] | None = None, port: int | None = None,
              name: str = "glidemq.toml") -> tuple[Path, int]:
        port = port or free_port()
        v: dict[str, Any] = {"url": url or self.url}
        if cluster:
            v["cluster"] = True
        v.update(valkey or {})
        s: dict[str, Any] = {"health_port": port, "restart_backoff_max": 0.2,
                             "drain_timeout": 10.0, "log_level": "DEBUG"}
        s.update(supervisor or {})
        path = self.tmp_path / name
        path.write_text(render_config(v, s, queues))
        return path, port

    async def __call__(self, queues: list[Mapping[str, Any]], *,
                       env: Mapping[str, str] | None = None, wait: bool = True,
                       **kwargs: Any) -> SupervisorProcess:
        n = len(self.started)
        path, port = self.write(queues, name=f"glidemq-{n}.toml", **kwargs)
        sup = SupervisorProcess(path, self.tmp_path / f"supervisor-{n}.log", port, env)
        self.started.append(sup)
        return await sup.ready() if wait else sup

    def cleanup(self) -> None:
        leaks = {sup.pid: sup.cleanup() for sup in self.started}
        leaks = {pid: kids for pid, kids in leaks.items() if kids}
        assert not leaks, f"children outlived their exited supervisor: {leaks}"
