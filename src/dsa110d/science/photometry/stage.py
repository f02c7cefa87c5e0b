"""The ``photometry`` stage: one Parquet row per catalog source in the beam during a block.

The method is described in :mod:`dsa110d.science.photometry.accumulation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dsa110d.config import Config
from dsa110d.science.atomic import atomic_file
from dsa110d.science.catalog import Catalog, read_catalog
from dsa110d.science.constants import SECONDS_PER_DAY
from dsa110d.science.photometry.accumulation import BEAM_GAIN_MIN, measure_ms
from dsa110d.science.photometry.solve import solve
from dsa110d.science.photometry.sums import Sums
from dsa110d.science.pipeline.stage import BlockJob, StageResult

PARTIAL_TRANSIT_GAIN_FRACTION = 0.8
"""A row is flagged ``partial_transit`` when the source's best beam gain in the block is below
this fraction of its gain at transit (its offset then being |apparent dec - pointing dec|).
The beam correction makes every block's flux unbiased, but away from transit the error grows
and the flux leans on the beam model's flank (a pointing error of 0.05 deg is a 3% flux error
at 0.8 of the transit gain, ~0.8 deg from transit at 1.4 GHz, and grows linearly beyond): the
one or two blocks nearest transit each day are kept."""

SCHEMA: dict[str, str] = {
    "source_id": "string: the catalog's id",
    "ra_deg": "float64: catalog RA, ICRS deg",
    "dec_deg": "float64: catalog Dec, ICRS deg",
    "block_id": "string: the block (UTC start of its own hour), dsa110d.science.pipeline.blocks",
    "mjd": "float64: beam-weighted mean time of the source's data, MJD (UTC)",
    "flux_jy": "float64: beam-corrected Stokes I flux density, Jy (NaN when no data)",
    "flux_err_jy": "float64: 1-sigma error of the joint fit (thermal or jackknife), Jy",
    "n_vis": "int64: unflagged single-polarisation visibilities (row x channel x pol) used",
    "beam_gain": "float64: effective primary-beam gain, sum(g^2 w) / sum(g w)",
    "flags": "string: comma-separated flags (missing_chunks, partial_transit, no_data, "
    "blended, uncalibrated)",
    "version": "int64: run of the block; a higher version supersedes a lower one",
}


def measure_block(
    job: BlockJob,
    ms_paths: Sequence[Path],
    catalog: Catalog,
    *,
    require_calibration: bool = False,
) -> pd.DataFrame:
    """One row per catalog source inside the beam during the block (see :data:`SCHEMA`).

    With ``require_calibration`` (``calibration.enabled``) the MSs without a valid calibration
    are left out and every row of the block is flagged ``uncalibrated`` (unusable for the
    variability analysis): their raw visibilities are not in janskys."""
    sums = Sums(len(catalog))
    refused = 0
    for path in sorted(ms_paths):
        used = measure_ms(Path(path), catalog, sums, require_calibration=require_calibration)
        refused += not used
    seen = np.flatnonzero(sums.peak_gain >= BEAM_GAIN_MIN)
    solution = solve(sums, catalog.flux_jy)
    weight = sums.weight.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = weight / sums.gain_weight
        mjd = sums.time_weight / weight / SECONDS_PER_DAY
    far = sums.peak_gain < PARTIAL_TRANSIT_GAIN_FRACTION * sums.transit_gain
    rows = []
    for s in seen:
        flags = ["missing_chunks"] if job.missing_slots else []
        if refused:
            flags.append("uncalibrated")
        if far[s]:  # the block does not reach near the source's transit
            flags.append("partial_transit")
        if sums.n_vis[s] == 0:
            flags.append("no_data")
        if solution.blended[s]:
            flags.append("blended")
        rows.append(
            {
                "source_id": catalog.ids[s],
                "ra_deg": float(catalog.ra_deg[s]),
                "dec_deg": float(catalog.dec_deg[s]),
                "block_id": job.block_id,
                "mjd": float(mjd[s]),
                "flux_jy": float(solution.flux[s]),
                "flux_err_jy": float(solution.error[s]),
                "n_vis": int(sums.n_vis[s]),
                "beam_gain": float(gain[s]),
                "flags": ",".join(flags),
                "version": job.version,
            }
        )
    frame = pd.DataFrame(rows, columns=list(SCHEMA))
    return frame.astype(
        {
            "source_id": "string",
            "block_id": "string",
            "flags": "string",
            "n_vis": "int64",
            "version": "int64",
        }
    )


def photometry_path(config: Config, block_id: str) -> Path:
    return config.paths.results_dir / "photometry" / f"{block_id}.parquet"


def write_photometry(frame: pd.DataFrame, final: Path) -> None:
    """Publish a block's photometry atomically (readers never see a partial file)."""
    with atomic_file(final) as temp:
        frame.to_parquet(temp, index=False)


def photometry_stage(
    job: BlockJob, ms_paths: Sequence[Path], config: Config, scratch: Path
) -> StageResult:
    """Forced photometry of the catalog sources in the beam; writes the block's Parquet file."""
    if config.paths.catalog is None:
        return StageResult("photometry", "skipped", message="paths.catalog is not configured")
    catalog = read_catalog(config.paths.catalog)
    frame = measure_block(job, ms_paths, catalog, require_calibration=config.calibration.enabled)
    final = photometry_path(config, job.block_id)
    write_photometry(frame, final)
    return StageResult(
        "photometry",
        "ok",
        outputs={"photometry": str(final)},
        summary={"sources": len(frame), "version": job.version},
    )
