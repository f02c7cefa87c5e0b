"""The processor's fast alerts: each chunk searched as soon as it is converted, each alert
settled when its block's mosaic has been searched (``science.imaging.fast``).

* :meth:`FastAlerter.after_convert` runs under the set's lease, after the MS is published and
  before the chunk is recorded (so the block cannot be run, and its mosaic settle the chunk's
  alerts, before they exist): the chunk is imaged and searched in a worker call through the
  wsclean breaker (:func:`fast_alert_job`), and its alerts and searched mark are committed in
  a transaction fenced by the set's lease (``state.fast_alerts``). Each new alert is then
  logged and counted (``dsa110_results_total{kind="fast_alerts"}``); the alert engine's next
  pass (``alerts.interval_sec``) publishes it once on the alert stream and to the sinks
  (``alerts.rules.fast_alert_conditions``).
  A failed or timed-out search is logged and never fails the set: the block's mosaic still
  searches the data.
* :meth:`FastAlerter.after_block` runs under the block's lease once its run is published:
  the alerts of the block's chunks are settled against its source list (confirmed/retracted),
  written fenced by the block's lease, logged and counted; the engine publishes each verdict.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import anyio
import structlog

from dsa110d.config import Config
from dsa110d.errors import CircuitOpenError, DSA110Error, StageError, WorkerJobError, describe
from dsa110d.metrics import ServiceMetrics
from dsa110d.resilience import BreakerBoard
from dsa110d.state.blocks import ChunkRecord
from dsa110d.state.connection import Redis
from dsa110d.state.fast_alerts import FastAlerts
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Lease, Leases


class Host(Protocol):
    """What the fast alerts use of the processor's handler (``MSProcessingHandler``)."""

    config: Config
    service: str
    redis: Redis
    keys: Keys
    leases: Leases
    breakers: BreakerBoard
    run_in_worker: Callable[..., Awaitable[Any]]
    log: structlog.stdlib.BoundLogger
    metrics: ServiceMetrics


FAST_SEARCH_TIMEOUT_SEC = 600.0
"""Longest one chunk's image and search may take: past it the alert would not be fast."""
SOURCES_OUTPUT = "image.sources"
"""The block run's output that is the mosaic's source list (the image stage's ``sources``)."""


def fast_alerts_enabled(config: Config) -> bool:
    """Imaging is on (the ``image`` stage is configured) and a fast threshold is set."""
    return "image" in config.pipeline.stages and config.imaging.fast_alert_snr is not None


def fast_alert_job(config_doc: dict[str, Any], chunk_id: str, ms: str) -> list[dict[str, Any]]:
    """Worker job: image and search one chunk (``science.imaging.fast.search_chunk``)."""
    from dsa110d.science.imaging.fast import search_chunk

    config = Config.model_validate(config_doc)
    with tempfile.TemporaryDirectory(prefix="dsa110d-fast-") as scratch:
        return search_chunk(Path(ms), chunk_id, config, Path(scratch))


def settle_job(alerts: list[dict[str, Any]], sources: str, radius: float) -> list[dict[str, Any]]:
    """Worker job: settle alerts by a block's source list (``science.imaging.fast.settle``)."""
    import pandas as pd

    from dsa110d.science.imaging.fast import settle

    return settle(alerts, pd.read_parquet(sources), radius)


class FastAlerter:
    """Fast alerts for one processor handler (see the module docstring)."""

    def __init__(self, handler: Host) -> None:
        self.handler = handler
        self.store = FastAlerts(handler.redis, handler.keys)

    async def after_convert(self, lease: Lease, chunk: ChunkRecord) -> list[dict[str, Any]]:
        """Search a freshly converted chunk; the alerts newly recorded."""
        h = self.handler
        if not fast_alerts_enabled(h.config) or await self.store.searched(chunk.chunk_id):
            return []
        doc = h.config.model_dump(mode="json", exclude={"redis"})
        breaker = h.breakers.get("wsclean", owner=h.service, counted=(StageError, WorkerJobError))

        async def run() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = await h.run_in_worker(
                fast_alert_job, doc, chunk.chunk_id, chunk.path
            )
            return found

        began = time.monotonic()
        try:
            with anyio.fail_after(FAST_SEARCH_TIMEOUT_SEC):
                found = await breaker.call(run)
        except (DSA110Error, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else describe(exc)
            if not isinstance(exc, CircuitOpenError):
                h.log.warning("fast_search_failed", chunk_id=chunk.chunk_id, reason=reason)
            return []
        h.metrics.observe("fast_search", time.monotonic() - began)
        new = await self.store.new_ids(found)
        await h.leases.run_fenced(
            lease, lambda pipe: self.store.stage_record(pipe, chunk.chunk_id, found)
        )
        fresh = [a for a in found if a["alert_id"] in new]
        for alert in fresh:
            h.log.info("fast_alert", **{k: alert[k] for k in ("alert_id", "snr", "peak_jy")})
        if fresh:
            h.metrics.add("fast_alerts", len(fresh))
        return fresh

    async def after_block(
        self, lease: Lease, block_id: str, chunk_ids: list[str], results: dict[str, str]
    ) -> list[dict[str, Any]]:
        """Settle the block's chunks' alerts by its mosaic's source list; the settled ones.
        A failure (an unreadable source list, the worker's error, the state server gone) is
        logged, not raised: the block's run is committed and must not be counted failed; the
        alerts stay pending until the block's next run (or a late chunk's search) settles them."""
        try:
            return await self._settle_block(lease, block_id, chunk_ids, results)
        except (DSA110Error, OSError, ValueError) as exc:
            self.handler.log.warning(
                "fast_alerts_not_settled", block_id=block_id, reason=describe(exc)
            )
            return []

    async def _settle_block(
        self, lease: Lease, block_id: str, chunk_ids: list[str], results: dict[str, str]
    ) -> list[dict[str, Any]]:
        h = self.handler
        sources = results.get(SOURCES_OUTPUT)
        if sources is None:
            return []
        pending = await self.store.of_chunks(chunk_ids)
        if not pending:
            return []
        radius = h.config.imaging.match_radius_beams
        settled: list[dict[str, Any]] = await h.run_in_worker(settle_job, pending, sources, radius)
        settled = [{**a, "settled_by": block_id} for a in settled]
        await h.leases.run_fenced(lease, lambda pipe: self.store.stage_settle(pipe, settled))
        before = {a["alert_id"]: a["status"] for a in pending}
        for alert in settled:
            if before.get(alert["alert_id"]) == alert["status"]:
                continue
            status = alert["status"]
            h.log.info(f"fast_alert_{status}", alert_id=alert["alert_id"], block_id=block_id)
            h.metrics.add(f"fast_alerts_{status}")
        return settled
