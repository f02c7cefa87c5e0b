"""Start, stop and restart daemons: through systemd when it runs the units
(:mod:`~dsa110d.operations.systemd`), else as background processes with pid files
(:mod:`~dsa110d.operations.background`); this module chooses which (``--mode``). Both do it
through the one interface of :mod:`~dsa110d.operations.backend`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from dsa110d.config import Config
from dsa110d.errors import ConfigError
from dsa110d.operations.backend import Backend
from dsa110d.operations.background import ProcessBackend
from dsa110d.operations.systemd import SystemdBackend, systemd_runs, units_installed

Mode = Literal["auto", "systemd", "process"]
MODES: tuple[str, ...] = ("auto", "systemd", "process")


def choose_backend(mode: str, config: Config, config_path: Path | None) -> Backend:
    """systemd when asked, or (``auto``) when it runs and the units are installed."""
    if mode not in MODES:
        raise ConfigError(f"--mode: {mode!r} is not {', '.join(MODES)}")
    if mode == "systemd" or (mode == "auto" and systemd_runs() and units_installed()):
        if not systemd_runs():
            raise ConfigError("--mode systemd: systemd is not running on this host")
        return SystemdBackend()
    return ProcessBackend(config, config_path)
