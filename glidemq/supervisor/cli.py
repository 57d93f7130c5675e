"""The ``glidemq-supervisor`` command line.

Owns argument parsing, ``--check-config`` (including a handler import check in
a throw-away interpreter), logging setup and the exit-code contract:
0 ok, 2 configuration error, 1 runtime error. A config error exits 2 so a
service manager that restarts on failure can tell "fix the file" from "crashed".

Must not: import user handler code into this process (a broken handler module
must not break the supervisor), or run the supervisor's actors itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence

from glidemq.errors import ConfigError, ConfigValueError, GlidemqError
from glidemq.supervisor.config import LOG_LEVELS, Config, load_config

log = logging.getLogger(__name__)

EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG = 0, 1, 2
_PROG = "glidemq-supervisor"
_IMPORT_DEADLINE = 60.0

# Imports the handler the way a child will: cwd first on sys.path, then the
# attribute path; the last stderr line carries the error on failure.
_IMPORT_CHECK = """\
import importlib, sys
sys.path.insert(0, sys.argv[1])
module, _, attr = sys.argv[2].partition(":")
obj = importlib.import_module(module)
for part in attr.split("."):
    obj = getattr(obj, part)
if not callable(obj):
    raise SystemExit(f"TypeError: {sys.argv[2]} is {type(obj).__name__}, not callable")
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; flags override the file and the environment."""
    p = argparse.ArgumentParser(
        prog=_PROG,
        description="Run glidemq worker pools as configured in a TOML file.",
        epilog="Precedence: defaults < config file < GLIDEMQ_* environment < flags.",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="path to glidemq.toml")
    p.add_argument(
        "--check-config", action="store_true",
        help="validate the file (and that every handler imports), then exit 0 or 2",
    )  # fmt: skip
    p.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="supervisor.log_level")
    p.add_argument("--drain-timeout", type=float, metavar="S", help="supervisor.drain_timeout")
    p.add_argument("--health-port", type=int, metavar="P", help="supervisor.health_port (0: off)")
    p.add_argument("--valkey-url", metavar="URL", help="valkey.url (absent: embedded server)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``glidemq-supervisor``; returns the process exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already reported (2)
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG
    overrides = {
        "supervisor.log_level": args.log_level,
        "supervisor.drain_timeout": args.drain_timeout,
        "supervisor.health_port": args.health_port,
        "valkey.url": args.valkey_url,
    }
    try:
        config = load_config(args.config, os.environ, overrides)
        if args.check_config:
            check_handlers(config, cwd=os.getcwd(), env=os.environ)
    except ConfigError as exc:
        sys.stderr.write(f"{_PROG}: config error: {exc}\n")
        return EXIT_CONFIG
    if args.check_config:
        names = ", ".join(q.name for q in config.queues)
        sys.stdout.write(f"{args.config}: ok ({len(config.queues)} queue(s): {names})\n")
        return EXIT_OK
    configure_logging(config.supervisor.log_level)
    return _run(config, lambda: load_config(args.config, os.environ, overrides))


def configure_logging(level: str) -> None:
    """Log to stderr with pid and logger name; the supervisor is a long-lived daemon."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s",
    )


def check_handlers(config: Config, *, cwd: str, env: Mapping[str, str]) -> None:
    """Import every queue's handler in a separate interpreter, as a child would.

    Args:
        config: a loaded config.
        cwd: the directory the supervisor will run in (first on ``sys.path``).
        env: the supervisor's environment; each queue's ``env`` is added on top.

    Raises:
        ConfigValueError: a handler does not import or is not callable; the key
            is ``queues[i].handler``.
    """
    for i, queue in enumerate(config.queues):
        error = _import_error(queue.handler, cwd, {**env, **queue.env})
        if error is not None:
            key = f"queues[{i}].handler"
            raise ConfigValueError(f"{key} = {queue.handler!r}: cannot import it: {error}", key=key)


def _import_error(handler: str, cwd: str, env: Mapping[str, str]) -> str | None:
    """Return None if ``handler`` imports and is callable, else the error line."""
    argv = [sys.executable, "-c", _IMPORT_CHECK, cwd, handler]
    try:
        done = subprocess.run(
            argv, cwd=cwd, env=dict(env), capture_output=True, timeout=_IMPORT_DEADLINE,
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"importing took longer than {_IMPORT_DEADLINE:.0f}s"
    if done.returncode == 0:
        return None
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"interpreter exited with code {done.returncode}"


def _run(config: Config, reload: Callable[[], Config] | None = None) -> int:
    """Hand over to the supervisor runtime, mapping its outcome to an exit code."""
    try:
        from glidemq.supervisor.supervisor import run
    except ModuleNotFoundError as exc:
        if exc.name != "glidemq.supervisor.supervisor":
            raise
        log.error("the supervisor runtime (glidemq.supervisor.supervisor) is not installed")
        return EXIT_RUNTIME
    try:
        result = run(config, reload)
    except ConfigError as exc:
        log.error("config error: %s", exc)
        return EXIT_CONFIG
    except GlidemqError as exc:
        log.error("supervisor stopped: %s", exc)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 130  # the shell's convention for "ended by SIGINT"
    except Exception:
        log.exception("supervisor crashed")
        return EXIT_RUNTIME
    return result if isinstance(result, int) else EXIT_OK
