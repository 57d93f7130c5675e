"""Handlers for the flow test that runs through the supervisor (``tests/features/test_flows.py``).

Imported in children as ``tests.handlers.flows_handlers:<name>``; like every
handler module it imports nothing of ``glidemq.engine`` or valkey.
"""

from __future__ import annotations

from typing import Any


def step(job: Any) -> dict[str, Any]:
    """Append ``"<job name>"`` to the file ``job.data["record"]``; return the name."""
    with open(job.data["record"], "a") as fh:
        fh.write(f"{job.name}\n")
    return {"name": job.name, "value": job.data.get("value")}
