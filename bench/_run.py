"""Run one adapter operation in this interpreter and print one JSON result line.

Invoked by ``_common.run_adapter`` as::

    <python> bench/_run.py --module peers.huey --op drain --url redis://127.0.0.1:PORT/0 \
        --timeout 120 --args '{"n": 20000, "setting": "thread-w1"}'

The adapter function is called as ``getattr(module, op)(ctx, **args)``. The last
stdout line starting with ``@@RESULT `` carries {"status", "value", "marks",
"extra"} (status "ok", "skip", "error" or "timeout"). Worker processes the
adapter spawned are stopped by PID before this process exits.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import traceback
from typing import Any

from _common import RESULT_PREFIX


def _alarm(signum: int, frame: Any) -> None:
    raise TimeoutError("runner time bound (SIGALRM)")


def _term(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops workers


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--module", required=True)
    p.add_argument("--op", required=True, choices=["enqueue", "drain", "cpu", "latency", "memory"])
    p.add_argument("--url", required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--args", default="{}")
    a = p.parse_args()
    kwargs = json.loads(a.args)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(a.timeout) + 5)
    signal.signal(signal.SIGTERM, _term)
    ans: dict[str, Any]
    ctx = None
    try:
        from peers._base import Ctx, Skip

        try:
            mod = importlib.import_module(a.module)
            ctx = Ctx(a.url, a.timeout)
            value = getattr(mod, a.op)(ctx, **kwargs)
            ans = {"status": "ok", "value": value, "marks": ctx.marks, "extra": ctx.extra}
        except Skip as e:
            ans = {"status": "skip", "reason": str(e)}
        except ImportError as e:
            ans = {"status": "skip", "reason": f"cannot import: {e}"}
        except TimeoutError as e:
            ans = {"status": "timeout", "reason": str(e)[:800]}
        except Exception as e:  # noqa: BLE001 - report any adapter failure as a row skip
            traceback.print_exc()
            ans = {"status": "error", "reason": f"{type(e).__name__}: {e}"[:800]}
    finally:
        signal.alarm(0)
        if ctx is not None:
            try:
                ctx.close()
            except Exception:  # noqa: BLE001
                traceback.print_exc()
    print(RESULT_PREFIX + json.dumps(ans), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
