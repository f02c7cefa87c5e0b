"""Set records: one Redis hash per subband set, moved between states by atomic scripts.

A *set* is the subband files of one ~309 s chunk (DESIGN section 2). Its record lives under
``Keys.set_record(set_id)``; every set id is in ``Keys.set_index()`` (a sorted set scored by
when the set was first seen, Unix seconds: what housekeeping prunes by) and in
``Keys.set_name_times()`` (scored by its earliest file-name time: how a file finds the sets
named near it), and sets not yet announced are also in ``Keys.set_open()`` (scored by first
seen), which the watcher's reconciliation walks. A record pruned by housekeeping leaves
stale ids in the last two; readers skip them and :meth:`Sets.forget` drops them.

States (:class:`SetState`) and every move the scripts allow, with the method that makes
it (a new record starts ``collecting``; ``converted`` is final)::

    collecting --> complete     (add_file: the last expected subband)
               --> incomplete   (mark_incomplete: timed out, on_incomplete=wait)
               --> queued       (claim: announced partial, on_incomplete=partial)
               --> failed       (mark: timed out, on_incomplete=fail)
    incomplete --> complete     (add_file: the missing subbands arrive after all)
               --> queued       (claim: announced partial)
               --> failed       (mark: on_incomplete=fail)
    complete   --> queued       (claim: announced)
               --> failed       (mark; no caller: its last subband may have just landed)
    queued     --> converting   (mark: a processor starts the conversion)
               --> converted    (mark)
               --> failed       (mark: a garbled or dead-lettered announcement)
    converting --> converting   (mark: a redelivery takes it over; another attempt)
               --> converted    (mark: the MS is done)
               --> queued       (mark: the attempt failed, it will be retried)
               --> failed       (mark: the last attempt failed, or dead-lettered)
    failed     --> converting   (mark: re-run, e.g. a redelivery or a replayed dead letter)
               --> converted    (mark: the re-run converts it)
               --> queued       (mark: the re-run failed, it will be retried)
               --> failed       (mark: another fault recorded)

Every transition is one Lua script, so two watchers racing on the same set never both
win a claim: :meth:`Sets.claim` returns True to exactly one caller. The watcher publishes
HDF5_PROCESSING only after winning the claim (with the set id as the stream's dedup key, so a
re-publish after a crash between claim and publish is a no-op) and then calls :meth:`Sets.sent`.

Hash fields: ``state``, ``time0`` (``Header/time_array[0]``, JD, exact repr; empty for a set
known only by file names), ``integration``, ``dec`` (radians), ``name_time``, ``first_seen``,
``last_seen``, ``attempts``, ``n_subbands``, ``expected``, ``partial``, ``message_id``,
``sb:NN`` (the path of subband NN), ``err:NNNNN`` (one JSON :class:`SetError` each) and
``seen:<kind>:<path>`` (so the same fault of the same file is recorded and logged once).

Readers (``dsa110ctl sets``, housekeeping) use :meth:`Sets.get` and :meth:`Sets.list`; the
processor uses :meth:`Sets.mark` (queued -> converting -> converted | failed).
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dsa110d.errors import StateError
from dsa110d.state import lua
from dsa110d.state.connection import Redis, translate_errors
from dsa110d.state.durability import confirm
from dsa110d.state.keys import Keys


class SetState(enum.StrEnum):
    COLLECTING = "collecting"
    COMPLETE = "complete"
    QUEUED = "queued"
    CONVERTING = "converting"
    CONVERTED = "converted"
    FAILED = "failed"
    INCOMPLETE = "incomplete"


UNANNOUNCED = (SetState.COLLECTING, SetState.COMPLETE, SetState.INCOMPLETE)
"""States in which a set may still gain subbands and be announced."""

MARK_FROM: dict[SetState, tuple[SetState, ...]] = {
    SetState.CONVERTING: (SetState.QUEUED, SetState.CONVERTING, SetState.FAILED),
    # From failed too: a holder that lost its lease may have marked the set failed while the
    # one that took over converts it; that conversion's result must stand.
    SetState.CONVERTED: (SetState.QUEUED, SetState.CONVERTING, SetState.FAILED),
    SetState.FAILED: (*UNANNOUNCED, SetState.QUEUED, SetState.CONVERTING, SetState.FAILED),
    SetState.QUEUED: (SetState.CONVERTING, SetState.FAILED),
}
"""States :meth:`Sets.mark` may move a set from, by target state (the processor's moves;
``queued`` again is a retry). Announcing (-> queued from an unannounced state) is
:meth:`Sets.claim`'s job, and -> incomplete is :meth:`Sets.mark_incomplete`'s."""


class ErrorKind(enum.StrEnum):
    """What a recorded error is about."""

    BAD_FILE = "bad_file"
    """The file is not a usable subband (the reason says why)."""
    OUTSIDE = "outside_tree"
    """A symlink that points out of the watched directory."""
    DUPLICATE = "duplicate"
    """A second file for a subband the set already has."""
    LATE = "late"
    """A subband that arrived after the set was announced."""
    TIME_DISAGREEMENT = "time_disagreement"
    """A file named like this set's files whose ``time_array[0]`` differs."""
    INCOMPLETE = "incomplete"
    """The set was still missing subbands after ``processing_timeout_sec``."""
    PROCESSING = "processing"
    """An error reported by the processor through :meth:`Sets.mark`."""
    UNANNOUNCEABLE = "unannounceable"
    """The set's announcement could not be built or published (e.g. a value JSON cannot
    carry): the watcher failed the set rather than retry it on every pass."""


