"""Running the installed ``dsa110ctl`` against the configuration a test built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dsa110d.config import Config

REPO = Path(__file__).resolve().parents[3]
SERVICES_YAML = REPO / "etc" / "dsa110" / "services.yaml"
CTL = Path(sys.executable).parent / "dsa110ctl"


def ctl_environ(config: Config, **extra: str) -> dict[str, str]:
    """The environment under which ``dsa110ctl --env testing`` loads the same configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
    paths = config.paths
    env.update(
        {
            "PYTHONPATH": str(REPO / "src"),
            "DSA110__PATHS__STATE_DIR": str(paths.state_dir),
            "DSA110__PATHS__LOG_DIR": str(paths.log_dir),
            "DSA110__PATHS__INCOMING_DIR": str(paths.incoming_dir),
            "DSA110__PATHS__MS_DIR": str(paths.ms_dir),
            "DSA110__PATHS__RESULTS_DIR": str(paths.results_dir),
            "DSA110__REDIS__NAMESPACE": config.redis.namespace,
            "DSA110__REDIS__EMBEDDED": str(config.redis.embedded).lower(),
        }
    )
    if config.redis.url is not None:
        env["DSA110__REDIS__URL"] = config.redis.url.get_secret_value()
    env.update(extra)
    return env


def ctl(
    config: Config, *args: str, timeout: float = 60, **extra: str
) -> subprocess.CompletedProcess[str]:
    """``dsa110ctl ARGS --env testing --config services.yaml`` as a subprocess."""
    command = [str(CTL), *args]
    if args and args[0] not in ("start",):
        command += ["--env", "testing"]
    command += ["--config", str(SERVICES_YAML)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ctl_environ(config, **extra),
        check=False,
    )
