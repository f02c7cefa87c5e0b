"""The watcher and bad input: each fault is recorded on its set and logged once, the set is
marked accordingly, and the watcher keeps going. Also late subbands, duplicates, timeouts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, MutableMapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import h5py
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from dsa110d.config import Config
from dsa110d.science.hdf5.ingest import ProbeOutcome
from dsa110d.science.hdf5.subbands import parse_subband_name, subband_file_name
from dsa110d.science.simulation.simulate import SimulationResult
from dsa110d.services.watcher import HDF5EventHandler
from dsa110d.state.sets import ErrorKind, SetRecord, SetState
from tests.integration.services.watcher.watcherkit import (
    announced,
    announced_paths,
    by_set,
    fingerprint,
    land,
    land_all,
    started_on,
)

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[4]


def _timeout_config(make: Callable[..., Config], policy: str) -> Config:
    return make(
        services__hdf5_watcher__processing_timeout_sec=0.3,
        services__hdf5_watcher__on_incomplete=policy,
    )


def _spoil_truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _spoil_corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:512] = b"\xff" * 512
    path.write_bytes(bytes(data))


def _spoil_zero(path: Path) -> None:
    path.write_bytes(b"")


def _spoil_shape(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        del f["Data/flags"]
        f["Data/flags"] = [[True]]


def _spoil_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _spoil_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


SPOILERS = {
    "truncated": (_spoil_truncate, "truncated or corrupt HDF5"),
    "corrupt": (_spoil_corrupt, "truncated or corrupt HDF5"),
    "zero-byte": (_spoil_zero, "zero-byte file"),
    "wrong shape": (_spoil_shape, "wrong shape: Data/flags"),
    "directory": (_spoil_directory, "is a directory"),
    "fifo": (_spoil_fifo, "not a regular file"),
}


def _faults(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "subband_fault"]


@pytest.mark.parametrize("kind", list(SPOILERS))
async def test_a_bad_subband_is_recorded_and_logged_once_and_the_watcher_goes_on(
    kind: str,
    watcher_config: Callable[..., Config],
    redis: aioredis.Redis,
    tiny_sets: SimulationResult,
) -> None:
    config = _timeout_config(watcher_config, "partial")
    incoming = config.paths.incoming_dir
    sets = by_set(tiny_sets.files)
    landed = land_all([*sets[0], *sets[1]], incoming)
    spoil, expected = SPOILERS[kind]
    bad = landed[2]  # set 0, sb02
    spoil(bad)
    good = [p for p in landed if p != bad]
    before = fingerprint(good)
    handler = HDF5EventHandler(config, redis)
    with capture_logs() as logs:
        await handler.start()
        await handler.tick()
        await handler.tick()
    (fault,) = _faults(logs)  # once, however often it is seen
    assert expected in str(fault["reason"]) and str(bad) in str(fault["reason"])
    # the other set is unharmed; the damaged one waits, then goes out partial
    (message,) = await announced(redis, config)
    assert message.payload["set_id"] == tiny_sets.set_ids[1]
    record = await handler.sets.get(tiny_sets.set_ids[0])
    assert record is not None and record.state is SetState.COLLECTING
    assert [(e.kind, e.path) for e in record.errors] == [(ErrorKind.BAD_FILE, str(bad))]
    assert record.missing == [2]
    await anyio.sleep(0.35)
    await handler.check_open_sets()
    messages = await announced(redis, config)
    assert messages[-1].payload["set_id"] == tiny_sets.set_ids[0]
    assert messages[-1].payload["partial"] is True
    assert messages[-1].payload["missing_subbands"] == [2]
    assert fingerprint(good) == before


async def test_a_symlink_out_of_the_watched_tree_is_refused(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult, tmp_path: Path
) -> None:
    incoming = config.paths.incoming_dir
    first = by_set(tiny_sets.files)[0]
    land_all(first[:-1], incoming)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = shutil.copy(first[-1], outside / first[-1].name)
    (incoming / first[-1].name).symlink_to(target)
    handler = HDF5EventHandler(config, redis)
    with capture_logs() as logs:
        await handler.start()
        await handler.tick()
    (fault,) = _faults(logs)
    assert "symlink points outside the watched directory" in str(fault["reason"])
    assert await announced(redis, config) == []
    record = await handler.sets.get(tiny_sets.set_ids[0])
    assert record is not None and record.errors[0].kind == ErrorKind.OUTSIDE
    assert str(outside) not in json.dumps(record.files)


async def test_a_symlink_inside_the_tree_is_announced_by_its_resolved_path(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    incoming = config.paths.incoming_dir
    store = incoming / "store"
    store.mkdir()
    first = by_set(tiny_sets.files)[0]
    land_all(first[:-1], incoming)
    real = shutil.copy(first[-1], store / "real.hdf5")
    (incoming / first[-1].name).symlink_to(real)
    handler = HDF5EventHandler(config, redis)
    await handler.start()
    (message,) = await announced(redis, config)
    assert str(Path(real).resolve()) in announced_paths(message)


async def test_times_that_disagree_are_recorded_on_both_sets(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    incoming = config.paths.incoming_dir
    first = by_set(tiny_sets.files)[0]
    landed = land_all(first, incoming)
    with h5py.File(landed[3], "r+") as f:
        f["Header/time_array"][0] = f["Header/time_array"][0] + 2.0 / 86400
    handler = HDF5EventHandler(config, redis)
    with capture_logs() as logs:
        await handler.start()
        await handler.tick()
    records = {r.set_id: r for r in await handler.sets.list()}
    assert len(records) == 2
    main = records[tiny_sets.set_ids[0]]
    (odd,) = [r for r in records.values() if r is not main]
    assert main.files.keys() == {0, 1, 2} and odd.files.keys() == {3}
    for record in (main, odd):
        (error,) = record.errors
        assert error.kind == ErrorKind.TIME_DISAGREEMENT and "differs by" in error.reason
    assert len(_faults(logs)) == 2  # one per set, not repeated by the second scan
    assert await announced(redis, config) == []


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")
def test_a_file_without_read_permission_is_refused_by_the_watchers_check(
    tiny_sets: SimulationResult,
) -> None:
    """As root every file is readable, so run the watcher's check as nobody (in a directory
    nobody may enter: pytest's own temporary directories are private to root)."""
    with tempfile.TemporaryDirectory(prefix="dsa110-unreadable-") as top:
        incoming = Path(top) / "incoming"
        incoming.mkdir()
        for p in (Path(top), incoming):
            p.chmod(0o755)
        path = Path(shutil.copy(tiny_sets.files[0], incoming / tiny_sets.files[0].name))
        path.chmod(0o200)
        _check_as_nobody(path, incoming)
        path.chmod(0o644)  # and readable, the same check accepts it: the test is honest
        _check_as_nobody(path, incoming, ok=True)


