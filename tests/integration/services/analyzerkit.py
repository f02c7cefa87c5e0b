"""Helpers for the analyzer's integration tests: messages, handlers, expected metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pandas as pd
import structlog

from dsa110d.config import Config
from dsa110d.contracts import PROCESSOR_GROUP, BlockProcessed
from dsa110d.messages import Message, MessageType, Producer, new_message
from dsa110d.science.variability import metrics as var
from dsa110d.science.variability.run import flags_code
from dsa110d.science.variability.state import METRIC_RTOL
from dsa110d.services.analyzer import VariabilityAnalysisHandler
from dsa110d.state.analysis import AnalysisQueue
from dsa110d.state.connection import Redis
from dsa110d.state.keys import Keys
from dsa110d.state.streams import ReliableStream
from dsa110d.workers import WorkerPool
from tests.integration.services import seed

WORKER_MODULES = ("dsa110d.science.variability.run",)


def queue(config: Config, redis: Redis) -> AnalysisQueue:
    return AnalysisQueue(redis, Keys(config.redis.namespace))


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def block_message(
    block_id: str, results: dict[str, str] | None = None, ms_paths: tuple[str, ...] = ()
) -> Message:
    """A block announcement as the processor sends it (:class:`BlockProcessed`)."""
    processed = BlockProcessed(block_id, 1, results or {}, ms_paths, (), (), 0.0, 3600.0)
    return new_message(
        MessageType.MS_PROCESSING, processed.to_payload(), Producer.here("processor")
    )


def processor_block_message(block_id: str, photometry: Path, version: int = 1) -> Message:
    """What the processor publishes after a block (services/processor.py)."""
    processed = BlockProcessed(
        block_id, version, {"photometry": str(photometry)}, (), (), (), 0.0, 3600.0
    )
    return new_message(
        MessageType.MS_PROCESSING, processed.to_payload(), Producer.here("processor")
    )


def seeded_block_message(results_dir: Path, b: int) -> Message:
    """The processor's message for seeded block ``b`` (:func:`seed.write_block`)."""
    return processor_block_message(seed.block_id(b), seed.photometry_path(results_dir, b))


def chunk_message(chunk_id: str) -> Message:
    payload = {"kind": "chunk", "chunk_id": chunk_id}
    return new_message(MessageType.MS_PROCESSING, payload, Producer.here("processor"))


def ms_stream(config: Config, redis: Redis, group: str = PROCESSOR_GROUP) -> ReliableStream:
    keys = Keys(config.redis.namespace)
    return ReliableStream(
        redis, keys, MessageType.MS_PROCESSING, group, config.streams, config.retry
    )


def handler(
    config: Config, redis: Redis, pool: WorkerPool, light_curves: int = 0
) -> VariabilityAnalysisHandler:
    """A handler; light-curve plots off unless asked for (they are most of a run's time)."""
    log = structlog.get_logger("test.analyzer")
    return VariabilityAnalysisHandler(
        lambda: config, redis, pool.run, log, max_light_curves=light_curves
    )


async def announcements(config: Config, redis: Redis) -> list[dict[str, Any]]:
    """Payloads of the VARIABILITY_ANALYSIS messages published so far."""
    name = Keys(config.redis.namespace).stream(MessageType.VARIABILITY_ANALYSIS.value)
    entries = await redis.xrange(name)
    return [json.loads(fields["m"])["payload"] for _, fields in entries]


def thresholds(config: Config) -> var.Thresholds:
    cfg = config.services.variability_analyzer
    return var.Thresholds(
        cfg.min_data_points, cfg.variability_threshold, cfg.variability_p_threshold,
        vs_threshold=cfg.vs_threshold, m_threshold=cfg.m_threshold,
        false_discovery_rate=cfg.false_discovery_rate, min_mean_snr=cfg.min_mean_snr,
    )  # fmt: skip


def expected_frame(config: Config) -> pd.DataFrame:
    """The metrics a full recompute from every photometry file gives (flags as the run maps)."""
    files = sorted((config.paths.results_dir / "photometry").glob("*.parquet"))
    rows = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    rows["flags"] = flags_code(rows["flags"])
    return var.metrics_frame(var.recompute(rows), thresholds(config))


def latest_frame(config: Config) -> pd.DataFrame:
    return pd.read_parquet(config.paths.results_dir / "variability" / "latest.parquet")


def assert_same_metrics(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got.sort_values("source_id").reset_index(drop=True)
    want = want.sort_values("source_id").reset_index(drop=True)
    assert [str(s) for s in got["source_id"]] == [str(s) for s in want["source_id"]]
    for col in want.columns:
        if col == "source_id":
            continue
        a, b = want[col].to_numpy(), got[col].to_numpy()
        if a.dtype.kind == "f":
            np.testing.assert_allclose(b, a, rtol=METRIC_RTOL, atol=0, equal_nan=True, err_msg=col)
        else:
            assert [str(x) for x in b] == [str(x) for x in a], col


def temporaries(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.name.startswith(".tmp-")]
