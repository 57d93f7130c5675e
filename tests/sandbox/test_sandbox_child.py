"""The child runtime (``python -m glidemq.sandbox``) driven by hand over its socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import psutil

from glidemq.sandbox import exitcodes
from glidemq.sandbox.framing import HEADER
from glidemq.sandbox.protocol import (
    PROTOCOL_VERSION,
    BootError,
    Hello,
    Idle,
    JobSpec,
    Log,
    Result,
    Run,
    Shutdown,
    Started,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
RawChild = Any  # tests/sandbox/conftest.py:RawChild (conftest modules are not importable)
Start = Callable[..., RawChild]


def _hello(child: RawChild, handler: str) -> Hello:
    hello = child.recv()
    assert isinstance(hello, Hello), hello
    assert hello.protocol == PROTOCOL_VERSION
    assert hello.pid == child.process.pid
    assert hello.handler == handler
    assert hello.python.startswith("cpython 3.")
    return hello


def _idle(child: RawChild, jobs_done: int) -> Idle:
    idle = child.recv()
    assert isinstance(idle, Idle), idle
    assert idle.jobs_done == jobs_done
    return idle


def test_hello_then_exit_0_on_eof(raw_child: Start) -> None:
    child = raw_child("tests.handlers.basic:noop")
    _hello(child, "tests.handlers.basic:noop")
    child.sock.shutdown(2)  # the supervisor end closes: the child must not linger
    assert child.wait() == exitcodes.OK


def test_batch_runs_in_order_then_idle(raw_child: Start) -> None:
    child = raw_child("tests.handlers.basic:echo")
    _hello(child, "tests.handlers.basic:echo")
    jobs = [JobSpec(id=str(i), name="e", data=msgspec.json.encode({"i": i})) for i in range(3)]
    child.send(Run(jobs=jobs))
    for i in range(3):
        assert child.recv() == Started(job_id=str(i))
        result = child.recv()
        assert isinstance(result, Result)
        assert msgspec.json.decode(result.value)["data"] == {"i": i}
    assert _idle(child, 3).rss_bytes > 1024 * 1024
    child.send(Shutdown())
    assert child.recv() is None
    assert child.wait() == exitcodes.OK


def test_pipelined_runs_are_queued(raw_child: Start) -> None:
    child = raw_child("tests.handlers.basic:slow_then_ok")
    _hello(child, "tests.handlers.basic:slow_then_ok")
    child.send(Run(jobs=[JobSpec(id="a", name="s", data=b"0.2"), JobSpec(id="b", name="s")]))
    child.send(Run(jobs=[JobSpec(id="c", name="s", data=b"0")]))  # read between a and b
    seen = [child.recv() for _ in range(11)]  # per job Started, Log, Result|Failure; 2 Idle
    started = [m.job_id for m in seen if isinstance(m, Started)]
    assert started == ["a", "b", "c"]
    assert [type(m).__name__ for m in seen].count("Idle") == 2
    assert isinstance(seen[-1], Idle) and seen[-1].jobs_done == 3


def test_shutdown_during_a_batch_skips_unstarted_jobs(raw_child: Start) -> None:
    child = raw_child("tests.handlers.basic:slow_then_ok")
    _hello(child, "tests.handlers.basic:slow_then_ok")
    child.send(Run(jobs=[JobSpec(id=str(i), name="s", data=b"1.0") for i in range(3)]))
    assert child.recv() == Started(job_id="0")
    assert child.recv() == Log(job_id="0", line="started")
    child.send(Shutdown())  # arrives while job 0 runs
    assert child.recv() == Result(job_id="0", value=b'"done"')
    _idle(child, 1)  # jobs 1 and 2 were never Started: the supervisor releases them
    assert child.recv() is None
    assert child.wait() == exitcodes.OK


def test_malformed_frame_is_a_protocol_error(raw_child: Start) -> None:
    child = raw_child("tests.handlers.basic:noop")
    _hello(child, "tests.handlers.basic:noop")
    child.sock.sendall(HEADER.pack(2) + b"\xc1\xc1")
    assert child.wait() == exitcodes.PROTOCOL_ERROR
    _, err = child.process.communicate()
    assert b"ProtocolError" in err


def test_handler_import_error_sends_boot_error(raw_child: Start) -> None:
    child = raw_child("tests.handlers.broken:noop")
    boot = child.recv()
    assert isinstance(boot, BootError), boot
    assert boot.type == "HandlerImportError"
    assert "this module cannot be imported" in boot.message
    assert "RuntimeError" in boot.traceback
    assert child.wait() == exitcodes.HANDLER_IMPORT_ERROR
    assert exitcodes.is_boot_error(exitcodes.HANDLER_IMPORT_ERROR)


def test_refused_rlimit_is_a_boot_error(raw_child: Start) -> None:
    child = raw_child("tests.handlers.basic:noop", "--rlimits", '{"open_files": 1000000000}')
    boot = child.recv()
    assert isinstance(boot, BootError), boot
    assert "rlimits.open_files: got 1000000000" in boot.message
    assert child.wait() == exitcodes.BOOT_ERROR


def test_bad_command_line_is_a_usage_error(raw_child: Start) -> None:
    child = raw_child("tests.handlers.basic:noop", "--no-such-flag")
    assert child.wait() == exitcodes.USAGE_ERROR
    assert exitcodes.is_boot_error(exitcodes.USAGE_ERROR)


def test_child_of_a_dead_parent_exits(raw_child: Start) -> None:
    """The pid given is not our parent: as if the supervisor died before pdeathsig was armed."""
    child = raw_child("tests.handlers.basic:noop", "--parent-pid", str(os.getpid() + 10_000_000))
    assert child.wait() == exitcodes.ORPHANED


def test_sigterm_unwinds_the_handler_then_kills(raw_child: Start) -> None:
    child = raw_child("tests.handlers.basic:sleep_long")
    _hello(child, "tests.handlers.basic:sleep_long")
    child.send(Run(jobs=[JobSpec(id="1", name="s")]))
    assert child.recv() == Started(job_id="1")
    assert child.recv() == Log(job_id="1", line="sleeping")
    child.process.send_signal(signal.SIGTERM)
    assert child.wait() == -signal.SIGTERM
    out, _ = child.process.communicate()
    assert b"cleanup ran" in out  # the handler's finally block ran before death


def test_async_handler(raw_child: Start) -> None:
    child = raw_child("tests.handlers.basic:async_echo")
    _hello(child, "tests.handlers.basic:async_echo")
    child.send(Run(jobs=[JobSpec(id=str(i), name="a", data=b"[1,2]") for i in range(2)]))
    for i in range(2):
        assert child.recv() == Started(job_id=str(i))
        assert child.recv() == Result(job_id=str(i), value=b'{"id":"%d","data":[1,2]}' % i)
    _idle(child, 2)


_FAKE_SUPERVISOR = """
import os, socket, subprocess, sys
from glidemq.sandbox.framing import BlockingChannel
from glidemq.sandbox.protocol import JobSpec, Run, supervisor_codec

