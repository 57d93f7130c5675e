"""Entry point of a child: ``python -P -m glidemq.sandbox --fd N --handler mod:fn ...``.

Boot order matters and is fixed here: take the protocol fd (and keep it from
grandchildren), arm the parent-death signal, apply rlimits, extend
``sys.path``, import the handler, and only then say ``Hello``. Any failure
before ``Hello`` is reported as one ``BootError`` frame plus a boot exit code
from :mod:`glidemq.sandbox.exitcodes`, so the supervisor stops the pool
instead of restarting a child that can never work.

Must not: import ``glidemq.engine``, valkey or the supervisor, or read any
secret; the supervisor gives this process an allow-listed environment only.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
import traceback
from typing import NoReturn

import msgspec

from glidemq.sandbox import exitcodes
from glidemq.sandbox.framing import BlockingChannel, ChannelClosed
from glidemq.sandbox.protocol import BootError, ToChild, child_codec


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse exits 2; a wrong argv is the supervisor's bug, reported as a boot error.
        self.exit(exitcodes.USAGE_ERROR, f"{self.prog}: error: {message}\n")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = _Parser(prog="python -m glidemq.sandbox")
    parser.add_argument("--fd", type=int, required=True, help="protocol socket fd")
    parser.add_argument("--handler", required=True, help="package.module:function")
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--path", action="append", default=[], help="prepend to sys.path")
    parser.add_argument("--rlimits", default=None, help="Rlimits as JSON")
    return parser.parse_args(argv)


def _boot_error(channel: BlockingChannel[ToChild], exc: BaseException, code: int) -> int:
    try:
        channel.send(
            BootError(
                type=type(exc).__name__,
                message=str(exc),
                traceback="".join(traceback.format_exception(exc)),
            )
        )
    except ChannelClosed:
        return exitcodes.ORPHANED
    return code


def main(argv: list[str] | None = None) -> int:
    """Boot the child and serve until told to stop; return the exit code."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    os.set_inheritable(args.fd, False)  # a handler's subprocess must not keep the pipe open
    encoder, decoder = child_codec()
    channel: BlockingChannel[ToChild] = BlockingChannel(args.fd, encoder, decoder)
    # Prints arrive in the supervisor's log line by line, not when a buffer fills.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
    faulthandler.enable()  # a segfaulting handler leaves its Python traceback in the log

    from glidemq.sandbox.limits import Rlimits, apply_rlimits, die_with_parent

    if args.parent_pid is not None and not die_with_parent(args.parent_pid):
        return exitcodes.ORPHANED
    try:
        rlimits = msgspec.json.decode(args.rlimits, type=Rlimits) if args.rlimits else Rlimits()
        apply_rlimits(rlimits)
    except (ValueError, OSError, msgspec.DecodeError) as exc:
        return _boot_error(channel, exc, exitcodes.BOOT_ERROR)
    sys.path[:0] = args.path

    from glidemq.errors import HandlerImportError
    from glidemq.sandbox.handler import load_handler

    try:
        handler = load_handler(args.handler)
    except HandlerImportError as exc:
        return _boot_error(channel, exc, exitcodes.HANDLER_IMPORT_ERROR)

    from glidemq.errors import ProtocolError
    from glidemq.sandbox.child import Sandbox, Terminated

    try:
        return Sandbox(channel, handler, args.handler).serve()
    except ProtocolError:
        traceback.print_exc()
        return exitcodes.PROTOCOL_ERROR
    except ChannelClosed:
        return exitcodes.ORPHANED
    except Terminated:
        # The handler has unwound; now die of the signal so the exit says "signal 15".
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return exitcodes.OK  # not reached


if __name__ == "__main__":
    sys.exit(main())
