"""The function library: loaded on every primary, reloaded after FUNCTION
FLUSH mid-run, upgraded when older, refused when newer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from glidemq.engine import library
from glidemq.engine.connection import Connection
from glidemq.engine.job import Job
from glidemq.engine.queue import Queue
from glidemq.engine.worker import Worker
from glidemq.errors import GlidemqConnectionError, LibraryVersionError
from tests.engine.helpers import dedicated, nodes, running, wait_for
from tests.servers import Cluster, Server

pytestmark = pytest.mark.anyio


def fake_library(version: int) -> str:
    return ("#!lua name=glidemq\n"
            "redis.register_function{function_name='glidemq_version', "
            f"callback=function(keys, args) return {version} end, flags={{'no-writes'}}}}\n")


@pytest.fixture
def own_server(mode: str) -> Iterator[Server | Cluster]:
    """A server of this test's own: these tests replace the library under everyone."""
    with dedicated(mode) as srv:
        yield srv


def versions(srv: Server | Cluster) -> list[Any]:
    out = []
    for node in nodes(srv):
        with node.client() as c:
            try:
                out.append(c.execute_command("FCALL_RO", "glidemq_version", 0))
            except Exception as exc:
                out.append(type(exc).__name__)
    return out


def load_everywhere(srv: Server | Cluster, *args: str) -> None:
    for node in nodes(srv):
        with node.client() as c:
            c.execute_command(*args)


async def test_library_loaded_on_every_primary(conn: Connection, url: str, qname: str,
                                               mode: str, request: pytest.FixtureRequest
                                               ) -> None:
    await Queue(qname, conn).add("j", {})
    srv = request.getfixturevalue(mode)
    assert versions(srv) == [library.LIBRARY_VERSION] * len(nodes(srv))
    await conn.ensure_library()  # idempotent
    assert versions(srv) == [library.LIBRARY_VERSION] * len(nodes(srv))


async def test_function_flush_mid_run_is_survived(own_server: Server | Cluster,
                                                  qname: str) -> None:
    conn = Connection(own_server.url)
    q = Queue(qname, conn)
    worker_conn = Connection(own_server.url)  # the worker's own: it must reload by itself

    async def process(job: Job) -> int:
        await anyio.sleep(0.002)
        return int(job.data)

    await q.add_bulk([("j", i) for i in range(300)])
    worker = Worker(qname, process, worker_conn, concurrency=4)
    async with running(worker):
        await wait_for(lambda: worker.completed >= 50, what="the worker to get going")
        await anyio.to_thread.run_sync(load_everywhere, own_server, "FUNCTION", "FLUSH")
        # Poll only the worker's own counter: no call from this test reloads the library.
        await wait_for(lambda: worker.completed >= 300, what="the worker to finish")
    assert versions(own_server) == [library.LIBRARY_VERSION] * len(nodes(own_server))
    c = await q.get_job_counts()
    assert (c["completed"], c["failed"], c["active"], c["waiting"]) == (300, 0, 0, 0)
    await conn.close()
    await worker_conn.close()


async def test_older_library_upgraded_newer_refused(own_server: Server | Cluster,
                                                   qname: str) -> None:
    load_everywhere(own_server, "FUNCTION", "LOAD", "REPLACE", fake_library(0))
    conn = Connection(own_server.url)
    # glidemq_add does not exist in the old library: the call upgrades and retries.
    assert (await Queue(qname, conn).add("j", {})).id == "1"
    assert versions(own_server) == [library.LIBRARY_VERSION] * len(nodes(own_server))
    await conn.close()

    load_everywhere(own_server, "FUNCTION", "LOAD", "REPLACE", fake_library(999))
    conn = Connection(own_server.url)
    with pytest.raises(LibraryVersionError, match="version 999, newer than this client's"):
        await conn.ensure_library()
    assert issubclass(LibraryVersionError, GlidemqConnectionError)
    with pytest.raises(LibraryVersionError):
        await Queue(qname, conn).add("j", {})
    # A worker must not retry a version mismatch forever as if it were a lost connection.
    with anyio.fail_after(10), pytest.raises(LibraryVersionError):
        await Worker(qname, print, conn).run()
    assert versions(own_server) == [999] * len(nodes(own_server))  # never downgraded
    await conn.close()


def test_library_source_is_one_library_with_every_function() -> None:
    src = library.source()
    assert src.startswith("#!lua name=glidemq\n")
    assert "__GLIDEMQ_VERSION__" not in src
    for name in ("add", "fetch", "extend", "counts", "pause", "drain", "clean", "obliterate",
                 "remove", "retry_jobs", "promote", "update_data", "progress", "log",
                 "version"):
        assert f"register_function('glidemq_{name}'" in src or \
            f"function_name = 'glidemq_{name}'" in src, name
