"""The Redis half of housekeeping: what is past its retention, found and (unless a dry run)
removed. Every function returns what it removed (or would remove) as :class:`Removal` rows.

Record layout (``state/keys.py``): ``set_index`` is scored by when each set was first seen;
``chunk_index`` and ``block_index`` by their data's start time, so chunks and blocks are aged
by their records' own ``recorded_at`` / ``created_at`` / ``processed_at`` instead. A record
older than the retention is removed with its index entry, except a set whose input files are
still incoming, a block still pending (or leased: a run is under way) and a chunk such a block
overlaps; a record newer than it is never touched. A set's or block's fencing keys (its lease's
fence counter and commit mark) go with its record.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dsa110d.config import RetryConfig, StreamsConfig
from dsa110d.messages import MessageType
from dsa110d.state import lua
from dsa110d.state.connection import Redis, translate_errors
from dsa110d.state.keys import Keys
from dsa110d.state.stream_entries import read_bytes
from dsa110d.state.streams import ReliableStream

SCAN_COUNT = 1000
STALE_REGISTRY_TTLS = 10  # an entry this many TTLs past its last update is stale whatever its TTL


@dataclass(frozen=True)
class Removal:
    """One thing housekeeping removed (or would remove)."""

    kind: str  # set, chunk, block, stream-entries, dead-letters, alert, alert-events, ...
    name: str
    count: int = 1
    age_sec: float | None = None


InputsPresent = Callable[[list[list[str]]], Awaitable[list[bool]]]
"""Given each set's input file paths, whether any of them is still in the incoming directory."""

# Each record's own wall-clock times (Unix s): when it was recorded and last written. The
# index scores are data (observation) times for chunks and blocks, which say nothing about
# when the record was made: reprocessing January's data in June must not lose its records.
RECORD_TIMES = {"chunk": ("recorded_at",), "block": ("created_at", "processed_at", "failed_at")}


async def _no_inputs(batch: list[list[str]]) -> list[bool]:
    return [False] * len(batch)


async def prune_records(
    redis: Redis,
    keys: Keys,
    now: float,
    retention_sec: float,
    dry_run: bool,
    target: str,
    inputs_present: InputsPresent = _no_inputs,
) -> list[Removal]:
    """Set, chunk and block records (and their index entries) older than the retention.

    A set goes only once none of its input files is still incoming (``inputs_present``): its
    record is what stops a restarted watcher from announcing it again. Chunks and blocks go
    by when they were recorded (not by their data's time); a pending block never goes, nor
    a chunk a pending block overlaps.
    """
    cutoff = now - retention_sec
    removed = []
    with translate_errors(target):
        sets = await _old_sets(redis, keys, cutoff, inputs_present)
        chunks = await _old_by_record_time(redis, keys, "chunk", cutoff)
        blocks = await _old_by_record_time(redis, keys, "block", cutoff)
        pending = await _pending(redis, keys, [b for b, _ in blocks])
        pending |= await _leased(redis, keys, [b for b, _ in blocks])  # a run is under way
        blocks = [(b, t) for b, t in blocks if b not in pending]
        chunks = await _not_awaited(redis, keys, chunks)
        for kind, old in (("set", sets), ("chunk", chunks), ("block", blocks)):
            removed += [Removal(kind, member, 1, now - when) for member, when in old]
        if dry_run:
            return removed
        for index, record, old in (
            (keys.set_index(), keys.set_record, sets),
            (keys.chunk_index(), keys.chunk_record, chunks),
        ):
            if old:
                pipe = redis.pipeline(transaction=True)
                pipe.delete(*[record(m) for m, _ in old])
                # a set's fencing keys go with its record, a chunk's fast search's with its
                named = keys.set_lease if index == keys.set_index() else keys.fast_search_lease
                pipe.delete(*[k for m, _ in old for k in keys.fencing_keys(named(m))])
                pipe.zrem(index, *[m for m, _ in old])
                await pipe.execute()
        if blocks:
            ids = [b for b, _ in blocks]
            block_keys = [keys.block_index(), keys.block_pending()]
            for b in ids:
                lease = keys.block_lease(b)
                block_keys += [keys.block_record(b), keys.lease(lease), *keys.fencing_keys(lease)]
            await lua.script(redis, "housekeeping_prune_blocks")(keys=block_keys, args=ids)
    return removed


async def _old_sets(
    redis: Redis, keys: Keys, cutoff: float, inputs_present: InputsPresent
) -> list[tuple[str, float]]:
    """Sets first seen before ``cutoff`` whose input files have all left incoming."""
    if await redis.type(keys.set_index()) != "zset":
        return []
    old = [
        (str(m), float(t))
        for m, t in await redis.zrangebyscore(
            keys.set_index(), "-inf", f"({cutoff}", withscores=True
        )
    ]
    raws = await _hgetall(redis, [keys.set_record(m) for m, _ in old])
    files = [[v for k, v in raw.items() if k.startswith("sb:")] for raw in raws]
    present = await inputs_present(files)
    return [one for one, here in zip(old, present, strict=True) if not here]


