"""Fixtures of the feature tests: ``flaunch`` starts real supervisors in both modes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.supervisor.harness import Launcher


@pytest.fixture
def flaunch(tmp_path: Path, url: str, mode: str) -> Iterator[Launcher]:
    """Like the supervisor tests' ``launch``, against the test's server (standalone or cluster)."""
    launcher = Launcher(tmp_path, url)
    original = launcher.write

    def write(*args: object, **kwargs: object) -> tuple[Path, int]:
        if mode == "cluster":  # the config takes a plain URL plus cluster = true
            kwargs.setdefault("cluster", True)
            kwargs.setdefault("url", url.replace("valkey+cluster://", "valkey://"))
        return original(*args, **kwargs)  # type: ignore[arg-type]

    launcher.write = write  # type: ignore[method-assign]
    yield launcher
    launcher.cleanup()
