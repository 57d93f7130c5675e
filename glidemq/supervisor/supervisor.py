"""Supervisor: the root of the glidemq-supervisor process.

Starts the embedded valkey-server when no URL is configured, opens the one
Valkey connection, runs one :class:`Pool` per queue, the health endpoint and
the signal actor, all in one task group. Signals become control messages
here and nowhere else:

* TERM (or a first INT): stop fetching, let in-flight jobs finish for up to
  ``drain_timeout``, then kill what is left and return its jobs to the queue
  (no attempt used); exit 0.
* a second INT, or QUIT: quick exit, in-flight jobs returned at once.
* HUP: reload the config; pools are resized or updated in place.
* TTIN / TTOU: one child more / fewer in every pool.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.abc

from glidemq.engine.connection import Connection, TLSOptions
from glidemq.supervisor.config import Config
from glidemq.supervisor.health import MetricsSnapshot, serve
from glidemq.supervisor.pool import Pool

log = logging.getLogger(__name__)

URL_FILE = "valkey.url"


def connection_for(config: Config) -> Connection:
    """The Connection described by ``[valkey]``."""
    v = config.valkey
    assert v.url is not None
    tls = None
    if v.tls is not None and v.tls.enabled:
        tls = TLSOptions(ca_file=v.tls.ca_file, cert_file=v.tls.cert_file,
                         key_file=v.tls.key_file, verify=v.tls.verify)
    return Connection(v.url, cluster=v.cluster or None, username=v.username,
                      password=str(v.password) if v.password else None, tls=tls)


class Supervisor:
    """Owns the pools and turns signals into actions on them."""

    def __init__(self, config: Config, conn: Connection,
                 reload: Callable[[], Config] | None = None) -> None:
        self.config = config
        self.conn = conn
        self.reload_config = reload
        self.path = [os.getcwd()]
        self.pools = {q.name: Pool(q, config.supervisor, conn, self.path) for q in config.queues}
        self.draining = False
        self._interrupts = 0

    def snapshot(self) -> MetricsSnapshot:
        stopped = [p.qc.name for p in self.pools.values() if p.stats.stopped]
        return MetricsSnapshot(pools=[p.stats for p in self.pools.values()],
                               healthy=not stopped,
                               reason=f"pools stopped: {', '.join(stopped)}" if stopped else "")

    async def run(self) -> int:
        sc = self.config.supervisor
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._signals, tg, name="signals")
            if sc.health_port:
                port = await tg.start(serve, sc.health_host, sc.health_port, self.snapshot)
                log.info("health endpoint on http://%s:%d/healthz and /metrics",
                         sc.health_host, port)
            async with anyio.create_task_group() as pools:
                for pool in self.pools.values():
                    await pools.start(pool.run)
                log.info("supervising %d queue(s): %s", len(self.pools), ", ".join(self.pools))
            tg.cancel_scope.cancel()
        await self.conn.close()
        log.info("supervisor stopped")
        return 0

    async def _signals(self, tg: anyio.abc.TaskGroup) -> None:
        sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
                signal.SIGTTIN, signal.SIGTTOU)
        with anyio.open_signal_receiver(*sigs) as received:
            async for sig in received:
                if sig == signal.SIGINT:
                    self._interrupts += 1
                if sig == signal.SIGQUIT or (sig == signal.SIGINT and self._interrupts > 1):
                    log.warning("quick exit: returning in-flight jobs to their queues")
                    for pool in self.pools.values():
                        await pool.kill_all()
                elif sig in (signal.SIGTERM, signal.SIGINT):
                    if not self.draining:
                        self.draining = True
                        log.info("draining: up to %ss for in-flight jobs",
                                 self.config.supervisor.drain_timeout)
                        for pool in self.pools.values():
                            pool.stop_fetching()
                        tg.start_soon(self._drain_deadline, name="drain-deadline")
                elif sig == signal.SIGHUP:
                    self._reload()
                elif sig == signal.SIGTTIN:
                    for pool in self.pools.values():
                        pool.resize(+1)
                elif sig == signal.SIGTTOU:
                    for pool in self.pools.values():
                        pool.resize(-1)

    async def _drain_deadline(self) -> None:
        """After ``drain_timeout``, kill what is left; its jobs go back unpenalised."""
        await anyio.sleep(self.config.supervisor.drain_timeout)
        log.warning("drain timeout: killing remaining children, returning their jobs")
        for pool in self.pools.values():
            await pool.kill_all()

    def _reload(self) -> None:
        if self.reload_config is None:
            log.warning("SIGHUP: no config file to reload")
            return
        try:
            new = self.reload_config()
        except Exception as exc:
            log.error("SIGHUP: config not reloaded: %s", exc)
            return
        for qc in new.queues:
            pool = self.pools.get(qc.name)
            if pool is None:
                log.warning("SIGHUP: new queue %s needs a restart to be served", qc.name)
                continue
            pool.update_config(qc)
        self.config = new
        log.info("SIGHUP: config reloaded")


async def main(config: Config, reload: Callable[[], Config] | None = None) -> int:
    """Run the supervisor until it is told to stop; returns the exit code."""
    embedded = None
    if config.valkey.url is None:
        from glidemq.engine.embedded import EmbeddedValkey

        embedded = EmbeddedValkey(config.embedded.data_dir, config.embedded.port)
        embedded.start()
        url_file = Path(config.embedded.data_dir) / URL_FILE
        url_file.write_text(embedded.url + "\n")
        log.info("no [valkey] url configured: using the embedded valkey-server at %s "
                 "(AOF in %s; producers on this host find the URL in %s)",
                 embedded.url, config.embedded.data_dir, url_file)
        config = _with_url(config, embedded.url)
    try:
        sup = Supervisor(config, connection_for(config), reload)
        return await sup.run()
    finally:
        if embedded is not None:
            embedded.stop()


def _with_url(config: Config, url: str) -> Config:
    import msgspec

    return msgspec.structs.replace(config, valkey=msgspec.structs.replace(config.valkey, url=url))


def run(config: Config, reload: Callable[[], Config] | None = None) -> int:
    """Entry point used by the CLI."""
    logging.getLogger("glidemq").setLevel(config.supervisor.log_level)
    if sys.platform != "linux":
        log.warning("glidemq-supervisor is tested on Linux only")
    return anyio.run(main, config, reload)
