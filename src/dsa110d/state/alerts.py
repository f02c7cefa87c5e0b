"""Alert state in Redis: one record per condition, claimed atomically so every daemon may
evaluate the rules and still only one of them sends each fire, repeat and resolve.

Layout (names from :class:`~dsa110d.state.keys.Keys`):

* ``alert_record(fp)`` — a hash per condition fingerprint: rule, severity, summary, details,
  status (``pending`` -> ``firing`` -> ``resolved``; ``notice`` for one-shot info events),
  since, seen_at, fired_at, last_sent, resolved_at, sent.
* ``alert_active()`` — the set of fingerprints that are pending or firing.
* ``alert_index()`` — every fingerprint scored by its last change (for listing and retention).
* ``alerts()`` — the stream of events (``fire``, ``repeat``, ``resolve``, ``notice``) for
  dashboards; appended in the same script as the state change, so exactly once per event.

A condition is *observed* by whichever daemons see it (:meth:`AlertStore.observe`); it fires
once it has been pending for its hold time, repeats every ``repeat_sec`` while observed, and
resolves once no daemon has observed it for ``stale_sec`` (:meth:`AlertStore.resolve_unseen`).
Each transition is one Lua script, so two daemons racing on one condition get one event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dsa110d.messages import MessageType
from dsa110d.state import lua
from dsa110d.state.connection import Redis, translate_errors
from dsa110d.state.keys import Keys
from dsa110d.state.stream_entries import read_bytes

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Condition:
    """Something wrong (or noteworthy) that a rule sees now."""

    fingerprint: str  # one per condition, never per observing host
    rule: str
    severity: str
    summary: str
    hold_sec: float = 0.0  # how long it must hold before the alert fires
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertEvent:
    """One thing to tell the operators: fire, repeat, resolve or notice."""

    fingerprint: str
    event: str
    rule: str
    severity: str
    summary: str
    at: float
    since: float
    details: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """One line for a chat channel or a log."""
        head = {"fire": "FIRING", "repeat": "STILL FIRING", "resolve": "RESOLVED"}
        label = head.get(self.event, "NOTICE")
        return f"[dsa110d {label} {self.severity}] {self.rule}: {self.summary}"


@dataclass(frozen=True)
class AlertRecord:
    """The stored state of one condition (``dsa110ctl alerts``)."""

    fingerprint: str
    status: str
    rule: str
    severity: str
    summary: str
    since: float
    seen_at: float
    fired_at: float | None
    resolved_at: float | None
    sent: int

    @property
    def active(self) -> bool:
        return self.status == "firing"


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def _record(fields: dict[str, str]) -> AlertRecord:
    return AlertRecord(
        fingerprint=fields.get("fingerprint", ""),
        status=fields.get("status", ""),
        rule=fields.get("rule", ""),
        severity=fields.get("severity", ""),
        summary=fields.get("summary", ""),
        since=_float(fields.get("since")) or 0.0,
        seen_at=_float(fields.get("seen_at")) or 0.0,
        fired_at=_float(fields.get("fired_at")),
        resolved_at=_float(fields.get("resolved_at")),
        sent=int(fields.get("sent") or 0),
    )


class AlertStore:
    """Alert conditions, their transitions and their history in one namespace."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        host: str = "",
        stream_max_len: int = 10000,
        target: str = "the state server",
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.host = host
        self.max_len = stream_max_len
        self.target = target
        self._observe = lua.script(redis, "alerts_observe")
        self._resolve = lua.script(redis, "alerts_resolve")
        self._notice = lua.script(redis, "alerts_notice")
        self._advance = lua.script(redis, "alerts_advance")

    def _keys_for(self, fingerprint: str) -> list[str]:
        k = self.keys
        return [k.alert_record(fingerprint), k.alert_active(), k.alert_index(), k.alerts()]

    async def observe(self, cond: Condition, now: float, repeat_sec: float) -> AlertEvent | None:
        """Record that ``cond`` holds now; the event this caller must send, if any."""
        details = json.dumps(cond.details, sort_keys=True, default=str)
        args: list[str | float] = [cond.fingerprint, repr(now), cond.hold_sec, repeat_sec]
        args += [cond.rule, cond.severity, cond.summary, details, self.host, self.max_len]
        with translate_errors(self.target):
            event = await self._observe(keys=self._keys_for(cond.fingerprint), args=args)
            if not event:
                return None
            since = await self.redis.hget(self.keys.alert_record(cond.fingerprint), "since")  # type: ignore[misc]
        return AlertEvent(
            cond.fingerprint, str(event), cond.rule, cond.severity, cond.summary, now,
            float(since or now), cond.details,
        )  # fmt: skip

    async def notice(self, cond: Condition, now: float) -> AlertEvent | None:
        """A one-shot event (new candidates): sent by the first daemon that sees it."""
        k = self.keys
        details = json.dumps(cond.details, sort_keys=True, default=str)
        args: list[str | float] = [cond.fingerprint, repr(now), cond.rule, cond.severity]
        args += [cond.summary, details, self.host, self.max_len]
        keys = [k.alert_record(cond.fingerprint), k.alert_index(), k.alerts()]
        with translate_errors(self.target):
            event = await self._notice(keys=keys, args=args)
        if not event:
            return None
        return AlertEvent(
            cond.fingerprint, "notice", cond.rule, cond.severity, cond.summary, now, now,
            cond.details,
        )  # fmt: skip

    async def resolve_unseen(
        self, seen: set[str], now: float, stale_sec: float
    ) -> list[AlertEvent]:
        """Resolve the active conditions nobody has observed for ``stale_sec``."""
        with translate_errors(self.target):
            active = await self.redis.smembers(self.keys.alert_active())  # type: ignore[misc]
        events = []
        for fp in sorted(set(active) - seen):
            args: list[str | float] = [fp, repr(now), stale_sec, self.host, self.max_len]
            with translate_errors(self.target):
                result = await self._resolve(keys=self._keys_for(fp), args=args)
                if result != "resolve":
                    continue
                fields = await self.redis.hgetall(self.keys.alert_record(fp))  # type: ignore[misc]
            rec = _record(fields)
            details = json.loads(fields.get("details") or "{}")
            events.append(
                AlertEvent(fp, "resolve", rec.rule, rec.severity, rec.summary, now, rec.since,
                           details)
            )  # fmt: skip
        return events

    async def advance_mark(self, name: str, value: int) -> int | None:
        """Move a shared high-water mark; the previous value if ``value`` grew (-1: first)."""
        with translate_errors(self.target):
            old = await self._advance(keys=[self.keys.alert_mark(name)], args=[value])
        return None if old is None else int(old)

    async def records(self, active_only: bool = False) -> list[AlertRecord]:
        """Stored alerts, newest change first (firing ones only with ``active_only``)."""
        with translate_errors(self.target):
            fps = await self.redis.zrevrange(self.keys.alert_index(), 0, -1)
            pipe = self.redis.pipeline(transaction=False)
            for fp in fps:
                pipe.hgetall(self.keys.alert_record(fp))
            rows = await pipe.execute() if fps else []
        found = [_record(r) for r in rows if r]
        return [r for r in found if r.active] if active_only else found


