"""Child: the supervisor's handle on one real ``python -m glidemq.sandbox`` process."""

from __future__ import annotations

import logging
import os
import signal
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from glidemq.errors import ChildGoneError, FatalBootError, HandshakeError
from glidemq.sandbox import exitcodes
from glidemq.sandbox.limits import Rlimits
from glidemq.sandbox.protocol import Failure, Idle, JobSpec, Log, Progress, Result, Started
from glidemq.supervisor.child import Child, ChildEvent, Exited
from glidemq.supervisor.environment import ENV_ALLOWED, child_env

ROOT = Path(__file__).resolve().parents[2]
H = "tests.handlers.basic:"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def open_child(handler: str, **kwargs: Any) -> AsyncIterator[Child]:
    """A booted child in its own task group; killed and reaped on the way out."""
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            child = await Child.spawn(tg, H + handler, path=[ROOT], **kwargs)
            async with child:
                yield child


async def until(child: Child, *kinds: type) -> list[ChildEvent]:
    """Events up to and including the first of ``kinds`` (Exited always stops)."""
    events: list[ChildEvent] = []
    async for event in child.events():
        events.append(event)
        if isinstance(event, kinds):
            break
    return events


def job(job_id: str, data: Any = None, **kwargs: Any) -> JobSpec:
    return JobSpec(id=job_id, name="test", data=msgspec.json.encode(data), **kwargs)


pytestmark = pytest.mark.anyio


async def test_hello_handshake() -> None:
    async with open_child("noop") as child:
        assert child.hello is not None
        assert child.hello.pid == child.pid
        assert child.hello.handler == H + "noop"
        assert child.alive
        assert (child.rss() or 0) > 1024 * 1024
    assert not child.alive
    assert child.rss() is None
    assert child.exited is not None and child.exited.killed  # aclose() of a live child kills it
    assert str(child.exited.status) == "signal 15"  # an idle child dies at once on SIGTERM


async def test_noop_result() -> None:
    async with open_child("noop") as child:
        await child.run([job("1")])
        events = await until(child, Idle)
        assert events[:2] == [Started(job_id="1"), Result(job_id="1", value=b"null")]
        assert isinstance(events[2], Idle) and events[2].jobs_done == 1
        assert child.running is None and child.outstanding == ()


async def test_micro_batch_of_three() -> None:
    async with open_child("echo") as child:
        await child.run([job(str(i), {"n": i}, attempts_made=i, opts={"x": i}) for i in range(3)])
        events = await until(child, Idle)
        results = [e for e in events if isinstance(e, Result)]
        assert [e.job_id for e in events if isinstance(e, Started)] == ["0", "1", "2"]
        assert [msgspec.json.decode(r.value) for r in results] == [
            {"id": str(i), "name": "test", "data": {"n": i}, "attempts": i, "opts": {"x": i}}
            for i in range(3)
        ]
        assert child.last_idle is not None and child.last_idle.jobs_done == 3


async def test_progress_and_log_frames() -> None:
    async with open_child("progress_and_log") as child:
        await child.run([job("p")])
        events = await until(child, Idle)
        assert events[:-1] == [
            Started(job_id="p"),
            Progress(job_id="p", progress=b"25"),
            Log(job_id="p", line="step 25"),
            Progress(job_id="p", progress=b"50"),
            Log(job_id="p", line="step 50"),
            Progress(job_id="p", progress=b"100"),
            Log(job_id="p", line="step 100"),
            Progress(job_id="p", progress=b'{"done":true}'),
            Result(job_id="p", value=b'"ok"'),
        ]


async def test_exception_becomes_failure() -> None:
    async with open_child("raise_value_error") as child:
        await child.run([job("1", [1])])
        failure = (await until(child, Idle))[1]
        assert isinstance(failure, Failure)
        assert (failure.type, failure.message) == ("ValueError", "bad value [1]")
        assert "in raise_value_error" in failure.traceback
        assert not failure.unrecoverable


async def test_unrecoverable_error_sets_the_flag() -> None:
    async with open_child("raise_unrecoverable") as child:
        await child.run([job("1")])
        failure = (await until(child, Idle))[1]
        assert isinstance(failure, Failure)
        assert failure.type == "glidemq.errors.UnrecoverableError"
        assert failure.unrecoverable


