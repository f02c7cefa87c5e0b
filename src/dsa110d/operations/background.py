"""Daemons as background processes, with pid files under ``<state_dir>/run``.

``start ENV SERVICE`` runs ``dsa110d run --env ENV --services SERVICE`` in its own session with
stdin from /dev/null and stdout and stderr appended to ``<paths.log_dir>/<SERVICE>.log`` (JSON
lines), writes ``<paths.state_dir>/run/SERVICE.pid`` (and ``SERVICE.json`` with the command, for
``restart``), and returns once every service of the new daemon has registered as running, or
reports why the daemon exited. ``stop`` sends SIGTERM, waits for the graceful shutdown
(``supervisor.shutdown_grace_sec`` plus a margin), sends SIGKILL if it has to, and says which. A
pid file whose process is gone, or is not a dsa110d daemon, is stale: it is removed and
reported, never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
import psutil

from dsa110d import catalogue
from dsa110d.config import Config, resolve_path
from dsa110d.errors import StateError
from dsa110d.operations.backend import Backend, Outcome, check_instance
from dsa110d.operations.session import attach
from dsa110d.state import embedded
from dsa110d.state.keys import Keys
from dsa110d.state.registry import Registry

START_TIMEOUT_SEC = 60.0
STOP_MARGIN_SEC = 15.0  # beyond the daemon's own shutdown grace
POLL_SEC = 0.1
CHILD_ENV_DROPPED = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


def _logged_ready(log: Path) -> bool:
    """Whether a daemon's log has its ``ready`` event (JSON lines; other lines are skipped)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return False
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "ready":
            return True
    return False


def _instance(service: str) -> str:
    """A known service's instance name; any other name (a file found on disk) as it is."""
    found = catalogue.entry(service)
    return service if found is None else found.section


def daemon_command() -> list[str]:
    """How to run ``dsa110d``: beside this interpreter (a virtualenv), on PATH, or as a module."""
    beside = Path(sys.executable).parent / "dsa110d"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("dsa110d")
    if found:
        return [found]
    return [sys.executable, "-c", "from dsa110d.cli.daemon import main; main()"]


