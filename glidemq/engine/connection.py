"""Connection factory: one place that turns a URL into a valkey-py client.

Accepted URLs: ``valkey://[user:pass@]host:port[/db]``, ``valkeys://`` (TLS),
``valkey+cluster://`` / ``valkeys+cluster://`` or ``?cluster=true`` (cluster).
The ``redis://`` spellings are accepted too. The connection also owns the
library check (:mod:`glidemq.engine.library`): every function call that finds
the library missing (a server restarted without persistence) reloads it once
and retries.

In cluster mode, FCALL is routed by its first key here, because valkey-py
would otherwise ask the server ``COMMAND GETKEYS`` before every call: one
extra round trip per job batch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from valkey import exceptions as vex
from valkey.asyncio import Valkey
from valkey.asyncio.cluster import ValkeyCluster

from glidemq.engine import library
from glidemq.engine.fcall import is_missing_function, translate
from glidemq.errors import GlidemqConnectionError, InvalidOptionError

_SCHEMES = {
    "valkey": (False, False), "redis": (False, False),
    "valkeys": (True, False), "rediss": (True, False),
    "valkey+cluster": (False, True), "redis+cluster": (False, True),
    "valkeys+cluster": (True, True), "rediss+cluster": (True, True),
}


@dataclass(frozen=True)
class TLSOptions:
    """TLS settings; ``verify=False`` skips certificate checks (tests only)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


async def close_client(client: Any) -> None:
    """Close a valkey-py client, including a cluster client still connecting.

    ``ValkeyCluster.aclose()`` closes nothing while its first initialisation
    is in flight, leaking the sockets it opened; closing the node managers
    directly covers that case.
    """
    await client.aclose()
    manager = getattr(client, "nodes_manager", None)
    if manager is not None:
        with contextlib.suppress(Exception):
            await manager.aclose()
            await manager.aclose("startup_nodes")


class Connection:
    """Where and how to reach Valkey; creates clients lazily and shares them.

    Args:
        url: see the module docstring.
        cluster: force cluster mode on or off (default: from the URL).
        username / password: ACL credentials (override the URL's).
        tls: TLS options; implied by a ``valkeys://`` URL.

    Raises:
        InvalidOptionError: unknown URL scheme or malformed URL.
    """

    def __init__(
        self,
        url: str = "valkey://127.0.0.1:6379",
        *,
        cluster: bool | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: TLSOptions | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise InvalidOptionError(
                f"connection url scheme {parts.scheme!r} is not one of {sorted(_SCHEMES)}"
            )
        use_tls, is_cluster = _SCHEMES[parts.scheme]
        query = parse_qs(parts.query)
        if query.get("cluster", [""])[0].lower() in ("1", "true", "yes"):
            is_cluster = True
        try:
            self.host = parts.hostname or "127.0.0.1"
            self.port = parts.port or 6379
        except ValueError as exc:
            raise InvalidOptionError(f"connection url {url!r} is malformed: {exc}") from None
        path = parts.path.strip("/")
        self.db = int(path) if path.isdigit() else 0
        self.cluster = is_cluster if cluster is None else cluster
        self.username = username or (unquote(parts.username) if parts.username else None)
        self.password = password or (unquote(parts.password) if parts.password else None)
        self.tls = tls if tls is not None else (TLSOptions() if use_tls else None)
        self.url = url
        self._client: Any = None
        self._library_ok = False

    @classmethod
    def of(cls, conn: Connection | str | None) -> Connection:
        """Accept a Connection, a URL, or None (localhost default)."""
        if isinstance(conn, Connection):
            return conn
        if conn is None:
            return cls()
        if isinstance(conn, str):
            return cls(conn)
        raise InvalidOptionError(f"connection must be a Connection or URL str, got {conn!r}")

    def _kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "host": self.host, "port": self.port, "username": self.username,
            "password": self.password, "socket_connect_timeout": 5.0,
            "socket_keepalive": True,
        }
        if not self.cluster:
            kw["db"] = self.db
        if self.tls is not None:
            kw.update(ssl=True, ssl_ca_certs=self.tls.ca_file, ssl_certfile=self.tls.cert_file,
                      ssl_keyfile=self.tls.key_file,
                      ssl_cert_reqs="required" if self.tls.verify else "none",
                      ssl_check_hostname=self.tls.verify)
        return kw

    def client(self) -> Any:
        """The shared valkey-py client (created on first use)."""
        if self._client is None:
            if self.cluster:
                self._client = ValkeyCluster(**self._kwargs())
            else:
                self._client = Valkey(**self._kwargs())
        return self._client

    def new_client(self) -> Any:
        """A client of its own, for blocking reads that must not hold the shared pool.

        Its reads have no socket timeout (valkey-py's default of 5 s would cut
        every longer BLPOP); the caller bounds each blocking call instead.
        """
        kw = self._kwargs()
        kw["socket_timeout"] = None
        return ValkeyCluster(**kw) if self.cluster else Valkey(**kw)

    async def execute(self, *args: Any, node: Any = None) -> Any:
        """Run one command; ``node`` pins it to one cluster node."""
        c = self.client()
        if self.cluster:
            return await c.execute_command(*args, target_nodes=node or c.get_random_node())
        return await c.execute_command(*args)

    async def ensure_library(self) -> None:
        """Load or upgrade the function library on every primary.

        Raises:
            LibraryVersionError: the server runs a newer library.
        """
        c = self.client()
        if self.cluster:
            await c.initialize()
            for node in c.get_primaries():
                await library.ensure_on_node(self.execute, node)
        else:
            await library.ensure_on_node(self.execute, None)
        self._library_ok = True

    async def fcall(self, function: str, key: str, *args: Any) -> Any:
        """FCALL ``function`` with one key (the queue's meta key).

        Raises:
            GlidemqError: a translated server or connection error.
        """
        try:
            if not self._library_ok:
                await self.ensure_library()
            try:
                return await self._fcall(function, key, args)
            except vex.ResponseError as exc:
                if not is_missing_function(exc):
                    raise
            await self.ensure_library()
            return await self._fcall(function, key, args)
        except (vex.ValkeyError, vex.ValkeyClusterException, OSError) as exc:
            # Every failure, connection loss included, leaves here translated:
            # callers retry on GlidemqConnectionError and never see valkey-py's own.
            err = translate(exc)
            if self.cluster and isinstance(err, GlidemqConnectionError):
                await self.drop_client()
            raise err from exc

    async def _fcall(self, function: str, key: str, args: tuple[Any, ...]) -> Any:
        c = self.client()
        if self.cluster:
            try:
                return await c.execute_command(
                    "FCALL", function, 1, key, *args, target_nodes=c.get_node_from_key(key)
                )
            except (vex.MovedError, vex.AskError):
                await c.initialize()
                return await c.execute_command(
                    "FCALL", function, 1, key, *args, target_nodes=c.get_node_from_key(key)
                )
        return await c.execute_command("FCALL", function, 1, key, *args)

    async def drop_client(self) -> None:
        """Forget the shared client after a connection failure (cluster mode).

        valkey-py's cluster client removes every node it failed to reach from
        its startup nodes; once all are gone (the whole cluster restarted) it
        can never reconnect. The next call builds a fresh client from the URL
        (and initializes it through the library check).
        """
        client, self._client = self._client, None
        self._library_ok = False
        if client is not None:
            with contextlib.suppress(Exception):
                await close_client(client)

    async def close(self) -> None:
        """Close the shared client's connections."""
        if self._client is not None:
            client, self._client = self._client, None
            self._library_ok = False
            await close_client(client)
