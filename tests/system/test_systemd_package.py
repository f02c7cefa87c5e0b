"""The .deb in a real systemd: install, start, journal, kill -9, watchdog, stop, remove, purge,
and the container powered off with none of its processes left behind.

Builds the package from this tree, boots Debian with systemd as PID 1 in systemd-nspawn and
drives it as an operator would. Takes about 7 minutes from cold caches (package build ~4 min,
install ~1.5 min) and about 3 minutes with both cached; see docs/packaging.md.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system import nspawn

pytestmark = pytest.mark.timeout(2400)

UNIT = "dsa110d@all.service"
RESTART_WAIT_SEC = 60.0
WATCHDOG_TEST_SEC = 5


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[nspawn.Container]:
    nspawn.ensure_host_tools()
    deb = nspawn.build_deb()
    booted = nspawn.boot(tmp_path_factory.mktemp("nspawn"))
    try:
        shutil.copy(deb, booted.root / "root" / "dsa110d.deb")
        booted.run("dpkg", "-i", "/root/dsa110d.deb", timeout=900)
        yield booted
    finally:
        booted.stop()


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def journal(container: nspawn.Container) -> list[dict[str, str]]:
    out = container.run("journalctl", "-u", UNIT, "-o", "json", "--no-pager")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def daemon_records(container: nspawn.Container) -> list[dict[str, object]]:
    records = []
    for entry in journal(container):
        if entry.get("SYSLOG_IDENTIFIER") != "dsa110d-all":
            continue
        try:
            records.append(json.loads(entry["MESSAGE"]))
        except (ValueError, TypeError):
            continue
    return records


def test_package_layout(container: nspawn.Container) -> None:
    assert container.run("dsa110d", "--version").startswith("dsa110d ")
    assert "Usage" in container.run("dsa110ctl", "--help")
    assert container.run("stat", "-c", "%U %a", "/var/lib/dsa110").split() == ["dsa110", "700"]
    conffiles = container.run("cat", "/var/lib/dpkg/info/dsa110d.conffiles")
    assert "/etc/dsa110/services.yaml" in conffiles
    for program in ("dsa110d", "dsa110ctl"):  # wrappers: /etc/default/dsa110d, production
        assert f"exec /opt/venvs/dsa110d/bin/{program} " in container.run(
            "cat", f"/usr/bin/{program}"
        )
    for page in ("man8/dsa110d.8.gz", "man1/dsa110ctl.1.gz", "man5/dsa110d.yaml.5.gz"):
        assert container.run("test", "-s", f"/usr/share/man/{page}", check=False) == ""


def test_unit_verifies_and_is_hardened(container: nspawn.Container) -> None:
    verify = container.run("systemd-analyze", "verify", "dsa110d@all.service", check=False)
    assert verify.strip() == ""
    security = container.run("systemd-analyze", "security", UNIT, "--no-pager", check=False)
    exposure = float(security.rsplit("Overall exposure level for", 1)[1].split(":")[1].split()[0])
    assert exposure <= 4.0, security[-400:]


def test_start_is_active_only_after_ready(container: nspawn.Container) -> None:
    container.run("systemctl", "start", UNIT, timeout=180)
    assert container.show(UNIT, "ActiveState") == "active"
    events = [r.get("event") for r in daemon_records(container)]
    assert "ready" in events  # systemctl start of a Type=notify unit returns after READY=1
    assert container.show(UNIT, "Type") == "notify"


def test_journal_holds_structured_records(container: nspawn.Container) -> None:
    records = daemon_records(container)
    assert records, "no JSON records under SYSLOG_IDENTIFIER=dsa110d-all"
    assert all("event" in r and "level" in r and "timestamp" in r for r in records)


def test_dsa110ctl_reports_the_services(container: nspawn.Container) -> None:
    """As root and as the dsa110 user, with the packaged (production) configuration."""
    for user in ("root", "dsa110"):
        out = container.run("runuser", "-u", user, "--", "dsa110ctl", "status", "--json")
        rows = json.loads(out)
        assert sorted(r["service"] for r in rows) == ["analyzer", "processor", "watcher"], out
        assert {r["state"] for r in rows} == {"running"}
        assert {r["pid"] for r in rows} == {int(container.show(UNIT, "MainPID"))}
    assert container.run("dsa110ctl", "health").startswith("HEALTHY")


def test_dsa110ctl_restarts_through_systemd(container: nspawn.Container) -> None:
    pid = container.show(UNIT, "MainPID")
    out = container.run("dsa110ctl", "restart", "all", timeout=180)
    assert "restart all: ok" in out and "(systemd)" in out, out
    assert container.show(UNIT, "ActiveState") == "active"
    assert container.show(UNIT, "MainPID") not in ("0", pid)


def test_kill_9_is_followed_by_a_restart(container: nspawn.Container) -> None:
    pid = container.show(UNIT, "MainPID")
    restarts = int(container.show(UNIT, "NRestarts"))
    container.run("kill", "-9", pid)
    wait_for(
        lambda: (
            container.show(UNIT, "MainPID") not in ("0", pid)
            and container.show(UNIT, "ActiveState") == "active"
        ),
        RESTART_WAIT_SEC,
        "the unit to restart after kill -9",
    )
    assert int(container.show(UNIT, "NRestarts")) == restarts + 1


def test_watchdog_kills_a_hung_daemon(container: nspawn.Container) -> None:
    dropin = container.root / "etc/systemd/system/dsa110d@all.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "watchdog.conf").write_text(f"[Service]\nWatchdogSec={WATCHDOG_TEST_SEC}s\n")
    container.run("systemctl", "daemon-reload")
    container.run("systemctl", "restart", UNIT, timeout=180)
    pid = container.show(UNIT, "MainPID")
    restarts = int(container.show(UNIT, "NRestarts"))
    container.run("kill", "-STOP", pid)  # the event loop stops answering, so do the pings
    wait_for(
        lambda: (
            int(container.show(UNIT, "NRestarts")) > restarts
            and container.show(UNIT, "ActiveState") == "active"
        ),
        RESTART_WAIT_SEC + WATCHDOG_TEST_SEC,
        "the watchdog to kill and restart the daemon",
    )
    log = container.run("journalctl", "-u", UNIT, "--no-pager")
    assert "Watchdog timeout" in log
    (dropin / "watchdog.conf").unlink()
    container.run("systemctl", "daemon-reload")


def test_stop_is_clean(container: nspawn.Container) -> None:
    container.run("systemctl", "restart", UNIT, timeout=180)
    container.run("systemctl", "stop", UNIT, timeout=120)
    assert container.show(UNIT, "ActiveState") == "inactive"
    assert container.show(UNIT, "Result") == "success"
    assert "stopping" in [r.get("event") for r in daemon_records(container)]


def test_remove_keeps_state_and_purge_removes_it(container: nspawn.Container) -> None:
    marker = container.root / "var/lib/dsa110/keep-me"
    marker.write_text("state\n")
    container.run("dpkg", "--remove", "dsa110d", timeout=300)
    assert marker.exists()
    assert Path(container.root / "etc/dsa110/services.yaml").exists()
    container.run("dpkg", "--purge", "dsa110d", timeout=300)
    assert not (container.root / "var/lib/dsa110").exists()
    assert not (container.root / "etc/dsa110/services.yaml").exists()


def test_poweroff_leaves_no_process_behind(container: nspawn.Container) -> None:
    namespace = container.pid_namespace
    assert nspawn.processes_in(namespace), "the container's processes were not found"
    container.stop()
    assert container.process.returncode == 0, "systemd-nspawn did not exit cleanly"
    survivors = nspawn.processes_in(namespace)
    assert not survivors, f"processes of the container survived its stop: {survivors}"
    assert not container.root.exists()
