"""What a child process may see of the supervisor's environment.

The supervisor's environment holds the Valkey password; a child's is built
from an allow-list plus the queue's own ``env`` table, never from a copy.
Must not: start processes (see :mod:`glidemq.supervisor.child`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENV_ALLOWED = frozenset({"PATH", "HOME", "LANG", "TZ", "PYTHONPATH", "PYTHONHASHSEED"})
"""Variables a child inherits (plus ``LC_*``); everything else, secrets included, stays out."""


def child_env(
    env_extra: Mapping[str, str] | None = None, *, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Build a child's environment from the allow-list, never from a copy of ours.

    The supervisor's environment holds the Valkey password; a child must not.
    ``PYTHONPATH`` gains the directory glidemq is imported from, so
    ``python -m glidemq.sandbox`` works from a source checkout.
    """
    source = os.environ if environ is None else environ
    env = {k: v for k, v in source.items() if k in ENV_ALLOWED or k.startswith("LC_")}
    env.update(env_extra or {})
    root = Path(__file__).resolve().parents[2]
    if root.name not in ("site-packages", "dist-packages"):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env
