"""Least privilege for the daemon: not root, a umask that keeps outputs from the world, and a
private state directory.

Outputs are published group-readable (``science/atomic.py``: 0750 directories, 0640 files)
and the umask 027 keeps everything else the daemon creates the same way. The daemon refuses
to run as root (the systemd unit runs it as the ``dsa110`` user) unless ``--allow-root`` or
``DSA110_ALLOW_ROOT=1`` says so (containers, CI).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dsa110d.errors import ConfigError

DAEMON_UMASK = 0o027  # group may read, others nothing
PRIVATE_DIR_MODE = 0o700
ALLOW_ROOT_ENV = "DSA110_ALLOW_ROOT"
_TRUE = ("1", "true", "yes", "on")


def root_allowed(flag: bool, environ: Mapping[str, str] = os.environ) -> bool:
    return flag or environ.get(ALLOW_ROOT_ENV, "").strip().lower() in _TRUE


def refuse_root(allow: bool, euid: int | None = None) -> None:
    """ConfigError (one line) when running as root without permission."""
    if (os.geteuid() if euid is None else euid) == 0 and not allow:
        raise ConfigError(
            "refusing to run as root: run as the dsa110 user (the systemd unit does), "
            f"or pass --allow-root / set {ALLOW_ROOT_ENV}=1"
        )


def secure_process(state_dir: Path, create: bool) -> None:
    """Set the daemon's umask and make the state directory private (0700); create it only
    when ``create`` (the embedded server needs it), else tighten it only if it exists."""
    os.umask(DAEMON_UMASK)
    try:
        if create:
            state_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        if state_dir.is_dir():
            state_dir.chmod(PRIVATE_DIR_MODE)
    except OSError as exc:
        raise ConfigError(f"paths.state_dir: cannot create {state_dir}: {exc.strerror}") from None
