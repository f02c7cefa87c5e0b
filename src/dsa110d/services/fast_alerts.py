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
redelivery after a reclaim, a second producer's message) cannot both search: the second waits
for the first's lease and then finds the mark (or, losing the race for the lease, fails with
LeaseHeldError and is retried); a holder that stalled past its lease commits nothing
(FencingError). New alerts are HSETNX'd besides, so nothing replaces a first record. Each new
alert is logged and counted (``dsa110_results_total{kind="fast_alerts"}``); the alert engine's
next pass (``alerts.interval_sec``) publishes it once on the alert stream and to the sinks. A
failed or timed-out search is logged and the entry acked: the block's mosaic still searches
the data.

**Never beside a block run of the chunk.** The block's stages write into the chunk's MS
(flags, calibrated data) while the search's wsclean reads it, so the search also holds the
lease of each block of the chunk (``block:<id>``, which every run holds), taken after the
search lease and in block order, so two searches never deadlock; a run in progress is waited
for (up to ``processing_timeout_sec``; past it the entry is retried). The other way round, a
block whose chunk was recorded less than ``FAST_SEARCH_ALLOWANCE_SEC`` ago and is not yet
searched waits for the search (:meth:`FastAlerter.holds_back`; the search wakes the block
loop when it is done), so that, as before the search left the set handler, the fast alert
comes before its block's run; a failed or backlogged search holds no block back longer.

