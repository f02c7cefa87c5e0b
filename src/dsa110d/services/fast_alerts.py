"""The processor's fast alerts: each chunk searched as soon as it is converted, each alert
settled when its block's mosaic has been searched (``science.imaging.fast``).

**Its own task.** Imaging a chunk costs minutes of CPU at full scale: the set handler does not
wait for it. It records the chunk and announces it on MS_PROCESSING (``kind=chunk``), as
before, and goes on to the next set; the fast search reads the same announcements in a
consumer group of its own (:data:`~dsa110d.contracts.FAST_ALERTS_GROUP`), run by the
processor service as a third stream consumer (:meth:`FastAlerter.handle`). So it has the
streams' per-entry fault boundary, redelivery of a dead consumer's entries and dead letters;
the processor group's block loop and the analyzer never wait on it.

**Recorded once, fenced by the chunk's search lease.** The set's lease is released when the
chunk is recorded, so the search holds a lease of its own, ``fast:<chunk id>``
(:meth:`~dsa110d.state.keys.Keys.fast_search_lease`): under it, a chunk already marked searched
is not imaged again, and its alerts and searched mark are committed in one transaction fenced
by that lease's token (``state.fast_alerts``). Two consumers given the same announcement (a
redelivery after a reclaim, a second producer's message) cannot both search: one holds the
lease, the other's entry fails with LeaseHeldError and is retried later, when the mark says
done; a holder that stalled past its lease and lost it commits nothing (FencingError). New
alerts are HSETNX'd besides, so nothing ever replaces a first record. Each new alert is logged
and counted (``dsa110_results_total{kind="fast_alerts"}``); the alert engine's next pass
(``alerts.interval_sec``) publishes it once on the alert stream and to the sinks. A failed or
timed-out search is logged and the entry acked: the block's mosaic still searches the data.

**Settled once, under the block's lease, whichever comes first.** The block may now run
before its chunk's fast search ends. Both settle paths hold the block's lease ``block:<id>``,
and each reads after its own write: :meth:`FastAlerter.after_block` runs under it after the
block's run committed and settles the alerts then recorded for its chunks;
:meth:`FastAlerter.settle_late`, after a search committed its alerts, looks for a committed
run of the chunk's blocks that included the chunk and has a source list, and settles, under
that block's lease, the chunk's alerts still pending. If the late path's read of the block
misses the run's commit, the commit came after the alerts' record, so the run's
``after_block`` (after its commit) sees the alerts; if both see each other, the lease orders
them and the later one finds nothing pending (``after_block`` re-settles every alert of a
re-run, whose verdict may change; it logs and counts only changes). A block lease held by a
run is waited for (up to ``processing_timeout_sec``, then the entry is retried). A failure of
either settle path (an unreadable source list, the worker's error) is logged, not raised:
after a block's commit it must not fail the block; after a search the alerts are recorded
and the block's next run settles them.
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
from dsa110d.config.services import ProcessorConfig
from dsa110d.contracts import FAST_ALERTS_GROUP, BlockProcessed, ms_message
from dsa110d.errors import CircuitOpenError, DSA110Error, StageError, WorkerJobError, describe
from dsa110d.messages import MessageType
from dsa110d.metrics import ServiceMetrics
from dsa110d.paths import inside_roots
from dsa110d.resilience import BreakerBoard
from dsa110d.science.pipeline.blocks import BlockPlan, Chunk
from dsa110d.state.blocks import Blocks, ChunkRecord
from dsa110d.state.connection import Redis
from dsa110d.state.fast_alerts import FastAlerts
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Lease, Leases
from dsa110d.state.stream_entries import Delivery
from dsa110d.state.streams import ReliableStream


class Host(Protocol):
    """What the fast alerts use of the processor's handler (``MSProcessingHandler``)."""

    config: Config
    cfg: ProcessorConfig
    service: str
    redis: Redis
    keys: Keys
    leases: Leases
    blocks: Blocks
    plan: BlockPlan
    roots: tuple[Path, ...]
    breakers: BreakerBoard
    run_in_worker: Callable[..., Awaitable[Any]]
    log: structlog.stdlib.BoundLogger
    metrics: ServiceMetrics
    beat: Callable[[], None]


