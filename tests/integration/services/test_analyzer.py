"""The variability analyzer on a real server, with real photometry files and worker processes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import anyio
import pytest
import structlog

from dsa110d.config import Config
from dsa110d.metrics import ServiceMetrics
from dsa110d.services.analyzer import LEASE_NAME, VariabilityAnalyzerService
from dsa110d.services.base import ServiceContext
from dsa110d.state.candidates import CandidateStore, fetch_candidates
from dsa110d.state.connection import Redis
from dsa110d.state.consumer import StreamConsumer
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Leases
from dsa110d.workers import WorkerPool
from tests.integration.services.analyzerkit import (
    announcements,
    assert_same_metrics,
    block_message,
    chunk_message,
    expected_frame,
    handler,
    latest_frame,
    ms_stream,
    queue,
    seeded_block_message,
    temporaries,
    wait_until,
)
from tests.integration.services.seed import (
    PARTIAL,
    TRANSIENT,
    VARIABLES,
    block_id,
    seed_blocks,
    write_block,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope, so that one analyzer_pool serves every test


async def test_a_burst_of_block_messages_gives_one_run_with_results_candidates_and_message(
    config: Config, redis: Redis, analyzer_pool: WorkerPool
) -> None:
    results = config.paths.results_dir
    seed_blocks(results, range(8))
    processor = ms_stream(config, redis)
    await processor.ensure_group()  # the processor's group, to show it still sees everything
    service, ctx = await started_service(config, redis, analyzer_pool)
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.run, ctx)
        for b in range(8):  # a burst: blocks interleaved with chunks, which are ignored
            await processor.publish(seeded_block_message(results, b))
            await processor.publish(chunk_message(f"chunk-{b}"))
        await wait_until(lambda: _count(config, redis, 1))
        # quiet for several debounce times: no second run
        await anyio.sleep(4 * config.services.variability_analyzer.analysis_debounce_sec)
        ctx.stopping.set()

    sent = await announcements(config, redis)
    assert len(sent) == 1
    run = sent[0]
    assert run["status"] == "ok"
    assert run["n_blocks_noted"] == 8 and sorted(run["blocks"]) == [block_id(b) for b in range(8)]
    assert run["run"]["blocks_added"] == 8
    counts = run["summary"]["counts"]
    assert counts == {
        "transient": 1, "variable": 3, "stable": 40, "insufficient_data": 0, "faint": 0,
    }  # fmt: skip
    top = {c["source_id"]: c["class"] for c in run["summary"]["top_candidates"]}
    assert top == {**dict.fromkeys(VARIABLES, "variable"), TRANSIENT: "transient"}

    # every output in place, complete, and no temporaries left behind
    out = results / "variability"
    assert (out / "latest.parquet").exists() and (out / "candidates.json").exists()
    stamp_tables = [p for p in out.glob("*.parquet") if p.name != "latest.parquet"]
    assert len(stamp_tables) == 1
    stamp = stamp_tables[0].stem
    assert (out / stamp / "eta_v.png").stat().st_size > 0
    assert sorted(p.stem for p in (out / stamp / "lightcurves").glob("*.png")) == sorted(top)
    assert not temporaries(results)
    latest = latest_frame(config)
    assert_same_metrics(latest, expected_frame(config))
    n = dict(zip(latest["source_id"].astype(str), latest["n"], strict=True))
    assert n[PARTIAL[0]] == 7 and n["S000"] == 8  # the partial transit is left out

    # candidates in Redis, ranked: the transient first; what dsa110ctl prints
    report = await fetch_candidates(config)
    assert report is not None and report.source == "redis"
    assert report.candidates[0]["source_id"] == TRANSIENT
    assert {c["source_id"] for c in report.candidates} == set(top)
    assert await redis.hlen(Keys(config.redis.namespace).candidates()) == 4  # type: ignore[misc]

    # each new candidate: a VOEvent packet, announced once on the alerts stream
    authority = config.services.variability_analyzer.voevent_authority
    packets = sorted(p.name for p in (out / "voevents").glob("*.xml"))
    assert packets == sorted(f"{s}_{c}.xml" for s, c in top.items())
    assert sorted(v.rsplit("#", 1)[1] for v in run["outputs"]["voevents"]) == sorted(
        p.removesuffix(".xml") for p in packets
    )
    alerts = [f for _, f in await redis.xrange(Keys(config.redis.namespace).alerts())]
    notices = [a for a in alerts if a["rule"] == "variability_candidate"]
    assert {a["event"] for a in notices} == {"notice"} and len(notices) == len(top)
    ivorns = {json.loads(a["details"])["ivorn"] for a in notices}
    assert ivorns == {f"ivo://{authority}/dsa110d/variability#{p[:-4]}" for p in packets}
    assert (out / "candidates.vot").exists()
    assert sorted(p.name for p in (out / stamp / "lightcurves").glob("*.vot")) == sorted(
        f"{s}.vot" for s in top
    )

    # notes consumed; the processor's group still has every message to read
    assert (await queue(config, redis).outlook()).pending == 0
    stats = await processor.stats()
    assert stats.undelivered == 16 and stats.dead_letters == 0


async def _count(config: Config, redis: Redis, n: int) -> bool:
    return len(await announcements(config, redis)) >= n


async def started_service(
    config: Config, redis: Redis, pool: WorkerPool
) -> tuple[VariabilityAnalyzerService, ServiceContext]:
    service = VariabilityAnalyzerService()
    ctx = ServiceContext(
        "analyzer", lambda: config, redis, pool, structlog.get_logger("t"), ServiceMetrics()
    )
    await service.start(ctx)
    return service, ctx


async def test_two_analyzer_services_sharing_a_burst_make_one_run_and_do_not_spin(
    config: Config, redis: Redis, analyzer_pool: WorkerPool
) -> None:
    results = config.paths.results_dir
    seed_blocks(results, range(8))
    processor = ms_stream(config, redis)
    pair = [await started_service(config, redis, analyzer_pool) for _ in range(2)]
    async with anyio.create_task_group() as tg:
        for service, ctx in pair:
            tg.start_soon(service.run, ctx)
        for b in range(8):
            await processor.publish(seeded_block_message(results, b))
        await wait_until(lambda: _count(config, redis, 1))
        await anyio.sleep(4 * config.services.variability_analyzer.analysis_debounce_sec)
        for _, ctx in pair:
            ctx.stopping.set()

    sent = await announcements(config, redis)
    assert [m["status"] for m in sent] == ["ok"] and sent[0]["n_blocks_noted"] == 8
    runs = [ctx.metrics.counters for _, ctx in pair]
    assert sorted(c.get("runs", 0) for c in runs) == [0, 1]
    # the other one found the lease held at most a few times: it waits, it does not spin
    assert all(c.get("runs_skipped", 0) <= 3 for c in runs)
    assert (await queue(config, redis).outlook()).pending == 0


async def test_a_superseded_block_changes_the_metrics_exactly_as_a_full_recompute_says(
    config: Config, redis: Redis, analyzer_pool: WorkerPool
) -> None:
    results = config.paths.results_dir
    seed_blocks(results, range(6))
    analyzer = handler(config, redis, analyzer_pool)
    first = await analyzer.run_once()
    assert first is not None and first.ok
    before = latest_frame(config)

    write_block(results, 2, version=2, scale=1.3)  # the processor re-ran block 2
    await queue(config, redis).note_blocks([block_id(2)], time.time())
    second = await analyzer.run_once()
    assert second is not None and second.ok
    assert second.result["run"]["blocks_replaced"] == 1
    assert second.result["run"]["files_read"] == 1  # only the new version was read
    after = latest_frame(config)
    assert not before["v"].equals(after["v"])
    assert_same_metrics(after, expected_frame(config))

    await queue(config, redis).request_full(time.time())
    full = await analyzer.run_once()
    assert full is not None and full.ok and full.snapshot.full
    assert full.result["run"]["state"] == "rebuilt: requested"
    assert_same_metrics(latest_frame(config), after)
    assert not (await queue(config, redis).outlook()).full


async def test_two_analyzers_on_one_server_run_one_at_a_time(
    config: Config, redis: Redis, analyzer_pool: WorkerPool
) -> None:
    seed_blocks(config.paths.results_dir, range(6))
    leases = Leases(redis, Keys(config.redis.namespace), config.leases)
    first, second = handler(config, redis, analyzer_pool), handler(config, redis, analyzer_pool)
    outcome: dict[str, object] = {}

    async def run_first() -> None:
        outcome["first"] = await first.run_once()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_first)
        await wait_until(lambda: _held(leases))
        outcome["second"] = await second.run_once()  # while the first runs
    assert outcome["second"] is None and second.skipped == 1
    report = outcome["first"]
    assert report is not None and report.ok  # type: ignore[attr-defined]
    assert len(await announcements(config, redis)) == 1
    assert await leases.holder(LEASE_NAME) is None  # released after the run


async def _held(leases: Leases) -> bool:
    return await leases.holder(LEASE_NAME) is not None


async def test_block_messages_with_paths_outside_the_data_roots_go_to_the_dead_letters(
    config: Config, redis: Redis, analyzer_pool: WorkerPool, tmp_path: Path
) -> None:
    results = config.paths.results_dir
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (results / "photometry").mkdir(parents=True)
    sneaky = results / "photometry" / "link"
    os.symlink(outside, sneaky)
    processor = ms_stream(config, redis)
    await processor.ensure_group()
    analyzer = handler(config, redis, analyzer_pool)
    await analyzer.stream.ensure_group()
    good = str(results / "photometry" / "b1.parquet")
    await processor.publish(block_message("b1", {"photometry": good}))
    await processor.publish(block_message("b2", {"photometry": "/etc/passwd"}))
    await processor.publish(block_message("b3", {"photometry": str(sneaky / "x.parquet")}))
    await processor.publish(block_message("b4", {"photometry": good}, (f"{results}/../../x",)))
    await processor.publish(block_message("", {"photometry": good}))
    consumer = StreamConsumer(analyzer.stream, analyzer.consumer, analyzer.handle)

    while await consumer.poll_once(block_ms=50):
        pass
    await consumer.stream.ack(consumer._unacked)

    snapshot = await queue(config, redis).snapshot()
    assert snapshot.blocks == ("b1",)
    letters = await analyzer.stream.dead_letters()
    assert len(letters) == 4
    reasons = " | ".join(letter.reason for letter in letters)
    assert "/etc/passwd" in reasons and "outside the data roots" in reasons
    assert "block_id" in reasons
    stats = await analyzer.stream.stats()
    assert stats.pending == 0
    assert (await processor.stats()).undelivered == 5  # the processor's group is untouched


async def test_candidates_fall_back_to_the_results_file_when_redis_has_none(
    config: Config, redis: Redis, analyzer_pool: WorkerPool
) -> None:
    seed_blocks(config.paths.results_dir, range(6))
    report = await handler(config, redis, analyzer_pool).run_once()
    assert report is not None and report.ok
    await redis.delete(Keys(config.redis.namespace).candidates_run())
    assert await CandidateStore(redis, Keys(config.redis.namespace)).latest() is None

    found = await fetch_candidates(config)

    assert found is not None and found.source.endswith("candidates.json")
    on_disk = json.loads((config.paths.results_dir / "variability" / "candidates.json").read_text())
    assert [c["source_id"] for c in found.candidates] == [
        c["source_id"] for c in on_disk["candidates"]
    ]
