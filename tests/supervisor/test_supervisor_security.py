"""What crosses the child boundary of a real supervisor, and what a bad config file gets.

Out of a child: no password, no secret environment, no valkey module. Into
Valkey from a child: its progress and log lines. A bad file: exit code 2 and
stderr naming the key.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glidemq.engine.connection import Connection
from glidemq.engine.queue import Queue
from tests.servers import Server
from tests.supervisor.harness import REPO, B, H, Launcher, render_config, wait_counts

pytestmark = pytest.mark.anyio

PASSWORD = "pw-7f3a9c-do-not-leak"
SECRET = "secret-51d2e8-do-not-leak"


@pytest.fixture
def protected() -> Iterator[Server]:
    """A valkey-server of this test's own that requires a password."""
    server = Server().start()
    with server.client() as c:
        c.config_set("requirepass", PASSWORD)
    yield server
    server.stop()


@pytest.mark.slow
async def test_child_sees_no_secret_and_no_valkey(launch: Launcher, protected: Server,
                                                  qname: str) -> None:
    env = {"GLIDEMQ_TEST_VALKEY_PW": PASSWORD, "GLIDEMQ_TEST_SECRET": SECRET}
    sup = await launch(
        [{"name": qname, "handler": B + "env_dump", "min_children": 1, "max_children": 1,
          "env": {"APP_MODE": "test"}}],
        url=protected.url, valkey={"password_env": "GLIDEMQ_TEST_VALKEY_PW"}, env=env)
    async with Queue(qname, Connection(protected.url, password=PASSWORD)) as q:
        job = await q.add("dump", None)
        await wait_counts(q, completed=1)
        done = await q.get_job(job.id)
        assert done is not None
        seen: dict[str, Any] = done.return_value

    child_env: dict[str, str] = seen["env"]
    assert child_env["APP_MODE"] == "test"  # the queue's env table does reach it
    assert not any(k.startswith("GLIDEMQ_TEST_") for k in child_env), sorted(child_env)
    for value in child_env.values():
        assert PASSWORD not in value and SECRET not in value
    modules: list[str] = seen["modules"]
    assert "valkey" not in modules
    assert not [m for m in modules if m.startswith(("valkey", "glidemq.engine",
                                                     "glidemq.supervisor"))]
    # The same holds for what the kernel shows of the live child.
    (child,) = sup.children()
    for text in [*child.cmdline(), *(f"{k}={v}" for k, v in child.environ().items())]:
        assert PASSWORD not in text and SECRET not in text
    assert PASSWORD not in sup.log() and SECRET not in sup.log()


@pytest.mark.slow
async def test_progress_and_logs_of_a_child_are_stored_on_the_job(launch: Launcher,
                                                                   qname: str) -> None:
    await launch([{"name": qname, "handler": B + "progress_and_log", "min_children": 1,
                   "max_children": 1}])
    async with Queue(qname, launch.url) as q:
        job = await q.add("steps", None)
        await wait_counts(q, completed=1)
        done = await q.get_job(job.id)
        assert done is not None
        assert done.return_value == "ok"
        assert done.progress == {"done": True}
        assert await q.get_job_logs(job.id) == ["step 25", "step 50", "step 100"]
        progress = [f for _, f in await q.events(50) if f["event"] == "progress"]
        assert len(progress) == 4


# --- bad config files -----------------------------------------------------------------
def _run_cli(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "glidemq.toml"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "glidemq.supervisor", "--config", str(path), *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        check=False)


def _config(queue: dict[str, Any] | None = None, **supervisor: Any) -> str:
    q = {"name": "cfgq", "handler": H + "pid", **(queue or {})}
    return render_config({"url": "valkey://127.0.0.1:1"}, supervisor, [q])


BAD = {
    "unknown-queue-key": (_config({"max_childrn": 2}), "queues[0].max_childrn"),
    "unknown-supervisor-key": (_config(drain_timout=1), "supervisor.drain_timout"),
    "wrong-type": (_config({"min_children": "two"}), "queues[0].min_children"),
    "out-of-range": (_config(drain_timeout=-1), "supervisor.drain_timeout"),
    "bad-backoff": (_config({"backoff": {"type": "linear", "delay": 1}}),
                    "queues[0].backoff.type"),
    "min-over-max": (_config({"min_children": 3, "max_children": 2}),
                     "queues[0].min_children"),
}


@pytest.mark.parametrize("check", [True, False], ids=["check-config", "run"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, case: str, check: bool) -> None:
    text, key = BAD[case]
    done = _run_cli(tmp_path, text, *(["--check-config"] if check else []))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert key in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    done = _run_cli(tmp_path, _config({"max_childrn": 2}), "--check-config")
    assert "did you mean 'max_children'?" in done.stderr, done.stderr


@pytest.mark.parametrize("handler", ["tests.handlers.nonexistent:fn",
                                     "tests.handlers.broken:fn",
                                     "tests.handlers.supervised:no_such_function"])
def test_check_config_imports_every_handler(tmp_path: Path, handler: str) -> None:
    done = _run_cli(tmp_path, _config({"handler": handler}), "--check-config")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "queues[0].handler" in done.stderr and handler in done.stderr, done.stderr


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    done = _run_cli(tmp_path, _config(), "--check-config")
    assert done.returncode == 0, done.stderr
    assert "ok (1 queue(s): cfgq)" in done.stdout