async def test_unknown_job_name_and_unserialisable_result_fail_the_job() -> None:
    async with open_child("by_name") as child:
        await child.run([JobSpec(id="1", name="nope"), JobSpec(id="2", name="noop")])
        events = await until(child, Idle)
        assert isinstance(events[1], Failure) and events[1].type == "LookupError"
        assert events[3] == Result(job_id="2", value=b"null")
    async with open_child("unserialisable") as child:
        await child.run([job("1")])
        failure = (await until(child, Idle))[1]
        assert isinstance(failure, Failure) and "not JSON-serialisable" in failure.message


async def test_segfault_is_signal_11_and_names_the_running_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="glidemq.supervisor.child")
    async with open_child("crash_segv") as child:
        await child.run([job("1"), job("2")])
        events = await until(child, Exited)
        exited = events[-1]
        assert events[0] == Started(job_id="1")
        assert isinstance(exited, Exited)
        assert str(exited.status) == "signal 11"
        assert exited.running == "1"
        assert exited.unstarted == ("2",)  # released without penalty by the pool
        assert not exited.killed
        assert await child.receive() is exited  # Exited repeats
        with pytest.raises(ChildGoneError):
            await child.run([job("3")])
    # faulthandler's dump reaches the supervisor log, tagged with the pid.
    assert any(
        r.levelno == logging.WARNING and f"child {child.pid} stderr:" in r.getMessage()
        for r in caplog.records
        if "Segmentation fault" in r.getMessage()
    )


async def test_os_exit_is_exit_3() -> None:
    async with open_child("exit3") as child:
        await child.run([job("1")])
        exited = (await until(child, Exited))[-1]
        assert isinstance(exited, Exited)
        assert str(exited.status) == "exit 3" and exited.running == "1"
        assert not exited.status.boot_error


async def test_sigkill_from_outside_is_detected() -> None:
    async with open_child("sleep_long") as child:
        await child.run([job("1")])
        assert await until(child, Log) == [Started(job_id="1"), Log(job_id="1", line="sleeping")]
        os.kill(child.pid, signal.SIGKILL)
        exited = await child.receive()
        assert isinstance(exited, Exited)
        assert str(exited.status) == "signal 9"
        assert exited.running == "1" and not exited.killed


async def test_kill_escalates_to_sigkill_after_grace() -> None:
    async with open_child("sleep_forever") as child:
        await child.run([job("1")])
        await until(child, Log)  # the handler now ignores SIGTERM and spins
        with anyio.fail_after(20):
            status = await child.kill(grace=0.5)
        assert str(status) == "signal 9"
        exited = (await until(child, Exited))[-1]
        assert isinstance(exited, Exited)
        assert exited.killed and exited.running == "1" and exited.status == status


async def test_kill_lets_a_cooperative_handler_clean_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="glidemq.supervisor.child")
    async with open_child("sleep_long") as child:
        await child.run([job("1")])
        await until(child, Log)
        assert str(await child.kill(grace=30)) == "signal 15"
    assert f"child {child.pid} stdout: cleanup ran" in caplog.messages


@pytest.mark.parametrize(
    ("handler", "line"),
    [
        ("soft_timeout_victim", "caught soft timeout"),
        ("async_soft_timeout_victim", "cancelled by soft timeout"),
    ],
)
async def test_soft_timeout_raises_inside_the_handler(handler: str, line: str) -> None:
    async with open_child(handler) as child:
        await child.run([job("1", soft_timeout=0.3), job("2", soft_timeout=0.2)])
        events = await until(child, Idle)
        assert events[1] == Log(job_id="1", line=line)
        failures = [e for e in events if isinstance(e, Failure)]
        assert [f.job_id for f in failures] == ["1", "2"]  # the child lives on
        assert failures[0].type == "glidemq.errors.SoftTimeoutError"
        assert failures[0].message == "soft timeout of 0.3s elapsed"


async def test_handler_import_error_is_a_fatal_boot_error() -> None:
    async with anyio.create_task_group() as tg:
        with pytest.raises(FatalBootError, match="cannot boot .*exit 79") as info:
            await Child.spawn(tg, "tests.handlers.broken:noop", path=[ROOT])
    assert info.value.status is not None
    assert info.value.status.code == exitcodes.HANDLER_IMPORT_ERROR
    assert exitcodes.is_boot_error(info.value.status.returncode)
    assert "this module cannot be imported" in info.value.remote_traceback