def _check_as_nobody(path: Path, incoming: Path, ok: bool = False) -> None:
    script = (
        "import json, sys; from dsa110d.science.hdf5.ingest import probe_files; "
        "print(json.dumps(probe_files([sys.argv[1]], sys.argv[2])))"
    )
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-c", script, str(path), str(incoming)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (outcome,) = json.loads(done.stdout)
    if ok:
        assert outcome["ok"] is True, outcome
    else:
        assert outcome["ok"] is False and "no read permission" in outcome["reason"]


async def test_a_late_subband_is_recorded_and_does_not_reannounce(
    watcher_config: Callable[..., Config], redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    config = _timeout_config(watcher_config, "partial")
    incoming = config.paths.incoming_dir
    first = by_set(tiny_sets.files)[0]
    handler = await started_on(config, redis, first[:-1])
    await anyio.sleep(0.35)
    await handler.check_open_sets()
    (message,) = await announced(redis, config)
    assert message.payload["partial"] is True and message.payload["missing_subbands"] == [3]
    late = land(first[-1], incoming)
    with capture_logs() as logs:
        await handler.tick()
        await handler.tick()
    assert len(await announced(redis, config)) == 1
    (fault,) = _faults(logs)
    assert fault["kind"] == "late"
    record = await handler.sets.get(tiny_sets.set_ids[0])
    assert record is not None and record.state is SetState.QUEUED and record.partial
    assert 3 not in record.files
    assert [(e.kind, e.path) for e in record.errors if e.kind == "late"] == [
        (ErrorKind.LATE, str(late.resolve()))
    ]


async def test_a_second_file_for_a_subband_is_recorded_and_the_set_still_goes_out(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    incoming = config.paths.incoming_dir
    first = by_set(tiny_sets.files)[0]
    landed = land_all(first[:2], incoming)
    name = parse_subband_name(first[1])
    assert name is not None  # the twin is named by another node's clock, a few seconds off
    twin_name = subband_file_name(name.timestamp + timedelta(seconds=3), name.subband)
    twin = land(first[1], incoming, name=twin_name)
    handler = HDF5EventHandler(config, redis)
    with capture_logs() as logs:
        await handler.start()
        landed += land_all(first[2:], incoming)
        await handler.tick()
    (message,) = await announced(redis, config)
    assert announced_paths(message) == [str(p.resolve()) for p in landed]
    (fault,) = _faults(logs)
    assert fault["kind"] == "duplicate" and str(twin.resolve()) in str(fault["reason"])
    record = await handler.sets.get(message.payload["set_id"])
    assert record is not None and [e.kind for e in record.errors] == [ErrorKind.DUPLICATE]


async def _incomplete_after_timeout(
    make: Callable[..., Config], redis: aioredis.Redis, tiny_sets: SimulationResult, policy: str
) -> tuple[HDF5EventHandler, SetRecord, list[MutableMapping[str, Any]]]:
    config = _timeout_config(make, policy)
    first = by_set(tiny_sets.files)[0]
    land_all(first[:-1], config.paths.incoming_dir)
    handler = HDF5EventHandler(config, redis)
    with capture_logs() as logs:
        await handler.start()
        await handler.check_open_sets()
        await anyio.sleep(0.35)
        await handler.check_open_sets()
        await handler.check_open_sets()
    record = await handler.sets.get(tiny_sets.set_ids[0])
    assert record is not None
    return handler, record, [e for e in logs if e["event"] == "set_incomplete"]


async def test_on_incomplete_wait_reports_once_and_keeps_waiting(
    watcher_config: Callable[..., Config], redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    handler, record, logs = await _incomplete_after_timeout(
        watcher_config, redis, tiny_sets, "wait"
    )
    assert record.state is SetState.INCOMPLETE
    assert [e.kind for e in record.errors] == [ErrorKind.INCOMPLETE]
    assert "missing sb03" in record.errors[0].reason
    assert len(logs) == 1 and logs[0]["action"] == "wait"
    assert await announced(redis, handler.config) == []
    land(by_set(tiny_sets.files)[0][-1], handler.config.paths.incoming_dir)
    await handler.tick()  # the straggler arrives: the set completes and goes out whole
    (message,) = await announced(redis, handler.config)
    assert message.payload["partial"] is False


async def test_on_incomplete_partial_announces_what_is_there(
    watcher_config: Callable[..., Config], redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    handler, record, logs = await _incomplete_after_timeout(
        watcher_config, redis, tiny_sets, "partial"
    )
    assert record.state is SetState.QUEUED and record.partial
    (message,) = await announced(redis, handler.config)
    assert message.payload["partial"] is True and message.payload["missing_subbands"] == [3]
    assert len(message.payload["files"]) == 3
    assert len(logs) == 1


async def test_on_incomplete_fail_marks_the_set_failed(
    watcher_config: Callable[..., Config], redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    handler, record, logs = await _incomplete_after_timeout(
        watcher_config, redis, tiny_sets, "fail"
    )
    assert record.state is SetState.FAILED
    assert [e.kind for e in record.errors] == [ErrorKind.INCOMPLETE]
    assert len(logs) == 1 and logs[0]["action"] == "fail"
    assert await announced(redis, handler.config) == []
    land(by_set(tiny_sets.files)[0][-1], handler.config.paths.incoming_dir)
    await handler.tick()
    assert await announced(redis, handler.config) == []  # failed stays failed...
    record2 = await handler.sets.get(record.set_id)
    assert record2 is not None and record2.errors[-1].kind == ErrorKind.LATE  # ...and says so


async def test_a_bad_file_seen_before_its_set_joins_the_set_when_it_appears(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    incoming = config.paths.incoming_dir
    first = by_set(tiny_sets.files)[0]
    bad = land(first[0], incoming)
    _spoil_corrupt(bad)
    handler = HDF5EventHandler(config, redis)
    await handler.start()
    (provisional,) = await handler.sets.list()
    assert provisional.set_id.endswith("_byname") and provisional.time0_jd is None
    land_all(first[1:], incoming)
    await handler.tick()
    (record,) = await handler.sets.list()  # the by-name set was folded into the timed one
    assert record.set_id == tiny_sets.set_ids[0]
    assert [(e.kind, e.path) for e in record.errors] == [(ErrorKind.BAD_FILE, str(bad))]
    assert record.missing == [0]


async def test_a_dangling_symlink_is_reported_not_ignored(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult, tmp_path: Path
) -> None:
    incoming = config.paths.incoming_dir
    first = by_set(tiny_sets.files)[0]
    land_all(first[:-1], incoming)
    (incoming / first[-1].name).symlink_to(incoming / "nowhere.bin")
    handler = HDF5EventHandler(config, redis)
    with capture_logs() as logs:
        await handler.start()
        await handler.tick()
    (fault,) = _faults(logs)
    assert "no such file" in str(fault["reason"])
    record = await handler.sets.get(tiny_sets.set_ids[0])
    assert record is not None and record.errors[0].kind == ErrorKind.BAD_FILE


async def test_a_file_that_vanishes_before_its_probe_is_not_a_fault(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    incoming = config.paths.incoming_dir
    handler = HDF5EventHandler(config, redis)
    await handler.start()
    path = land(by_set(tiny_sets.files)[0][0], incoming)
    real_prober = handler.prober

    async def remove_then_probe(paths: list[str], root: str) -> list[ProbeOutcome]:
        path.unlink()  # e.g. moved away by post_handle between the looks and the probe
        return await real_prober(paths, root)

    handler.prober = remove_then_probe
    with capture_logs() as logs:
        await handler.handle([str(path)])
    assert _faults(logs) == [] and await handler.sets.list() == []


async def test_on_incomplete_fail_never_fails_a_set_that_completed_meanwhile(
    watcher_config: Callable[..., Config], redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    """The last subband may land between the timeout check and the mark: the mark must
    then refuse (it applies only to a set still collecting)."""
    config = _timeout_config(watcher_config, "fail")
    land_all(by_set(tiny_sets.files)[0], config.paths.incoming_dir)
    handler = HDF5EventHandler(config, redis)
    await handler.start()
    await handler.check_open_sets()
    set_id = tiny_sets.set_ids[0]
    before = await handler.sets.get(set_id)
    assert before is not None and before.state is not SetState.FAILED
    await handler._timeout(set_id, [3], 3, 10.0)  # judged from the stale, incomplete view
    after = await handler.sets.get(set_id)
    assert after is not None and after.state is before.state