ours, theirs = socket.socketpair()
child = subprocess.Popen(
    [sys.executable, "-P", "-m", "glidemq.sandbox", "--fd", str(theirs.fileno()),
     "--handler", "tests.handlers.basic:sleep_forever", "--parent-pid", str(os.getpid())],
    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
)
channel = BlockingChannel(ours.fileno(), *supervisor_codec())
channel.receive()  # Hello
channel.send(Run(jobs=[JobSpec(id="1", name="s")]))
channel.receive()  # Started
channel.receive()  # Log: SIGTERM is ignored, the handler spins
print(child.pid, flush=True)
os.read(0, 1)  # hold the socket open until killed
"""


def test_child_dies_with_its_supervisor() -> None:
    """SIGKILL the supervisor while its child spins in a handler: pdeathsig ends the child."""
    supervisor = subprocess.Popen(
        [sys.executable, "-c", _FAKE_SUPERVISOR],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT)},
    )
    assert supervisor.stdout is not None
    grandchild = psutil.Process(int(supervisor.stdout.readline()))
    try:
        supervisor.kill()
        supervisor.communicate(timeout=20)
        grandchild.wait(20)  # psutil.TimeoutExpired if the child outlives its parent
    finally:
        if grandchild.is_running():
            grandchild.kill()
