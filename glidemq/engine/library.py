"""Assembles the Lua function library and makes sure the server runs it.

The library is the prelude plus every ``glidemq/lua/<function>.lua`` file,
loaded as one ``#!lua name=glidemq`` library. Its version is
:data:`LIBRARY_VERSION`. The loader upgrades an older library, never
downgrades a newer one (that is an error telling the operator to upgrade this
client), and in cluster mode loads on every primary. Several processes may
load at once: a lost ``FUNCTION LOAD`` race is followed by a re-check.
"""

from __future__ import annotations

import hashlib
import logging
from functools import cache
from pathlib import Path

from valkey import exceptions as vex

from glidemq.errors import LibraryVersionError

log = logging.getLogger(__name__)

LIBRARY_VERSION = 2
_LUA_DIR = Path(__file__).resolve().parent.parent / "lua"


@cache
def source() -> str:
    """The full library source: prelude, feature preludes, then functions by name."""
    parts = ["#!lua name=glidemq\n"]
    prelude = (_LUA_DIR / "_prelude.lua").read_text()
    parts.append(prelude.replace("__GLIDEMQ_VERSION__", str(LIBRARY_VERSION)))
    # Feature preludes (_dedup.lua, _limits.lua, ...) define the hooks the
    # functions call, so they come before every function file.
    files = sorted(_LUA_DIR.glob("*.lua"), key=lambda p: (not p.name.startswith("_"), p.name))
    for path in files:
        if path.name != "_prelude.lua":
            parts.append(f"\n-- {path.name}\n")
            parts.append(path.read_text())
    text = "".join(parts)
    return text.replace("__GLIDEMQ_BUILD__", build_of(text))


def build_of(text: str) -> str:
    """Content hash of a library source (before the hash is substituted)."""
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


@cache
def build() -> str:
    """This client's library build hash."""
    src = source()
    return src.split("local LIBRARY_BUILD = '", 1)[1].split("'", 1)[0]


async def _server_version(execute: object, node: object) -> int | None:
    try:
        return int(await execute("FCALL_RO", "glidemq_version", 0, node=node))  # type: ignore[operator]
    except vex.ResponseError as exc:
        if "function not found" in str(exc).lower():
            return None
        raise


async def _server_build(execute: object, node: object) -> str | None:
    try:
        raw = await execute("FCALL_RO", "glidemq_build", 0, node=node)  # type: ignore[operator]
    except vex.ResponseError:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


async def ensure_on_node(execute: object, node: object = None) -> None:
    """Load or upgrade the library on one server.

    ``execute(*args, node=...)`` runs a command on that server.

    Raises:
        LibraryVersionError: the server runs a newer library than this client.
    """
    for _ in range(3):
        have = await _server_version(execute, node)
        if have == LIBRARY_VERSION:
            if await _server_build(execute, node) == build():
                return
            have = -1  # same number, other source (a development build): replace it
        if have is not None and have > LIBRARY_VERSION:
            raise LibraryVersionError(
                f"the server runs glidemq library version {have}, newer than this client's "
                f"{LIBRARY_VERSION}; upgrade glidemq on this host"
            )
        args = (("FUNCTION", "LOAD", source()) if have is None
                else ("FUNCTION", "LOAD", "REPLACE", source()))
        try:
            await execute(*args, node=node)  # type: ignore[operator]
            log.info("loaded glidemq function library version %d (was %s)", LIBRARY_VERSION, have)
            return
        except vex.ResponseError as exc:
            if "already exists" not in str(exc):
                raise
            # Another process loaded it between our check and our load: re-check.
    raise LibraryVersionError("could not load the glidemq function library after 3 attempts")
