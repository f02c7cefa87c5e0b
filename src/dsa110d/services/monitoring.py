"""The processor's side of TraP's monitoring (``science.imaging.monitoring``).

After a block run is published, each new-source candidate its image stage first detected
goes on the monitored list (``state.monitored``), and the blocks that should measure it
again are asked to re-run: its first block (photometry ran there before the blind search
found it) and the earlier blocks whose mosaics covered it, when their Measurement Sets are
still on disk. An earlier block whose MSs are gone cannot re-run; its mosaic's value and
limit at the position (already in the candidate's ``earlier_upper_limits``) stand for it,
and the record says so (``mosaic_only_blocks``). Before each block run the processor reads
the list and hands it to the worker (:func:`monitored_for_job`).
"""

from __future__ import annotations

import os
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
from dsa110d.state.blocks import Blocks
from dsa110d.state.monitored import MonitoredSources

CANDIDATES_OUTPUT = "image.candidates"
"""The block result naming the image stage's candidates table (stage ``image``, kind
``candidates``)."""


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


async def after_commit(
    store: MonitoredSources,
    blocks: Blocks,
    results: dict[str, str],
    block_id: str,
    log: structlog.stdlib.BoundLogger,
) -> None:
    """:func:`register_new_sources` for a committed run: a failure (the state server gone, an
    unreadable table) is logged, not raised: the block's results are committed and must not
    be counted a failed run."""
    try:
        added = await register_new_sources(store, blocks, results)
    except (DSA110Error, OSError, ValueError) as exc:
        log.warning("new_sources_not_monitored", block_id=block_id, reason=describe(exc))
        return
    if added:
        log.info("new_sources_monitored", block_id=block_id, candidates=added)
