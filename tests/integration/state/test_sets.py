"""Set records on a real server: atomic add and claim under races, the processor's moves,
the readers' API, faults recorded once, and the module's state diagram against the scripts."""

from __future__ import annotations

import re

import anyio
import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.errors import StateError
from dsa110d.state.keys import Keys
from dsa110d.state.sets import ErrorKind, NewFile, SetError, Sets, SetState

pytestmark = pytest.mark.anyio
T0 = 2461119.75
NAME_T = 1773986400.0


def _sets(config: Config, redis: aioredis.Redis) -> Sets:
    return Sets(redis, Keys(config.redis.namespace))


def _file(sb: int, set_id: str = "2026-03-20T06:00:00", path: str = "") -> NewFile:
    return NewFile(set_id, sb, path or f"/in/{set_id}_sb{sb:02d}.hdf5", NAME_T + sb, T0, 12.9, 0.6)


async def test_a_set_collects_then_completes_and_reads_back(
    config: Config, redis: aioredis.Redis
) -> None:
    sets = _sets(config, redis)
    first = await sets.add_file(_file(0), expected=2, now=100.0)
    assert (first.outcome, first.state, first.created) == ("added", SetState.COLLECTING, True)
    again = await sets.add_file(_file(0), expected=2)
    assert (again.outcome, again.created) == ("known", False)
    second = await sets.add_file(_file(1), expected=2, now=105.0)
    assert (second.outcome, second.state, second.n_subbands) == ("added", SetState.COMPLETE, 2)
    record = await sets.get("2026-03-20T06:00:00")
    assert record is not None
    assert record.files == {
        0: "/in/2026-03-20T06:00:00_sb00.hdf5",
        1: "/in/2026-03-20T06:00:00_sb01.hdf5",
    }
    assert record.time0_jd == T0 and record.dec_rad == 0.6 and record.name_time == NAME_T
    assert (record.first_seen, record.last_seen, record.missing) == (100.0, 105.0, [])
    assert await sets.get("nope") is None


async def test_exactly_one_of_many_racing_claims_wins(
    config: Config, redis: aioredis.Redis
) -> None:
    sets = _sets(config, redis)
    await sets.add_file(_file(0), expected=1)
    wins: list[bool] = []

    async def claim() -> None:
        claimed = await _sets(config, redis).claim("2026-03-20T06:00:00", partial=False)
        wins.append(claimed is not None)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(claim)
    assert wins.count(True) == 1
    after = await sets.add_file(_file(1), expected=1)
    assert after.outcome == "late"


async def test_racing_adds_of_every_subband_complete_the_set_once(
    config: Config, redis: aioredis.Redis
) -> None:
    results = []

    async def add(sb: int) -> None:
        results.append(await _sets(config, redis).add_file(_file(sb % 16), expected=16))

    async with anyio.create_task_group() as tg:
        for sb in range(48):  # every subband three times over
            tg.start_soon(add, sb)
    added = [r for r in results if r.outcome == "added"]
    assert len(added) == 16 and sum(r.created for r in results) == 1
    assert [r.n_subbands for r in added if r.state is SetState.COMPLETE] == [16]


