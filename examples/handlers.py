"""Example handlers run by the supervisor's sandboxed children.

``hash_work`` is deliberately CPU-heavy pure Python: it is the kind of
handler that needs process isolation (the GIL would serialise it in threads).
"""

from __future__ import annotations

import hashlib
from typing import Any


def hash_work(job: Any) -> dict[str, Any]:
    """Iterate SHA-256 ``rounds`` times over the job's seed, reporting progress."""
    seed = str(job.data.get("seed", job.id)).encode()
    rounds = int(job.data.get("rounds", 200_000))
    digest = seed
    step = max(1, rounds // 4)
    for i in range(rounds):
        digest = hashlib.sha256(digest).digest()
        if (i + 1) % step == 0:
            job.update_progress(round(100 * (i + 1) / rounds))
    job.log(f"hashed {rounds} rounds")
    return {"seed": seed.decode(), "rounds": rounds, "digest": digest.hex()}
