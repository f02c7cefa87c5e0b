"""``sets``, ``blocks`` and ``candidates`` read the watcher's, processor's and analyzer's
records on a real server, in-process and as a program."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.errors import ConfigError
from dsa110d.operations.records import latest_candidates, list_blocks, list_sets
from dsa110d.state.blocks import Blocks, BlockSpan, ChunkRecord
from dsa110d.state.candidates import CandidateStore
from dsa110d.state.keys import Keys
from dsa110d.state.monitored import MonitoredSources
from dsa110d.state.sets import NewFile, SetError, Sets
from tests.integration.operations.ctlkit import ctl

pytestmark = pytest.mark.anyio
T0 = 1774000000.0


async def record_sets(config: Config, redis: aioredis.Redis) -> None:
    """Set A complete (4 of 4), set B collecting (2 of 4) with a recorded fault."""
    sets = Sets(redis, Keys(config.redis.namespace))
    for sb in range(4):
        await sets.add_file(NewFile("A", sb, f"/in/A_sb{sb:02d}.hdf5", T0, 2461119.5), 4)
    for sb in (0, 2):
        await sets.add_file(NewFile("B", sb, f"/in/B_sb{sb:02d}.hdf5", T0 + 309, 2461119.6), 4)
    fault = SetError("bad_file", "truncated HDF5", "/in/B_sb01.hdf5", T0 + 310)
    await sets.add_error("B", fault, name_time=T0 + 309, expected=4)


async def test_sets_in_process(config: Config, redis: aioredis.Redis) -> None:
    await record_sets(config, redis)
    rows = await list_sets(config)
    assert [(r.set_id, r.state, r.subbands, r.missing) for r in rows] == [
        ("A", "complete", 4, []),
        ("B", "collecting", 2, [1, 3]),
    ]
    assert rows[1].errors == 1 and rows[1].last_error == "bad_file: truncated HDF5"
    assert [r.set_id for r in await list_sets(config, "complete")] == ["A"]
    assert [r.set_id for r in await list_sets(config, limit=1)] == ["B"]
    with pytest.raises(ConfigError):
        await list_sets(config, "nonsense")


async def test_sets_through_the_program(config: Config, redis: aioredis.Redis) -> None:
    await record_sets(config, redis)
    shown = ctl(config, "sets", "--state", "collecting", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [(r["set_id"], r["missing"]) for r in json.loads(shown.stdout)] == [("B", [1, 3])]
    table = ctl(config, "sets")
    assert "truncated HDF5" in table.stdout and "01,03" in table.stdout
    assert ctl(config, "sets", "--state", "nonsense").returncode == 2


CANDIDATES = [
    {"source_id": "J1200+3000", "class": "transient", "ra_deg": 180.0, "dec_deg": 30.0, "n": 12,
     "mean_flux_jy": 0.05, "v": 1.2, "eta": 40.0, "p_constant": 1e-9},
    {"source_id": "J1201+3001", "class": "variable", "ra_deg": 180.25, "dec_deg": 30.02, "n": 30,
     "mean_flux_jy": 0.8, "v": 0.21, "eta": 9.5, "p_constant": 2e-6},
]  # fmt: skip
RUN = {"run_time": "2026-11-26T12:00:00+00:00", "n_candidates": 2}


async def test_candidates_in_process_and_through_the_program(
    config: Config, redis: aioredis.Redis
) -> None:
    assert await latest_candidates(config) is None
    assert "no variability analysis has run yet" in ctl(config, "candidates").stdout
    await CandidateStore(redis, Keys(config.redis.namespace)).replace(RUN, CANDIDATES)
    report = await latest_candidates(config)
    assert report is not None and report.source == "redis"
    assert [(c["source_id"], c["rank"]) for c in report.candidates] == [
        ("J1200+3000", 1),
        ("J1201+3001", 2),
    ]
    only = await latest_candidates(config, "variable")
    assert only is not None and [c["source_id"] for c in only.candidates] == ["J1201+3001"]
    shown = ctl(config, "candidates", "--json", "--class", "transient")
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["run"] == RUN
    assert [c["source_id"] for c in document["candidates"]] == ["J1200+3000"]
    table = ctl(config, "candidates")
    assert "J1201+3001" in table.stdout and "variable" in table.stdout
    assert ctl(config, "candidates", "--class", "stable").returncode == 2


async def test_blocks_in_process_and_through_the_program(
    config: Config, redis: aioredis.Redis
) -> None:
    blocks = Blocks(redis, Keys(config.redis.namespace))
    first, second = BlockSpan("B1", T0, T0 + 3600), BlockSpan("B2", T0 + 3300, T0 + 6900)
    chunk = ChunkRecord("C1", "C1", T0 + 3300, T0 + 3609, 0.6, "/ms/C1.ms")
    await blocks.record_chunk(chunk, [first, second])
    assert await blocks.record_failure("B2", "StageError: photometry: no catalog", 2) == 1
    rows = await list_blocks(config)
    assert [(r.block_id, r.state, r.chunks, r.stale, r.attempts) for r in rows] == [
        ("B1", "pending", 0, True, 0),
        ("B2", "pending", 0, True, 1),
    ]
    assert rows[1].error == "StageError: photometry: no catalog"
    await blocks.record_failure("B2", "StageError: photometry: no catalog", 2)
    assert [r.block_id for r in await list_blocks(config, "failed")] == ["B2"]
    shown = ctl(config, "blocks", "--state", "pending", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [r["block_id"] for r in json.loads(shown.stdout)] == ["B1"]
    table = ctl(config, "blocks")
    assert "no catalog" in table.stdout and "failed" in table.stdout
    assert ctl(config, "blocks", "--state", "nonsense").returncode == 2


async def test_blocks_show_the_flag_fraction_and_bad_antennas(
    config: Config, redis: aioredis.Redis
) -> None:
    blocks = Blocks(redis, Keys(config.redis.namespace))
    spans = [BlockSpan("B1", T0, T0 + 3600), BlockSpan("B2", T0 + 3600, T0 + 7200)]
    for i, span in enumerate(spans):
        chunk = ChunkRecord(f"C{i}", f"C{i}", span.start, span.start + 309, 0.6, f"/ms/C{i}.ms")
        await blocks.record_chunk(chunk, [span])
    qa = {"flag": {"flag_fraction": 0.0734, "bad_antennas": "7,42", "status": "ok"}}
    pipe = redis.pipeline(transaction=True)
    blocks.stage_commit(pipe, "B1", 1, 1, ["C0"], [], {}, qa=qa)
    await pipe.execute()
    rows = {r.block_id: r for r in await list_blocks(config)}
    assert rows["B1"].flag_fraction == pytest.approx(0.0734)
    assert rows["B1"].bad_antennas == ["7", "42"]
    assert rows["B2"].flag_fraction is None and rows["B2"].bad_antennas == []
    table = ctl(config, "blocks")
    assert table.returncode == 0, table.stderr
    header = next(x for x in table.stdout.splitlines() if "block" in x and "state" in x)
    assert "flagged" in header and "bad antennas" in header
    line = next(x for x in table.stdout.splitlines() if " B1 " in x)
    assert "7.3%" in line and "7,42" in line
    shown = json.loads(ctl(config, "blocks", "--json").stdout)
    assert shown[0]["qa"]["flag"]["bad_antennas"] == "7,42"


async def test_new_sources_through_the_program(config: Config, redis: aioredis.Redis) -> None:
    """``candidates --new``: the monitored new sources with their first block and the
    earlier mosaics' limits, as a table and as JSON."""
    assert "no new sources" in ctl(config, "candidates", "--new").stdout
    record = {
        "candidate_id": "DSA J110056.4+600617", "ra_deg": 165.235, "dec_deg": 60.105,
        "first_block": "2026-03-21T07:00:00", "peak_jy": 0.06,
        "earlier_upper_limits": [
            {"block_id": "2026-03-20T07:00:00", "limit_jy": 0.0062, "rms_jy": 0.00124,
             "flux_jy": -0.0004},
        ],
        "rerun_blocks": ["2026-03-20T07:00:00", "2026-03-21T07:00:00"],
        "mosaic_only_blocks": [],
    }  # fmt: skip
    assert await MonitoredSources(redis, Keys(config.redis.namespace)).register(record)
    table = ctl(config, "candidates", "--new")
    assert table.returncode == 0, table.stderr
    assert "DSA J110056.4+600617" in table.stdout and "2026-03-21T07:00:00" in table.stdout
    assert "0.0062" in table.stdout  # the tightest earlier limit
    shown = json.loads(ctl(config, "candidates", "--new", "--json").stdout)
    assert shown == {"new_sources": [record], "unreadable": []}


async def test_a_damaged_new_source_is_named_on_stderr_and_the_rest_listed(
    config: Config, redis: aioredis.Redis
) -> None:
    """One unreadable monitored entry must not break ``candidates --new``: it is named in one
    line on stderr, the others are listed, and the command succeeds."""
    keys = Keys(config.redis.namespace)
    good = {"candidate_id": "DSA J110056.4+600617", "ra_deg": 165.235, "dec_deg": 60.105,
            "first_block": "2026-03-21T07:00:00", "peak_jy": 0.06}  # fmt: skip
    assert await MonitoredSources(redis, keys).register(good)
    await redis.hset(keys.monitored(), "DSA J0000", "{not json")  # type: ignore[misc]
    table = ctl(config, "candidates", "--new")
    assert table.returncode == 0, table.stderr
    assert "DSA J110056.4+600617" in table.stdout and "DSA J0000" not in table.stdout
    (line,) = table.stderr.splitlines()
    assert line.startswith("dsa110ctl: ") and "'DSA J0000'" in line and "unreadable" in line
    shown = ctl(config, "candidates", "--new", "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["new_sources"] == [good]
    assert [u["candidate_id"] for u in doc["unreadable"]] == ["DSA J0000"]
