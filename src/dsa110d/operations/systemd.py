"""Daemons as systemd units: ``systemctl`` on the ``dsa110d@`` template's instances.

Used when systemd is PID 1 (``/run/systemd/system`` exists) and the ``dsa110d@.service``
template is installed: ``start watcher`` is ``systemctl start dsa110d@watcher.service``, which
returns once the daemon has sent READY=1. The environment then comes from the unit and
``/etc/default/dsa110d``, not from the command line.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import anyio

from dsa110d.operations.backend import Backend, Outcome, check_instance

UNIT_TEMPLATE = "dsa110d@.service"
SYSTEMD_RUNTIME = Path("/run/systemd/system")
SYSTEMCTL_TIMEOUT_SEC = 300.0


def systemd_runs(runtime_dir: Path = SYSTEMD_RUNTIME) -> bool:
    """True when systemd is the init system (sd_booted(3))."""
    return runtime_dir.is_dir() and shutil.which("systemctl") is not None


def units_installed() -> bool:
    """True when systemd knows the ``dsa110d@.service`` template."""
    done = _systemctl("list-unit-files", UNIT_TEMPLATE, "--no-legend", "--no-pager")
    return done.returncode == 0 and UNIT_TEMPLATE in done.stdout


def _systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["systemctl", *args],
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT_SEC,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(["systemctl", *args], 1, "", str(exc))


def unit(service: str) -> str:
    return f"dsa110d@{service}.service"


class SystemdBackend(Backend):
    """``systemctl`` on the ``dsa110d@`` units."""

    name = "systemd"

    async def _do(self, action: str, service: str) -> Outcome:
        done = await anyio.to_thread.run_sync(_systemctl, action, unit(service))
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip().splitlines()
            detail = message[0] if message else f"systemctl {action} exited {done.returncode}"
            return Outcome(service, action, False, detail, None, self.name)
        pid = self._main_pid(service)
        return Outcome(service, action, True, f"systemctl {action} {unit(service)}", pid, self.name)

    def _main_pid(self, service: str) -> int | None:
        done = _systemctl("show", "-p", "MainPID", "--value", unit(service))
        value = done.stdout.strip()
        return int(value) if value.isdigit() and int(value) > 0 else None

    async def start(self, service: str) -> Outcome:
        return await self._do("start", check_instance(service))

    async def restart(self, service: str) -> Outcome:
        return await self._do("restart", check_instance(service))

    async def stop(self, service: str | None) -> list[Outcome]:
        names = [check_instance(service)] if service else list(self.running()) or ["all"]
        return [await self._do("stop", name) for name in names]

    def running(self) -> dict[str, int]:
        done = _systemctl(
            "list-units", "dsa110d@*.service", "--state=active", "--no-legend", "--plain"
        )
        found: dict[str, int] = {}
        for line in done.stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith("dsa110d@") and name.endswith(".service"):
                instance = name[len("dsa110d@") : -len(".service")]
                found[instance] = self._main_pid(instance) or 0
        return found
