"""Fixtures shared by the services' integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dsa110d.workers import WorkerPool
from tests.integration.services.analyzerkit import WORKER_MODULES


@pytest.fixture(scope="module")
async def analyzer_pool() -> AsyncIterator[WorkerPool]:
    """One analysis worker process for a whole test module (its imports take a few seconds).
    A module that uses it makes ``anyio_backend`` module-scoped too."""
    async with WorkerPool(1, WORKER_MODULES) as shared:
        yield shared
