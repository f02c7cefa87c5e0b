"""``dsa110d demo``: the daemon on an embedded server in a scratch directory, until Ctrl-C."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import anyio

from dsa110d import logs
from dsa110d.config import load_config, resolve_path
from dsa110d.privileges import ALLOW_ROOT_ENV, secure_process
from dsa110d.services.base import DEFAULT_SERVICES, load_service_modules
from dsa110d.state import embedded
from dsa110d.supervisor import run_daemon


def demo_environ(workdir: Path) -> dict[str, str]:
    """Development settings with every path inside ``workdir`` and the embedded server."""
    return {
        **os.environ,
        "DSA110__REDIS__EMBEDDED": "true",
        **{
            f"DSA110__PATHS__{name.upper()}": str(workdir / name.removesuffix("_dir"))
            for name in (
                "incoming_dir",
                "ms_dir",
                "results_dir",
                "processed_dir",
                "state_dir",
                "log_dir",
            )
        },
    }


def run_demo(workdir: Path | None) -> int:
    """Run until Ctrl-C; remove the scratch directory unless ``workdir`` was given."""
    scratch = workdir or Path(tempfile.mkdtemp(prefix="dsa110d-demo-"))
    config = load_config(resolve_path(None), "development", demo_environ(scratch))
    if os.geteuid() == 0:  # the demo is a user's first try: as root too (say so, then go on)
        print(f"dsa110d demo: running as root ({ALLOW_ROOT_ENV}=1 implied for the demo)")
        os.environ[ALLOW_ROOT_ENV] = "1"  # daemons the demo starts inherit it
    secure_process(config.paths.state_dir, config.redis.embedded)
    logs.configure(level="INFO", fmt="console")
    logs.bind(service="demo")
    print(f"dsa110d demo: working in {scratch}; press Ctrl-C to stop")
    try:
        load_service_modules()
        return anyio.run(run_daemon, config, list(DEFAULT_SERVICES))
    finally:
        embedded.stop_server(config.paths.state_dir)
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)