# --------------------------------------------------------------------------- observations
# Read-only queries the alert rules need; here because every Redis command lives in state/.


@dataclass(frozen=True)
class QueueView:
    """What a rule needs to know about one stream."""

    stream: str
    oldest_wait_sec: float | None  # the oldest pending or undelivered entry
    dead_letters: int
    newest_dead_age_sec: float | None


def _age(entry_id: str, now: float) -> float:
    return max(0.0, now - int(str(entry_id).split("-", 1)[0]) / 1000.0)


async def queue_views(redis: Redis, keys: Keys, now: float, target: str) -> list[QueueView]:
    """Oldest waiting work and dead-letter growth of every message type's stream."""
    views = []
    with translate_errors(target):
        for message_type in MessageType:
            stream = keys.stream(message_type.value)
            dead = keys.dead_letters(message_type.value)
            oldest = await _oldest_waiting(redis, stream, now)
            count = int(await redis.xlen(dead))
            # as bytes: a dead letter keeps an entry's raw contents, which may not be UTF-8
            newest = (
                await read_bytes(redis, "XREVRANGE", dead, "+", "-", "COUNT", 1) if count else []
            )
            newest_age = _age(newest[0][0].decode(), now) if newest else None
            views.append(QueueView(stream, oldest, count, newest_age))
    return views


async def _oldest_waiting(redis: Redis, stream: str, now: float) -> float | None:
    """Age of the oldest entry some group still owes: pending, or not yet delivered."""
    if not await redis.exists(stream):
        return None
    ages: list[float] = []
    for group in await redis.xinfo_groups(stream):
        summary = await redis.xpending(stream, str(group["name"]))
        if summary["pending"]:
            ages.append(_age(str(summary["min"]), now))
        last = str(group["last-delivered-id"])
        after = await read_bytes(redis, "XRANGE", stream, f"({last}", "+", "COUNT", 1)
        if after:
            ages.append(_age(after[0][0].decode(), now))
    return max(ages) if ages else None


INCOMPLETE_SET_STATES = frozenset({"collecting", "incomplete", "waiting"})


async def incomplete_sets(
    redis: Redis, keys: Keys, now: float, timeout_sec: float, target: str, limit: int = 100
) -> list[tuple[str, float]]:
    """Sets still collecting subbands ``timeout_sec`` after they were first seen.

    Assumed layout (the watcher's records): ``set_index`` is a sorted set of set ids scored by
    first-seen unix time, and ``set_record(id)`` a hash with ``state`` (``collecting`` while
    subbands are missing) and optionally ``first_seen``. Only the ``limit`` oldest are read.
    """
    with translate_errors(target):
        if await redis.type(keys.set_index()) != "zset":
            return []
        old = await redis.zrangebyscore(
            keys.set_index(), "-inf", now - timeout_sec, start=0, num=limit, withscores=True
        )
        found = []
        for set_id, score in old:
            fields = await redis.hmget(keys.set_record(set_id), ["state", "first_seen"])  # type: ignore[misc]
            state, first_seen = fields
            if (state or "") in INCOMPLETE_SET_STATES:
                found.append((str(set_id), now - float(first_seen or score)))
    return found


async def count_members(redis: Redis, key: str, target: str) -> int:
    """Entries of a key whatever its type (the analyzer's candidate store): 0 if absent."""
    counters = {
        "zset": redis.zcard,
        "set": redis.scard,
        "hash": redis.hlen,
        "list": redis.llen,
        "stream": redis.xlen,
    }
    with translate_errors(target):
        kind = await redis.type(key)
        count = counters.get(str(kind))
        return int(await count(key)) if count is not None else 0  # type: ignore[misc]
