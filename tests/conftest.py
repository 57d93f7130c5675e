"""Shared fixtures: real Valkey servers (standalone and cluster), unique queues.

Engine tests take the ``conn`` fixture, parametrized over both modes.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.servers import Cluster, Server

_counter = itertools.count()


@pytest.fixture(scope="session")
def standalone() -> Iterator[Server]:
    server = Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    c = Cluster(3).start()
    yield c
    c.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["standalone", "cluster"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(mode: str, request: pytest.FixtureRequest) -> str:
    server = request.getfixturevalue(mode)
    return str(server.url)


@pytest.fixture
async def conn(url: str) -> AsyncIterator[object]:
    from glidemq.engine.connection import Connection

    c = Connection(url)
    yield c
    await c.close()


@pytest.fixture
def qname(request: pytest.FixtureRequest) -> str:
    """A queue name of its own for each test (no FLUSHALL between tests)."""
    base = "".join(ch if ch.isalnum() else "-" for ch in request.node.name)[:80]
    return f"t{os.getpid()}-{next(_counter)}-{base}"
