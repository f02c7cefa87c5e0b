"""The processor's side of TraP's monitoring (``science.imaging.monitoring``).

After a block run is published, each new-source candidate its image stage first detected
goes on the monitored list (``state.monitored``), and the blocks that should measure it
again are asked to re-run: its first block (photometry ran there before the blind search
found it) and the earlier blocks whose mosaics covered it, when their Measurement Sets are
still on disk. An earlier block whose MSs are gone cannot re-run; its mosaic's value and
limit at the position (already in the candidate's ``earlier_upper_limits``) stand for it,
and the record says so (``mosaic_only_blocks``). Before each block run the processor reads
the list and hands it to the worker (:func:`monitored_for_job`).

A re-run asked for by the monitoring alone (no chunk recorded since the block's last run:
``BlockRecord.rerun_for_monitoring``) runs only :data:`RERUN_STAGES` (forced photometry, with
the grown list); the block's other results (its mosaic, source list, candidates, calibration)
are those of its last run, carried into the new record (:func:`monitoring_rerun`): imaging
the same data again would find the same sources at the cost of the whole block's imaging.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import structlog

from dsa110d.errors import DSA110Error, describe
from dsa110d.science.imaging.monitoring import (
    MonitoredSource,
    monitored_records,
    read_candidates,
)
from dsa110d.state.blocks import BlockRecord, Blocks
from dsa110d.state.monitored import MonitoredSources

CANDIDATES_OUTPUT = "image.candidates"
"""The block result naming the image stage's candidates table (stage ``image``, kind
``candidates``)."""


RERUN_STAGES = ("photometry",)
"""The stages a monitoring re-run runs: those that measure the monitored sources."""


@dataclass(frozen=True)
class MonitoringRerun:
    """A monitoring re-run: the stages to run, and the last run's results and QA it keeps."""

    stages: list[str]
    results: dict[str, str]
    qa: dict[str, Any]


def monitoring_rerun(
    record: BlockRecord, chunk_ids: list[str], missing: tuple[int, ...], stages: list[str]
) -> MonitoringRerun | None:
    """The re-run of a block the monitoring asked for, on the same chunks as its last run;
    None when the block must run in full (a chunk arrived, the chunks differ, never run)."""
    if not record.rerun_for_monitoring:
        return None
    if list(record.chunks) != chunk_ids or record.missing_slots != missing:
        return None
    run = [s for s in stages if s in RERUN_STAGES]
    kept = {k: v for k, v in record.results.items() if k.split(".", 1)[0] not in run}
    return MonitoringRerun(run, kept, {k: v for k, v in record.qa.items() if k not in run})


async def monitored_for_job(
    store: MonitoredSources, log: structlog.stdlib.BoundLogger
) -> list[list[Any]]:
    """The monitored sources as the worker's ``block_job`` takes them. A damaged entry is
    logged by its id and left out: it must not stop every block run."""
    found = await store.decoded(lambda record: MonitoredSource.from_record(record).to_json())
    for bad in found.unreadable:
        log.warning("monitored_source_unreadable", candidate_id=bad.candidate_id,
                    reason=bad.reason)  # fmt: skip
    return found.sources


async def _measurements_kept(blocks: Blocks, block_id: str) -> bool:
    """Whether every chunk of the block's last run is still on disk (it can re-run)."""
    record = await blocks.block(block_id)
    if record is None or not record.chunks:
        return False
    for chunk_id in record.chunks:
        chunk = await blocks.chunk(chunk_id)
        if chunk is None or not await anyio.to_thread.run_sync(os.path.exists, chunk.path):
            return False
    return True


async def register_new_sources(
    store: MonitoredSources, blocks: Blocks, results: dict[str, str]
) -> list[str]:
    """Put a published run's first-detected new sources on the monitored list and ask for
    their re-runs; the ids this call added (a candidate already monitored is left alone)."""
    path = results.get(CANDIDATES_OUTPUT)
    if path is None:
        return []
    table = await anyio.to_thread.run_sync(read_candidates, Path(path))
    added = []
    for record, rerun in monitored_records(table):
        kept = [b for b in rerun if await _measurements_kept(blocks, b)]
        record["rerun_blocks"] = kept
        record["mosaic_only_blocks"] = [b for b in rerun if b not in kept]
        if await store.register(record, kept):
            added.append(str(record["candidate_id"]))
    return added


async def register_block(
    store: MonitoredSources,
    blocks: Blocks,
    block_id: str,
    candidates_path: str,
    log: structlog.stdlib.BoundLogger,
) -> bool:
    """Register one committed run's new sources and settle its pending entry; True when
    settled. A failure (the state server gone or refusing, the table unreadable for now) is
    logged and the entry kept for the next pass: the block's results are committed and must
    not be counted a failed run. A table that is gone (a newer run superseded it, or
    housekeeping pruned it) or that is not a table settles without a registration."""
    try:
        added = await register_new_sources(store, blocks, {CANDIDATES_OUTPUT: candidates_path})
    except FileNotFoundError:
        log.info("new_sources_superseded", block_id=block_id, candidates=candidates_path)
    except (ValueError, KeyError, AttributeError, TypeError) as exc:  # damaged: stays so
        log.warning("new_sources_unreadable", block_id=block_id, reason=describe(exc))
    except (DSA110Error, OSError) as exc:
        log.warning("new_sources_not_monitored", block_id=block_id, reason=describe(exc))
        return False
    else:
        if added:
            log.info("new_sources_monitored", block_id=block_id, candidates=added)
    try:
        await store.settle(block_id, candidates_path)
    except DSA110Error as exc:  # registered; the next pass registers nothing new and settles
        log.warning("new_sources_not_settled", block_id=block_id, reason=describe(exc))
        return False
    return True


async def after_commit(
    store: MonitoredSources,
    blocks: Blocks,
    results: dict[str, str],
    block_id: str,
    log: structlog.stdlib.BoundLogger,
) -> None:
    """:func:`register_block` for a run that has just committed a candidates table (its
    pending entry, :meth:`MonitoredSources.stage_pending`, was written with the commit)."""
    path = results.get(CANDIDATES_OUTPUT)
    if path is not None:
        await register_block(store, blocks, block_id, path, log)


async def retry_pending(
    store: MonitoredSources, blocks: Blocks, log: structlog.stdlib.BoundLogger
) -> list[str]:
    """:func:`register_block` for every registration still pending (a failed one's retry, on
    every pass over the pending blocks); the blocks settled."""
    try:
        pending = await store.pending()
    except DSA110Error as exc:
        log.warning("monitoring_pending_unreadable", reason=describe(exc))
        return []
    return [
        b
        for b, path in sorted(pending.items())
        if await register_block(store, blocks, b, path, log)
    ]
