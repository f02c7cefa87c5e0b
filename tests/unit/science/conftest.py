"""A block of synthetic Measurement Sets with known sources, built once and copied per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsa110d.config import Config, PathsConfig
from dsa110d.science.testms import SimBlock, build_sim_block, copy_sim_block


@pytest.fixture(scope="session")
def sim_block_master(tmp_path_factory: pytest.TempPathFactory) -> SimBlock:
    return build_sim_block(tmp_path_factory.mktemp("simblock"))


@pytest.fixture
def sim_block(sim_block_master: SimBlock, tmp_path: Path) -> SimBlock:
    """A private copy (stages write flags into the MSs)."""
    return copy_sim_block(sim_block_master, tmp_path / "ms")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """A Config with its paths in tmp_path; science stages need no server (unlike the root
    fixture of the same name, which is parametrised over live servers)."""
    paths = PathsConfig(
        incoming_dir=tmp_path / "incoming",
        ms_dir=tmp_path / "ms",
        results_dir=tmp_path / "results",
        processed_dir=tmp_path / "processed",
        state_dir=tmp_path / "state",
        log_dir=tmp_path / "logs",
    )
    return Config(env="testing", paths=paths)