**Settled once, under the block's lease.** An alert is settled by whichever comes second:
:meth:`FastAlerter.after_block`, under the block's lease after its run committed, settles the
alerts recorded by then for its chunks; a search, holding the block's lease, settles its
chunk's alerts still pending by a committed run of the block that included the chunk and has
a source list. The block's lease orders the two (no run can commit while the search holds
it): a run that committed before the search took the lease is seen by the search; a run after
it sees the alerts. ``after_block`` re-settles every alert of a re-run (a late chunk may change
the verdict) and logs and counts only changes; the search settles only pending alerts. A
failure to settle (an unreadable source list, the worker's error, the state server gone) is
logged with the block and the reason, not raised: after a block's commit it must not fail the
block; after a search the alerts are recorded and the block's next run settles them.

**Not calibrated first (yet).** The search images DATA, or CORRECTED_DATA when the MS has it
(``science.imaging.chunk.data_column``: a chunk whose block's calibrate stage already ran).
Applying the newest valid bandpass and gains before it is not done: gains are solved per block
by the calibrate stage, so a new chunk has none of its own (an earlier block's would have to
be stretched past its validity); and writing CORRECTED_DATA into the shared MS from here would
change what the block's image stage reads (it takes the column when present) and what
photometry trusts (the MS's calibration mark) while ``calibration.enabled`` may be off. A clean
way: solve the chunk's gains against the newest valid bandpass in the search's worker and
image a calibrated scratch copy (its cost, a copy of the MS per chunk, to measure first).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import anyio
import structlog

from dsa110d.config import Config
from dsa110d.config.services import ProcessorConfig
from dsa110d.contracts import FAST_ALERTS_GROUP, BlockProcessed, ms_message, set_id_of
from dsa110d.errors import (
    CircuitOpenError,
    DSA110Error,
    MessageError,
    StageError,
    WorkerJobError,
    describe,
)
from dsa110d.messages import MessageType
from dsa110d.metrics import ServiceMetrics
from dsa110d.paths import inside_roots
from dsa110d.resilience import BreakerBoard
from dsa110d.science.pipeline.blocks import BlockPlan, Chunk
from dsa110d.state.blocks import BlockRecord, Blocks, ChunkRecord
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
    wake: anyio.Event


FAST_SEARCH_TIMEOUT_SEC = 600.0
"""Longest one chunk's image and search may take: past it the alert would not be fast."""
SOURCES_OUTPUT = "image.sources"
"""The block run's output that is the mosaic's source list (the image stage's ``sources``)."""
PENDING = "pending"
FAST_SEARCH_ALLOWANCE_SEC = 900.0
"""A block waits for its chunks' fast searches up to this long after a chunk's record (the
search's queue, then the search, at most ``FAST_SEARCH_TIMEOUT_SEC``); past it (a failed or
a backlogged search) the block runs and a search of its chunk waits for the run instead."""
SETTLE_ERRORS = (DSA110Error, OSError, ValueError)
"""What a settle path logs instead of raising (see the module docstring)."""


def _span(chunk: ChunkRecord) -> Chunk:
    return Chunk(chunk.start, chunk.end, chunk.path)


def _ran_with(record: BlockRecord, chunk_id: str) -> bool:
    """A run of the block has committed with this chunk and a source list."""
    return record.version > 0 and chunk_id in record.chunks and SOURCES_OUTPUT in record.results


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

        message = delivery.message
        contract = ms_message(message.payload, message.id)
        if isinstance(contract, BlockProcessed) or not fast_alerts_enabled(self.handler.config):
            return
        set_id = set_id_of(message)  # checked: it names files and a lease
        if contract.chunk_id != set_id:
            raise MessageError(f"message {message.id}: chunk_id is not its set's id {set_id}")
        where = f"message {message.id} payload.ms_path"
        ms = inside_roots(contract.ms_path, self.handler.roots, where)
        chunk = ChunkRecord(set_id, set_id, contract.start, contract.end, contract.dec_rad, str(ms))
        await self.search(chunk)

    async def search(self, chunk: ChunkRecord) -> list[dict[str, Any]]:
        """Search a converted chunk unless it was, and settle its pending alerts if one of its
        blocks has run with it, holding the chunk's search lease and its blocks' leases (see
        the module docstring); the alerts newly recorded."""
        h = self.handler
        if not fast_alerts_enabled(h.config):
            return []
        if await self.store.searched(chunk.chunk_id) and not await self._pending([chunk.chunk_id]):
            return []  # nothing left to do (a redelivery)
        block_ids = sorted(b.id for b in h.plan.blocks_of_chunk(_span(chunk)))
        search_lease = Keys.fast_search_lease(chunk.chunk_id)
        waits = [(search_lease, FAST_SEARCH_TIMEOUT_SEC)]
        waits += [(Keys.block_lease(b), h.cfg.processing_timeout_sec) for b in block_ids]
        async with contextlib.AsyncExitStack() as stack:
            held: dict[str, Lease] = {}
            for name, timeout in waits:  # always in this order: no two searches deadlock
                await self._wait_while_held(name, timeout)
                held[name] = await stack.enter_async_context(h.leases.hold(name))
            fresh = []
            if not await self.store.searched(chunk.chunk_id):  # not by a holder before us
                fresh = await self._search(held[search_lease], chunk)
            for block_id in block_ids:
                record = await h.blocks.block(block_id)
                if record is None or not _ran_with(record, chunk.chunk_id):
                    continue
                pending = await self._pending([chunk.chunk_id])
                lease = held[Keys.block_lease(block_id)]
                await self._settle_quietly(lease, block_id, pending, record.results[SOURCES_OUTPUT])
                break
        h.wake.set()  # a block held back for this search may run now
        return fresh

    async def holds_back(self, chunks: list[ChunkRecord], now: float) -> bool:
        """Whether a block of these chunks should wait for their fast searches: one is not yet
        searched and was recorded (or ended, for a chunk recorded before it ended: simulated
        time) less than ``FAST_SEARCH_ALLOWANCE_SEC`` before ``now`` (the block's stages write
        into the chunks' MSs, which the search reads). Old data converted now waits too."""
        if not fast_alerts_enabled(self.handler.config):
            return False
        for chunk in chunks:
            due = now - max(chunk.end, chunk.recorded_at) < FAST_SEARCH_ALLOWANCE_SEC
            if due and not await self.store.searched(chunk.chunk_id):
                return True
        return False

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

    async def _wait_while_held(self, name: str, timeout: float) -> None:
        """Wait (up to ``timeout`` s) for the lease's holder to let go: a search or a run in
        progress is waited for, not failed on (its entry's retries would run out meanwhile);
        the watchdog is fed meanwhile, this task is not stuck."""
        h = self.handler
        with anyio.move_on_after(timeout):
            while await h.leases.holder(name) is not None:
                h.beat()
                await anyio.sleep(h.config.leases.renew_interval_sec)

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