async def test_a_batch_is_recorded_as_file_by_file_adds_would_be(
    config: Config, redis: aioredis.Redis
) -> None:
    """add_files (one script call per set) answers each file in order exactly as add_file
    does one by one: interleaved sets, a known path, a duplicate, a late subband."""
    a, b = "2026-03-20T06:00:00", "2026-03-20T06:05:09"
    batch = [
        _file(1, a), _file(0, b), _file(0, a), _file(1, a), _file(1, b, "/in/other_sb01.hdf5"),
        _file(1, b), _file(2, b, "/in/late.hdf5"),
    ]  # fmt: skip
    batch[1] = NewFile(b, 0, batch[1].path, NAME_T + 400, T0 + 0.0036, 12.9, 0.5)
    reference = Sets(redis, Keys(config.redis.namespace + ":one-by-one"))
    expected = []
    for i, f in enumerate(batch):
        if i == 6:
            await reference.claim(b, partial=False)  # b is announced before its last file
        expected.append(await reference.add_file(f, expected=2, now=50.0))
    sets = _sets(config, redis)
    got = await sets.add_files(batch[:6], expected=2, now=50.0)
    await sets.claim(b, partial=False)
    got += await sets.add_files(batch[6:], expected=2, now=50.0)
    assert got == expected
    assert [r.outcome for r in got] == [
        "added", "added", "added", "known", "added", "duplicate", "late",
    ]  # fmt: skip
    assert [r.created for r in got] == [True, True, False, False, False, False, False]
    for set_id in (a, b):
        mine, theirs = await sets.get(set_id), await reference.get(set_id)
        assert mine is not None and theirs is not None
        assert (mine.files, mine.time0_jd, mine.name_time) == (
            theirs.files, theirs.time0_jd, theirs.name_time,
        )  # fmt: skip
    pattern = f"{config.redis.namespace}:one-by-one:*"
    await redis.delete(*[k async for k in redis.scan_iter(pattern)])


async def test_racing_batches_complete_each_set_once(config: Config, redis: aioredis.Redis) -> None:
    batches = [[_file(sb, s) for s in ("A", "B") for sb in range(16)] for _ in range(6)]
    results = []

    async def add(batch: list[NewFile]) -> None:
        results.extend(await _sets(config, redis).add_files(batch, expected=16))

    async with anyio.create_task_group() as tg:
        for batch in batches:
            tg.start_soon(add, batch)
    completed = [r for r in results if r.outcome == "added" and r.state is SetState.COMPLETE]
    assert len(completed) == 2 and [r.n_subbands for r in completed] == [16, 16]
    assert sum(r.created for r in results) == 2
    assert sum(r.outcome == "added" for r in results) == 32


async def test_the_processors_moves(config: Config, redis: aioredis.Redis) -> None:
    sets = _sets(config, redis)
    set_id = "2026-03-20T06:00:00"
    await sets.add_file(_file(0), expected=1)
    assert not await sets.mark(set_id, SetState.CONVERTING)  # not announced yet
    claimed = await sets.claim(set_id, partial=False)
    assert (
        claimed is not None
        and claimed.state is SetState.QUEUED
        and claimed.files == {0: "/in/2026-03-20T06:00:00_sb00.hdf5"}
    )
    await sets.sent(set_id, "m1")
    assert await sets.mark(set_id, SetState.CONVERTING)
    assert await sets.mark(set_id, SetState.FAILED, error="casacore: disk full")
    assert await sets.mark(set_id, SetState.CONVERTING)
    assert await sets.mark(set_id, SetState.CONVERTED)
    assert not await sets.mark(set_id, SetState.CONVERTING)  # converted is final
    assert not await sets.mark("missing", SetState.CONVERTED)
    with pytest.raises(StateError, match="cannot move a set to collecting"):
        await sets.mark(set_id, SetState.COLLECTING)
    record = await sets.get(set_id)
    assert record is not None and record.state is SetState.CONVERTED
    assert record.attempts == 2 and record.message_id == "m1"
    assert [(e.kind, e.reason) for e in record.errors] == [
        (ErrorKind.PROCESSING, "casacore: disk full")
    ]
    assert await sets.pop_converted() == [set_id]
    assert await sets.open_sets() == []


async def test_list_by_state_and_faults_recorded_once(
    config: Config, redis: aioredis.Redis
) -> None:
    sets = _sets(config, redis)
    for i in range(3):
        await sets.add_file(_file(0, set_id=f"2026-03-20T06:0{i}:00"), expected=1)
    await sets.add_file(_file(0, set_id="2026-03-20T06:10:00"), expected=2)
    await sets.claim("2026-03-20T06:01:00", partial=False)
    error = SetError(ErrorKind.BAD_FILE, "/in/x: zero-byte file", "/in/x", 1.0)
    assert await sets.add_error("2026-03-20T06:10:00", error, name_time=NAME_T, expected=2)
    assert not await sets.add_error("2026-03-20T06:10:00", error, name_time=NAME_T, expected=2)
    queued = await sets.list(SetState.QUEUED)
    assert [r.set_id for r in queued] == ["2026-03-20T06:01:00"]
    assert len(await sets.list()) == 4 and len(await sets.list(limit=2)) == 2
    assert [r.state for r in await sets.list("complete")] == [SetState.COMPLETE] * 2
    (collecting,) = await sets.list(SetState.COLLECTING)
    assert collecting.errors == (error,)