def is_daemon(pid: int) -> bool:
    """True when ``pid`` is a live ``dsa110d run`` process (not a reused pid)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return "run" in cmdline and any("dsa110d" in part for part in cmdline)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Launch:
    """How an instance was started (``<run_dir>/<service>.json``), so restart can repeat it."""

    argv: list[str]
    env: str
    config: str | None
    log: str
    started_at: str


class ProcessBackend(Backend):
    """Daemons as background processes with pid files under ``<state_dir>/run``."""

    name = "process"

    def __init__(
        self,
        config: Config,
        config_path: Path | None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.config = config
        self.config_path = resolve_path(config_path, environ)
        self.environ = dict(environ)
        self.run_dir = config.paths.state_dir / "run"
        self.log_dir = config.paths.log_dir

    # ---------------------------------------------------------------- files
    def pid_file(self, service: str) -> Path:
        return self.run_dir / f"{_instance(service)}.pid"

    def launch_file(self, service: str) -> Path:
        return self.run_dir / f"{_instance(service)}.json"

    def log_file(self, service: str) -> Path:
        """``<log_dir>/<instance>.log``: the seed's name (``hdf5_watcher.log``...)."""
        return self.log_dir / f"{_instance(service)}.log"

    def read_pid(self, service: str) -> int | None:
        try:
            return int(self.pid_file(service).read_text().strip())
        except (OSError, ValueError):
            return None

    def _forget(self, service: str) -> None:
        self.pid_file(service).unlink(missing_ok=True)
        self.launch_file(service).unlink(missing_ok=True)

    def running(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for path in sorted(self.run_dir.glob("*.pid")) if self.run_dir.is_dir() else []:
            pid = self.read_pid(path.stem)
            if pid is not None and is_daemon(pid):
                found[path.stem] = pid
        return found

    # ---------------------------------------------------------------- start
    def _argv(self, service: str) -> list[str]:
        argv = [*daemon_command(), "run", "--env", self.config.env, "--services", service]
        if self.config_path is not None:
            argv += ["--config", str(self.config_path.resolve())]
        return [*argv, "--log-format", "json"]

    def _child_environ(self) -> dict[str, str]:
        env = {k: v for k, v in self.environ.items() if k not in CHILD_ENV_DROPPED}
        env["DSA110_ENV"] = self.config.env
        # stdout already goes to <log_dir>/<service>.log: the daemon must not write it twice.
        env["DSA110__LOGGING__FILE"] = "false"
        return env

    def _conflict(self, service: str) -> str | None:
        """Why starting ``service`` would run a service twice on this state directory."""
        running = self.running()
        if service in running:
            return f"already running (pid {running[service]})"
        if "all" in running:
            return f"already running as part of 'all' (pid {running['all']})"
        if service == "all" and running:
            names = ", ".join(f"{k} (pid {v})" for k, v in running.items())
            return f"some services already run on their own: {names}; stop them first"
        return None

    def spawn(self, service: str, argv: list[str]) -> int:
        """Start the daemon in its own session, logging to its file; returns the pid."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_file(service).parent.mkdir(parents=True, exist_ok=True)
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (
                os.POSIX_SPAWN_OPEN,
                1,
                str(self.log_file(service)),
                os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                0o640,
            ),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        executable = shutil.which(argv[0]) or argv[0]
        pid = os.posix_spawn(
            executable, argv, self._child_environ(), file_actions=actions, setsid=True
        )
        self.pid_file(service).write_text(f"{pid}\n")
        launch = Launch(
            argv,
            self.config.env,
            str(self.config_path) if self.config_path else None,
            str(self.log_file(service)),
            _now_iso(),
        )
        self.launch_file(service).write_text(json.dumps(asdict(launch)) + "\n")
        return pid

    async def start(self, service: str, argv: list[str] | None = None) -> Outcome:
        service = check_instance(service)
        conflict = self._conflict(service)
        if conflict is not None:
            return Outcome(service, "start", False, conflict, self.running().get(service))
        pid = self.spawn(service, argv or self._argv(service))
        return await self._await_running(service, pid)

    async def _await_running(self, service: str, pid: int) -> Outcome:
        """Wait until the new daemon's services are all registered as running, or it exits."""
        deadline = time.monotonic() + START_TIMEOUT_SEC
        log = self.log_file(service)
        while time.monotonic() < deadline:
            code = _exit_status(pid)
            if code is not None:
                self._forget(service)
                return Outcome(
                    service,
                    "start",
                    False,
                    f"the daemon exited with status {code}: {last_error(log)} (see {log})",
                    pid,
                )
            if catalogue.services_of(service):
                up = await self._registered(pid)
            else:  # the manager alone registers no service: its log says when it is ready
                up = await anyio.to_thread.run_sync(_logged_ready, log)
            if up:
                return Outcome(service, "start", True, f"running; log {log}", pid)
            await anyio.sleep(POLL_SEC)
        return Outcome(
            service,
            "start",
            False,
            f"not running after {START_TIMEOUT_SEC:g} s (still starting? see {log})",
            pid,
        )

    async def _registered(self, pid: int) -> bool:
        try:
            async with attach(self.config) as redis:
                if redis is None:
                    return False
                entries = await Registry(redis, Keys(self.config.redis.namespace)).entries()
        except StateError:
            return False  # not reachable (yet): the daemon's own exit will say why
        mine = [e for e in entries if e.pid == pid]
        return bool(mine) and all(e.state == "running" for e in mine)

    # ---------------------------------------------------------------- stop
    async def stop(self, service: str | None) -> list[Outcome]:
        if service is not None:
            return [await self._stop_one(check_instance(service))]
        names = sorted(p.stem for p in self.run_dir.glob("*.pid")) if self.run_dir.is_dir() else []
        outcomes = [await self._stop_one(name) for name in names]
        if not names:
            outcomes.append(Outcome("all", "stop", True, "nothing is running"))
        return outcomes + await self._stop_embedded_if_idle()

    async def _stop_embedded_if_idle(self) -> list[Outcome]:
        """After ``stop`` of everything: the embedded server too, once no daemon uses it."""
        if not self.config.redis.embedded:
            return []
        async with attach(self.config) as redis:
            if redis is None:
                return []
            left = await Registry(redis, Keys(self.config.redis.namespace)).entries()
        if left:
            return []
        server = embedded.server_dir(self.config.paths.state_dir)
        stopped = await anyio.to_thread.run_sync(embedded.stop_server, self.config.paths.state_dir)
        detail = f"stopped the embedded Valkey under {server}"
        return [Outcome("embedded-server", "stop", True, detail)] if stopped else []

    async def _stop_one(self, service: str) -> Outcome:
        pid = self.read_pid(service)
        if pid is None:
            return Outcome(service, "stop", True, "not running")
        if not is_daemon(pid):
            self._forget(service)
            _reap(pid)
            return Outcome(
                service, "stop", True, f"not running (removed stale pid file, pid {pid})"
            )
        grace = self.config.supervisor.shutdown_grace_sec + STOP_MARGIN_SEC
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        stopped = await anyio.to_thread.run_sync(_wait_gone, pid, grace)
        took = time.monotonic() - started
        if not stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            await anyio.to_thread.run_sync(_wait_gone, pid, 5.0)
            self._forget(service)
            return Outcome(
                service, "stop", False, f"did not stop within {grace:g} s: killed (SIGKILL)", pid
            )
        self._forget(service)
        return Outcome(service, "stop", True, f"stopped after {took:.1f} s (SIGTERM)", pid)

    # ---------------------------------------------------------------- restart
    async def restart(self, service: str) -> Outcome:
        service = check_instance(service)
        argv = self._recorded_argv(service)
        stopped = await self._stop_one(service)
        if not stopped.ok:
            return Outcome(service, "restart", False, stopped.detail, stopped.pid)
        started = await self.start(service, argv)
        return Outcome(service, "restart", started.ok, started.detail, started.pid)

    def _recorded_argv(self, service: str) -> list[str] | None:
        try:
            data = json.loads(self.launch_file(service).read_text())
            return [str(part) for part in data["argv"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _exit_status(pid: int) -> int | None:
    """The exit status of our child ``pid`` once it has exited (reaping it), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (started by another dsa110ctl)
        return None if is_daemon(pid) or psutil.pid_exists(pid) else -1
    return os.waitstatus_to_exitcode(status) if done == pid else None


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited (reaping it when it is our child)."""
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    _reap(pid)
    return True


def last_error(log: Path) -> str:
    """The last error-level event (or last line) of a daemon's JSON log, as one line."""
    try:
        lines = log.read_text(errors="replace").splitlines()[-50:]
    except OSError:
        return "no log"
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") in ("error", "critical"):
            return str(record.get("error") or record.get("reason") or record.get("event"))
    text = [line for line in lines if line.strip()]
    return text[-1][:200] if text else "no output"
