"""The ``calibrate`` stage: bandpass from the calibrator's transit, gains per chunk, applied.

For each block (after ``flag``, before ``photometry``):

1. **Sky model** per MS (:mod:`dsa110d.science.calibration.model`): the in-beam catalog
   sources through the primary beam, calibrators with their flux models.
2. **Bandpass and delay**: when a catalog calibrator (column ``calibrator``) transits in one of
   the block's MSs (beam gain >= ``calibration.calibrator_min_beam_gain``), one complex gain
   per antenna, channel and polarisation is solved on that MS (StEFCal, every channel at once,
   :mod:`dsa110d.science.calibration.solver`), referenced to the reference antenna, and
   written as ``cal/bandpass/bandpass-<set>.tab`` + ``.json``. It carries the delays too (the
   phase slope across the band, in the record's ``extra.delay_ns``). A bandpass is valid
   ``calibration.bandpass_valid_days`` either side of its transit; each MS gets the newest
   valid one (:func:`caltables.newest_valid`), from this block or from an earlier one on disk.
3. **Gains**: with the bandpass divided out, one complex gain per antenna, polarisation and
   ``calibration.solution_interval_sec`` against the sky model; written per block as
   ``cal/gains/gains-<block>-v<version>.tab`` + ``.json``. Both solutions of a chunk come from
   one read of its data (:mod:`dsa110d.science.calibration.chunk`).
4. **Apply**: ``CORRECTED_DATA = DATA / (G_i conj(G_j))`` with ``G = bandpass x gain``; data of
   antennas whose solution is flagged (SNR < ``calibration.min_snr``, or no data) are flagged.
   The MS's table keyword ``DSA110_CAL`` records what was applied and whether it is valid: the
   photometry reads CORRECTED_DATA only from an MS whose keyword says ``ok``, and with
   calibration enabled refuses the others (flag ``uncalibrated``).

Reference antenna: ``calibration.reference_antenna`` (an ANTENNA-table index), or, when it is
flagged or absent, the unflagged antenna with the most data in that solution. QA per solution:
the JSON record (:mod:`dsa110d.science.calibration.records`).

Tables and records are written under ``paths.results_dir``, which for a block run is its
staging directory: both are the stage's outputs (``cal_<kind>`` the record,
``cal_<kind>_table`` the table), published by the processor under names carrying the run's
version and fencing token, as every other output is: a stale lease holder publishes neither,
and a re-run publishes new names instead of rewriting a table in place.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dsa110d.config import Config
from dsa110d.science.atomic import is_complete_dir
from dsa110d.science.calibration import caltables, records
from dsa110d.science.calibration.chunk import ChunkInfo, ChunkSums, accumulate, inspect_chunk
from dsa110d.science.calibration.solve import apply, concatenate, solve_bandpass, solve_gains
from dsa110d.science.catalog import Catalog, read_catalog
from dsa110d.science.constants import SECONDS_PER_DAY
from dsa110d.science.pipeline.calstatus import STATUS_OK, mark
from dsa110d.science.pipeline.stage import BlockJob, StageResult

log = logging.getLogger(__name__)


def _bandpass_from_transit(
    infos: list[ChunkInfo],
    catalog: Catalog,
    job: BlockJob,
    config: Config,
    sums: dict[Path, ChunkSums],
) -> dict[str, str]:
    """Solve and write the bandpass of a calibrator transit in the block, if there is one;
    returns the stage's outputs for it (none without a transit). The transit chunk's sums are
    left in ``sums`` for its gains."""
    cfg = config.calibration
    transits = [
        i
        for i in infos
        if i.calibrator is not None and i.calibrator_gain >= cfg.calibrator_min_beam_gain
    ]
    if not transits:
        return {}
    best = max(transits, key=lambda i: i.calibrator_gain)
    results = config.paths.results_dir
    solution_id = f"bandpass-{best.set_id}"
    json_path = caltables.cal_dir(results, "bandpass") / f"{solution_id}.json"
    if json_path.exists() and is_complete_dir(json_path.with_suffix(".tab")):
        return caltables.outputs("bandpass", json_path)  # solved by an earlier run, here
    sums[best.path] = accumulate(best, cfg)
    solution = solve_bandpass(sums[best.path], best, cfg)
    solved = best.mid_mjd
    previous = records.previous(results, "bandpass", solved, solution_id)
    assert best.calibrator is not None
    tau = records.delays_ns(solution)
    record = records.record(
        solution,
        solution_id,
        job,
        [best.set_id],
        (solved - cfg.bandpass_valid_days, solved + cfg.bandpass_valid_days),
        catalog.ids[best.calibrator],
        cfg,
        previous,
        {
            "solved_mjd": solved,
            "delay_ns": [[v if math.isfinite(v) else None for v in row] for row in tau.tolist()],
            "calibrator_beam_gain": best.calibrator_gain,
        },
    )
    written = caltables.write_solution(results, record, solution, best.path)
    log.info(
        "bandpass %s from %s: %s, median SNR %.0f",
        solution_id,
        record.calibrator,
        record.status,
        record.snr_median,
    )
    return caltables.outputs("bandpass", written)


def calibrate_stage(
    job: BlockJob, ms_paths: Sequence[Path], config: Config, scratch: Path
) -> StageResult:
    """Solve and apply the calibration of one block (see the module docstring)."""
    cfg = config.calibration
    empty = {"cal_status": "uncalibrated", "cal_bandpass_id": None, "cal_gains_id": None}
    if not cfg.enabled:
        return StageResult(
            "calibrate", "skipped", summary=empty, message="calibration.enabled is off"
        )
    if config.paths.catalog is None:
        return StageResult(
            "calibrate", "skipped", summary=empty, message="paths.catalog is not configured"
        )
    catalog = read_catalog(config.paths.catalog)
    infos = [inspect_chunk(Path(p), catalog) for p in sorted(ms_paths)]
    for info in infos:
        mark(info.path, "uncalibrated")  # until a solution is applied
    sums: dict[Path, ChunkSums] = {}
    outputs = _bandpass_from_transit(infos, catalog, job, config, sums)
    results = config.paths.results_dir
    mid = float(np.mean([i.mid_mjd for i in infos]))
    chosen = caltables.newest_valid(caltables.read_records(results, "bandpass"), mid)
    if chosen is None:
        return StageResult(
            "calibrate",
            "ok",
            outputs=outputs,
            summary={**empty, "cal_status": "no_bandpass"},
            message="no valid bandpass: the block stays uncalibrated",
        )
    bandpass = caltables.read_solution(caltables.table_path(results, chosen))
    per_ms = []
    for info in infos:  # one chunk's sums at a time (~150 MB at real scale)
        chunk_sums = sums.pop(info.path, None) or accumulate(info, cfg)
        per_ms.append(solve_gains(chunk_sums, info, bandpass, cfg))
        del chunk_sums
    gains = concatenate(per_ms)
    gains_id = f"gains-{job.block_id}-v{job.version}"
    first, last = float(infos[0].times.min()), float(infos[-1].times.max())
    previous = records.previous(results, "gains", first / SECONDS_PER_DAY, gains_id)
    record = records.record(
        gains,
        gains_id,
        job,
        [i.set_id for i in infos],
        (first / SECONDS_PER_DAY, last / SECONDS_PER_DAY),
        None,
        cfg,
        previous,
        {"solved_mjd": first / SECONDS_PER_DAY, "bandpass_id": chosen.solution_id},
    )
    written = caltables.write_solution(results, record, gains, infos[0].path)
    outputs.update(caltables.outputs("gains", written))
    status = "uncalibrated"
    if record.status == "ok":
        for info, solution in zip(infos, per_ms, strict=True):
            apply(info, bandpass, solution, cfg)
            mark(info.path, STATUS_OK, chosen.solution_id, gains_id)
        status = "ok"
    return StageResult(
        "calibrate",
        "ok",
        outputs=outputs,
        summary={
            "cal_status": status,
            "cal_bandpass_id": chosen.solution_id,
            "cal_gains_id": gains_id,
        },
    )
