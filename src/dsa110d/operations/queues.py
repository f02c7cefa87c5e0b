"""``dsa110ctl queues`` and ``dlq``: the streams of every message type and their dead letters.

Statistics are per (message type, consumer group), from :meth:`ReliableStream.stats`; a stream
that no group reads yet shows as one row with group ``-``. Dead-letter ids are stream ids of
``<namespace>:<type>:dead``; a command that takes an id searches every type unless told one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dsa110d.config import Config
from dsa110d.errors import DSA110Error, MessageError, StateError
from dsa110d.messages import MessageType
from dsa110d.operations.session import open_state
from dsa110d.state.connection import Redis, describe_target
from dsa110d.state.keys import Keys
from dsa110d.state.stream_entries import DeadLetter, StreamStats
from dsa110d.state.streams import ReliableStream

NO_GROUP = "-"
PAGE = 500  # dead letters read per round trip
Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class QueueRow:
    """One stream as seen by one consumer group."""

    message_type: str
    stream: str
    group: str
    length: int
    pending: int
    undelivered: int
    consumers: int
    consumers_alive: int
    oldest_pending_age_sec: float | None
    dead_letters: int

    @classmethod
    def from_stats(cls, message_type: MessageType, stats: StreamStats) -> QueueRow:
        return cls(
            message_type=message_type.value,
            stream=stats.stream,
            group=stats.group,
            length=stats.length,
            pending=stats.pending,
            undelivered=stats.undelivered,
            consumers=len(stats.consumers),
            consumers_alive=sum(c.alive for c in stats.consumers),
            oldest_pending_age_sec=stats.oldest_pending_age_sec,
            dead_letters=stats.dead_letters,
        )


@dataclass(frozen=True)
class DeadLetterView:
    """A dead letter with the message type it belongs to and what its envelope says."""

    message_type: str
    dead_id: str
    entry_id: str
    reason: str
    attempts: list[dict[str, Any]]
    consumer: str
    dead_at: float
    message_id: str
    trace_id: str
    raw: str

    @classmethod
    def from_letter(cls, message_type: MessageType, letter: DeadLetter) -> DeadLetterView:
        envelope = _peek(letter.raw)
        return cls(
            message_type=message_type.value,
            dead_id=letter.dead_id,
            entry_id=letter.entry_id,
            reason=letter.reason,
            attempts=letter.attempts,
            consumer=letter.consumer,
            dead_at=letter.dead_at,
            message_id=str(envelope.get("id", "")),
            trace_id=str(envelope.get("trace_id", "")),
            raw=letter.raw,
        )

    def to_dict(self, with_raw: bool = False) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "raw"}
        if with_raw:
            data["raw"] = self.raw
        return data


def _peek(raw: str) -> dict[str, Any]:
    """The envelope's fields when the raw entry is JSON (a poison entry may be anything)."""
    try:
        document = json.loads(raw)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def message_types(name: str | None = None) -> list[MessageType]:
    """Every message type, or the one named (case-insensitive); a wrong name is a usage error."""
    if name is None:
        return list(MessageType)
    try:
        return [MessageType(name.upper())]
    except ValueError:
        choices = ", ".join(t.value for t in MessageType)
        raise MessageError(f"unknown message type {name!r}: choose from {choices}") from None


def _stream(redis: Redis, config: Config, message_type: MessageType, group: str) -> ReliableStream:
    return ReliableStream(
        redis,
        Keys(config.redis.namespace),
        message_type,
        group,
        config.streams,
        config.retry,
        target=describe_target(config),
    )


async def queue_stats(config: Config) -> list[QueueRow]:
    """Length, pending, consumers, oldest pending age and dead letters of every stream."""
    rows: list[QueueRow] = []
    async with open_state(config) as redis:
        for message_type in MessageType:
            groups = await _stream(redis, config, message_type, NO_GROUP).groups()
            for group in groups or [NO_GROUP]:
                stats = await _stream(redis, config, message_type, group).stats()
                rows.append(QueueRow.from_stats(message_type, stats))
    return rows


async def list_dead_letters(
    config: Config, message_type: str | None = None, limit: int = 100
) -> list[DeadLetterView]:
    """The oldest ``limit`` dead letters of each message type (or of one)."""
    found: list[DeadLetterView] = []
    async with open_state(config) as redis:
        for kind in message_types(message_type):
            letters = await _stream(redis, config, kind, NO_GROUP).dead_letters(count=limit)
            found += [DeadLetterView.from_letter(kind, letter) for letter in letters]
    return found


