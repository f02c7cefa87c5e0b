"""The processor service's health and metrics: backlog past supervisor.backlog_degraded makes
it degraded with the reason; the backlog and queue lag are published as metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsa110d.config import Config
from dsa110d.contracts import ChunkConverted, SetAnnounced
from dsa110d.messages import MessageType, Producer, new_message
from dsa110d.metrics import ServiceMetrics
from dsa110d.services.base import Health
from dsa110d.services.processor import MSProcessingHandler
from dsa110d.services.processor_service import MSProcessorService
from dsa110d.state.connection import Redis
from tests.conftest import make_config

pytestmark = pytest.mark.anyio


async def _no_worker(*args: object) -> object:
    raise AssertionError("no job expected")


async def test_a_backlog_past_the_limit_degrades_the_service_with_the_reason(
    tmp_path: Path, server_url: str, config: Config, redis: Redis
) -> None:
    cfg = make_config(
        tmp_path, server_url, redis__namespace=config.redis.namespace,
        supervisor__backlog_degraded=2,
    )  # fmt: skip
    service = MSProcessorService()
    service.handler = MSProcessingHandler(cfg, redis, _no_worker)
    service.backlog_limit = cfg.supervisor.backlog_degraded
    await service.handler.start()
    metrics = ServiceMetrics()
    await service.refresh_stats(metrics)
    assert service.health().health is Health.HEALTHY and metrics.backlog == 0
    for _ in range(3):
        payload = SetAnnounced.of("2026-03-20T06:00:00", {}, None, None, 16, False).to_payload()
        message = new_message(MessageType.HDF5_PROCESSING, payload, Producer.here("test"))
        await service.handler.hdf5_stream.publish(message)
    await service.refresh_stats(metrics)
    report = service.health()
    assert report.health is Health.DEGRADED
    assert "backlog of 3 sets" in report.reason and "backlog_degraded (2)" in report.reason
    assert metrics.snapshot()["backlog"] == 3


async def test_dead_letters_of_both_streams_are_published_as_a_metric(
    config: Config, redis: Redis
) -> None:
    service = MSProcessorService()
    service.handler = MSProcessingHandler(config, redis, _no_worker)
    await service.handler.start()
    for stream in (service.handler.hdf5_stream, service.handler.ms_stream):
        await stream.ensure_group()
        payload = {"set_id": "2026-03-20T06:00:00", "paths": []}
        kind = stream.message_type
        await stream.publish(new_message(kind, payload, Producer.here("test")))
        (entry,) = await stream.read_new("proc-1", 1, None)
        await stream.dead_letter(entry, "InputFileError: truncated file", "proc-1", [])
    metrics = ServiceMetrics()
    await service.refresh_stats(metrics)
    assert metrics.dead_letters == 2
    assert metrics.snapshot()["dead_letters"] == 2


async def test_the_fast_searchs_backlog_is_published(
    tmp_path: Path, server_url: str, config: Config, redis: Redis
) -> None:
    """Chunk announcements the fast search's group has not yet handled are its backlog
    (STATUS), counted apart from the sets' backlog."""
    service = MSProcessorService()
    service.handler = MSProcessingHandler(config, redis, _no_worker)
    await service.handler.start()
    chunk = ChunkConverted(
        "2026-03-20T06:00:00",
        "2026-03-20T06:00:00",
        str(config.paths.ms_dir / "2026-03-20T06:00:00.ms"),
        0.0,
        300.0,
        1.0,
    )
    for _ in range(2):
        message = new_message(MessageType.MS_PROCESSING, chunk.to_payload(), Producer.here("t"))
        await service.handler.ms_stream.publish(message)
    metrics = ServiceMetrics()
    await service.refresh_stats(metrics)
    assert metrics.counters["fast_search_backlog"] == 2
    assert metrics.backlog == 0
    (entry,) = await service.handler.fast.stream.read_new("fast-1", 1, None)
    await service.handler.fast.stream.ack([entry.entry_id])
    await service.refresh_stats(metrics)
    assert metrics.counters["fast_search_backlog"] == 1
