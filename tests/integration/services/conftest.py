"""Fixtures shared by the services' integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dsa110d.science.simulation.simulate import SimulationResult
from dsa110d.workers import WorkerPool
from tests.integration.services.analyzerkit import WORKER_MODULES
from tests.integration.services.processorkit import simulate_sets


@pytest.fixture(scope="module")
async def analyzer_pool() -> AsyncIterator[WorkerPool]:
    """One analysis worker process for a whole test module (its imports take a few seconds).
    A module that uses it makes ``anyio_backend`` module-scoped too."""
    async with WorkerPool(1, WORKER_MODULES) as shared:
        yield shared


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationResult, Path]:
    """The processor tests' three tiny 16-subband sets and their catalog, built once for the
    session (read-only: tests land copies)."""
    return simulate_sets(tmp_path_factory.mktemp("processor-sets"))