@dataclass(frozen=True)
class SetError:
    """One recorded fault of a set."""

    kind: str
    reason: str
    path: str = ""
    at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {"kind": self.kind, "reason": self.reason, "path": self.path, "at": self.at},
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class SetRecord:
    """A set as stored: read with :meth:`Sets.get` / :meth:`Sets.list`."""

    set_id: str
    state: SetState
    files: dict[int, str]
    """Subband index -> absolute path."""
    time0_jd: float | None
    dec_rad: float | None
    name_time: float
    first_seen: float
    last_seen: float
    attempts: int
    expected: int
    partial: bool = False
    message_id: str = ""
    errors: tuple[SetError, ...] = field(default_factory=tuple)

    @property
    def subbands(self) -> list[int]:
        return sorted(self.files)

    @property
    def missing(self) -> list[int]:
        return [sb for sb in range(self.expected) if sb not in self.files]


@dataclass(frozen=True)
class AddResult:
    """What :meth:`Sets.add_file` did."""

    outcome: str
    """``added``, ``known`` (same path already there), ``duplicate`` (another path holds
    this subband) or ``late`` (the set was already announced)."""
    state: SetState
    n_subbands: int
    created: bool
    holder: str = ""
    """For a duplicate: the path already recorded for the subband."""


MOVES_KEPT = 10000
"""Converted set ids kept for post_handle (bounded when no watcher moves files)."""


@dataclass(frozen=True)
class NewFile:
    """A good subband file to record (from the probe)."""

    set_id: str
    subband: int
    path: str
    name_time: float
    """The file name's timestamp, Unix seconds."""
    time0_jd: float | None
    integration_s: float = 0.0
    dec_rad: float | None = None


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


