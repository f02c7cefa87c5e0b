"""Stream entries as the state server delivers them: the records (an entry, a delivery, a dead
letter, a stream's statistics, an entry's failed attempts) and how the replies that carry
them are read.

Entries are read as bytes. An entry is untrusted input: anyone who may XADD can write bytes
that are not UTF-8, and a client that decodes replies would fail on the whole reply, taking
every entry read with it (a batch, or every entry reclaimed together) and never reaching the
consumer's fault boundary. So the commands that return entry contents run with redis-py's
``NEVER_DECODE``, and :attr:`Entry.raw` is the entry's bytes, decoded by
:func:`dsa110d.messages.decode` inside the consumer's boundary. Dead letters keep the raw
bytes too (a replay puts back exactly what came); :attr:`DeadLetter.raw` shows them as text
with undecodable bytes replaced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis.client as redis_client

from dsa110d.messages import Message
from dsa110d.state.connection import Redis

ENTRY_FIELD = "m"
RAW_FIELD = ENTRY_FIELD.encode()
NEVER_DECODE: dict[str, Any] = {redis_client.NEVER_DECODE: []}
"""Options of a command whose reply is read as bytes (see the module docstring)."""


@dataclass(frozen=True)
class Entry:
    """A raw stream entry as delivered: ``raw`` (its bytes, undecoded) is None when the entry
    has no ``m`` field."""

    entry_id: str
    raw: bytes | None
    deliveries: int


@dataclass(frozen=True)
class Delivery:
    """What a handler receives: the decoded message and how often it has been delivered."""

    entry_id: str
    message: Message
    deliveries: int
    attempts: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class DeadLetter:
    """One entry of ``<stream>:dead``; ``raw`` is the entry as text, any byte that is not
    UTF-8 replaced (the letter itself keeps the bytes, and a replay puts those back)."""

    dead_id: str
    entry_id: str
    reason: str
    attempts: list[dict[str, Any]]
    raw: str
    consumer: str
    dead_at: float


@dataclass(frozen=True)
class ConsumerStats:
    name: str
    pending: int
    idle_sec: float
    alive: bool


@dataclass(frozen=True)
class StreamStats:
    """A stream's health at a glance (``dsa110ctl queues``, metrics)."""

    stream: str
    group: str
    length: int
    pending: int
    undelivered: int
    oldest_pending_age_sec: float | None
    dead_letters: int
    consumers: tuple[ConsumerStats, ...] = field(default=())


@dataclass
class AttemptRecord:
    """The failed attempts of one entry and when it may be tried again."""

    attempts: list[dict[str, Any]]
    not_before: float = 0.0

    def to_json(self) -> str:
        return json.dumps({"attempts": self.attempts, "not_before": self.not_before})

    @classmethod
    def from_json(cls, text: str | None) -> AttemptRecord:
        if not text:
            return cls([])
        try:
            data = json.loads(text)
            return cls(list(data["attempts"]), float(data.get("not_before", 0.0)))
        except (ValueError, KeyError, TypeError):
            return cls([])  # a corrupt history must not wedge the entry


async def read_bytes(redis: Redis, *args: Any) -> Any:
    """One command whose reply is read as bytes, not decoded: any command that returns the
    contents of stream entries (see the module docstring). Ids in the reply are bytes too."""
    return await redis.execute_command(*args, **NEVER_DECODE)  # type: ignore[no-untyped-call]


def entry_age_sec(entry_id: str, now: float) -> float:
    """Seconds since the entry was appended (its id starts with the server's ms clock)."""
    return max(0.0, now - int(entry_id.split("-", 1)[0]) / 1000.0)


def count_of(value: Any) -> int:
    """A count from a pipelined reply; 0 where the command failed (no such stream yet)."""
    return 0 if isinstance(value, Exception) else int(value)


def entries_of(reply: Any) -> list[tuple[str, bytes | None]]:
    """Flatten an XREADGROUP reply of one stream (read as bytes)."""
    if not reply:
        return []
    return [entry_of(item) for item in reply[0][1]]


def entry_of(item: Any) -> tuple[str, bytes | None]:
    """(id, raw bytes of the ``m`` field or None) from one entry of a bytes reply; a deleted
    entry comes back with no fields."""
    entry_id, fields = item
    raw = fields.get(RAW_FIELD) if fields else None
    return text_of(entry_id), raw


def text_of(value: Any) -> str:
    """A field the server or we wrote (ids, our own fields), read as bytes."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def after_id(entry_id: str) -> tuple[int, int]:
    """The smallest id greater than ``entry_id``: the first one a group has not seen."""
    ms, seq = parse_id(entry_id)
    return ms, seq + 1


def dead_letter_of(dead_id: str, raw_fields: dict[bytes, bytes]) -> DeadLetter:
    fields = {text_of(k): text_of(v) for k, v in raw_fields.items()}
    try:
        attempts = list(json.loads(fields.get("attempts", "[]")))
    except (ValueError, TypeError):
        attempts = []
    try:
        dead_at = float(fields.get("dead_at", "0") or 0)
    except ValueError:
        dead_at = 0.0
    return DeadLetter(
        dead_id=str(dead_id),
        entry_id=fields.get("entry_id", ""),
        reason=fields.get("reason", ""),
        attempts=attempts,
        raw=fields.get("raw", ""),
        consumer=fields.get("consumer", ""),
        dead_at=dead_at,
    )
