"""The health and metrics endpoint: a tiny HTTP/1.1 server on anyio.

Owns :class:`PoolStats` (the counters a pool updates in place),
:class:`MetricsSnapshot` (what the endpoint renders), the Prometheus text
rendering, and :func:`serve`. ``GET /healthz`` answers 200 ``ok`` or 503 with
the supervisor's reason; ``GET /metrics`` answers the Prometheus text format
0.0.4. One request per connection, then close: scrapers and probes need no
more, and it keeps the server small enough to need no dependency.

Must not: compute health or touch pools. The supervisor decides what healthy
means and hands over a snapshot through ``stats_provider``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio
import anyio.abc
import msgspec

log = logging.getLogger(__name__)

#: Limit labels always exported (as 0 until hit) so dashboards find the series.
KNOWN_LIMITS = ("hard_timeout", "max_rss", "rlimit")
_MAX_HEAD = 8192
_READ_DEADLINE = 5.0


class PoolStats(msgspec.Struct, kw_only=True):
    """Live numbers of one queue's pool, mutated in place by that pool.

    The pool owns its instance and is its only writer; the endpoint only reads,
    in the same event loop, so plain attribute updates need no lock::

        stats.pool_size = len(children); stats.jobs_completed_total += n
        stats.record_limit_kill("hard_timeout")
    """

    queue: str
    pool_size: int = 0  # live children
    pool_desired: int = 0
    busy_children: int = 0
    jobs_completed_total: int = 0
    jobs_failed_total: int = 0
    child_restarts_total: int = 0
    limit_kills_total: dict[str, int] = msgspec.field(default_factory=dict)
    stopped: bool = False  # restart intensity exceeded: the pool no longer spawns

    def record_limit_kill(self, limit: str) -> None:
        """Count one child killed or recycled for hitting ``limit``."""
        self.limit_kills_total[limit] = self.limit_kills_total.get(limit, 0) + 1


class MetricsSnapshot(msgspec.Struct, kw_only=True):
    """What the supervisor reports: its health verdict and every pool's stats."""

    pools: Sequence[PoolStats] = ()
    healthy: bool = True
    reason: str = ""  # why unhealthy, shown in the 503 body


_METRICS: tuple[tuple[str, str, str, Callable[[PoolStats], float]], ...] = (
    ("glidemq_pool_size", "gauge", "Live child processes.", lambda s: s.pool_size),
    ("glidemq_pool_desired", "gauge", "Desired child processes.", lambda s: s.pool_desired),
    ("glidemq_busy_children", "gauge", "Children running a job.", lambda s: s.busy_children),
    ("glidemq_pool_stopped", "gauge", "1 if the pool stopped spawning after a crash loop.",
     lambda s: int(s.stopped)),
    ("glidemq_jobs_completed_total", "counter", "Jobs completed.",
     lambda s: s.jobs_completed_total),
    ("glidemq_jobs_failed_total", "counter", "Job attempts failed.",
     lambda s: s.jobs_failed_total),
    ("glidemq_child_restarts_total", "counter", "Children restarted after dying.",
     lambda s: s.child_restarts_total),
)  # fmt: skip


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(snapshot: MetricsSnapshot) -> str:
    """Render the snapshot in the Prometheus text exposition format 0.0.4."""
    lines: list[str] = []
    for name, kind, help_text, value in _METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f'{name}{{queue="{_label(s.queue)}"}} {value(s)}' for s in snapshot.pools]
    name = "glidemq_limit_kills_total"
    lines += [f"# HELP {name} Children killed or recycled for a limit.", f"# TYPE {name} counter"]
    for s in snapshot.pools:
        for limit in sorted(set(KNOWN_LIMITS) | s.limit_kills_total.keys()):
            count = s.limit_kills_total.get(limit, 0)
            lines.append(f'{name}{{queue="{_label(s.queue)}",limit="{_label(limit)}"}} {count}')
    return "\n".join(lines) + "\n"


async def serve(
    host: str,
    port: int,
    stats_provider: Callable[[], MetricsSnapshot],
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/healthz`` and ``/metrics`` until cancelled.

    Start it with ``port = await tg.start(serve, host, port, provider)``: the
    value is the bound port (useful with ``port=0``), and a bind error surfaces
    in the caller instead of inside the task group.

    Args:
        host: address to bind; keep the default loopback unless scraped remotely.
        port: TCP port; 0 picks a free one.
        stats_provider: called once per request for a fresh snapshot.
        task_status: set by ``tg.start``.

    Raises:
        OSError: the address cannot be bound.
    """
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    bound = listener.extra(anyio.abc.SocketAttribute.local_port)
    log.info("health endpoint listening on http://%s:%d", host, bound)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        try:
            async with stream:
                await _answer(stream, stats_provider)
        except (anyio.BrokenResourceError, anyio.EndOfStream, OSError, TimeoutError) as exc:
            log.debug("health connection dropped: %r", exc)  # a probe hanging up is not news
        except Exception:  # one bad request must not take the endpoint down
            log.exception("health: request handler failed")

    async with listener:
        task_status.started(bound)
        await listener.serve(handle)


async def _answer(
    stream: anyio.abc.SocketStream, stats_provider: Callable[[], MetricsSnapshot]
) -> None:
    head = b""
    with anyio.fail_after(_READ_DEADLINE):  # a stuck client must not hold a connection forever
        while b"\r\n\r\n" not in head and len(head) < _MAX_HEAD:
            head += await stream.receive(_MAX_HEAD)
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        await _respond(stream, 400, "bad request\n")
        return
    method, path = parts[0].decode("latin-1"), parts[1].decode("latin-1").split("?", 1)[0]
    if path not in ("/healthz", "/metrics"):
        await _respond(stream, 404, "not found\n", head_only=method == "HEAD")
        return
    if method not in ("GET", "HEAD"):
        await _respond(stream, 405, "method not allowed\n", extra="Allow: GET, HEAD\r\n")
        return
    try:
        snapshot = stats_provider()
    except Exception:
        log.exception("health: stats provider failed")
        await _respond(stream, 500, "stats unavailable\n", head_only=method == "HEAD")
        return
    if path == "/metrics":
        body, ctype, status = render_metrics(snapshot), "text/plain; version=0.0.4", 200
    elif snapshot.healthy:
        body, ctype, status = "ok\n", "text/plain", 200
    else:
        body, ctype, status = f"unhealthy: {snapshot.reason}\n", "text/plain", 503
    await _respond(stream, status, body, ctype, head_only=method == "HEAD")


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip


async def _respond(
    stream: anyio.abc.SocketStream,
    status: int,
    body: str,
    content_type: str = "text/plain",
    *,
    head_only: bool = False,
    extra: str = "",
) -> None:
    payload = body.encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}; charset=utf-8\r\n"
        f"Content-Length: {len(payload)}\r\n{extra}Connection: close\r\n\r\n"
    )
    await stream.send(head.encode("latin-1") + (b"" if head_only else payload))
