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
from dsa110d.housekeeping import (
    _maybe_run,
    leftover_age_sec,
    run_exclusive,
    run_pass,
    stale_leftovers,
)
from dsa110d.messages import MessageType
from dsa110d.science.atomic import COMPLETE_MARKER, STAGING_DIR
from dsa110d.science.constants import SECONDS_PER_DAY
from dsa110d.state.blocks import Blocks, BlockSpan, ChunkRecord
from dsa110d.state.housekeeping import claim_run, prune_registry
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Leases
from tests.conftest import REPO_ROOT, make_config

pytestmark = pytest.mark.anyio

OLD = 40 * SECONDS_PER_DAY  # past every retention (30 days; streams 7 days)
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
            await redis.hset(record(name), mapping={"state": "done"})  # type: ignore[misc]
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
        await redis.hset(keys.alert_record(fp), mapping={"status": status, "fingerprint": fp})  # type: ignore[misc]
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
    old = now - 2 * SECONDS_PER_DAY  # past the 6 h grace
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


async def test_old_set_records_stay_while_their_files_are_still_incoming(
    config: Config, redis: aioredis.Redis
) -> None:
    """With post_handle none the inputs stay: pruning their set would re-announce them."""
    now = time.time()
    keys = Keys(config.redis.namespace)
    incoming = config.paths.incoming_dir
    incoming.mkdir(parents=True, exist_ok=True)
    (incoming / "2026-01-01T00:00:00_sb00.hdf5").write_bytes(b"x")
    sets = {
        "still-here": incoming / "2026-01-01T00:00:00_sb00.hdf5",
        "moved-away": incoming / "2026-01-01T00:05:00_sb00.hdf5",  # gone (post_handle: move)
    }
    for set_id, path in sets.items():
        await redis.zadd(keys.set_index(), {set_id: now - OLD})
        await redis.hset(  # type: ignore[misc]
            keys.set_record(set_id), mapping={"state": "converted", "sb:00": str(path)}
        )
    done = await run_pass(config, redis, now=now)
    assert [r.name for r in done.removals if r.kind == "set"] == ["moved-away"]
    assert await redis.zrange(keys.set_index(), 0, -1) == ["still-here"]
    assert await redis.exists(keys.set_record("still-here"))
    # once the operator removes the file, the record goes on the next pass
    (incoming / "2026-01-01T00:00:00_sb00.hdf5").unlink()
    again = await run_pass(config, redis, now=now)
    assert [r.name for r in again.removals if r.kind == "set"] == ["still-here"]


async def test_chunks_and_blocks_age_by_when_recorded_and_pending_blocks_stay(
    config: Config, redis: aioredis.Redis
) -> None:
    """Reprocessing January's data in November keeps its records; only old records go."""
    now = time.time()
    keys = Keys(config.redis.namespace)
    blocks = Blocks(redis, keys)
    january = now - 300 * SECONDS_PER_DAY  # data time, far past the retention

    async def record(name: str, recorded: float) -> None:
        start = january + 1000 * len(await blocks.chunks())  # each its own block
        chunk = ChunkRecord(name, name, start, start + 300, 0.5, f"/ms/{name}.ms")
        await blocks.record_chunk(chunk, [BlockSpan(f"b-{name}", start, start + 300)], recorded)

    async def commit(name: str) -> None:
        pipe = redis.pipeline(transaction=True)
        blocks.stage_commit(pipe, f"b-{name}", 1, 1, [name], [], {}, now)
        await pipe.execute()

    await record("fresh-pending", now)  # just recorded, not yet processed
    await record("fresh-done", now)
    await commit("fresh-done")
    await record("old-pending", now - OLD)  # recorded long ago, still waiting: must stay
    await record("old-done", now - OLD)
    pipe = redis.pipeline(transaction=True)
    blocks.stage_commit(pipe, "b-old-done", 1, 1, ["old-done"], [], {}, now - OLD)
    await pipe.execute()

    done = await run_pass(config, redis, now=now)
    gone = {(r.kind, r.name) for r in done.removals if r.kind in ("chunk", "block")}
    # the old pending block's chunk stays too: its run still reads it
    assert gone == {("chunk", "old-done"), ("block", "b-old-done")}
    assert await blocks.block("b-fresh-pending") is not None
    assert await blocks.block("b-fresh-done") is not None
    assert await blocks.block("b-old-pending") is not None
    assert await blocks.pending() == ["b-fresh-pending", "b-old-pending"]
    assert await blocks.block("b-old-done") is None
    assert {c.chunk_id for c in await blocks.chunks()} == {
        "fresh-pending",
        "fresh-done",
        "old-pending",
    }


