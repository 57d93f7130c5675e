"""Fixtures for sandbox tests: children started by hand, without the supervisor's Child."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from glidemq.sandbox.framing import BlockingChannel
from glidemq.sandbox.protocol import ToSupervisor, supervisor_codec

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RawChild:
    """A ``python -m glidemq.sandbox`` process and the supervisor end of its socket."""

    def __init__(self, process: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        encoder, decoder = supervisor_codec()
        self.channel: BlockingChannel[ToSupervisor] = BlockingChannel(
            sock.fileno(), encoder, decoder
        )

    def send(self, message: Any) -> None:
        self.channel.send(message)

    def recv(self, timeout: float = 20.0) -> ToSupervisor | None:
        """Next message, None at EOF; a deadline so a broken child fails the test, not hangs it."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.channel.poll()
            if message is not None or self.channel.eof:
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame from the child")
            select.select([self.channel.fd], [], [], remaining)

    def wait(self, timeout: float = 20.0) -> int:
        return self.process.wait(timeout)


@pytest.fixture
def raw_child() -> Iterator[Callable[..., RawChild]]:
    """Factory: start a child for ``handler``; every child is killed and reaped afterwards."""
    started: list[RawChild] = []

    def start(handler: str, *args: str, env: dict[str, str] | None = None) -> RawChild:
        ours, theirs = socket.socketpair()
        argv = [sys.executable, "-P", "-m", "glidemq.sandbox", "--fd", str(theirs.fileno())]
        argv += ["--handler", handler, "--path", str(REPO_ROOT), *args]
        base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT)}
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(theirs.fileno(),),
            env={**base, **(env or {})},
        )
        theirs.close()
        child = RawChild(process, ours)
        started.append(child)
        return child

    yield start
    for child in started:
        if child.process.poll() is None:
            child.process.kill()
        child.process.communicate(timeout=20)
        child.sock.close()
