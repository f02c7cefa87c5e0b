"""A block of synthetic Measurement Sets with known sources, built once and copied per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsa110d.science.testms import SimBlock, build_sim_block, copy_sim_block


@pytest.fixture(scope="session")
def sim_block_master(tmp_path_factory: pytest.TempPathFactory) -> SimBlock:
    return build_sim_block(tmp_path_factory.mktemp("simblock"))


@pytest.fixture
def sim_block(sim_block_master: SimBlock, tmp_path: Path) -> SimBlock:
    """A private copy (stages write flags into the MSs)."""
    return copy_sim_block(sim_block_master, tmp_path / "ms")