@dataclass(frozen=True)
class DeadLetterSummary:
    """Dead letters counted by message type and by reason, with the oldest few of each type."""

    total: int
    by_type: dict[str, int]
    by_reason: list[dict[str, Any]]
    """``{"message_type", "reason", "count"}``, most frequent first."""
    letters: list[DeadLetterView]

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_type": self.by_type,
            "by_reason": self.by_reason,
            "letters": [letter.to_dict() for letter in self.letters],
        }


REASON_CHARS = 200
"""A reason is cut to this many characters when dead letters are counted by reason."""


async def dead_letter_summary(config: Config, limit: int = 100) -> DeadLetterSummary:
    """Every type's dead-letter count (from the stream length) and, over the oldest ``limit``
    letters of each type, their reasons counted (what the web console's page shows)."""
    by_type: dict[str, int] = {}
    reasons: dict[tuple[str, str], int] = {}
    letters: list[DeadLetterView] = []
    async with open_state(config) as redis:
        for kind in MessageType:
            stream = _stream(redis, config, kind, NO_GROUP)
            by_type[kind.value] = await stream.dead_letter_count()
            if not by_type[kind.value]:
                continue
            for letter in await stream.dead_letters(count=limit):
                letters.append(DeadLetterView.from_letter(kind, letter))
                key = (kind.value, letter.reason[:REASON_CHARS])
                reasons[key] = reasons.get(key, 0) + 1
    by_reason = [
        {"message_type": kind, "reason": reason, "count": count}
        for (kind, reason), count in sorted(reasons.items(), key=lambda kv: -kv[1])
    ]
    return DeadLetterSummary(sum(by_type.values()), by_type, by_reason, letters)


async def _find(
    redis: Redis, config: Config, dead_id: str, message_type: str | None
) -> DeadLetterView:
    for kind in message_types(message_type):
        letters = await _stream(redis, config, kind, NO_GROUP).dead_letters(1, start=dead_id)
        if letters and letters[0].dead_id == dead_id:
            return DeadLetterView.from_letter(kind, letters[0])
    raise DeadLetterNotFound(f"no dead letter {dead_id} (see dsa110ctl dlq list)")


class DeadLetterNotFound(StateError):
    """The dead-letter id given does not exist in any (or the chosen) type's dead letters."""


async def show_dead_letter(
    config: Config, dead_id: str, message_type: str | None = None
) -> DeadLetterView:
    """One dead letter with its reason, attempt history and original entry."""
    _check_id(dead_id)
    async with open_state(config) as redis:
        return await _find(redis, config, dead_id, message_type)


def _check_id(dead_id: str) -> None:
    ms, _, seq = dead_id.partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()):
        raise BadDeadLetterId(f"{dead_id!r} is not a stream id like 1764160000123-0")


class BadDeadLetterId(DSA110Error, ValueError):
    """A dead-letter id that is not a stream id."""


@dataclass(frozen=True)
class Replayed:
    message_type: str
    dead_id: str
    new_id: str


async def replay_dead_letters(
    config: Config,
    dead_id: str | None = None,
    message_type: str | None = None,
    progress: Progress | None = None,
) -> list[Replayed]:
    """Put one dead letter (or all) back on its stream, oldest first; returns the new ids."""
    done: list[Replayed] = []
    async with open_state(config) as redis:
        todo = await _targets(redis, config, dead_id, message_type)
        for index, (kind, one) in enumerate(todo, 1):
            new_ids = await _stream(redis, config, kind, NO_GROUP).replay(one)
            done += [Replayed(kind.value, one, new) for new in new_ids]
            if progress is not None:
                progress(index, len(todo))
    return done


async def purge_dead_letters(
    config: Config,
    dead_id: str | None = None,
    message_type: str | None = None,
    progress: Progress | None = None,
) -> int:
    """Delete one dead letter (or all, of every type or one); returns how many went."""
    purged = 0
    async with open_state(config) as redis:
        todo = await _targets(redis, config, dead_id, message_type)
        for index, (kind, one) in enumerate(todo, 1):
            purged += await _stream(redis, config, kind, NO_GROUP).purge(one)
            if progress is not None:
                progress(index, len(todo))
    return purged


async def _targets(
    redis: Redis, config: Config, dead_id: str | None, message_type: str | None
) -> list[tuple[MessageType, str]]:
    """(type, id) of the one letter named, or of every letter."""
    if dead_id is not None:
        _check_id(dead_id)
        found = await _find(redis, config, dead_id, message_type)
        return [(MessageType(found.message_type), found.dead_id)]
    todo: list[tuple[MessageType, str]] = []
    for kind in message_types(message_type):
        stream = _stream(redis, config, kind, NO_GROUP)
        start = "-"
        while True:
            page = await stream.dead_letters(PAGE, start=start)
            todo += [(kind, letter.dead_id) for letter in page]
            if len(page) < PAGE:
                break
            start = "(" + page[-1].dead_id
    return todo
