"""The watcher in the real daemon (``dsa110d run --services watcher``): READY only after the
start-up scan, sets announced once across a restart, a bad file logged once while the daemon
keeps running."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from dsa110d.messages import MessageType
from dsa110d.science.astrometry import use_offline_iers
from dsa110d.science.simulation.simulate import SimulationResult, SimulationSpec, simulate
from tests.integration.services.watcher.watcherkit import by_set, land_all
from tests.system.daemonkit import Daemon, NotifyListener, payloads, wait_for

RECONCILIATIONS_SEC = 2.5
"""Two reconciliation scans and then some (poll_interval_sec is 1 in testing)."""


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    use_offline_iers()
    spec = SimulationSpec(
        out=tmp_path_factory.mktemp("sets"),
        start=datetime(2026, 3, 20, 6, tzinfo=UTC),
        sets=3,
        scale="tiny",
        n_subbands=4,
        seed=7,
    )
    return simulate(spec)


def _set_ids(client: redis.Redis, env: dict[str, str]) -> list[str]:
    return [p["set_id"] for p in payloads(client, env, MessageType.HDF5_PROCESSING)]


def test_the_watcher_daemon_announces_once_survives_bad_input_and_restarts(
    daemon_env: Callable[..., dict[str, str]],
    daemons: list[Daemon],
    notify: NotifyListener,
    sets: SimulationResult,
    tmp_path: Path,
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    groups = by_set(sets.files)
    land_all(groups[0], incoming)
    corrupt = incoming / "2026-03-20T06:10:20_sb00.hdf5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # an HDF5 signature, then nothing
    env = daemon_env(
        NOTIFY_SOCKET=notify.name,
        DSA110__PATHS__INCOMING_DIR=str(incoming),
        DSA110__PATHS__PROCESSED_DIR=str(tmp_path / "processed"),
        DSA110__SERVICES__HDF5_WATCHER__STABILITY_INTERVAL_SEC="0.05",
    )
    client = redis.Redis.from_url(env["DSA110__REDIS__URL"], decode_responses=True)
    daemons.append(daemon := Daemon(env, "watcher"))
    wait_for(lambda: bool(notify.times_of("READY=1")), timeout=30)
    assert _set_ids(client, env) == [sets.set_ids[0]]  # READY came after the start-up scan
    land_all(groups[1], incoming)
    wait_for(lambda: len(_set_ids(client, env)) == 2, timeout=10)
    time.sleep(RECONCILIATIONS_SEC)
    faults = daemon.events("subband_fault")
    assert len(faults) == 1 and "truncated or corrupt HDF5" in str(faults[0]["reason"])
    assert str(corrupt) in str(faults[0]["reason"])
    assert daemon.proc.poll() is None  # still running
    assert daemon.stop() == 0
    land_all(groups[2][:2], incoming)  # half a set lands while the daemon is down
    daemons.append(again := Daemon(env, "watcher"))
    again.wait_event("ready", timeout=30)
    land_all(groups[2][2:], incoming)
    wait_for(lambda: len(_set_ids(client, env)) == 3, timeout=10)
    time.sleep(RECONCILIATIONS_SEC)
    assert _set_ids(client, env) == sets.set_ids  # each once, in order, across the restart
    assert again.events("subband_fault") == []  # the corrupt file was reported the first time
    assert again.stop() == 0


def test_two_watcher_daemons_on_one_directory_announce_each_set_once(
    daemon_env: Callable[..., dict[str, str]],
    daemons: list[Daemon],
    sets: SimulationResult,
    tmp_path: Path,
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    groups = by_set(sets.files)
    land_all(groups[0], incoming)  # one set there before either starts (both start-up scans race)
    env = daemon_env(
        DSA110__PATHS__INCOMING_DIR=str(incoming),
        DSA110__SERVICES__HDF5_WATCHER__STABILITY_INTERVAL_SEC="0.05",
    )
    client = redis.Redis.from_url(env["DSA110__REDIS__URL"], decode_responses=True)
    daemons.append(first := Daemon(env, "watcher"))
    daemons.append(second := Daemon(env, "watcher"))
    first.wait_event("ready", timeout=30)
    second.wait_event("ready", timeout=30)
    for files in groups[1:]:  # the rest arrive while both watch (both see every event)
        land_all(files, incoming)
    wait_for(lambda: len(_set_ids(client, env)) >= len(sets.set_ids), timeout=15)
    time.sleep(RECONCILIATIONS_SEC)
    assert sorted(_set_ids(client, env)) == sorted(sets.set_ids)
    announced = len(first.events("set_announced")) + len(second.events("set_announced"))
    assert announced == len(sets.set_ids)
    assert first.stop() == 0 and second.stop() == 0
