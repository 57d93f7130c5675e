"""``python -m glidemq.supervisor``: the same as the ``glidemq-supervisor`` script."""

from __future__ import annotations

from glidemq.supervisor.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
