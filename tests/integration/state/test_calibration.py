"""The calibration registry on a real server: solutions registered in a block's fenced
commit exactly once, never by a stale token; a re-run supersedes; resolve picks the newest
valid bandpass and the gains covering a time; the summary the health and metrics read."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from dsa110d.config import Config
from dsa110d.errors import FencingError
from dsa110d.state.calibration import Calibrations, CalSolution
from dsa110d.state.connection import Redis
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Lease, Leases
from tests.helpers.calrecords import DAY0_MJD, solution

pytestmark = pytest.mark.anyio

HOUR = 1.0 / 24


async def _commit(
    cal: Calibrations,
    leases: Leases,
    lease: Lease,
    solutions: Sequence[CalSolution],
    span: tuple[float, float] | None = None,
    block_id: str = "2026-03-20T06:00:00",
) -> None:
    previous = await cal.previous(block_id)
    await leases.run_fenced(
        lease, lambda pipe: cal.stage_register(pipe, solutions, previous, lease.token, span)
    )


async def _setup(config: Config, redis: Redis) -> tuple[Calibrations, Leases]:
    keys = Keys(config.redis.namespace)
    return Calibrations(redis, keys), Leases(redis, keys, config.leases)


async def test_a_solution_is_registered_once_with_its_fields(config: Config, redis: Redis) -> None:
    cal, leases = await _setup(config, redis)
    bandpass = solution("bp-0320", "bandpass", DAY0_MJD + 0.2, calibrator="3C286")
    first = await leases.acquire("block:2026-03-20T06:00:00")
    assert first is not None
    await _commit(cal, leases, first, [bandpass])
    stored = await cal.solution("bp-0320")
    assert stored is not None and stored.token == first.token and stored.registered_at > 0
    assert stored.to_dict() | {"token": 0, "registered_at": 0.0} == bandpass.to_dict()
    # a later holder (a redelivery, another daemon) commits the same solution again: no change
    await leases.release(first)
    again = await leases.acquire("block:2026-03-20T06:00:00")
    assert again is not None and again.token > first.token
    await _commit(cal, leases, again, [bandpass])
    assert await cal.solution("bp-0320") == stored
    assert (await cal.counts())["bandpass"] == {"ok": 1, "poor": 0, "superseded": 0}


async def test_a_stale_token_registers_nothing(config: Config, redis: Redis) -> None:
    cal, leases = await _setup(config, redis)
    name = "block:2026-03-20T06:00:00"
    paused = await leases.acquire(name)
    assert paused is not None
    await redis.delete(Keys(config.redis.namespace).lease(name))  # its TTL ran out
    newer = await leases.acquire(name)
    assert newer is not None
    with pytest.raises(FencingError):
        await _commit(cal, leases, paused, [solution("g-stale")], (DAY0_MJD, DAY0_MJD + HOUR))
    assert await cal.solution("g-stale") is None
    assert await cal.coverage() is None
    assert (await cal.counts())["gains"] == {"ok": 0, "poor": 0, "superseded": 0}
    # negative control: the current holder's same commit registers
    await _commit(cal, leases, newer, [solution("g-stale")], (DAY0_MJD, DAY0_MJD + HOUR))
    assert await cal.solution("g-stale") is not None
    assert await cal.coverage() == (DAY0_MJD, DAY0_MJD + HOUR)


async def test_a_rerun_of_the_block_supersedes_its_older_solution(
    config: Config, redis: Redis
) -> None:
    cal, leases = await _setup(config, redis)
    name = "block:2026-03-20T06:00:00"
    start = DAY0_MJD + 0.25
    v1 = await leases.acquire(name)
    assert v1 is not None
    await _commit(cal, leases, v1, [solution("g-v1", "gains", start)])
    await leases.release(v1)
    v2 = await leases.acquire(name)
    assert v2 is not None
    await _commit(cal, leases, v2, [solution("g-v2", "gains", start, block_version=2)])
    old = await cal.solution("g-v1")
    assert old is not None and old.superseded_by == "g-v2" and old.effective_status == "superseded"
    assert (await cal.counts())["gains"] == {"ok": 1, "poor": 0, "superseded": 1}
    resolved = await cal.resolve(start + 0.5 * HOUR)
    assert resolved.gains is not None and resolved.gains.solution_id == "g-v2"
    assert [s.solution_id for s in await cal.solutions("gains", "superseded")] == ["g-v1"]


async def test_a_rerun_solving_under_the_same_id_replaces_it(config: Config, redis: Redis) -> None:
    """A solver naming solutions by block: version 2's record replaces version 1's (whose
    published sidecar the processor removes after the commit), the counts stay true."""
    cal, leases = await _setup(config, redis)
    name = "block:2026-03-20T06:00:00"
    v1 = await leases.acquire(name)
    assert v1 is not None
    await _commit(cal, leases, v1, [solution("g-blk", "gains", DAY0_MJD, status="poor")])
    await leases.release(v1)
    v2 = await leases.acquire(name)
    assert v2 is not None
    await _commit(cal, leases, v2, [solution("g-blk", "gains", DAY0_MJD, block_version=2)])
    stored = await cal.solution("g-blk")
    assert stored is not None and stored.block_version == 2 and stored.token == v2.token
    assert stored.valid and not stored.superseded_by
    assert (await cal.counts())["gains"] == {"ok": 1, "poor": 0, "superseded": 0}
    # the older run's record again (a paused holder cannot, but a replayed commit): no change
    await _commit(cal, leases, v2, [solution("g-blk", "gains", DAY0_MJD, status="poor")])
    assert await cal.solution("g-blk") == stored


async def test_resolve_takes_the_newest_valid_bandpass_and_the_covering_gains(
    config: Config, redis: Redis
) -> None:
    cal, leases = await _setup(config, redis)
    day1, day2 = DAY0_MJD + 0.3, DAY0_MJD + 1.3  # two calibrator transits
    solutions = [
        solution("bp-1", "bandpass", day1),
        solution("bp-2", "bandpass", day2, status="poor"),  # its QA failed: never applied
        solution("g-a", "gains", day2 + 0.1 * HOUR),
        solution("g-b", "gains", day2 + HOUR),
    ]
    lease = await leases.acquire("block:2026-03-20T06:00:00")
    assert lease is not None
    await _commit(cal, leases, lease, solutions)
    at = await cal.resolve(day2 + 1.5 * HOUR)
    assert at.bandpass is not None and at.bandpass.solution_id == "bp-1"
    assert at.gains is not None and at.gains.solution_id == "g-b"
    assert (await cal.resolve(day2 + 0.5 * HOUR)).gains.solution_id == "g-a"  # type: ignore[union-attr]
    between = await cal.resolve(day2 + 3 * HOUR)  # no gains solved for that hour
    assert between.bandpass is not None and between.gains is None
    before = await cal.resolve(day1 - 0.1)  # before the first transit
    assert before.bandpass is None and before.gains is None
    after = await cal.resolve(day1 + 3.5)  # bp-1 has expired, bp-2 is poor
    assert after.bandpass is None
    assert [s.solution_id for s in await cal.solutions()] == ["g-b", "g-a", "bp-2", "bp-1"]
    assert [s.solution_id for s in await cal.solutions("bandpass", limit=1)] == ["bp-2"]


async def test_the_summary_counts_the_data_gone_by_without_a_bandpass(
    config: Config, redis: Redis
) -> None:
    cal, leases = await _setup(config, redis)
    name = "block:2026-03-20T06:00:00"
    lease = await leases.acquire(name)
    assert lease is not None
    # blocks calibrated for two and a half days, no calibrator solved
    await _commit(cal, leases, lease, [], (DAY0_MJD, DAY0_MJD + HOUR))
    await _commit(cal, leases, lease, [], (DAY0_MJD + 2.5 - HOUR, DAY0_MJD + 2.5))
    summary = await cal.summary()
    assert summary.bandpass is None and not summary.bandpass_covers_last
    assert summary.bandpass_age_days == pytest.approx(2.5)
    # then a transit is solved at day 2.2, and a poor gain solution comes after it
    await _commit(
        cal, leases, lease,
        [solution("bp", "bandpass", DAY0_MJD + 2.2),
         solution("g", "gains", DAY0_MJD + 2.4, status="poor", amp_scatter=0.4)],
    )  # fmt: skip
    summary = await cal.summary()
    assert summary.bandpass is not None and summary.bandpass_covers_last
    assert summary.bandpass_age_days == pytest.approx(0.3)
    metrics = summary.to_metrics()
    assert metrics["gains_status"] == "poor" and metrics["gains_amp_scatter"] == 0.4
    assert metrics["solutions"]["bandpass"]["ok"] == 1
    assert metrics["solutions"]["gains"]["poor"] == 1


async def test_a_pruned_blocks_index_goes_but_its_solutions_stay(
    config: Config, redis: Redis
) -> None:
    cal, leases = await _setup(config, redis)
    keys = Keys(config.redis.namespace)
    lease = await leases.acquire("block:2026-03-20T06:00:00")
    assert lease is not None
    await _commit(cal, leases, lease, [solution("g-kept")])
    await redis.hset(keys.block_record("2026-03-20T06:00:00"), "state", "processed")  # type: ignore[misc]
    assert await cal.forget_blocks(["2026-03-20T06:00:00"]) == 0  # its record is still there
    assert await cal.previous("2026-03-20T06:00:00") == {"gains": "g-kept"}
    await redis.delete(keys.block_record("2026-03-20T06:00:00"))  # housekeeping pruned it
    assert await cal.forget_blocks(["2026-03-20T06:00:00"]) == 1
    assert await cal.previous("2026-03-20T06:00:00") == {}
    assert await cal.solution("g-kept") is not None
