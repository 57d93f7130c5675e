"""The health/metrics endpoint, over a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import anyio
import pytest

from glidemq.supervisor.health import MetricsSnapshot, PoolStats, render_metrics, serve


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def request(port: int, raw: bytes) -> tuple[int, dict[str, str], str]:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(raw)
        data = b""
        with anyio.fail_after(5):
            while True:
                try:
                    data += await stream.receive()
                except anyio.EndOfStream:
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert int(headers["Content-Length"]) == len(body)
    return int(status_line.split()[1]), headers, body.decode()


async def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    return await request(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, MetricsSnapshot]]:
    stats = PoolStats(queue="hashing", pool_size=3, pool_desired=4, busy_children=2)
    snapshot = MetricsSnapshot(pools=[stats, PoolStats(queue='we"ird\\q')])
    provider: Callable[[], MetricsSnapshot] = lambda: snapshot  # noqa: E731
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, "127.0.0.1", 0, provider)
        yield port, snapshot
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_healthz_ok_then_unhealthy(server: tuple[int, MetricsSnapshot]) -> None:
    port, snapshot = server
    status, headers, body = await get(port, "/healthz")
    assert (status, body) == (200, "ok\n") and headers["Connection"] == "close"
    snapshot.healthy, snapshot.reason = False, "pool hashing stopped after a crash loop"
    status, _, body = await get(port, "/healthz?verbose=1")
    assert status == 503 and "crash loop" in body


@pytest.mark.anyio
async def test_metrics_reflect_live_updates(server: tuple[int, MetricsSnapshot]) -> None:
    port, snapshot = server
    stats = snapshot.pools[0]
    stats.jobs_completed_total += 10
    stats.jobs_failed_total += 2
    stats.child_restarts_total += 1
    stats.record_limit_kill("hard_timeout")
    stats.record_limit_kill("hard_timeout")
    stats.record_limit_kill("max_jobs_per_child")
    status, headers, body = await get(port, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    lines = body.splitlines()
    for line in [
        'glidemq_pool_size{queue="hashing"} 3',
        'glidemq_pool_desired{queue="hashing"} 4',
        'glidemq_busy_children{queue="hashing"} 2',
        'glidemq_jobs_completed_total{queue="hashing"} 10',
        'glidemq_jobs_failed_total{queue="hashing"} 2',
        'glidemq_child_restarts_total{queue="hashing"} 1',
        'glidemq_limit_kills_total{queue="hashing",limit="hard_timeout"} 2',
        'glidemq_limit_kills_total{queue="hashing",limit="max_rss"} 0',
        'glidemq_limit_kills_total{queue="hashing",limit="max_jobs_per_child"} 1',
        'glidemq_pool_stopped{queue="hashing"} 0',
        'glidemq_pool_size{queue="we\\"ird\\\\q"} 0',
        "# TYPE glidemq_jobs_completed_total counter",
        "# TYPE glidemq_pool_size gauge",
    ]:
        assert line in lines, line
    stats.pool_size = 1
    assert 'glidemq_pool_size{queue="hashing"} 1' in (await get(port, "/metrics"))[2]


@pytest.mark.anyio
async def test_other_requests(server: tuple[int, MetricsSnapshot]) -> None:
    port, _ = server
    assert (await get(port, "/nope"))[0] == 404
    status, headers, _ = await get(port, "/metrics", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert (await request(port, b"junk\r\n\r\n"))[0] == 400
    # HEAD: headers only (Content-Length of the would-be body is checked by request()).
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"HEAD /healthz HTTP/1.1\r\n\r\n")
        reply = b""
        with anyio.fail_after(5):
            while True:
                try:
                    reply += await stream.receive()
                except anyio.EndOfStream:
                    break
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"\r\n\r\n")
    # A client that connects and hangs up does not take the server down.
    stream = await anyio.connect_tcp("127.0.0.1", port)
    await stream.aclose()
    assert (await get(port, "/healthz"))[0] == 200


@pytest.mark.anyio
async def test_failing_provider_gives_500() -> None:
    def broken() -> MetricsSnapshot:
        raise RuntimeError("boom")

    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, "127.0.0.1", 0, broken)
        assert (await get(port, "/metrics"))[0] == 500
        assert (await get(port, "/healthz"))[0] == 500
        tg.cancel_scope.cancel()


def test_render_with_no_pools_is_valid() -> None:
    text = render_metrics(MetricsSnapshot())
    assert text.endswith("\n") and all(line.startswith("#") for line in text.splitlines())
