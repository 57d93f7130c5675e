"""Fixtures of the supervisor tests: ``launch`` starts real supervisor processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Server
from tests.supervisor.harness import Launcher


@pytest.fixture
def launch(tmp_path: Path, standalone: Server) -> Iterator[Launcher]:
    """``sup = await launch([queue tables], **opts)``; every supervisor is stopped by pid after."""
    launcher = Launcher(tmp_path, standalone.url)
    yield launcher
    launcher.cleanup()
