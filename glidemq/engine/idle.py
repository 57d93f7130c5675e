"""Idler: blocks on a queue's marker list while its owner has nothing to claim.

Shared by the in-process Worker and the supervisor's pools. The owner arms
the idler when a fetch came back short; the idler then blocks server-side
(``BLPOP`` on its own connection) and kicks the owner when a job is added.
A wake-up the owner cannot use (no free capacity) is pushed back for another
consumer, and the idler disarms until the owner's next short fetch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from glidemq.engine.consumer import Consumer

log = logging.getLogger(__name__)


class Idler:
    """Turns server-side adds into kicks of an owner loop."""

    def __init__(self, consumer: Consumer, block_timeout: float,
                 has_capacity: Callable[[], bool], kick: Callable[[], None]) -> None:
        self.consumer = consumer
        self.block_timeout = block_timeout
        self.has_capacity = has_capacity
        self.kick = kick
        self._armed = anyio.Event()

    @property
    def armed(self) -> bool:
        """True while waiting for an add (the owner found nothing to claim)."""
        return self._armed.is_set()

    def arm(self) -> None:
        """Start (or keep) waiting for an add."""
        self._armed.set()

    async def run(self) -> None:
        """The actor loop; cancel it to stop."""
        failures = 0
        while True:
            await self._armed.wait()
            try:
                got = await self.consumer.wait(self.block_timeout)
                failures = 0
            except Exception as exc:  # the owner's own calls report connection trouble
                failures += 1
                log.debug("marker wait on %s failed: %s", self.consumer.name, exc)
                await anyio.sleep(min(5.0, 0.05 * 2**failures))
                continue
            if not got:
                continue
            # Disarm either way: the owner re-arms after its next short fetch.
            # Blocking again while holding no capacity would pop our own
            # pushed-back marker in a loop.
            self._armed = anyio.Event()
            if self.has_capacity():
                self.kick()
            else:
                await self.consumer.wake()