async def test_a_malformed_record_is_one_state_error(config: Config, redis: aioredis.Redis) -> None:
    sets = _sets(config, redis)
    await redis.hset(Keys(config.redis.namespace).set_record("bad"), mapping={"state": "??"})  # type: ignore[misc]
    with pytest.raises(StateError, match="set record bad: malformed"):
        await sets.get("bad")


async def test_the_index_is_scored_by_first_seen_and_pruned_records_are_forgotten(
    config: Config, redis: aioredis.Redis
) -> None:
    """Housekeeping and alerts read ``set_index`` as first-seen times and prune records with
    their index entry; the watcher's own lists then drop the stale id."""
    keys = Keys(config.redis.namespace)
    sets = _sets(config, redis)
    await sets.add_file(_file(0), expected=2, now=1234.0)
    set_id = "2026-03-20T06:00:00"
    assert await redis.zscore(keys.set_index(), set_id) == 1234.0
    assert await redis.zscore(keys.set_name_times(), set_id) == NAME_T
    assert await sets.neighbours(NAME_T + 30, 60) == [(set_id, NAME_T)]
    await redis.delete(keys.set_record(set_id))  # as housekeeping prunes it
    await redis.zrem(keys.set_index(), set_id)
    await sets.forget(set_id)
    assert await sets.open_sets() == [] and await sets.neighbours(NAME_T, 60) == []
    assert await sets.list() == []


def documented_moves() -> set[tuple[str, str, str]]:
    """(from, to, method) of every move the module docstring's state diagram lists."""
    from dsa110d.state import sets as module

    assert module.__doc__ is not None
    diagram = module.__doc__.split("States (:class:`SetState`)", 1)[1].split("Every transition")[0]
    moves, source = set(), ""
    for line in diagram.splitlines():
        found = re.match(r"^    (\w+)?\s+--> (\w+)\s+\((\w+)", line)
        if found:
            source = found[1] or source
            moves.add((source, found[2], found[3]))
    return moves


async def test_the_state_diagram_lists_exactly_the_moves_the_scripts_allow(
    config: Config, redis: aioredis.Redis
) -> None:
    """Every method tried from every state on a real server: the moves that happen are the
    diagram's, no more and no fewer."""
    sets, keys = _sets(config, redis), Keys(config.redis.namespace)
    fault = SetError(ErrorKind.INCOMPLETE, "timed out")
    allowed: set[tuple[str, str, str]] = set()
    for n, source in enumerate(SetState):
        set_id = f"2026-03-20T06:{n:02d}:00"

        async def from_source(set_id: str = set_id, source: SetState = source) -> None:
            """The set in ``source`` with one of its two subbands."""
            await redis.delete(keys.set_record(set_id))
            await sets.add_file(_file(0, set_id), expected=2)
            await redis.hset(keys.set_record(set_id), "state", source.value)  # type: ignore[misc]

        async def state(set_id: str = set_id) -> str:
            record = await sets.get(set_id)
            assert record is not None
            return record.state.value

        await from_source()
        await sets.add_file(_file(1, set_id), expected=2)
        if await state() != source.value:
            allowed.add((source.value, await state(), "add_file"))
        await from_source()
        if await sets.mark_incomplete(set_id, fault):
            allowed.add((source.value, await state(), "mark_incomplete"))
        await from_source()
        if await sets.claim(set_id, partial=True) is not None:
            allowed.add((source.value, await state(), "claim"))
        for target in SetState:
            await from_source()
            try:
                moved = await sets.mark(set_id, target, error="x")
            except StateError:
                continue  # not a state mark() moves to
            if moved:
                assert await state() == target.value
                allowed.add((source.value, target.value, "mark"))
    assert allowed == documented_moves()