class Sets:
    """Set records on one server and namespace (see the module docstring)."""

    def __init__(self, redis: Redis, keys: Keys, target: str = "the state server") -> None:
        self.redis = redis
        self.keys = keys
        self.target = target
        self._add_file = lua.script(redis, "sets_add_file")
        self._add_set_files = lua.script(redis, "sets_add_set_files")
        self._add_error = lua.script(redis, "sets_add_error")
        self._claim = lua.script(redis, "sets_claim")
        self._mark = lua.script(redis, "sets_mark")
        self._merge = lua.script(redis, "sets_merge")

    def _record_keys(self, set_id: str) -> list[str]:
        return [
            self.keys.set_record(set_id),
            self.keys.set_index(),
            self.keys.set_open(),
            self.keys.set_name_times(),
        ]

    @staticmethod
    def _create_args(f: NewFile, expected: int, now: float) -> list[Any]:
        return [
            f.set_id,
            SetState.COLLECTING.value,
            _num(f.time0_jd),
            repr(float(f.integration_s)),
            _num(f.dec_rad),
            repr(float(f.name_time)),
            repr(now),
            expected,
        ]

    # ------------------------------------------------------------------ the watcher
    async def add_file(
        self, f: NewFile, expected: int, now: float | None = None, pipe: Any = None
    ) -> AddResult:
        """Record a good subband file (creating the set if new); atomically reaches
        ``complete`` when the set has ``expected`` subbands."""
        now = time.time() if now is None else now
        args = [*self._create_args(f, expected, now), f"sb:{f.subband:02d}", f.path]
        with translate_errors(self.target):
            reply = await self._add_file(keys=self._record_keys(f.set_id), args=args)
        return _add_result(reply)

    async def add_files(
        self, files: Sequence[NewFile], expected: int, now: float | None = None
    ) -> list[AddResult]:
        """:meth:`add_file` for many files in one round trip: one script call per set (each
        call atomic, its files added in the given order); results in the order of ``files``."""
        now = time.time() if now is None else now
        by_set: dict[str, list[int]] = {}
        for i, f in enumerate(files):
            by_set.setdefault(f.set_id, []).append(i)
        if not by_set:
            return []
        with translate_errors(self.target):
            async with self.redis.pipeline(transaction=False) as pipe:
                for set_id, members in by_set.items():
                    args = self._create_args(files[members[0]], expected, now)
                    for i in members:
                        f = files[i]
                        args += [f"sb:{f.subband:02d}", f.path, repr(float(f.name_time))]
                    keys = self._record_keys(set_id)
                    await self._add_set_files(keys=keys, args=args, client=pipe)
                replies = await pipe.execute()
        results: list[AddResult | None] = [None] * len(files)
        for members, reply in zip(by_set.values(), replies, strict=True):
            for i, one in zip(members, reply, strict=True):
                results[i] = _add_result(one)
        return [r for r in results if r is not None]

    async def add_error(
        self,
        set_id: str,
        error: SetError,
        *,
        name_time: float,
        expected: int,
        once: bool = True,
        key: str = "",
    ) -> bool:
        """Record a fault on a set (creating a by-name set if missing). With ``once``, the same
        fault is recorded only the first time (returns False then): faults are the same when
        their ``key`` is (default: the kind and the path)."""
        now = error.at or time.time()
        placeholder = NewFile(set_id, 0, "", name_time, None)
        key = key or (f"{error.kind}:{error.path}" if error.path else "")
        tag = f"seen:{key}" if once and key else ""
        args = [*self._create_args(placeholder, expected, now), tag, error.to_json()]
        with translate_errors(self.target):
            return bool(await self._add_error(keys=self._record_keys(set_id), args=args))

    async def neighbours(self, name_time: float, tolerance_sec: float) -> list[tuple[str, float]]:
        """Sets whose earliest file-name time is within ``tolerance_sec`` of ``name_time``."""
        with translate_errors(self.target):
            found = await self.redis.zrangebyscore(
                self.keys.set_name_times(),
                name_time - tolerance_sec,
                name_time + tolerance_sec,
                withscores=True,
            )
        return [(str(m), float(s)) for m, s in found]

    async def merge(self, from_id: str, into_id: str) -> bool:
        """Fold a set known only by file names (bad files' errors) into a timed set."""
        keys = [
            self.keys.set_record(from_id),
            self.keys.set_record(into_id),
            self.keys.set_index(),
            self.keys.set_open(),
            self.keys.set_name_times(),
        ]
        with translate_errors(self.target):
            return bool(await self._merge(keys=keys, args=[from_id]))

    async def forget(self, set_id: str) -> None:
        """Drop a set id whose record is gone (pruned) from the open and name-time lists."""
        with translate_errors(self.target):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self.keys.set_open(), set_id)
                pipe.zrem(self.keys.set_name_times(), set_id)
                await pipe.execute()

    async def claim(self, set_id: str, partial: bool, now: float | None = None) -> SetRecord | None:
        """Move an unannounced set to ``queued``: its record as claimed for exactly one
        caller (the files to announce), None for everyone else."""
        now = time.time() if now is None else now
        keys = [self.keys.set_record(set_id), self.keys.set_open()]
        with translate_errors(self.target):
            claimable = ",".join(s.value for s in UNANNOUNCED)
            args: list[str | int] = [int(partial), repr(now), claimable, SetState.QUEUED.value]
            reply = await self._claim(keys=keys, args=args)
        if not reply:
            return None
        await confirm(self.redis, self.keys, self.target, f"the claim of set {set_id}")
        return _record(set_id, dict(zip(reply[::2], reply[1::2], strict=True)))

    async def sent(self, set_id: str, message_id: str | None) -> None:
        """The HDF5_PROCESSING message of a queued set is on the stream: off the open list."""
        with translate_errors(self.target):
            async with self.redis.pipeline(transaction=True) as pipe:
                if message_id:
                    pipe.hset(self.keys.set_record(set_id), "message_id", message_id)
                pipe.hsetnx(self.keys.set_record(set_id), "announced_at", repr(time.time()))
                pipe.zrem(self.keys.set_open(), set_id)
                await pipe.execute()
        await confirm(self.redis, self.keys, self.target, f"set {set_id} sent")

    async def open_sets(self) -> list[tuple[str, float]]:
        """Sets not yet announced (or announced but not yet confirmed sent), with first seen."""
        with translate_errors(self.target):
            found = await self.redis.zrange(self.keys.set_open(), 0, -1, withscores=True)
        return [(str(m), float(s)) for m, s in found]

    async def mark_incomplete(self, set_id: str, error: SetError) -> bool:
        """collecting -> incomplete (on_incomplete=wait); True only the first time."""
        return await self._transition(set_id, SetState.INCOMPLETE, (SetState.COLLECTING,), error)

    async def pop_converted(self, count: int = 100) -> list[str]:
        """Converted set ids not yet handed to post_handle (oldest first)."""
        with translate_errors(self.target):
            got = await self.redis.lpop(self.keys.set_moves(), count)  # type: ignore[misc]
        return [str(g) for g in got or []]

    async def requeue_converted(self, set_id: str) -> None:
        """Hand a set back to post_handle (its move failed and will be tried again)."""
        with translate_errors(self.target):
            await self.redis.rpush(self.keys.set_moves(), set_id)  # type: ignore[misc]

    async def note(self, set_id: str, **fields: str) -> None:
        """Store extra plain fields on a record (e.g. ``moved_to``)."""
        with translate_errors(self.target):
            await self.redis.hset(self.keys.set_record(set_id), mapping=fields)  # type: ignore[misc]

    # ------------------------------------------------------------------ the processor
    async def mark(
        self,
        set_id: str,
        state: SetState | str,
        error: str | SetError | None = None,
        from_states: Sequence[SetState] | None = None,
    ) -> bool:
        """Move a set to ``state`` (converting, converted, failed, or queued to retry), with an
        optional error recorded on it. False if the set is missing or in a state it may not
        leave that way (e.g. already converted). Entering ``converting`` counts an attempt.

        ``from_states`` narrows the allowed source states further (checked in the same atomic
        script): e.g. fail a set only if it is still collecting."""
        target = SetState(state)
        allowed = MARK_FROM.get(target)
        if allowed is None:
            raise StateError(f"set {set_id}: mark() cannot move a set to {target.value}")
        if from_states is not None:
            allowed = tuple(s for s in allowed if s in from_states)
            if not allowed:
                return False
        if isinstance(error, str):
            error = SetError(ErrorKind.PROCESSING, error, at=time.time())
        return await self._transition(set_id, target, allowed, error)

    async def _transition(
        self,
        set_id: str,
        target: SetState,
        allowed: Sequence[SetState],
        error: SetError | None,
    ) -> bool:
        keys = [self.keys.set_record(set_id), self.keys.set_open(), self.keys.set_moves()]
        args = [
            target.value,
            ",".join(s.value for s in allowed),
            repr(time.time()),
            error.to_json() if error else "",
            int(target is SetState.CONVERTING),
            MOVES_KEPT,
            SetState.CONVERTED.value,
        ]
        with translate_errors(self.target):
            moved = await self._mark(keys=keys, args=args) is not None
        if moved:
            await confirm(self.redis, self.keys, self.target, f"set {set_id} {target.value}")
        return moved

    # ------------------------------------------------------------------ readers
    async def get(self, set_id: str) -> SetRecord | None:
        """One set's record, or None if there is no such set."""
        with translate_errors(self.target):
            raw = await self.redis.hgetall(self.keys.set_record(set_id))  # type: ignore[misc]
        return _record(set_id, raw) if raw else None

    async def ids(self, limit: int = 0) -> list[str]:
        """Set ids in the order first seen (oldest first), the newest ``limit`` (0: all)."""
        with translate_errors(self.target):
            found = await self.redis.zrange(self.keys.set_index(), -limit if limit else 0, -1)
        return [str(i) for i in found]

    async def list(self, state: SetState | str | None = None, limit: int = 0) -> list[SetRecord]:
        """Sets in the order first seen (oldest first), optionally only those in ``state``; at
        most ``limit`` (0: all) of the newest matching ones."""
        wanted = SetState(state) if state is not None else None
        # Without a state to filter on, the newest ``limit`` are the index's last entries:
        # read only those (the console asks for them at every refresh, over weeks of sets).
        first = -limit if limit and wanted is None else 0
        with translate_errors(self.target):
            ids = [str(i) for i in await self.redis.zrange(self.keys.set_index(), first, -1)]
            async with self.redis.pipeline(transaction=False) as pipe:
                for set_id in ids:
                    pipe.hgetall(self.keys.set_record(set_id))
                raws = await pipe.execute() if ids else []
        records = [_record(i, r) for i, r in zip(ids, raws, strict=True) if r]
        if wanted is not None:
            records = [r for r in records if r.state is wanted]
        return records[-limit:] if limit else records


def _add_result(reply: Any) -> AddResult:
    outcome, state, n, created, holder = reply
    return AddResult(str(outcome), SetState(state), int(n), bool(int(created)), str(holder))


def _float_or_none(text: str | None) -> float | None:
    return float(text) if text else None


def _record(set_id: str, raw: dict[str, str]) -> SetRecord:
    """Parse a stored hash; a malformed one is a StateError naming the set."""
    try:
        files = {int(k[3:]): v for k, v in raw.items() if k.startswith("sb:")}
        errors = tuple(SetError(**json.loads(raw[k])) for k in sorted(raw) if k.startswith("err:"))
        return SetRecord(
            set_id=set_id,
            state=SetState(raw["state"]),
            files=dict(sorted(files.items())),
            time0_jd=_float_or_none(raw.get("time0")),
            dec_rad=_float_or_none(raw.get("dec")),
            name_time=float(raw["name_time"]),
            first_seen=float(raw["first_seen"]),
            last_seen=float(raw["last_seen"]),
            attempts=int(raw.get("attempts", 0)),
            expected=int(raw["expected"]),
            partial=raw.get("partial") == "1",
            message_id=raw.get("message_id", ""),
            errors=errors,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise StateError(f"set record {set_id}: malformed ({exc})") from None
