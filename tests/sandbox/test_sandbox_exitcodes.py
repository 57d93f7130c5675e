"""The exit-code contract between child and supervisor."""

from __future__ import annotations

import signal

import pytest

from glidemq.sandbox import exitcodes
from glidemq.sandbox.exitcodes import ExitStatus


@pytest.mark.parametrize(
    ("returncode", "short", "long"),
    [
        (0, "exit 0", "exit 0 (ok)"),
        (3, "exit 3", "exit 3"),
        (-11, "signal 11", "signal 11 (SIGSEGV)"),
        (-9, "signal 9", "signal 9 (SIGKILL)"),
        (exitcodes.HANDLER_IMPORT_ERROR, "exit 79", "exit 79 (handler import error)"),
        (-200, "signal 200", "signal 200"),
    ],
)
def test_describe(returncode: int, short: str, long: str) -> None:
    status = ExitStatus(returncode)
    assert str(status) == short
    assert status.describe() == long == exitcodes.describe(returncode)


def test_signal_and_code() -> None:
    assert ExitStatus(-signal.SIGTERM).signal == signal.SIGTERM
    assert ExitStatus(-signal.SIGTERM).code is None
    assert ExitStatus(3).code == 3
    assert ExitStatus(3).signal is None


def test_boot_errors_stop_the_pool_and_crashes_restart() -> None:
    for code in (exitcodes.BOOT_ERROR, exitcodes.HANDLER_IMPORT_ERROR, exitcodes.USAGE_ERROR):
        assert exitcodes.is_boot_error(code)
        assert ExitStatus(code).boot_error
    for code in (exitcodes.OK, 1, 3, 4, exitcodes.PROTOCOL_ERROR, exitcodes.ORPHANED, -11, -9):
        assert not exitcodes.is_boot_error(code)


def test_codes_are_distinct_and_outside_common_handler_exits() -> None:
    codes = [
        exitcodes.OK,
        exitcodes.USAGE_ERROR,
        exitcodes.ORPHANED,
        exitcodes.PROTOCOL_ERROR,
        exitcodes.BOOT_ERROR,
        exitcodes.HANDLER_IMPORT_ERROR,
    ]
    assert len(set(codes)) == len(codes)
    assert all(c == 0 or c >= 64 for c in codes)  # os._exit(1..4) by a handler is a crash
