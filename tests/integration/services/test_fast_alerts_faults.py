"""The fast alerts' fault boundaries. After a block's commit: a block run whose source list
cannot be read (a corrupt parquet file, read by the real settle job in a real worker) is
committed and announced all the same; the failure is one log line naming the block and the
reason, and the chunk's alert stays pending (a later run can still settle it). On the search's
own stream: a chunk announcement whose chunk id or MS path cannot be trusted goes to the dead
letters at once, and nothing is imaged or written."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog.testing

from dsa110d.config import Config
from dsa110d.contracts import ChunkConverted
from dsa110d.messages import MessageType, Producer, new_message
from dsa110d.services.fast_alerts import FAST_SEARCH_ALLOWANCE_SEC
from dsa110d.services.processor import MSProcessingHandler
from dsa110d.state.blocks import BlockState, ChunkRecord
from dsa110d.state.connection import Redis
from dsa110d.state.fast_alerts import FastAlerts
from dsa110d.state.keys import Keys
from tests.conftest import make_config
from tests.integration.services.processorkit import drain, fast_consumer, worker_pool

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

BLOCK_START = 1773986400.0  # 2026-03-20T06:00:00 UTC
BLOCK_ID = "2026-03-20T06:00:00"
SLOTS = 3
NOT_PARQUET = b"this is not a parquet file\n"


class CorruptSourcesProcessor(MSProcessingHandler):
    """The processor with its image stage replaced by one that leaves a corrupt source list
    (the block run, its commit and the settle job in the worker are the real ones)."""

    async def run_stages(
        self,
        config_doc: dict[str, Any],
        block_id: str,
        version: int,
        missing: tuple[int, ...],
        ms_paths: list[str],
        staging: Path,
        monitored: list[list[Any]] | None = None,
    ) -> list[dict[str, Any]]:
        relative = f"image/{block_id}.sources.parquet"
        target = staging / relative
        await anyio.to_thread.run_sync(lambda: target.parent.mkdir(parents=True, exist_ok=True))
        await anyio.to_thread.run_sync(target.write_bytes, NOT_PARQUET)
        return [{"stage": "image", "status": "ok", "outputs": {"sources": relative},
                 "summary": {}, "message": ""}]  # fmt: skip


def _imaging_config(tmp_path: Path, server_url: str, config: Config) -> Config:
    """The image stage on (so fast alerts are), in the test's namespace."""
    return make_config(
        tmp_path, server_url, redis__namespace=config.redis.namespace,
        pipeline__stages='["image"]',
    )  # fmt: skip


def _alert(chunk_id: str) -> dict[str, Any]:
    return {
        "alert_id": f"{chunk_id}/DSA J1100+6000", "name": "DSA J1100+6000", "chunk_id": chunk_id,
        "ra_deg": 165.0, "dec_deg": 60.0, "peak_jy": 0.05, "snr": 20.0,
        "beam_arcsec": [100.0, 25.0], "beam_pa_deg": 0.0, "detected_at": time.time(),
        "status": "pending",
    }  # fmt: skip


async def test_an_unreadable_source_list_leaves_the_block_committed_and_the_alert_pending(
    tmp_path: Path, server_url: str, config: Config, redis: Redis
) -> None:
    cfg = _imaging_config(tmp_path, server_url, config)
    store = FastAlerts(redis, Keys(cfg.redis.namespace))
    async with worker_pool(1) as pool:
        handler = CorruptSourcesProcessor(cfg, redis, pool.run)
        await handler.start()
        chunk_ids = []
        for slot in range(SLOTS):
            start = BLOCK_START + 300 * slot
            set_id = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start))
            path = str(cfg.paths.ms_dir.absolute() / f"{set_id}.ms")
            await handler._record(ChunkRecord(set_id, set_id, start, start + 300, 1.0, path))
            chunk_ids.append(set_id)
        alert = _alert(chunk_ids[1])
        lease = await handler.leases.acquire(Keys.set_lease(chunk_ids[1]))
        assert lease is not None
        await handler.leases.run_fenced(
            lease, lambda pipe: store.stage_record(pipe, chunk_ids[1], [alert])
        )
        timeout = cfg.services.ms_processor.processing_timeout_sec
        later = time.time() + max(timeout, FAST_SEARCH_ALLOWANCE_SEC) + 60  # no search waited for
        with structlog.testing.capture_logs() as logs:
            done = await handler.check_blocks(now=later)
    assert [(d.block_id, d.version) for d in done] == [(BLOCK_ID, 1)]
    record = await handler.blocks.block(BLOCK_ID)
    assert record is not None and record.state is BlockState.PROCESSED
    assert record.version == 1 and record.attempts == 0 and not record.stale
    assert Path(record.results["image.sources"]).read_bytes() == NOT_PARQUET
    failed = [e for e in logs if e["event"] == "fast_alerts_not_settled"]
    assert len(failed) == 1 and failed[0]["block_id"] == BLOCK_ID
    assert "parquet" in failed[0]["reason"].lower(), failed[0]["reason"]
    assert not [e for e in logs if e["event"] == "block_failed"]
    assert [a["status"] for a in await store.latest()] == ["pending"]


async def _no_worker(*_: Any) -> Any:
    raise AssertionError("nothing is to be imaged")


@pytest.mark.parametrize(
    ("chunk_id", "ms_path", "reason"),
    [
        ("../../evil", "{ms_dir}/2026-03-20T06:05:09.ms", "chunk_id is not its set's id"),
        ("2026-03-20T06:05:09", "/etc/2026-03-20T06:05:09.ms", "outside the data roots"),
    ],
    ids=["chunk-id", "ms-path"],
)
async def test_an_untrusted_chunk_announcement_is_dead_lettered_unsearched(
    chunk_id: str,
    ms_path: str,
    reason: str,
    tmp_path: Path,
    server_url: str,
    config: Config,
    redis: Redis,
) -> None:
    cfg = _imaging_config(tmp_path, server_url, config)
    handler = MSProcessingHandler(cfg, redis, _no_worker)
    await handler.start()
    path = ms_path.format(ms_dir=cfg.paths.ms_dir.absolute())
    chunk = ChunkConverted("2026-03-20T06:05:09", chunk_id, path, 0.0, 300.0, 1.0)
    message = new_message(MessageType.MS_PROCESSING, chunk.to_payload(), Producer.here("t"))
    await handler.ms_stream.publish(message)
    await drain(fast_consumer(handler))
    (letter,) = await handler.fast.stream.dead_letters()
    assert reason in letter.reason, letter.reason
    assert not letter.attempts  # at once, not after retries
    assert await FastAlerts(redis, Keys(cfg.redis.namespace)).latest() == []
    assert not (cfg.paths.results_dir / "fast").exists()
