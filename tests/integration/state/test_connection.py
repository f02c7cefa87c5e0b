"""Connecting from the configuration, and clear errors when the server is not there."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.errors import ServerUnavailableError
from dsa110d.state import embedded
from dsa110d.state.connection import connect
from tests.conftest import make_config

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.anyio
async def test_connects_to_each_test_server(redis: aioredis.Redis, config: Config) -> None:
    key = f"{config.redis.namespace}:probe"
    await redis.set(key, "1")
    assert await redis.get(key) == "1"


@pytest.mark.anyio
async def test_embedded_config_starts_a_server_under_state_dir(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, None)
    assert cfg.redis.embedded
    try:
        client = await connect(cfg)
        assert await client.ping()
        await client.aclose()
        assert embedded.running_server(cfg.paths.state_dir) is not None
    finally:
        embedded.stop_server(cfg.paths.state_dir)


@pytest.mark.anyio
async def test_unreachable_server_names_host_and_port(tmp_path: Path) -> None:
    port = free_port()
    cfg = make_config(
        tmp_path, None, redis__embedded="false", redis__port=port, redis__socket_connect_timeout=1
    )
    with pytest.raises(ServerUnavailableError) as caught:
        await connect(cfg)
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "\n" not in message


def test_daemon_exits_3_when_the_server_is_unreachable(tmp_path: Path) -> None:
    port = free_port()
    done = subprocess.run(
        [str(BIN / "dsa110d"), "run", "--env", "production"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "DSA110_ALLOW_ROOT": "1",  # tests and CI run as root
            "DSA110__REDIS__PORT": str(port),
            "DSA110__REDIS__SOCKET_CONNECT_TIMEOUT": "1",
            "DSA110__PATHS__LOG_DIR": str(tmp_path),
        },
    )
    assert done.returncode == 3, done.stderr
    assert f"cannot reach the state server at 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
