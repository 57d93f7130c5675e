"""Runner-side context handed to every adapter (standard library only).

An adapter runs inside ``bench/_run.py`` in its own interpreter. ``Ctx`` gives it:

* ``url``/``host``/``port``/``queue`` and ``r`` (a counting RESP client used to
  count completions in Valkey; one command per poll, subtracted from
  round-trip figures via the marks);
* ``spawn(argv)``: start a worker process (stdout/stderr to a log file),
  stopped by PID in ``stop_all`` (SIGTERM, then SIGKILL after a grace);
  workers stay in the runner's process group, which the driver kills as a
  last resort, so nothing outlives a run;
* ``wait_completed(count, n)``: poll ``count()`` until it reaches n; returns
  seconds from the FIRST observed completion to the last, and records
  ``window_jobs`` (jobs completed inside that window) and ``startup_s``, so
  worker boot time is excluded from throughput (it is reported separately);
* ``latency_loop(add, count, n)``: n sequential add -> completion-observed samples;
* ``mark(label)``: an INFO snapshot plus the harness's own command counts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import BENCH_DIR, Resp, info_snapshot

DONE_KEY = "bench:done"  # INCR counter for peers that keep no countable completion state


class Skip(Exception):
    """Raised by an adapter for an operation/setting it does not support."""


class Ctx:
    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        hostport = url.split("//", 1)[1].split("/", 1)[0]
        host, port = hostport.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.queue = "bench"
        self.deadline = time.monotonic() + timeout
        self.r = Resp(self.host, self.port)
        self.procs: list[tuple[subprocess.Popen[bytes], str]] = []
        self.marks: dict[str, dict[str, Any]] = {}
        self.extra: dict[str, Any] = {}
        self.logdir = tempfile.mkdtemp(prefix="glidemq-bench-run-")
        self.python = sys.executable
        self.bin = os.path.dirname(sys.executable)
        self.bench_dir = BENCH_DIR

    # ------------------------------------------------------------------ processes
    def env(self, **kw: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        env.update(
            PYTHONPATH=str(BENCH_DIR),
            PYTHONUNBUFFERED="1",
            PYTHONDONTWRITEBYTECODE="1",
            BENCH_URL=self.url,
            BENCH_QUEUE=self.queue,
        )
        env.update({k: str(v) for k, v in kw.items()})
        return env

    def spawn(
        self,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        name: str = "worker",
        cwd: str | Path | None = None,
    ) -> subprocess.Popen[bytes]:
        log = open(os.path.join(self.logdir, f"{name}-{len(self.procs)}.log"), "wb")  # noqa: SIM115
        p = subprocess.Popen(
            list(argv),
            cwd=str(cwd or BENCH_DIR),
            env=env or self.env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append((p, log.name))
        return p

    def log_tail(self, lines: int = 6) -> str:
        out = []
        for _, path in self.procs:
            with contextlib.suppress(OSError):
                tail = Path(path).read_text(errors="replace").strip().splitlines()[-lines:]
                out.append(f"[{os.path.basename(path)}] " + " | ".join(tail))
        return " ".join(out)

    def check_alive(self, allow_exit: bool = False) -> None:
        for p, _ in self.procs:
            rc = p.poll()
            if rc is not None and (rc != 0 or not allow_exit):
                raise RuntimeError(f"worker pid {p.pid} exited with {rc}: {self.log_tail()}")

    def stop_all(self, grace: float = 1.5) -> None:
        """SIGTERM every worker, SIGKILL what is still alive after ``grace`` s.

        Measurements are over by then, so a short grace is enough; anything a
        worker forked and left behind dies with the runner's process group."""
        for p, _ in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)
        end = time.monotonic() + grace
        for p, _ in self.procs:
            try:
                p.wait(max(0.05, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                p.wait(5)

    def close(self) -> None:
        self.stop_all()
        self.r.close()
        shutil.rmtree(self.logdir, ignore_errors=True)

    # ------------------------------------------------------------------ timing
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check_deadline(self, what: str) -> None:
        if time.monotonic() > self.deadline:
            raise TimeoutError(f"time bound hit while {what}; {self.log_tail()}")

    def mark(self, label: str) -> None:
        snap = info_snapshot(self.r)
        # INFO itself is not in its own output; it is excluded by name anyway.
        snap["own_sent"] = dict(self.r.sent)
        snap["own_round_trips"] = self.r.round_trips
        self.marks[label] = snap

    def wait_completed(
        self, count: Callable[[], int], n: int, interval: float = 0.002, allow_exit: bool = False
    ) -> float:
        """Poll until count() >= n. Returns seconds from first observed completion
        to the last; sets extra window_jobs/startup_s. Marks 'first' and 'end'."""
        t_start = time.perf_counter()
        first_t: float | None = None
        first_c = 0
        last_check = t_start
        c = count()
        while c < n:
            if first_t is None and c > 0:
                first_t, first_c = time.perf_counter(), c
                self.mark("first")
            now = time.perf_counter()
            if now - last_check > 0.5:
                last_check = now
                self.check_alive(allow_exit=allow_exit)
                self.check_deadline(f"waiting for {n} completions (have {c})")
            time.sleep(interval)
            c = count()
        t_end = time.perf_counter()
        self.mark("end")
        if first_t is None:  # everything finished between two polls
            first_t, first_c = t_start, 0
            self.marks["first"] = self.marks.get("start", self.marks["end"])
        self.extra.update(
            window_jobs=n - first_c,
            startup_s=first_t - t_start,
            total_s=t_end - t_start,
            completed=c,
        )
        return max(t_end - first_t, 1e-9)

    def latency_loop(
        self,
        add: Callable[[], Any],
        count: Callable[[], int],
        n: int,
        warmup: int = 5,
        interval: float = 0.0005,
    ) -> list[float]:
        """n sequential jobs: add one, poll count() until it has grown by one.

        The first ``warmup`` jobs (not sampled) also wait for the worker to be up."""
        samples: list[float] = []
        done = count()
        for i in range(warmup + n):
            t0 = time.perf_counter()
            add()
            target = done + 1
            c = count()
            spins = 0
            while c < target:
                spins += 1
                if spins % 256 == 0:
                    self.check_alive()
                    self.check_deadline(f"latency job {i}")
                time.sleep(interval)
                c = count()
            dt = time.perf_counter() - t0
            done = c
            if i >= warmup:
                samples.append(dt)
        return samples

    # ------------------------------------------------------------------ counting helpers
    def zcard(self, key: str) -> Callable[[], int]:
        return lambda: self.r.int("ZCARD", key)

    def get_int(self, key: str = DONE_KEY) -> Callable[[], int]:
        return lambda: self.r.int("GET", key)

    def n_minus(self, n: Callable[[], int] | int, *args: Any) -> Callable[[], int]:
        """completed = n - <command reply>, e.g. n - ZCARD of a pending set."""
        if callable(n):
            return lambda: n() - self.r.int(*args)
        return lambda: n - self.r.int(*args)


def chunks(n: int, size: int) -> list[int]:
    return [min(size, n - i) for i in range(0, n, size)]