FAST_SEARCH_TIMEOUT_SEC = 600.0
"""Longest one chunk's image and search may take: past it the alert would not be fast."""
SOURCES_OUTPUT = "image.sources"
"""The block run's output that is the mosaic's source list (the image stage's ``sources``)."""
PENDING = "pending"
SETTLE_ERRORS = (DSA110Error, OSError, ValueError)
"""What a settle path logs instead of raising (see the module docstring)."""


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
        self.stream = ReliableStream(
            handler.redis, handler.keys, MessageType.MS_PROCESSING, FAST_ALERTS_GROUP,
            handler.config.streams, handler.config.retry,
        )  # fmt: skip

    async def start(self) -> None:
        """Create the consumer group (idempotent). It is read even with fast alerts off, so
        that it never holds the stream's trimming back."""
        await self.stream.ensure_group()

    async def handle(self, delivery: Delivery) -> None:
        """One MS_PROCESSING message of the fast group: a chunk is searched (once) and its
        alerts settled if its block has already run; a block message is not this group's."""
        from dsa110d.services.processor import set_id_of  # the processor imports this module

        message = delivery.message
        contract = ms_message(message.payload, message.id)
        if isinstance(contract, BlockProcessed) or not fast_alerts_enabled(self.handler.config):
            return
        set_id = set_id_of(message)
        where = f"message {message.id} payload.ms_path"
        ms = inside_roots(contract.ms_path, self.handler.roots, where)
        chunk = ChunkRecord(
            set_id, contract.chunk_id, contract.start, contract.end, contract.dec_rad, str(ms)
        )
        await self.search(chunk)
        await self.settle_late(chunk)

    async def search(self, chunk: ChunkRecord) -> list[dict[str, Any]]:
        """Search a converted chunk unless it was; the alerts newly recorded."""
        h = self.handler
        if not fast_alerts_enabled(h.config) or await self.store.searched(chunk.chunk_id):
            return []
        name = Keys.fast_search_lease(chunk.chunk_id)
        await self._wait_while_held(name, FAST_SEARCH_TIMEOUT_SEC)  # another search of it
        async with h.leases.hold(name) as lease:  # LeaseHeldError: the entry is retried later
            if await self.store.searched(chunk.chunk_id):
                return []  # searched by the holder before us
            return await self._search(lease, chunk)

    async def _search(self, lease: Lease, chunk: ChunkRecord) -> list[dict[str, Any]]:
        h = self.handler
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

    async def settle_late(self, chunk: ChunkRecord) -> list[dict[str, Any]]:
        """Settle the chunk's pending alerts by a committed run of one of its blocks that
        included it, under that block's lease; the settled ones (see the module docstring)."""
        h = self.handler
        blocks = h.plan.blocks_of_chunk(Chunk(chunk.start, chunk.end, chunk.path))
        for block in blocks:
            if not await self._ran_with(block.id, chunk.chunk_id):
                continue
            if not await self._pending([chunk.chunk_id]):
                return []
            name = Keys.block_lease(block.id)
            await self._wait_while_held(name, h.cfg.processing_timeout_sec)  # a run of it
            async with h.leases.hold(name) as lease:  # LeaseHeldError: retried later
                record = await h.blocks.block(block.id)
                if record is None or not await self._ran_with(block.id, chunk.chunk_id):
                    continue  # pruned meanwhile
                pending = await self._pending([chunk.chunk_id])
                sources = record.results[SOURCES_OUTPUT]
                return await self._settle_quietly(lease, block.id, pending, sources)
        return []

    async def _wait_while_held(self, name: str, timeout: float) -> None:
        """Wait (up to ``timeout`` s) for the lease's holder to let go: a search or a run in
        progress is waited for, not failed on (its entry's retries would run out meanwhile);
        the watchdog is fed meanwhile, this task is not stuck."""
        h = self.handler
        with anyio.move_on_after(timeout):
            while await h.leases.holder(name) is not None:
                h.beat()
                await anyio.sleep(h.config.leases.renew_interval_sec)

    async def _ran_with(self, block_id: str, chunk_id: str) -> bool:
        record = await self.handler.blocks.block(block_id)
        return (
            record is not None
            and record.version > 0
            and chunk_id in record.chunks
            and SOURCES_OUTPUT in record.results
        )

    async def _pending(self, chunk_ids: list[str]) -> list[dict[str, Any]]:
        return [a for a in await self.store.of_chunks(chunk_ids) if a["status"] == PENDING]

    async def after_block(
        self, lease: Lease, block_id: str, chunk_ids: list[str], results: dict[str, str]
    ) -> list[dict[str, Any]]:
        """Settle the block's chunks' alerts by its mosaic's source list; the settled ones.
        A failure (an unreadable source list, the worker's error, the state server gone) is
        logged, not raised: the block's run is committed and must not be counted failed; the
        alerts stay as they were until the block's next run settles them."""
        sources = results.get(SOURCES_OUTPUT)
        if sources is None:
            return []
        try:
            pending = await self.store.of_chunks(chunk_ids)
        except SETTLE_ERRORS as exc:
            self._not_settled(block_id, exc)
            return []
        return await self._settle_quietly(lease, block_id, pending, sources)

    async def _settle_quietly(
        self, lease: Lease, block_id: str, alerts: list[dict[str, Any]], sources: str
    ) -> list[dict[str, Any]]:
        """Settle ``alerts`` by ``sources``, fenced by the block's ``lease``; log the verdicts
        that changed. A failure is logged (one line: block, reason), not raised."""
        if not alerts:
            return []
        h = self.handler
        radius = h.config.imaging.match_radius_beams
        try:
            settled: list[dict[str, Any]] = await h.run_in_worker(
                settle_job, alerts, sources, radius
            )
            settled = [{**a, "settled_by": block_id} for a in settled]
            await h.leases.run_fenced(lease, lambda pipe: self.store.stage_settle(pipe, settled))
        except SETTLE_ERRORS as exc:
            self._not_settled(block_id, exc)
            return []
        before = {a["alert_id"]: a["status"] for a in alerts}
        for alert in settled:
            if before.get(alert["alert_id"]) == alert["status"]:
                continue
            status = alert["status"]
            h.log.info(f"fast_alert_{status}", alert_id=alert["alert_id"], block_id=block_id)
            h.metrics.add(f"fast_alerts_{status}")
        return settled

    def _not_settled(self, block_id: str, exc: BaseException) -> None:
        self.handler.log.warning("fast_alerts_not_settled", block_id=block_id,
                                 reason=describe(exc))  # fmt: skip
