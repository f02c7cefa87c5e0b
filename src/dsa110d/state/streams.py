"""Reliable streams: Redis Streams with consumer groups, dead letters, replay and trimming.

One :class:`ReliableStream` per (message type, consumer group). It owns every Redis command
on that stream; services call only this API (and :class:`~dsa110d.state.consumer.
StreamConsumer`, which runs the consume loop on top of it).

Guarantees
    * **Publish** appends one envelope (field ``m``, JSON from :mod:`dsa110d.messages`).
      With a ``dedup_key`` the check and the append are one Lua script, so announcing the same
      logical event twice (two watchers, a rescan after restart) enqueues it once; the dedup
      marker lives for ``streams.retention_sec``.
    * **At-least-once delivery.** An entry stays in the group's pending list until it is
      acked, and it is acked only after the handler returned (see the consumer).
    * **Reclaim by heartbeat.** A consumer that holds work keeps ``<stream>:hb:<consumer>``
      alive. :meth:`ReliableStream.reclaim` claims an entry only when its owner's heartbeat
      key is gone; the check and the XCLAIM are one Lua script, so a live worker on a
      30-minute job is never robbed, whatever the entry's idle time, and two reclaimers never
      both win.
    * **Dead letters.** :meth:`ReliableStream.dead_letter` moves an entry to
      ``<stream>:dead`` together with the reason, the attempt history and the original raw
      entry, and acks it, in one transaction. :meth:`replay` puts dead letters back (one id or
      all; atomic per letter), :meth:`purge` deletes them.
    * **Bounded growth.** :meth:`trim` drops entries older than ``streams.retention_sec``
      but never one that a group has not yet acked (nor one not yet delivered).
    * **Introspection.** :meth:`stats` returns a :class:`StreamStats` for dsa110ctl and
      metrics: length, pending, undelivered, consumers (pending, idle, heartbeat alive),
      oldest pending age and dead-letter count.

Every Redis error leaves this module as a :class:`~dsa110d.errors.StateError` (or its
:class:`~dsa110d.errors.ServerUnavailableError` subclass) via ``translate_errors``.

Entries are read as bytes and kept as bytes (:mod:`dsa110d.state.stream_entries`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis.exceptions as redis_errors

from dsa110d.config import RetryConfig, StreamsConfig
from dsa110d.errors import MessageError
from dsa110d.messages import Message, MessageType, encode
from dsa110d.state import lua
from dsa110d.state.connection import Redis, translate_errors
from dsa110d.state.durability import confirm
from dsa110d.state.keys import Keys
from dsa110d.state.stream_entries import (
    ENTRY_FIELD,
    NEVER_DECODE,
    AttemptRecord,
    ConsumerStats,
    DeadLetter,
    Entry,
    StreamStats,
    after_id,
    count_of,
    dead_letter_of,
    entries_of,
    entry_age_sec,
    entry_of,
    parse_id,
    read_bytes,
    text_of,
)

RECLAIM_SCAN_LIMIT = 1000  # pending entries examined per reclaim pass


class ReliableStream:
    """The stream of one message type as seen by one consumer group."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        message_type: MessageType,
        group: str,
        streams: StreamsConfig,
        retry: RetryConfig,
        *,
        target: str = "the state server",
        clock: Any = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.message_type = message_type
        self.group = group
        self.config = streams
        self.retry = retry
        self.name = keys.stream(message_type.value)
        self.dead_name = keys.dead_letters(message_type.value)
        self.attempts_key = keys.attempts(self.name)
        self.target = target
        self.clock = clock
        self._publish_once = lua.script(redis, "streams_publish_once")
        self._reclaim = lua.script(redis, "streams_reclaim")
        self._replay = lua.script(redis, "streams_replay")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        with translate_errors(self.target):
            yield

    def heartbeat_key(self, consumer: str) -> str:
        return self.keys.consumer_heartbeat(self.name, consumer)

    # -------------------------------------------------------------------- producing
    async def ensure_group(self) -> None:
        """Create the stream and the consumer group if missing (idempotent)."""
        try:
            with self._guard():
                await self.redis.xgroup_create(self.name, self.group, id="0", mkstream=True)
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def publish(self, message: Message, dedup_key: str | None = None) -> str | None:
        """Append a message; with ``dedup_key``, None when that event was already announced."""
        if message.type is not self.message_type:
            raise MessageError(
                f"message {message.id}: type {message.type} published on {self.name}"
            )
        raw = encode(message)
        if len(raw.encode()) > self.config.max_entry_bytes:
            raise MessageError(
                f"message {message.id}: {len(raw.encode())} bytes is over the size limit of "
                f"{self.config.max_entry_bytes} bytes"
            )
        with self._guard():
            if dedup_key is None:
                entry_id = str(await self.redis.xadd(self.name, {ENTRY_FIELD: raw}))
                await confirm(self.redis, self.keys, self.target, f"message {message.id}")
                return entry_id
            ttl_ms = int(self.config.retention_sec * 1000)
            marker = self.keys.dedup(self.name, dedup_key)
            result = await self._publish_once(keys=[self.name, marker], args=[raw, ttl_ms])
        await confirm(self.redis, self.keys, self.target, f"message {message.id} on {self.name}")
        return None if result is None else str(result)

    async def publish_raw(self, raw: str | bytes) -> str:
        """Append an arbitrary raw entry (tests and tools; bypasses validation)."""
        with self._guard():
            return str(await self.redis.xadd(self.name, {ENTRY_FIELD: raw}))

    # -------------------------------------------------------------------- consuming
    async def read_new(self, consumer: str, count: int, block_ms: int | None) -> list[Entry]:
        """XREADGROUP ``>``: entries never delivered to this group (blocks up to block_ms)."""
        with self._guard():
            reply = await self._xreadgroup(consumer, ">", count, block_ms)
        return [Entry(i, raw, 1) for i, raw in entries_of(reply)]

    async def read_own_pending(self, consumer: str, count: int) -> list[Entry]:
        """This consumer's own unacked entries (after a reconnect or restart)."""
        with self._guard():
            reply = await self._xreadgroup(consumer, "0", count, None)
            pending = await self.redis.xpending_range(
                self.name, self.group, "-", "+", count, consumername=consumer
            )
        deliveries = {p["message_id"]: int(p["times_delivered"]) for p in pending}
        return [Entry(i, raw, deliveries.get(i, 1)) for i, raw in entries_of(reply)]

    async def _xreadgroup(self, consumer: str, start: str, count: int, block_ms: int | None) -> Any:
        args: list[Any] = ["XREADGROUP", "GROUP", self.group, consumer, "COUNT", count]
        if block_ms is not None:
            args += ["BLOCK", block_ms]
        args += ["STREAMS", self.name, start]
        return await self._read_bytes(*args)

    async def _read_bytes(self, *args: Any) -> Any:
        return await read_bytes(self.redis, *args)

    async def claim_own(self, consumer: str, entry_ids: list[str]) -> list[Entry]:
        """Re-deliver entries this consumer already holds (a retry): bumps delivery counts."""
        if not entry_ids:
            return []
        with self._guard():
            pending = await self.redis.xpending_range(
                self.name,
                self.group,
                min(entry_ids),
                max(entry_ids),
                len(entry_ids) * 4,
                consumername=consumer,
            )
            claimed = await self._read_bytes(
                "XCLAIM", self.name, self.group, consumer, 0, *entry_ids
            )
        counts = {p["message_id"]: int(p["times_delivered"]) + 1 for p in pending}
        return [
            Entry(i, raw, counts.get(i, 1))
            for i, raw in (entry_of(item) for item in claimed or [])
            if i in counts
        ]

    async def reclaim(
        self, consumer: str, take_from: Callable[[set[str]], set[str]] | None = None
    ) -> list[Entry]:
        """Claim entries whose owner's heartbeat has lapsed; never a live owner's.

        ``take_from`` gets the owners found lapsed and returns those to take from now (the
        consumer's :class:`~dsa110d.state.consumer.LapseWatch`); without it, all of them.
        """
        min_idle_ms = int(
            (self.config.heartbeat_ttl_sec - self.config.heartbeat_interval_sec) * 1000
        )
        candidates = await self._stale_candidates(consumer, min_idle_ms)
        if take_from is not None:
            taken = take_from({owner for _, owner in candidates})
            candidates = [(entry_id, owner) for entry_id, owner in candidates if owner in taken]
        if not candidates:
            return []
        owners = sorted({owner for _, owner in candidates})
        hb_keys = [self.heartbeat_key(o) for o in owners]
        args: list[Any] = [self.group, consumer]
        for entry_id, owner in candidates:
            args += [entry_id, owner, owners.index(owner) + 2]
        with self._guard():
            flat = await self._reclaim(keys=[self.name, *hb_keys], args=args)
            if not flat:
                return []
            ids = [str(x) for x in flat[0::2]]
            counts = {str(i): int(c) for i, c in zip(flat[0::2], flat[1::2], strict=True)}
            entries = await self._fetch(ids)
        return [Entry(i, raw, counts[i]) for i, raw in entries]

    async def _stale_candidates(self, consumer: str, min_idle_ms: int) -> list[tuple[str, str]]:
        """Pending entries idle long enough whose owner (not us) has no heartbeat."""
        found: list[tuple[str, str]] = []
        start = "-"
        scanned = 0
        with self._guard():
            while scanned < RECLAIM_SCAN_LIMIT:
                page = await self.redis.xpending_range(
                    self.name, self.group, start, "+", 100, idle=min_idle_ms
                )
                if not page:
                    break
                scanned += len(page)
                owners = sorted({p["consumer"] for p in page} - {consumer})
                alive = await self._alive(owners)
                found += [
                    (p["message_id"], p["consumer"])
                    for p in page
                    if p["consumer"] != consumer and not alive[p["consumer"]]
                ]
                if len(page) < 100:
                    break
                start = "(" + page[-1]["message_id"]
        return found

    async def _alive(self, consumers: list[str]) -> dict[str, bool]:
        if not consumers:
            return {}
        # Guarded here, not only by callers: stats() calls it after its own guarded round
        # trip, and a raw redis error escaping it would restart a service over a brief outage.
        with self._guard():
            pipe = self.redis.pipeline(transaction=False)
            for name in consumers:
                pipe.exists(self.heartbeat_key(name))
            flags = await pipe.execute()
        return {name: bool(flag) for name, flag in zip(consumers, flags, strict=True)}

    async def _fetch(self, entry_ids: list[str]) -> list[tuple[str, bytes | None]]:
        pipe = self.redis.pipeline(transaction=False)
        for entry_id in entry_ids:
            pipe.execute_command("XRANGE", self.name, entry_id, entry_id, **NEVER_DECODE)
        replies = await pipe.execute()
        out: list[tuple[str, bytes | None]] = []
        for entry_id, reply in zip(entry_ids, replies, strict=True):
            out.append((entry_id, entry_of(reply[0])[1] if reply else None))
        return out

    async def ack(self, entry_ids: list[str]) -> int:
        """Ack handled entries and forget their attempt histories (one transaction)."""
        if not entry_ids:
            return 0
        with self._guard():
            pipe = self.redis.pipeline(transaction=True)
            pipe.xack(self.name, self.group, *entry_ids)
            pipe.hdel(self.attempts_key, *entry_ids)
            acked, _ = await pipe.execute()
        await confirm(self.redis, self.keys, self.target, f"the ack of {len(entry_ids)} entries")
        return int(acked)

    async def heartbeat(self, consumer: str) -> None:
        """Renew this consumer's heartbeat (it lapses after ``heartbeat_ttl_sec``)."""
        ttl_ms = int(self.config.heartbeat_ttl_sec * 1000)
        with self._guard():
            await self.redis.set(self.heartbeat_key(consumer), "1", px=ttl_ms)

    async def retire(self, consumer: str) -> None:
        """A consumer leaves: drop its heartbeat so others may take what it still holds."""
        with self._guard():
            await self.redis.delete(self.heartbeat_key(consumer))
            pending = await self.redis.xpending_range(
                self.name, self.group, "-", "+", 1, consumername=consumer
            )
            if not pending:
                await self.redis.xgroup_delconsumer(self.name, self.group, consumer)

    # -------------------------------------------------------------------- attempts
    async def attempt_record(self, entry_id: str) -> AttemptRecord:
        with self._guard():
            text: str | None = await self.redis.hget(self.attempts_key, entry_id)  # type: ignore[misc]
        return AttemptRecord.from_json(text)

    async def record_failure(
        self, entry_id: str, consumer: str, error: str, deliveries: int, not_before: float
    ) -> AttemptRecord:
        """Append a failed attempt to the entry's history and set its not-before time."""
        record = await self.attempt_record(entry_id)
        record.attempts.append(
            {"at": self.clock(), "consumer": consumer, "delivery": deliveries, "error": error}
        )
        record.not_before = not_before
        with self._guard():
            await self.redis.hset(self.attempts_key, entry_id, record.to_json())  # type: ignore[misc]
        return record

    async def dead_letter(
        self, entry: Entry, reason: str, consumer: str, attempts: list[dict[str, Any]]
    ) -> str:
        """Move an entry to ``<stream>:dead`` with reason and history, and ack it, atomically."""
        letter = {
            "entry_id": entry.entry_id,
            "reason": reason,
            "attempts": json.dumps(attempts),
            "raw": entry.raw if entry.raw is not None else b"",
            "consumer": consumer,
            "dead_at": repr(self.clock()),
        }
        with self._guard():
            pipe = self.redis.pipeline(transaction=True)
            pipe.xadd(self.dead_name, letter)  # type: ignore[arg-type]
            pipe.xack(self.name, self.group, entry.entry_id)
            pipe.hdel(self.attempts_key, entry.entry_id)
            dead_id, _, _ = await pipe.execute()
        await confirm(self.redis, self.keys, self.target, f"dead letter of {entry.entry_id}")
        return str(dead_id)

    # -------------------------------------------------------------------- dead letters
    async def dead_letter_count(self) -> int:
        """How many dead letters this type holds."""
        with self._guard():
            return int(await self.redis.xlen(self.dead_name))

    async def dead_letters(self, count: int = 100, start: str = "-") -> list[DeadLetter]:
        """The oldest ``count`` dead letters from ``start``."""
        with self._guard():
            reply = await self._read_bytes("XRANGE", self.dead_name, start, "+", "COUNT", count)
        return [dead_letter_of(text_of(i), f or {}) for i, f in reply or []]

    async def replay(self, dead_id: str | None = None) -> list[str]:
        """Put one dead letter (or all) back on the stream; returns the new entry ids."""
        ids = [dead_id] if dead_id is not None else await self._all_dead_ids()
        new_ids: list[str] = []
        with self._guard():
            for one in ids:
                result = await self._replay(keys=[self.dead_name, self.name], args=[one])
                if result is not None:
                    new_ids.append(str(result))
        return new_ids

    async def purge(self, dead_id: str | None = None) -> int:
        """Delete one dead letter, or all of them; returns how many went."""
        with self._guard():
            if dead_id is not None:
                return int(await self.redis.xdel(self.dead_name, dead_id))
            count = int(await self.redis.xlen(self.dead_name))
            await self.redis.delete(self.dead_name)
            return count

    async def _all_dead_ids(self) -> list[str]:
        with self._guard():
            reply = await self._read_bytes("XRANGE", self.dead_name, "-", "+")
        return [text_of(i) for i, _ in reply or []]

    # -------------------------------------------------------------------- housekeeping
    async def trim(self, now: float | None = None) -> int:
        """Drop entries older than the retention that every group has acked (or, with no
        group, all of them); returns count."""
        bound = await self._trim_bound(now)
        if bound is None:
            return 0
        with self._guard():
            return int(await self.redis.xtrim(self.name, minid=bound, approximate=False))

    async def trimmable(self, now: float | None = None) -> int:
        """How many entries :meth:`trim` would drop now (a dry run)."""
        bound = await self._trim_bound(now)
        if bound is None:
            return 0
        with self._guard():
            return len(await self._read_bytes("XRANGE", self.name, "-", f"({bound}"))

    async def _trim_bound(self, now: float | None) -> str | None:
        """The smallest id to keep: older than the retention and acked by every group (by
        age alone when the stream has no group)."""
        now = self.clock() if now is None else now
        cutoff_ms = int((now - self.config.retention_sec) * 1000)
        with self._guard():
            try:
                groups = await self.redis.xinfo_groups(self.name)
            except redis_errors.ResponseError:
                return None  # no such stream
            bound = (cutoff_ms, 0)
            # No group at all (e.g. VARIABILITY_ANALYSIS, which nothing consumes yet): no one
            # will ever ack these entries, so age alone bounds the stream.
            for group in groups:
                bound = min(bound, after_id(str(group["last-delivered-id"])))
                summary = await self.redis.xpending(self.name, str(group["name"]))
                if summary["pending"]:
                    bound = min(bound, parse_id(str(summary["min"])))
        if bound <= (0, 0):
            return None
        return f"{bound[0]}-{bound[1]}"

    async def groups(self) -> list[str]:
        """The consumer groups reading this stream (none when the stream does not exist)."""
        with self._guard():
            try:
                groups = await self.redis.xinfo_groups(self.name)
            except redis_errors.ResponseError:
                return []
        return [str(g["name"]) for g in groups]

    async def stats(self) -> StreamStats:
        """Length, pending, undelivered, consumers, oldest pending age, dead letters."""
        now = self.clock()
        with self._guard():
            pipe = self.redis.pipeline(transaction=False)
            pipe.xlen(self.name)
            pipe.xlen(self.dead_name)
            pipe.xpending(self.name, self.group)
            pipe.xinfo_groups(self.name)
            pipe.xinfo_consumers(self.name, self.group)
            length, dead, summary, groups, consumers = await pipe.execute(raise_on_error=False)
        if isinstance(summary, Exception):  # no stream or group yet
            return StreamStats(
                self.name, self.group, count_of(length), 0, count_of(length), None, count_of(dead)
            )
        group: dict[str, Any] = next((g for g in groups if g["name"] == self.group), {})
        oldest = entry_age_sec(str(summary["min"]), now) if summary["pending"] else None
        alive = await self._alive([str(c["name"]) for c in consumers])
        return StreamStats(
            stream=self.name,
            group=self.group,
            length=count_of(length),
            pending=int(summary["pending"]),
            undelivered=int(group.get("lag") or 0),
            oldest_pending_age_sec=oldest,
            dead_letters=count_of(dead),
            consumers=tuple(
                ConsumerStats(
                    str(c["name"]), int(c["pending"]), int(c["idle"]) / 1000, alive[str(c["name"])]
                )
                for c in consumers
            ),
        )
