"""The daemon as a process: it refuses root without permission, runs with umask 027, and
two daemons on one server raise one alert (not one each) through a local webhook."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.alerts.sinkservers import WebhookServer
from tests.system.daemonkit import SERVICES_YAML, Daemon, wait_for

RUN = [sys.executable, "-c", "from dsa110d.cli.daemon import main; main()", "run"]
ARGS = ["--env", "testing", "--config", str(SERVICES_YAML), "--services", "watcher"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can be refused")
def test_root_is_refused_without_permission(daemon_env: Callable[..., dict[str, str]]) -> None:
    env = {k: v for k, v in daemon_env().items() if k != "DSA110_ALLOW_ROOT"}
    done = subprocess.run([*RUN, *ARGS], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "dsa110d: refusing to run as root: run as the dsa110 user (the systemd unit does), "
        "or pass --allow-root / set DSA110_ALLOW_ROOT=1"
    ]


def test_the_daemon_runs_with_a_private_umask(
    daemon_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    env = {k: v for k, v in daemon_env().items() if k != "DSA110_ALLOW_ROOT"}
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)  # as an installer might leave it: the daemon makes it private
    proc = subprocess.Popen(
        [*RUN, *ARGS, "--allow-root", "--log-format", "json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        status = Path(f"/proc/{proc.pid}/status")
        assert proc.stdout is not None
        for line in proc.stdout:  # until READY: the signal handlers are installed then
            if '"event": "ready"' in line:
                break
        assert "Umask:\t0027" in status.read_text()
        assert oct(state.stat().st_mode & 0o777) == "0o700"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out[-2000:]


@pytest.mark.timeout(90)
def test_two_daemons_raise_one_alert(
    daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon]
) -> None:
    hook = WebhookServer()
    try:
        env = daemon_env(
            DSA110__ALERTS__WEBHOOK__URL=hook.url,
            DSA110__ALERTS__DISK_FREE_MIN_FRACTION="0.999999",  # every disk is "full"
            DSA110__ALERTS__INTERVAL_SEC="0.2",
        )
        for services in ("watcher", "processor"):
            daemons.append(Daemon(env, services))
        for daemon in daemons:
            daemon.wait_event("ready", timeout=30)
        wait_for(lambda: "fire" in hook.events(), timeout=20)
        time.sleep(2)  # both daemons evaluate ten more times each
        fired = [body for _, body in hook.posts if body["event"] == "fire"]
        roots = {body["details"]["path"] for body in fired}
        assert len(fired) == len(roots)  # one alert per full data root, not one per daemon
        logged = sum(len(d.events("alert_fire")) for d in daemons)
        assert logged == len(fired)
        assert "secret-token" not in "\n".join(line for d in daemons for line in d.lines)
    finally:
        hook.close()
