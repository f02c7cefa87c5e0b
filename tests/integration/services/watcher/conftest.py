"""Fixtures of the watcher tests: tiny simulated sets built once, a fast-settling config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dsa110d.config import Config
from dsa110d.science.astrometry import use_offline_iers
from dsa110d.science.simulation.simulate import SimulationResult, SimulationSpec, simulate
from tests.conftest import make_config
from tests.integration.services.watcher.watcherkit import FAST, N_SETS, N_SUBBANDS, START


@pytest.fixture(scope="session")
def tiny_sets(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """Three tiny sets of four subbands (read-only: tests copy them into incoming)."""
    use_offline_iers()
    out = tmp_path_factory.mktemp("tiny-sets")
    spec = SimulationSpec(
        out=out, start=START, sets=N_SETS, scale="tiny", n_subbands=N_SUBBANDS, seed=3
    )
    return simulate(spec)


@pytest.fixture
def config(tmp_path: Path, server_url: str) -> Config:
    """The root config with files settling fast and four subbands a set."""
    made = make_config(tmp_path, server_url, **FAST)
    made.paths.incoming_dir.mkdir(parents=True, exist_ok=True)
    return made


@pytest.fixture
def watcher_config(tmp_path: Path, server_url: str, config: Config) -> Callable[..., Config]:
    """``watcher_config(**overrides)``: the test's config (same namespace, so the ``redis``
    fixture cleans up after it) with watcher settings changed."""

    def make(**overrides: object) -> Config:
        return make_config(
            tmp_path, server_url, **FAST, redis__namespace=config.redis.namespace, **overrides
        )

    return make
