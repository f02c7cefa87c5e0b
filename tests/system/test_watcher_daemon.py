"""The watcher in the real daemon (``dsa110d run --services watcher``): READY only after the
start-up scan, sets announced once across a restart, a bad file logged once while the daemon
keeps running."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h5py
import pytest
import redis

from dsa110d.messages import MessageType
from dsa110d.science.astrometry import use_offline_iers
from dsa110d.science.hdf5.subbands import parse_subband_name, subband_file_name
from dsa110d.science.simulation.simulate import SimulationResult, SimulationSpec, simulate
from tests.integration.services.watcher.watcherkit import by_set, land_all
from tests.system.daemonkit import Daemon, NotifyListener, payloads, wait_for

SIGSEGV_MARKER = b"SIGSEGV ME"
"""daemon_services.SIGSEGV_MARKER (not imported: that module registers test services, and is
loaded only by the daemons under test)."""
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


def _poison(incoming: Path, sources: list[Path], good: list[Path]) -> list[Path]:
    """Hostile files in ``incoming`` beside a good set, one per finding: each had stopped
    the watcher (or a loop of it) before it had fault boundaries."""
    loop = incoming / sources[0].name
    loop.symlink_to(loop)  # Path.resolve(): RuntimeError
    overflow = Path(shutil.copy(sources[1], incoming))
    huge = Path(shutil.copy(sources[2], incoming))
    nan_dec = Path(shutil.copy(sources[3], incoming))
    with h5py.File(overflow, "r+") as f:
        f["Header/time_array"][...] = 1e300  # finite: the set id overflowed
    with h5py.File(huge, "r+") as f:
        del f["Header/Nblts"]  # read whole: MemoryError
        f.create_dataset("Header/Nblts", shape=(2**50,), dtype="i8", chunks=(1024,))
    with h5py.File(nan_dec, "r+") as f:
        f["Header/extra_keywords/phase_center_dec"][()] = float("nan")  # unannounceable set
    name = parse_subband_name(good[0])
    assert name is not None
    later = subband_file_name(name.timestamp + timedelta(hours=1), 0)
    misnamed = Path(shutil.copy(good[0], incoming / later))  # its own time says an hour earlier
    unicode_name = incoming / good[1].name.replace("2", "\u0662", 1).replace("0", "\u0660", 1)
    shutil.copy(good[1], unicode_name)  # matches the glob, is no subband name: ignored
    return [loop, overflow, huge, nan_dec, misnamed]


def test_the_watcher_daemon_records_poison_files_and_announces_the_good_set_once(
    daemon_env: Callable[..., dict[str, str]],
    daemons: list[Daemon],
    sets: SimulationResult,
    tmp_path: Path,
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    groups = by_set(sets.files)
    good = land_all(groups[0], incoming)
    poison = _poison(incoming, groups[1], good)
    env = daemon_env(
        DSA110__PATHS__INCOMING_DIR=str(incoming),
        DSA110__SERVICES__HDF5_WATCHER__STABILITY_INTERVAL_SEC="0.05",
    )
    client = redis.Redis.from_url(env["DSA110__REDIS__URL"], decode_responses=True)
    daemons.append(daemon := Daemon(env, "watcher"))
    daemon.wait_event("ready", timeout=30)
    time.sleep(RECONCILIATIONS_SEC)  # the poison is seen again by every rescan
    assert _set_ids(client, env) == [sets.set_ids[0]]
    reasons = sorted(str(f["reason"]) for f in daemon.events("subband_fault"))
    assert len(reasons) == len(poison)  # each once
    for path in poison:
        assert sum(r.startswith(str(path)) for r in reasons) == 1, (path, reasons)
    assert daemon.events("service_crashed") == [] and daemon.events("watcher_fault") == []
    assert daemon.proc.poll() is None  # still running
    land_all(groups[2], incoming)  # and still watching
    wait_for(lambda: _set_ids(client, env) == [sets.set_ids[0], sets.set_ids[2]], timeout=15)
    assert daemon.stop() == 0


def test_a_file_that_kills_the_probe_process_costs_the_daemon_nothing(
    daemon_env: Callable[..., dict[str, str]],
    daemons: list[Daemon],
    sets: SimulationResult,
    tmp_path: Path,
) -> None:
    """The watcher service whose probe process dies of a real SIGSEGV on one file (test
    service ``watcher_segv``: the watcher, its probe job killing itself on a marker file)."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    groups = by_set(sets.files)
    land_all(groups[0], incoming)
    crasher = incoming / groups[1][0].name
    crasher.write_bytes(SIGSEGV_MARKER + b"\0" * 4096)
    env = daemon_env(
        DSA110__PATHS__INCOMING_DIR=str(incoming),
        DSA110__SERVICES__HDF5_WATCHER__STABILITY_INTERVAL_SEC="0.05",
    )
    client = redis.Redis.from_url(env["DSA110__REDIS__URL"], decode_responses=True)
    daemons.append(daemon := Daemon(env, "watcher_segv"))
    daemon.wait_event("ready", timeout=30)
    assert _set_ids(client, env) == [sets.set_ids[0]]
    (fault,) = daemon.events("subband_fault")
    assert str(fault["reason"]).startswith(str(crasher)) and "SIGSEGV" in str(fault["reason"])
    land_all(groups[2], incoming)  # a fresh probe process takes the next set
    wait_for(lambda: len(_set_ids(client, env)) == 2, timeout=15)
    time.sleep(RECONCILIATIONS_SEC)  # rescans do not probe the crasher again
    assert len(daemon.events("subband_fault")) == 1
    assert daemon.events("service_crashed") == [] and daemon.proc.poll() is None
    assert daemon.stop() == 0
