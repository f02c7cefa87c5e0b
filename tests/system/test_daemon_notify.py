"""systemd notify as a real datagram socket sees it: READY after start-up, STATUS,
WATCHDOG only while every service heartbeat is fresh, STOPPING on shutdown."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.system.daemonkit import Daemon, NotifyListener, lines_of, wait_for


def test_ready_status_watchdog_and_stopping_arrive_in_order(
    daemon_env: Callable[..., dict[str, str]],
    daemons: list[Daemon],
    notify: NotifyListener,
    tmp_path: Path,
) -> None:
    env = daemon_env(NOTIFY_SOCKET=notify.name, WATCHDOG_USEC=400_000, DSA110_TEST_START_SEC=1.0)
    daemons.append(daemon := Daemon(env, "steady,slowstart"))
    wait_for(lambda: len(notify.times_of("WATCHDOG=1")) >= 3)
    ready_at = notify.times_of("READY=1")
    assert len(ready_at) == 1
    started = float(lines_of(tmp_path / "slowstart.started")[0])
    assert time.time() - started > 0  # the file exists: start-up finished...
    fields = notify.fields()
    assert fields.index("READY=1") < fields.index("WATCHDOG=1")  # ...and READY came after it
    assert any(f.startswith("STATUS=HEALTHY") for f in fields)
    assert daemon.stop() == 0
    fields = notify.fields()
    assert "STOPPING=1" in fields
    assert "WATCHDOG=1" not in fields[fields.index("STOPPING=1") :]
    assert fields[fields.index("STOPPING=1") + 1].startswith("STATUS=STOPPING")


def test_ready_waits_for_every_service_start_up(
    daemon_env: Callable[..., dict[str, str]],
    daemons: list[Daemon],
    notify: NotifyListener,
    tmp_path: Path,
) -> None:
    env = daemon_env(NOTIFY_SOCKET=notify.name, DSA110_TEST_START_SEC=1.5)
    daemons.append(daemon := Daemon(env, "slowstart"))
    wait_for(lambda: bool(notify.times_of("READY=1")))
    assert (tmp_path / "slowstart.started").exists()
    assert daemon.stop() == 0


@pytest.mark.parametrize("service", ["stuck", "blocker"])
def test_a_stuck_service_or_a_blocked_loop_stops_the_watchdog_pings(
    service: str,
    daemon_env: Callable[..., dict[str, str]],
    daemons: list[Daemon],
    notify: NotifyListener,
    tmp_path: Path,
) -> None:
    env = daemon_env(
        NOTIFY_SOCKET=notify.name,
        WATCHDOG_USEC=200_000,
        DSA110__SUPERVISOR__REGISTRY_TTL_SEC=1,
        DSA110__SUPERVISOR__SHUTDOWN_GRACE_SEC=0.5,
        DSA110_TEST_STUCK_AFTER=1.0,
        DSA110_TEST_BLOCK_SEC=3,
    )
    daemons.append(daemon := Daemon(env, f"steady,{service}"))
    marker = tmp_path / f"{service}.now"
    wait_for(marker.exists)
    went_bad = time.monotonic()
    time.sleep(2.5)
    pings = notify.times_of("WATCHDOG=1")
    assert [t for t in pings if t < went_bad]  # pinging while healthy
    late = [t for t in pings if went_bad + 1.3 < t < went_bad + 2.5]
    assert late == []  # no pings while stuck (ttl 1 s plus one ping period of slack)
    daemon.kill()
