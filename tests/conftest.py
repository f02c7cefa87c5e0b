"""Shared fixtures: a private embedded Valkey for the session, the system Redis when
``DSA110_TEST_REDIS_URL`` is set, and a fresh key namespace for every test.

Tests under ``tests/unit`` are marked ``unit`` automatically, and likewise for
``integration`` and ``system``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config, load_config
from dsa110d.state import embedded

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES_YAML = REPO_ROOT / "etc" / "dsa110" / "services.yaml"
EXTERNAL_URL = os.environ.get("DSA110_TEST_REDIS_URL")
SERVER_KINDS = ["embedded", *(["external"] if EXTERNAL_URL else [])]

# The daemon refuses to run as root; tests and CI do, and every `dsa110d run` they start
# inherits this (tests that build their own environment pass it explicitly).
os.environ["DSA110_ALLOW_ROOT"] = "1"


KINDS = ("system", "integration", "unit")
"""The test kinds, slowest first: the order in which pytest-xdist workers take test files."""


def _kind(item: pytest.Item) -> str:
    parts = Path(str(item.fspath)).relative_to(REPO_ROOT / "tests").parts
    return parts[0] if parts and parts[0] in KINDS else ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if kind := _kind(item):
            item.add_marker(getattr(pytest.mark, kind))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # the long files (system tests) first, the many short ones last to fill the gaps:
        # the workers then finish together; files keep their own order (a stable sort)
        items.sort(key=lambda item: KINDS.index(k) if (k := _kind(item)) else len(KINDS))


CHAOSKIT = "tests.system.chaoskit"
"""The chaos suite's harness, whose table of outcomes is printed at the end of a session in
which it ran (here, not in tests/system/conftest.py: under pytest-xdist only this conftest is
loaded by the controller, which prints the summary; each worker hands its rows over)."""


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In a pytest-xdist worker: hand the chaos outcomes to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    chaos = sys.modules.get(CHAOSKIT)
    if workeroutput is not None and chaos is not None:
        workeroutput["chaos_outcomes"] = [dataclasses.asdict(o) for o in chaos.OUTCOMES]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """In the pytest-xdist controller: collect a worker's chaos outcomes."""
    rows = getattr(node, "workeroutput", {}).get("chaos_outcomes", [])
    if rows:
        from tests.system.chaoskit import OUTCOMES, Outcome

        OUTCOMES.extend(Outcome(**row) for row in rows)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The chaos suite's table of scenario and outcome (when it ran in this session)."""
    chaos = sys.modules.get(CHAOSKIT)
    lines = chaos.outcome_table() if chaos is not None else []
    if lines:
        terminalreporter.write_sep("=", "chaos scenarios")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[embedded.EmbeddedServer]:
    """One private embedded Valkey for the whole session."""
    state_dir = tmp_path_factory.mktemp("embedded-state")
    server = embedded.ensure_server(state_dir)
    yield server
    embedded.stop_server(state_dir)


@pytest.fixture(params=SERVER_KINDS)
def server_url(request: pytest.FixtureRequest, embedded_server: embedded.EmbeddedServer) -> str:
    """The URL of each test server: the embedded one, and the system Redis when configured."""
    if request.param == "external":
        assert EXTERNAL_URL is not None
        return EXTERNAL_URL
    return embedded_server.url


def make_config(tmp_path: Path, url: str | None = None, **overrides: Any) -> Config:
    """A testing-environment Config with every path inside ``tmp_path`` and its own namespace."""
    environ = {
        "DSA110__PATHS__INCOMING_DIR": str(tmp_path / "incoming"),
        "DSA110__PATHS__MS_DIR": str(tmp_path / "ms"),
        "DSA110__PATHS__RESULTS_DIR": str(tmp_path / "results"),
        "DSA110__PATHS__PROCESSED_DIR": str(tmp_path / "processed"),
        "DSA110__PATHS__STATE_DIR": str(tmp_path / "state"),
        "DSA110__PATHS__LOG_DIR": str(tmp_path / "logs"),
        "DSA110__REDIS__NAMESPACE": f"t-{uuid.uuid4().hex[:12]}",
    }
    if url is not None:
        environ["DSA110__REDIS__EMBEDDED"] = "false"
        environ["DSA110__REDIS__URL"] = url
    for key, value in overrides.items():
        environ["DSA110__" + key.upper()] = str(value)
    return load_config(SERVICES_YAML, "testing", environ)


@pytest.fixture
def config(tmp_path: Path, server_url: str) -> Config:
    """A testing Config bound to one test server, with a namespace of its own."""
    return make_config(tmp_path, server_url)


@pytest.fixture
async def redis(config: Config) -> AsyncIterator[aioredis.Redis]:
    """A client on the test server; the test's namespace is deleted afterwards."""
    from dsa110d.state.connection import connect

    client = await connect(config)
    try:
        yield client
    finally:
        pattern = f"{config.redis.namespace}:*"
        async for key in client.scan_iter(match=pattern, count=1000):
            await client.delete(key)
        await client.aclose()
