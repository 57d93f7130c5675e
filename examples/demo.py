"""The README's main job: the supervisor on examples/glidemq.toml, end to end.

Starts ``glidemq-supervisor`` (which starts its embedded valkey-server, since
the example config names no URL), adds a batch of CPU-heavy hashing jobs
with ``glidemq.Queue``, shows progress while sandboxed children work through
them, then stops the supervisor with SIGTERM and exits 0 when every job
completed.

Run from the repository root: ``.venv/bin/python examples/demo.py [--jobs 64]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio

from glidemq import JobState, Queue

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "glidemq.toml"
DATA = ROOT / ".glidemq-data"


async def produce_and_watch(url: str, jobs: int, rounds: int) -> bool:
    queue = Queue("hashing", url)
    await queue.obliterate(force=True)
    start = time.perf_counter()
    await queue.add_bulk([("hash", {"seed": f"demo-{i}", "rounds": rounds}) for i in range(jobs)])
    while True:
        counts = await queue.get_job_counts()
        done = counts[JobState.COMPLETED] + counts[JobState.FAILED]
        bar = "#" * (30 * done // jobs)
        sys.stdout.write(f"\r[{bar:<30}] {done}/{jobs} done, {counts[JobState.ACTIVE]} running")
        sys.stdout.flush()
        if done >= jobs:
            break
        await anyio.sleep(0.25)
    elapsed = time.perf_counter() - start
    sample = await queue.get_job("1")
    print(f"\n{jobs} jobs in {elapsed:.1f}s ({jobs / elapsed:.1f} jobs/s); "
          f"failed: {counts[JobState.FAILED]}")
    if sample is not None:
        print(f"job 1: progress {sample.progress}%, result {sample.return_value}")
    await queue.close()
    return counts[JobState.FAILED] == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=100_000, help="SHA-256 rounds per job")
    args = ap.parse_args()
    DATA.mkdir(exist_ok=True)
    url_file = DATA / "valkey.url"
    url_file.unlink(missing_ok=True)
    sup = subprocess.Popen([sys.executable, "-m", "glidemq.supervisor", "--config", str(CONFIG)],
                           cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not url_file.exists():
            if sup.poll() is not None or time.monotonic() > deadline:
                print("the supervisor did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        ok = anyio.run(produce_and_watch, url_file.read_text().strip(), args.jobs, args.rounds)
    finally:
        if sup.poll() is None:
            os.kill(sup.pid, signal.SIGTERM)
        code = sup.wait(timeout=60)
    print(f"supervisor exited with {code}")
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
