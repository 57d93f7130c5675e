"""Flows and job dependencies. STUB: relays nothing yet."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from glidemq.engine.consumer import Consumer


async def relay_outbox(consumer: Consumer) -> None:
    """Deliver the queue's pending cross-slot notices to their target slots."""
    return None
