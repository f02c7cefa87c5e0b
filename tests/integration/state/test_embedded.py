"""The embedded Valkey: private, durable, shared by daemons on one state_dir, re-attachable."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dsa110d.errors import EmbeddedServerError
from dsa110d.state import embedded


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "state"
    embedded.stop_server(tmp_path / "state")


def client(server: embedded.EmbeddedServer) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(server.socket_path), decode_responses=True)


def test_server_directory_is_private_and_has_no_tcp_port(state_dir: Path) -> None:
    server = embedded.ensure_server(state_dir)
    assert stat.S_IMODE(server.directory.stat().st_mode) == 0o700
    assert server.socket_path.is_socket()
    assert client(server).config_get("port")["port"] == "0"  # type: ignore[index]
    assert client(server).config_get("appendonly")["appendonly"] == "yes"  # type: ignore[index]


def test_second_start_reattaches_to_the_running_server(state_dir: Path) -> None:
    first = embedded.ensure_server(state_dir)
    second = embedded.ensure_server(state_dir)
    assert second.pid == first.pid


def test_concurrent_starts_share_one_server(state_dir: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from dsa110d.state import embedded; "
        "print(embedded.ensure_server(Path(sys.argv[1])).pid)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(state_dir)], stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    pids = {int(p.communicate(timeout=60)[0]) for p in procs}
    assert len(pids) == 1


def test_data_survives_kill_9_of_the_server(state_dir: Path) -> None:
    server = embedded.ensure_server(state_dir)
    client(server).set("dsa110:probe", "kept")
    client(server).xadd("dsa110:stream", {"n": "1"})
    os.kill(server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while embedded.running_server(state_dir) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    restarted = embedded.ensure_server(state_dir)
    assert restarted.pid != server.pid
    assert client(restarted).get("dsa110:probe") == "kept"
    assert client(restarted).xlen("dsa110:stream") == 1


def test_stale_pid_and_socket_are_replaced(state_dir: Path) -> None:
    server = embedded.ensure_server(state_dir)
    embedded.stop_server(state_dir)
    (server.directory / embedded.PID_NAME).write_text("999999\n")
    fresh = embedded.ensure_server(state_dir)
    assert client(fresh).ping()


def test_long_state_dir_gets_a_short_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 60) / ("y" * 60) / "state"
    try:
        server = embedded.ensure_server(deep)
        assert len(str(server.socket_path)) < 100
        assert client(server).ping()
    finally:
        embedded.stop_server(deep)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_tcp_port_runs_with_a_generated_password(state_dir: Path) -> None:
    port = free_port()
    server = embedded.ensure_server(state_dir, port)
    stranger = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        stranger.ping()  # any local user can reach the port: it must not get in
    stranger.close()
    assert server.port == port and server.password
    owner = redis.Redis(host="127.0.0.1", port=port, password=server.password, socket_timeout=5)
    assert owner.ping()
    owner.close()
    secret_file = server.directory / embedded.PASSWORD_NAME
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert server.password not in (server.directory / "valkey.log").read_text()
    # another process attaching finds the same server and its password
    again = embedded.running_server(state_dir)
    assert again is not None and again.pid == server.pid and again.password == server.password


@pytest.mark.anyio
async def test_the_password_reaches_clients_through_the_connection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dsa110d import logs
    from dsa110d.state.connection import connected
    from tests.conftest import make_config

    config = make_config(tmp_path, None, REDIS__EMBEDDED="true", REDIS__EMBEDDED_PORT=free_port())
    try:
        async with connected(config) as client:
            assert await client.ping()
            server = embedded.running_server(config.paths.state_dir)
            assert server is not None and server.password
            logs.configure("INFO", "json", environ={})
            logs.get_logger("dsa110d.test").warning("probe", detail=f"pw {server.password}")
        assert server.password not in capsys.readouterr().out
    finally:
        embedded.stop_server(config.paths.state_dir)
        for handler in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(handler)
            handler.close()


def fallback_dir(state_dir: Path) -> Path:
    """Where a long state_dir's socket goes: /tmp/dsa110-<uid>-<sha256 of the server dir>."""
    server = state_dir.resolve() / "valkey"
    digest = hashlib.sha256(os.fsencode(server)).hexdigest()[:12]
    return Path(f"/tmp/dsa110-{os.getuid()}-{digest}")


@pytest.mark.parametrize("planted", ["open directory", "symlink"])
def test_a_planted_socket_fallback_directory_is_refused(tmp_path: Path, planted: str) -> None:
    deep = tmp_path / ("x" * 60) / ("y" * 60) / "state"
    short = fallback_dir(deep)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o777)
    if planted == "symlink":
        short.symlink_to(elsewhere)
    else:
        short.mkdir()
        short.chmod(0o777)
    try:
        with pytest.raises(EmbeddedServerError, match="socket directory"):
            embedded.ensure_server(deep)
        assert not any(elsewhere.iterdir())
        assert not (short / embedded.SOCKET_NAME).exists()
    finally:
        embedded.stop_server(deep)
        if short.is_symlink():
            short.unlink()
        else:
            shutil.rmtree(short, ignore_errors=True)


def test_the_socket_fallback_directory_is_private(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 60) / ("y" * 60) / "state"
    try:
        server = embedded.ensure_server(deep)
        st = os.lstat(server.socket_path.parent)
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
        assert stat.S_IMODE(st.st_mode) == 0o700
    finally:
        embedded.stop_server(deep)
        shutil.rmtree(fallback_dir(deep), ignore_errors=True)