async def test_streams_nobody_reads_and_the_alert_stream_are_bounded(
    config: Config, redis: aioredis.Redis
) -> None:
    now = time.time()
    keys = Keys(config.redis.namespace)
    for message_type in MessageType:  # no group on any of them (VARIABILITY_ANALYSIS today)
        for ago in (OLD, RECENT):
            await redis.xadd(keys.stream(message_type.value), {"m": "{}"}, id=ms_id(ago, now))
    for ago in (OLD, RECENT):
        await redis.xadd(keys.alerts(), {"event": "fire"}, id=ms_id(ago, now))
    await run_pass(config, redis, now=now)
    for stream in [keys.stream(t.value) for t in MessageType] + [keys.alerts()]:
        assert [i for i, _ in await redis.xrange(stream)] == [ms_id(RECENT, now)], stream


def write_tree(root: Path, files: list[str], mtime: float) -> None:
    """Files (relative to ``root``, each with its directories) and every directory on the
    way, all last changed at ``mtime``."""
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    for path in [*sorted(root.rglob("*"), reverse=True), root]:
        os.utime(path, (mtime, mtime), follow_symlinks=False)


STAGED = ["photometry/B.parquet", ".scratch/imaging/block-image.fits", ".scratch/flag/.tmp-x"]
"""What a block run's staging directory holds when its processor is killed mid-run."""


async def test_staging_left_by_a_killed_block_run_goes_but_not_a_running_ones(
    config: Config, redis: aioredis.Redis
) -> None:
    now = time.time()
    staging = config.paths.results_dir / STAGING_DIR
    old, young = now - 2 * SECONDS_PER_DAY, now - 3600
    write_tree(staging / "2026-11-01T00:00:00.v1.t3", STAGED, old)  # killed long ago
    write_tree(staging / "2026-11-01T01:00:00.v1.t4", STAGED, young)  # may still run
    # an old tree whose job still writes deep inside (wsclean into its scratch): stays
    busy = staging / "2026-11-01T02:00:00.v2.t9"
    write_tree(busy, STAGED, old)
    (busy / ".scratch" / "imaging" / "block-image.fits").write_bytes(b"more")
    # a symlink in the staging directory is never followed or removed, nor what it points at
    outside = config.paths.state_dir / "not-a-data-root"
    write_tree(outside, ["keep.dat"], old)
    (staging / "2026-11-01T03:00:00.v1.t5").symlink_to(outside)
    os.utime(staging, (old, old))

    dry = await run_pass(config, redis, dry_run=True, now=now)
    leftovers = [(r.kind, Path(r.name)) for r in dry.removals if r.kind in ("staging", "temporary")]
    assert leftovers == [("staging", staging / "2026-11-01T00:00:00.v1.t3")]
    assert (staging / "2026-11-01T00:00:00.v1.t3").exists()  # a dry run removes nothing

    done = await run_pass(config, redis, now=now)
    assert [r.name for r in done.removals if r.kind == "staging"] == [str(leftovers[0][1])]
    assert not leftovers[0][1].exists()
    assert sorted(p.name for p in staging.iterdir()) == [
        "2026-11-01T01:00:00.v1.t4",
        "2026-11-01T02:00:00.v2.t9",
        "2026-11-01T03:00:00.v1.t5",
    ]
    assert all((busy / f).exists() for f in STAGED)
    assert (outside / "keep.dat").exists()


async def test_leftovers_wait_well_past_the_longest_job_timeout(tmp_path: Path) -> None:
    """A site whose blocks may take 12 h: a 30 h old staging directory or temporary output is
    past temp_grace_sec (6 h) but not past 4 block timeouts, so it stays."""
    now = time.time()
    usual = make_config(tmp_path / "usual")
    slow = make_config(tmp_path / "slow", services__ms_processor__processing_timeout_sec=43200)
    assert leftover_age_sec(usual) == usual.housekeeping.temp_grace_sec == 6 * 3600
    assert leftover_age_sec(slow) == 4 * 12 * 3600
    for config in (usual, slow):
        stale = now - 30 * 3600
        write_tree(config.paths.results_dir / STAGING_DIR / "B.v1.t1", STAGED, stale)
        write_tree(config.paths.ms_dir / ".tmp-2026-11-01T00:00:00.ms.1a2b3c4d", ["t.dat"], stale)
    assert sorted(r.kind for r in stale_leftovers(usual, now)) == ["staging", "temporary"]
    assert stale_leftovers(slow, now) == []