async def _old_by_record_time(
    redis: Redis, keys: Keys, kind: str, cutoff: float
) -> list[tuple[str, float]]:
    """Chunks or blocks last written before ``cutoff`` (records without their own times,
    written by an older version, fall back to the index score)."""
    index, record = (
        (keys.chunk_index(), keys.chunk_record)
        if kind == "chunk"
        else (keys.block_index(), keys.block_record)
    )
    if await redis.type(index) != "zset":
        return []
    members = [(str(m), float(t)) for m, t in await redis.zrange(index, 0, -1, withscores=True)]
    fields = RECORD_TIMES[kind]
    async with redis.pipeline(transaction=False) as pipe:
        for member, _ in members:
            pipe.hmget(record(member), list(fields))
        stamps = await pipe.execute()
    old = []
    for (member, score), values in zip(members, stamps, strict=True):
        times = [float(v) for v in values if v not in (None, "")]
        when = max(times) if times and max(times) > 0 else score
        if when < cutoff:
            old.append((member, when))
    return old


async def _not_awaited(
    redis: Redis, keys: Keys, chunks: list[tuple[str, float]]
) -> list[tuple[str, float]]:
    """The chunks that no pending block overlaps: a pending block's run still reads its
    chunks, however long ago they were recorded (e.g. a month-long backlog)."""
    if not chunks:
        return []
    ids = [str(i) for i in await redis.zrange(keys.block_pending(), 0, -1)]
    spans = await _spans(redis, [keys.block_record(i) for i in ids])
    if not spans:
        return chunks
    own = await _spans(redis, [keys.chunk_record(c) for c, _ in chunks], keep_missing=True)
    return [
        chunk
        for chunk, (start, end) in zip(chunks, own, strict=True)
        if not any(start < b_end and end > b_start for b_start, b_end in spans)
    ]


async def _spans(
    redis: Redis, names: list[str], keep_missing: bool = False
) -> list[tuple[float, float]]:
    """(start, end) of each record; a record without them is skipped (or, with
    ``keep_missing``, an empty span that overlaps nothing)."""
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hmget(name, ["start", "end"])
        replies = await pipe.execute()
    spans = []
    for start, end in replies:
        try:
            spans.append((float(start), float(end)))
        except (TypeError, ValueError):
            if keep_missing:
                spans.append((0.0, 0.0))
    return spans


