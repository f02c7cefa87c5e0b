"""Fast timings for the state-layer tests: heartbeats, backoff and leases in tenths of a second."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsa110d.config import Config
from tests.integration.state.statekit import fast_config


@pytest.fixture
def config(tmp_path: Path, server_url: str) -> Config:
    """Overrides the root fixture: the same server and namespace rules, fast timings."""
    return fast_config(tmp_path, server_url)
