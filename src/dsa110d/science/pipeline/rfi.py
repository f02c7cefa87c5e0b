"""The ``flag`` stage: AOFlagger, antenna health from the autocorrelations, a static channel
mask, and the flag statistics of the block (flag QA). One module per pass:

1. **AOFlagger** (:mod:`aoflag`) with the DSA-110 strategy on the cross-correlations of the
   MSs not flagged before, in one run with a thread per core. Without the program the stage
   falls back to the MAD flagger (``flag-mad``), says so in its summary (``flagger``) and logs
   a warning: the data are flagged, less well.
2. **Antenna health** (:mod:`health`) from the autocorrelations of the whole block: dead, hot
   and unstable antennas.
3. **Flags written** (:mod:`flagwrite`): interference seen in the autocorrelations
   (:mod:`autorfi`: narrowband lines along frequency, broadband bursts along time, in the
   channels they cover), on every baseline; every baseline of a bad antenna, the channels of
   ``flagging.static_channel_ranges_mhz``, exact zeros (dropped packets) and the
   autocorrelations (not used downstream), with the flags AOFlagger found and those already
   in the data. An MS is flagged once: the keyword :data:`flagging.FLAGGED_KEYWORD` marks it,
   and a block re-run (or the next block sharing the chunk) leaves its flags as they are.
4. **Flag QA** (:mod:`flagqa`): the flagged fraction of the cross-correlations per antenna,
   per channel and per integration, written as ``flag_qa`` (JSON) beside the block's
   results, with its summary in the stage's summary (the block record's ``qa.flag``:
   ``flag_fraction``, ``bad_antennas``, the worst antennas and channels, the fraction per
   chunk). A block flagged above ``flagging.mostly_flagged_fraction`` is recorded
   ``mostly_flagged`` and the pipeline does not measure it (see :func:`stages.run_pipeline`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from casacore import tables

from dsa110d.config import Config
from dsa110d.errors import DSA110Error, InputFileError, StageError, describe
from dsa110d.science.atomic import atomic_file
from dsa110d.science.isolate import run_forked_each
from dsa110d.science.pipeline import flagging
from dsa110d.science.pipeline.aoflag import AOFLAGGER, run_aoflagger, strategy_path
from dsa110d.science.pipeline.flagqa import block_qa, qa_path, summary_of
from dsa110d.science.pipeline.flagwrite import FLAGGED_BY, flag_and_count
from dsa110d.science.pipeline.health import antenna_health
from dsa110d.science.pipeline.stage import BlockJob, StageResult

log = logging.getLogger(__name__)

__all__ = ["FLAGGED_BY", "flag_stage"]


def _aoflag(ms_paths: Sequence[Path], config: Config) -> str:
    """Step 1 on the MSs not flagged before; the flagger that ran."""
    todo = []
    for path in ms_paths:
        try:
            with tables.table(str(path), ack=False) as ms:
                if flagging.FLAGGED_KEYWORD not in ms.keywordnames():
                    todo.append(path)
        except RuntimeError as exc:
            raise InputFileError(f"{path}: cannot open Measurement Set: {exc}") from None
    if shutil.which(AOFLAGGER) is None:
        log.warning("aoflagger is not installed: flagging with the MAD flagger (flag-mad)")
        for path in todo:  # outliers only: the keyword is written by flag_and_count
            flagging.flag_ms(path)
            with tables.table(str(path), readonly=False, ack=False) as ms:
                ms.removekeyword(flagging.FLAGGED_KEYWORD)
        return "mad"
    if todo:
        threads = config.supervisor.workers or len(os.sched_getaffinity(0))
        run_aoflagger(todo, strategy_path(config), threads, config.flagging.aoflagger_timeout_sec)
    return FLAGGED_BY


def flag_stage(
    job: BlockJob, ms_paths: Sequence[Path], config: Config, scratch: Path
) -> StageResult:
    """AOFlagger, antenna health, static channels, zeros and autocorrelations; flag QA."""
    paths = [Path(p) for p in ms_paths]
    flagger = _aoflag(paths, config)
    # The shipped strategy and the MAD flagger flag exact zeros; another strategy may not.
    zeros = flagger == FLAGGED_BY and config.flagging.strategy is not None
    health = antenna_health(paths, config)
    if health.bad:
        log.info("block %s: bad antennas %s", job.block_id, [a + 1 for a in health.bad])

    def one(path: Path) -> dict[str, Any]:
        try:
            return flag_and_count(
                path,
                health.bad,
                config.flagging.static_channel_ranges_mhz,
                config.flagging.auto_rfi_sigma,
                config.flagging.auto_rfi_window_mhz,
                config.flagging.burst_sigma,
                zeros,
            )
        except DSA110Error:
            raise
        except Exception as exc:
            raise StageError(f"{path}: flagging failed: {describe(exc)}") from exc

    processes = flagging.flag_processes(config, len(paths))
    if processes > 1:
        counts = run_forked_each(paths, one, processes=processes, failure=StageError)
    else:
        counts = [one(path) for path in paths]
    qa = block_qa(job, paths, counts, health)
    final = qa_path(config, job.block_id)
    with atomic_file(final) as temp:
        temp.write_text(json.dumps(qa) + "\n")
    summary = summary_of(qa, flagger, config)
    log.info(
        "block %s: %.1f%% flagged (%s), bad antennas %s",
        job.block_id, 100 * qa["flag_fraction"], flagger, summary["bad_antennas"] or "none",
    )  # fmt: skip
    return StageResult("flag", "ok", outputs={"flag_qa": str(final)}, summary=summary)