async def _pending(redis: Redis, keys: Keys, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    scores = await redis.zmscore(keys.block_pending(), ids)
    return {i for i, s in zip(ids, scores, strict=True) if s is not None}


async def block_results(redis: Redis, keys: Keys, target: str) -> dict[str, dict[str, str]]:
    """Block id -> the results (kind -> path) its committed run recorded, for every block that
    has some; a record whose results cannot be read is left out (not an error: housekeeping
    goes on)."""
    with translate_errors(target):
        if await redis.type(keys.block_index()) != "zset":
            return {}
        ids = [str(i) for i in await redis.zrange(keys.block_index(), 0, -1)]
        async with redis.pipeline(transaction=False) as pipe:
            for block_id in ids:
                pipe.hget(keys.block_record(block_id), "results")
            raws = await pipe.execute()
    found = {}
    for block_id, raw in zip(ids, raws, strict=True):
        try:
            results = json.loads(raw) if raw else {}
        except ValueError:
            continue
        if isinstance(results, dict) and results:
            found[block_id] = {str(k): str(v) for k, v in results.items()}
    return found


async def _leased(redis: Redis, keys: Keys, ids: list[str]) -> set[str]:
    """The blocks whose lease someone holds now."""
    if not ids:
        return set()
    async with redis.pipeline(transaction=False) as pipe:
        for i in ids:
            pipe.exists(keys.lease(keys.block_lease(i)))
        held = await pipe.execute()
    return {i for i, h in zip(ids, held, strict=True) if h}


async def _hgetall(redis: Redis, names: list[str]) -> list[dict[str, str]]:
    if not names:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(name)
        return list(await pipe.execute())


async def trim_acked(
    redis: Redis,
    keys: Keys,
    streams: StreamsConfig,
    retry: RetryConfig,
    now: float,
    dry_run: bool,
    target: str,
) -> list[Removal]:
    """Stream entries older than ``streams.retention_sec`` that every group has acked."""
    removed = []
    for message_type in MessageType:
        stream = ReliableStream(
            redis, keys, message_type, "housekeeping", streams, retry, target=target
        )
        count = await (stream.trimmable(now) if dry_run else stream.trim(now))
        if count:
            removed.append(Removal("stream-entries", stream.name, count))
    return removed


async def _trim_by_age(
    redis: Redis, stream: str, cutoff: float, dry_run: bool, kind: str
) -> Removal | None:
    """Entries of a time-ordered stream whose id is older than ``cutoff`` (unix seconds)."""
    bound = f"{int(cutoff * 1000)}-0"
    if dry_run:
        # as bytes: an entry's contents may not be UTF-8 (stream_entries.read_bytes)
        count = len(await read_bytes(redis, "XRANGE", stream, "-", f"({bound}"))
    else:
        count = int(await redis.xtrim(stream, minid=bound, approximate=False))
    return Removal(kind, stream, count) if count else None


async def prune_dead_letters(
    redis: Redis, keys: Keys, now: float, retention_sec: float, dry_run: bool, target: str
) -> list[Removal]:
    """Dead letters older than their retention (their id carries the time they died)."""
    removed = []
    with translate_errors(target):
        for message_type in MessageType:
            dead = keys.dead_letters(message_type.value)
            row = await _trim_by_age(redis, dead, now - retention_sec, dry_run, "dead-letters")
            if row is not None:
                removed.append(row)
    return removed


async def prune_alerts(
    redis: Redis, keys: Keys, now: float, retention_sec: float, dry_run: bool, target: str
) -> list[Removal]:
    """Resolved alerts and notices, and alert-stream events, older than the retention.

    A pending or firing alert is never removed, however old.
    """
    cutoff = now - retention_sec
    removed = []
    with translate_errors(target):
        old = await redis.zrangebyscore(keys.alert_index(), "-inf", f"({cutoff}", withscores=True)
        gone = []
        for fp, score in old:
            status = await redis.hget(keys.alert_record(fp), "status")  # type: ignore[misc]
            if status in ("pending", "firing"):
                continue
            gone.append(str(fp))
            removed.append(Removal("alert", str(fp), 1, now - float(score)))
        if gone and not dry_run:
            pipe = redis.pipeline(transaction=True)
            pipe.delete(*[keys.alert_record(fp) for fp in gone])
            pipe.zrem(keys.alert_index(), *gone)
            await pipe.execute()
        row = await _trim_by_age(redis, keys.alerts(), cutoff, dry_run, "alert-events")
        if row is not None:
            removed.append(row)
    return removed


async def prune_registry(
    redis: Redis,
    keys: Keys,
    now: float,
    registry_ttl_sec: float,
    idle_consumer_sec: float,
    dry_run: bool,
    target: str,
) -> list[Removal]:
    """Registry entries that will never expire by themselves, and consumers long gone.

    An entry is stale when it has no TTL (written by hand or by an old version) or was last
    updated more than ``STALE_REGISTRY_TTLS`` TTLs ago. A stream consumer is stale when it
    holds nothing, has no heartbeat and has been idle longer than ``idle_consumer_sec``.
    """
    removed = []
    with translate_errors(target):
        async for key in redis.scan_iter(match=keys.registry_pattern(), count=SCAN_COUNT):
            ttl_ms = int(await redis.pttl(key))
            if ttl_ms == -1 or ttl_ms > STALE_REGISTRY_TTLS * registry_ttl_sec * 1000:
                removed.append(Removal("registry", str(key)))
                if not dry_run:
                    await redis.delete(key)
        for message_type in MessageType:
            removed += await _stale_consumers(
                redis, keys, keys.stream(message_type.value), idle_consumer_sec, dry_run
            )
    return removed


async def _stale_consumers(
    redis: Redis, keys: Keys, stream: str, idle_sec: float, dry_run: bool
) -> list[Removal]:
    if not await redis.exists(stream):
        return []
    removed = []
    for group in await redis.xinfo_groups(stream):
        name = str(group["name"])
        for consumer in await redis.xinfo_consumers(stream, name):
            who, idle = str(consumer["name"]), int(consumer["idle"]) / 1000
            if int(consumer["pending"]) or idle < idle_sec:
                continue
            if await redis.exists(keys.consumer_heartbeat(stream, who)):
                continue
            removed.append(Removal("consumer", f"{stream} {name} {who}", 1, idle))
            if not dry_run:
                await redis.xgroup_delconsumer(stream, name, who)
    return removed


async def claim_run(redis: Redis, keys: Keys, interval_sec: float, target: str) -> bool:
    """True for the one caller per interval that should run housekeeping (SET NX PX)."""
    with translate_errors(target):
        ok = await redis.set(keys.housekeeping_done(), "1", nx=True, px=int(interval_sec * 1000))
    return bool(ok)
