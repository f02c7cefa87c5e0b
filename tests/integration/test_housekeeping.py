"""Housekeeping on a seeded state: exactly what is past its retention goes, nothing else;
the dry run (also through ``dsa110ctl housekeeping --dry-run``) shows the same and removes
nothing; one host at a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.errors import LeaseHeldError
from dsa110d.housekeeping import DAY_SEC, _maybe_run, run_exclusive, run_pass
from dsa110d.science.atomic import COMPLETE_MARKER
from dsa110d.state.housekeeping import claim_run, prune_registry
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Leases
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.anyio

OLD = 40 * DAY_SEC  # past every retention (30 days; streams 7 days)
RECENT = 3600.0  # within every retention


def ms_id(ago: float, now: float) -> str:
    return f"{int((now - ago) * 1000)}-0"


async def seed_redis(redis: aioredis.Redis, keys: Keys, now: float) -> set[tuple[str, str]]:
    """Old and recent state of every kind; returns the (kind, name) pairs that must go."""
    doomed: set[tuple[str, str]] = set()
    for kind, index, record in (
        ("set", keys.set_index(), keys.set_record),
        ("chunk", keys.chunk_index(), keys.chunk_record),
        ("block", keys.block_index(), keys.block_record),
    ):
        await redis.zadd(index, {f"old-{kind}": now - OLD, f"new-{kind}": now - RECENT})
        for name in (f"old-{kind}", f"new-{kind}"):
            await redis.hset(record(name), mapping={"state": "done"})
        doomed.add((kind, f"old-{kind}"))

    stream = keys.stream("HDF5_PROCESSING")  # acked-old, unacked-old, acked-new
    for ago in (OLD, OLD - 1, RECENT):
        await redis.xadd(stream, {"m": "{}"}, id=ms_id(ago, now))
    await redis.xgroup_create(stream, "watchers", id="0")
    await redis.xreadgroup("watchers", "w1", {stream: ">"})
    await redis.xack(stream, "watchers", ms_id(OLD, now), ms_id(RECENT, now))
    doomed.add(("stream-entries", stream))  # only the first: the second is still pending

    dead = keys.dead_letters("MS_PROCESSING")
    await redis.xadd(dead, {"reason": "old"}, id=ms_id(OLD, now))
    await redis.xadd(dead, {"reason": "new"}, id=ms_id(RECENT, now))
    doomed.add(("dead-letters", dead))

    for fp, status, ago in (
        ("old-resolved", "resolved", OLD),
        ("old-firing", "firing", OLD),  # still holding: never removed
        ("new-resolved", "resolved", RECENT),
    ):
        await redis.hset(keys.alert_record(fp), mapping={"status": status, "fingerprint": fp})
        await redis.zadd(keys.alert_index(), {fp: now - ago})
    await redis.xadd(keys.alerts(), {"event": "fire"}, id=ms_id(OLD, now))
    await redis.xadd(keys.alerts(), {"event": "resolve"}, id=ms_id(RECENT, now))
    doomed |= {("alert", "old-resolved"), ("alert-events", keys.alerts())}

    stale = keys.registry_entry("gone-host", 1, "watcher")
    await redis.set(stale, "{}")  # no TTL: it would never vanish by itself
    await redis.set(keys.registry_entry("live-host", 2, "watcher"), "{}", ex=30)
    doomed.add(("registry", stale))
    return doomed


def seed_files(config: Config, now: float) -> tuple[set[Path], set[Path]]:
    """Crash leftovers and real outputs; returns (must go, must stay)."""
    paths = config.paths
    old = now - 2 * DAY_SEC  # past the 6 h grace
    ms, photometry = paths.ms_dir, paths.results_dir / "photometry"
    go = {ms / ".tmp-2026-11-01T00:00:00.ms.1a2b3c4d", photometry / ".tmp-block7.parquet.5e6f"}
    stay = {
        ms / ".tmp-2026-11-26T00:00:00.ms.0badc0de",  # young: maybe still being written
        ms / ".tmp-2026-11-03T00:00:00.ms.5ca1ab1e",  # an old directory, a file written now
        ms / ".tmp-2026-11-02T00:00:00.ms.feedf00d",  # complete, awaiting its rename
        ms / "2026-11-01T00:05:00.ms",  # a complete output
        ms / "2026-11-01T00:05:00.ms" / ".tmp-inside",  # inside an output: never looked at
        photometry / "block6.parquet",
        paths.incoming_dir / ".tmp-2026-11-01T00:00:00_sb00.hdf5.x",  # an input: never
    }
    for path in go | stay:
        if path.suffix in (".ms",) or ".ms." in path.name:
            path.mkdir(parents=True, exist_ok=True)
            (path / "table.dat").write_bytes(b"x")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    for done in (ms / ".tmp-2026-11-02T00:00:00.ms.feedf00d", ms / "2026-11-01T00:05:00.ms"):
        (done / COMPLETE_MARKER).touch()
    for path in go | stay:
        if "0badc0de" not in path.name:  # that one is being written: its files are fresh
            for child in path.iterdir() if path.is_dir() and "5ca1ab1e" not in path.name else []:
                os.utime(child, (old, old))
            os.utime(path, (old, old))
    return go, stay


def ctl_dry_run(config: Config, server_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
    env.update(
        PYTHONPATH=str(REPO_ROOT / "src"),
        DSA110__REDIS__EMBEDDED="false",
        DSA110__REDIS__URL=server_url,
        DSA110__REDIS__NAMESPACE=config.redis.namespace,
        **{f"DSA110__PATHS__{k.upper()}": str(getattr(config.paths, k)) for k in (
            "incoming_dir", "ms_dir", "results_dir", "processed_dir", "state_dir", "log_dir")},
    )  # fmt: skip
    return subprocess.run(
        [sys.executable, "-c", "from dsa110d.cli.ctl import main; main()", "housekeeping",
         "--dry-run", "--env", "testing", "--config", str(REPO_ROOT / "etc/dsa110/services.yaml")],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


async def test_housekeeping_removes_exactly_what_is_past_retention(
    config: Config, redis: aioredis.Redis, server_url: str
) -> None:
    now = time.time()
    keys = Keys(config.redis.namespace)
    doomed = await seed_redis(redis, keys, now)
    go, stay = seed_files(config, now)
    expected = doomed | {("temporary", str(p)) for p in go}

    shown = await anyio.to_thread.run_sync(ctl_dry_run, config, server_url)
    assert shown.returncode == 0, shown.stderr
    for kind, name in expected:
        assert f"would remove {kind:15} {name}" in shown.stdout, (kind, name, shown.stdout)

    dry = await run_pass(config, redis, dry_run=True, now=now)
    assert {(r.kind, r.name) for r in dry.removals} == expected
    assert all(p.exists() for p in go)  # a dry run removes nothing
    assert await redis.exists(keys.set_record("old-set"))

    done = await run_pass(config, redis, now=now)
    assert {(r.kind, r.name) for r in done.removals} == expected
    assert done.counts()["stream-entries"] == 1
    assert not any(p.exists() for p in go)
    assert all(p.exists() for p in stay)
    for kind in ("set", "chunk", "block"):
        index = getattr(keys, f"{kind}_index")()
        assert await redis.zrange(index, 0, -1) == [f"new-{kind}"]
        record = getattr(keys, f"{kind}_record")
        assert not await redis.exists(record(f"old-{kind}"))
        assert await redis.exists(record(f"new-{kind}"))
    stream = keys.stream("HDF5_PROCESSING")
    assert [i for i, _ in await redis.xrange(stream)] == [ms_id(OLD - 1, now), ms_id(RECENT, now)]
    assert len(await redis.xrange(keys.dead_letters("MS_PROCESSING"))) == 1
    assert set(await redis.zrange(keys.alert_index(), 0, -1)) == {"old-firing", "new-resolved"}
    assert await redis.exists(keys.alert_record("old-firing"))
    assert [f["event"] for _, f in await redis.xrange(keys.alerts())] == ["resolve"]
    assert await redis.exists(keys.registry_entry("live-host", 2, "watcher"))
    assert not await redis.exists(keys.registry_entry("gone-host", 1, "watcher"))

    again = await run_pass(config, redis, dry_run=True, now=now)
    assert again.removals == []


async def test_consumers_long_gone_are_removed_but_not_busy_or_beating_ones(
    config: Config, redis: aioredis.Redis
) -> None:
    keys = Keys(config.redis.namespace)
    stream = keys.stream("MS_PROCESSING")
    await redis.xadd(stream, {"m": "{}"})
    await redis.xgroup_create(stream, "g", id="0")
    await redis.xreadgroup("g", "busy", {stream: ">"})  # holds the entry
    await redis.xgroup_createconsumer(stream, "g", "gone")
    await redis.xgroup_createconsumer(stream, "g", "beating")
    await redis.set(keys.consumer_heartbeat(stream, "beating"), "1", ex=30)
    await anyio.sleep(0.3)
    removed = await prune_registry(redis, keys, time.time(), 30, 0.2, False, "test")
    assert [r.name for r in removed] == [f"{stream} g gone"]
    names = {c["name"] for c in await redis.xinfo_consumers(stream, "g")}
    assert names == {"busy", "beating"}


async def test_one_host_at_a_time(config: Config, redis: aioredis.Redis) -> None:
    keys = Keys(config.redis.namespace)
    leases = Leases(redis, keys, config.leases)
    async with leases.hold("housekeeping"):  # another host is sweeping
        with pytest.raises(LeaseHeldError):
            await run_exclusive(config, redis)
    # and once per interval across daemons: the first claim wins, the rest skip
    interval = config.housekeeping.interval_sec
    claims = [await claim_run(redis, keys, interval, "test") for _ in range(3)]
    assert claims == [True, False, False]
    await _maybe_run(config, redis)  # claimed already: returns without running
    assert await redis.pttl(keys.housekeeping_done()) > 0


async def test_records_of_old_observations_touched_recently_are_kept(
    config: Config, redis: aioredis.Redis
) -> None:
    """Indexes are scored by observation time: archival (or simulated) data processed today
    keeps its records; only the records' own wall-clock times count against the retention."""
    now = time.time()
    keys = Keys(config.redis.namespace)
    touched = {"set": "last_seen", "chunk": "recorded_at", "block": "processed_at"}
    for kind, index, record in (
        ("set", keys.set_index(), keys.set_record),
        ("chunk", keys.chunk_index(), keys.chunk_record),
        ("block", keys.block_index(), keys.block_record),
    ):
        await redis.zadd(index, {f"archival-{kind}": now - OLD, f"stale-{kind}": now - OLD})
        await redis.hset(record(f"archival-{kind}"), mapping={touched[kind]: repr(now - RECENT)})
        await redis.hset(record(f"stale-{kind}"), mapping={touched[kind]: repr(now - OLD)})
    done = await run_pass(config, redis, now=now)
    removed = {(r.kind, r.name) for r in done.removals if r.kind in touched}
    assert removed == {(kind, f"stale-{kind}") for kind in touched}
    for kind in touched:
        record = getattr(keys, f"{kind}_record")
        assert await redis.exists(record(f"archival-{kind}"))
        assert not await redis.exists(record(f"stale-{kind}"))