async def test_no_hello_within_the_deadline(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    async with anyio.create_task_group() as tg:
        with pytest.raises(HandshakeError, match="no Hello within 0.5s") as info:
            await Child.spawn(tg, H + "noop", python=str(fake), hello_timeout=0.5)
    assert str(info.value.status) == "signal 9"


async def test_child_environment_is_allow_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLIDEMQ_TEST_PASSWORD", "hunter2")
    monkeypatch.setenv("LC_TIME", "C")
    async with open_child("env_dump", env_extra={"APP_MODE": "test"}) as child:
        await child.run([job("1")])
        result = (await until(child, Idle))[1]
        assert isinstance(result, Result)
        seen = msgspec.json.decode(result.value)
    assert "GLIDEMQ_TEST_PASSWORD" not in seen["env"]
    assert "hunter2" not in result.value.decode()
    assert seen["env"]["APP_MODE"] == "test" and seen["env"]["LC_TIME"] == "C"
    assert {k for k in seen["env"] if not k.startswith("LC_")} <= ENV_ALLOWED | {"APP_MODE"}
    assert "valkey" not in seen["modules"]
    assert not any(m.startswith(("glidemq.engine", "glidemq.supervisor")) for m in seen["modules"])


def test_child_env_builder() -> None:
    env = child_env({"EXTRA": "1"}, environ={"PATH": "/bin", "SECRET": "x", "LC_ALL": "C"})
    assert env["PATH"] == "/bin" and env["EXTRA"] == "1" and env["LC_ALL"] == "C"
    assert "SECRET" not in env
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)


async def test_handler_output_is_logged_with_the_pid(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="glidemq.supervisor.child")
    async with open_child("print_to_stdout") as child:
        await child.run([job("j1")])
        await until(child, Idle)
    records = {(r.levelno, r.getMessage()) for r in caplog.records}
    assert (logging.INFO, f"child {child.pid} stdout: hello from the handler j1") in records
    assert (logging.WARNING, f"child {child.pid} stderr: to stderr") in records
    assert all(r.child_pid == child.pid for r in caplog.records if "stdout:" in r.getMessage())


async def test_rlimits_are_applied() -> None:
    limits = Rlimits(open_files=200, cpu_seconds=1000)
    async with open_child("rlimits", rlimits=limits) as child:
        await child.run([job("1")])
        result = (await until(child, Idle))[1]
        assert isinstance(result, Result)
        assert msgspec.json.decode(result.value) == {
            "core": [0, 0],
            "nofile": [200, 200],
            "cpu": [1000, 1001],
        }


async def test_idle_reports_rss_growth() -> None:
    async with open_child("leak_memory") as child:
        await child.run([job("1", {"mb": 64})])
        idle = (await until(child, Idle))[-1]
        assert isinstance(idle, Idle)
        assert idle.rss_bytes > 64 * 1024 * 1024
        assert (child.rss() or 0) > 64 * 1024 * 1024


async def test_retire_finishes_the_running_job_and_returns_the_rest() -> None:
    async with open_child("slow_then_ok") as child:
        await child.run([job(str(i), 1.0) for i in range(3)])
        await until(child, Log)
        await child.retire()
        with pytest.raises(ChildGoneError):
            await child.run([job("late")])
        events = await until(child, Exited)
        assert events[0] == Result(job_id="0", value=b'"done"')
        assert isinstance(events[1], Idle) and events[1].jobs_done == 1
        exited = events[2]
        assert isinstance(exited, Exited)
        assert str(exited.status) == "exit 0"
        assert exited.running is None and exited.unstarted == ("1", "2")


async def test_cancelling_the_task_group_kills_the_child() -> None:
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            child = await Child.spawn(tg, H + "sleep_long", path=[ROOT], kill_grace=10)
            await child.run([job("1")])
            await until(child, Log)
            tg.cancel_scope.cancel()
        await child.aclose()
    assert not child.alive
    assert child.exited is not None and str(child.exited.status) == "signal 15"
    assert child.exited.running == "1"