async def test_fencing_keys_go_with_their_records_but_not_while_a_lease_is_held(
    config: Config, redis: aioredis.Redis
) -> None:
    now = time.time()
    keys = Keys(config.redis.namespace)
    blocks = Blocks(redis, keys)
    leases = Leases(redis, keys, config.leases)
    for set_id, ago in (("old-set", OLD), ("new-set", RECENT)):
        await redis.zadd(keys.set_index(), {set_id: now - ago})
        await redis.hset(keys.set_record(set_id), mapping={"state": "converted"})  # type: ignore[misc]
    for name, ago in (("old-done", OLD), ("old-busy", OLD), ("new-done", RECENT)):
        start = now - 300 * SECONDS_PER_DAY + 1000 * len(await blocks.chunks())
        chunk = ChunkRecord(name, name, start, start + 300, 0.5, f"/ms/{name}.ms")
        await blocks.record_chunk(chunk, [BlockSpan(f"b-{name}", start, start + 300)], now - ago)
        pipe = redis.pipeline(transaction=True)
        blocks.stage_commit(pipe, f"b-{name}", 1, 1, [name], [], {}, now - ago)
        await pipe.execute()
    fast_old, fast_new = Keys.fast_search_lease("old-done"), Keys.fast_search_lease("new-done")
    for name in (
        "set:old-set", "set:new-set", "block:b-old-done", "block:b-new-done", fast_old, fast_new,
    ):  # fmt: skip
        lease = await leases.acquire(name)
        assert lease is not None
        await leases.commit(lease)
        await leases.release(lease)
    busy = await leases.acquire("block:b-old-busy")  # a run of it is under way right now
    assert busy is not None
    await leases.commit(busy)

    def fencing(name: str) -> list[str]:
        return [keys.fence(name), keys.committed_token(name)]

    done = await run_pass(config, redis, now=now)
    gone = {(r.kind, r.name) for r in done.removals if r.kind in ("set", "block")}
    assert {("set", "old-set"), ("block", "b-old-done")} <= gone
    assert ("block", "b-old-busy") not in gone
    assert ("chunk", "old-done") in {(r.kind, r.name) for r in done.removals}
    gone_keys = [*fencing("set:old-set"), *fencing("block:b-old-done"), *fencing(fast_old)]
    assert await redis.exists(*gone_keys) == 0  # a chunk's fast search's go with the chunk
    kept = [*fencing("set:new-set"), *fencing("block:b-new-done"), *fencing("block:b-old-busy")]
    kept += fencing(fast_new)
    assert await redis.exists(*kept) == len(kept)
    assert await blocks.block("b-old-busy") is not None  # its holder will commit to it
    assert await leases.holder("block:b-old-busy") is not None


async def test_outputs_a_committed_run_superseded_go_when_its_holder_died_before_removing_them(
    config: Config, redis: aioredis.Redis
) -> None:
    now = time.time()
    keys = Keys(config.redis.namespace)
    blocks = Blocks(redis, keys)
    photometry = config.paths.results_dir / "photometry"
    photometry.mkdir(parents=True)
    block = "2026-03-20T06:00:00"
    names = {
        "older": f"{block}.v1.t3.parquet",  # the previous version: goes
        "committed": f"{block}.v2.t7.parquet",  # what the record names: stays
        "newer": f"{block}.v3.t9.parquet",  # a newer run, not yet committed: stays
    }
    for name in names.values():
        (photometry / name).write_bytes(b"x")
    outside = config.paths.ms_dir / "x.v1.t1.parquet"  # a record naming a path elsewhere
    outside.parent.mkdir(parents=True)
    outside.write_bytes(b"x")
    (outside.parent / "x.parquet").write_bytes(b"not results: never touched")
    for block_id, path in ((block, photometry / names["committed"]), ("b-odd", outside)):
        chunk = ChunkRecord(block_id, block_id, now, now + 300, 0.5, f"/ms/{block_id}.ms")
        await blocks.record_chunk(chunk, [BlockSpan(block_id, now, now + 300)], now)
        pipe = redis.pipeline(transaction=True)
        blocks.stage_commit(pipe, block_id, 2, 1, [block_id], [], {"photometry": str(path)}, now)
        await pipe.execute()
    dry = await run_pass(config, redis, dry_run=True, now=now)
    older = str(photometry / names["older"])
    assert [r.name for r in dry.removals if r.kind == "superseded-output"] == [older]
    assert (photometry / names["older"]).exists()
    await run_pass(config, redis, now=now)
    assert sorted(p.name for p in photometry.iterdir()) == [names["committed"], names["newer"]]
    assert outside.exists() and (outside.parent / "x.parquet").exists()
