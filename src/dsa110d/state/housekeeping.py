"""The Redis half of housekeeping: what is past its retention, found and (unless a dry run)
removed. Every function returns what it removed (or would remove) as :class:`Removal` rows.

Assumed record layout (``state/keys.py``): each of ``set_index``, ``chunk_index`` and
``block_index`` is a sorted set of ids scored by the record's time (unix seconds), and
``set_record(id)`` etc. hold the record. The indexes are scored by *observation* time (a
set's name time, a block's start), which says nothing about when the pipeline last touched a
record: archival data (or the simulator's, dated in the past) is processed long after it was
observed. So the score only pre-selects (a record is never older than the data it describes
was taken), and a record is removed with its index entry only when its own wall-clock
fields (:data:`RECORD_TIME_FIELDS`, the newest of them) are past the retention too; a record
newer than that is never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dsa110d.config import RetryConfig, StreamsConfig
from dsa110d.messages import MessageType
from dsa110d.state.connection import Redis, translate_errors
from dsa110d.state.keys import Keys
from dsa110d.state.streams import ReliableStream

SCAN_COUNT = 1000
RECORD_TIME_FIELDS = {
    "set": ("last_seen", "first_seen"),
    "chunk": ("recorded_at",),
    "block": ("processed_at", "failed_at", "created_at"),
}
"""Wall-clock fields (unix s) of each record kind; the newest present says when it was touched."""
STALE_REGISTRY_TTLS = 10  # an entry this many TTLs past its last update is stale whatever its TTL


@dataclass(frozen=True)
class Removal:
    """One thing housekeeping removed (or would remove)."""

    kind: str  # set, chunk, block, stream-entries, dead-letters, alert, alert-events, ...
    name: str
    count: int = 1
    age_sec: float | None = None


async def prune_records(
    redis: Redis, keys: Keys, now: float, retention_sec: float, dry_run: bool, target: str
) -> list[Removal]:
    """Set, chunk and block records (and their index entries) older than the retention."""
    kinds: list[tuple[str, str, Callable[[str], str]]] = [
        ("set", keys.set_index(), keys.set_record),
        ("chunk", keys.chunk_index(), keys.chunk_record),
        ("block", keys.block_index(), keys.block_record),
    ]
    removed = []
    with translate_errors(target):
        for kind, index, record in kinds:
            if await redis.type(index) != "zset":
                continue
            candidates = await redis.zrangebyscore(
                index, "-inf", f"({now - retention_sec}", withscores=True
            )
            touched = await _touched_at(redis, [record(str(m)) for m, _ in candidates], kind)
            old = [
                (member, score if when is None else when)
                for (member, score), when in zip(candidates, touched, strict=True)
                if when is None or when < now - retention_sec
            ]
            for member, when in old:
                removed.append(Removal(kind, str(member), 1, now - float(when)))
            if old and not dry_run:
                members = [str(m) for m, _ in old]
                pipe = redis.pipeline(transaction=True)
                pipe.delete(*[record(m) for m in members])
                pipe.zrem(index, *members)
                await pipe.execute()
    return removed


async def _touched_at(redis: Redis, records: list[str], kind: str) -> list[float | None]:
    """The newest wall-clock time field of each record (None when it has none)."""
    if not records:
        return []
    fields = RECORD_TIME_FIELDS[kind]
    pipe = redis.pipeline(transaction=False)
    for key in records:
        pipe.hmget(key, list(fields))
    replies = await pipe.execute()
    times: list[float | None] = []
    for values in replies:
        found = [float(v) for v in values if v not in (None, "")]
        times.append(max(found) if found else None)
    return times


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
        count = len(await redis.xrange(stream, "-", f"({bound}"))
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
