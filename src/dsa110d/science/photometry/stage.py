"""The ``photometry`` stage: one Parquet row per catalog source in the beam during a block.

The method is described in :mod:`dsa110d.science.photometry.accumulation`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dsa110d.config import Config
from dsa110d.science.atomic import atomic_file
from dsa110d.science.catalog import Catalog, read_catalog
from dsa110d.science.constants import SECONDS_PER_DAY, UNIX_EPOCH_MJD_S
from dsa110d.science.imaging.monitoring import with_monitored
from dsa110d.science.photometry.accumulation import BEAM_GAIN_MIN, measure_ms
from dsa110d.science.photometry.settings import PhotometrySettings
from dsa110d.science.photometry.solve import (
    REFINE_MAX_RAD,
    REFINE_MIN_CHI2,
    Solution,
    position_offsets,
    solve,
)
from dsa110d.science.photometry.sums import Sums
from dsa110d.science.pipeline.stage import BlockJob, StageResult

PARTIAL_TRANSIT_GAIN_FRACTION = 0.8
"""A row is flagged ``partial_transit`` when the source's best beam gain in the block is below
this fraction of its gain at transit (its offset then being |apparent dec - pointing dec|).
The beam correction makes every block's flux unbiased, but away from transit the error grows
and the flux leans on the beam model's flank (a pointing error of 0.05 deg is a 3% flux error
at 0.8 of the transit gain, ~0.8 deg from transit at 1.4 GHz, and grows linearly beyond): the
one or two blocks nearest transit each day are kept."""

TRANSIT_OWNERSHIP = """One measurement per source per transit. Blocks overlap (each takes the last
``mosaic_overlap_min`` of the one before), so a source transiting near a block boundary is seen
near its peak by two blocks. The block whose *own* slots (``Block.own_first_slot`` to
``last_slot``, which tile time without overlap) hold the transit owns it; the other block's row
is flagged ``transit_elsewhere`` (unusable: the variability never counts it). The transit is
when the source crosses the meridian the dishes point at (extrapolated when outside the
block), so exactly one block owns each transit. If the owning block is never processed, that
transit is missing from the light curve rather than counted from the other block's edge."""

SCHEMA: dict[str, str] = {
    "source_id": "string: the catalog's id (a monitored new source's: its candidate id)",
    "ra_deg": "float64: catalog RA, ICRS deg",
    "dec_deg": "float64: catalog Dec, ICRS deg",
    "block_id": "string: the block (UTC start of its own hour), dsa110d.science.pipeline.blocks",
    "mjd": "float64: beam-weighted mean time of the source's data, MJD (UTC)",
    "transit_mjd": "float64: when the source crosses the pointing meridian, MJD (UTC)",
    "flux_jy": "float64: beam-corrected Stokes I flux density, Jy (NaN when no data)",
    "flux_err_jy": "float64: 1-sigma error: statistical (thermal or jackknife) and the "
    "systematic fraction in quadrature, Jy",
    "n_vis": "int64: unflagged single-polarisation visibilities (row x channel x pol) used",
    "beam_gain": "float64: effective primary-beam gain divided out, sum(g^2 w) / sum(g w)",
    "pointing_dec_deg": "float64: declination of the pointing (phase centre), ICRS deg",
    "beam_offset_deg": "float64: the source's smallest offset from the pointing in the block, deg",
    "beam_model": "string: the beam model the gain is from (tapered, airy)",
    "position_offset_arcsec": "float64: how far the data moved the source from its catalog "
    "position (photometry.refine_min_snr; 0 when not moved)",
    "flags": "string: comma-separated flags (missing_chunks, partial_transit, "
    "transit_elsewhere, no_data, blended, position_refined, uncalibrated)",
    "version": "int64: run of the block; a higher version supersedes a lower one",
}


def measure_block(
    job: BlockJob,
    ms_paths: Sequence[Path],
    catalog: Catalog,
    settings: PhotometrySettings | None = None,
) -> pd.DataFrame:
    """One row per catalog source inside the beam during the block (see :data:`SCHEMA`).

    With ``settings.require_calibration`` (``calibration.enabled``) the MSs without a valid
    calibration are left out and every row of the block is flagged ``uncalibrated`` (unusable
    for the variability analysis): their raw visibilities are not in janskys."""
    settings = settings or PhotometrySettings()
    sums, solution, refused = _measure(ms_paths, catalog, settings)
    moved = np.zeros(len(catalog))
    if settings.refine_min_snr is not None:
        refined, moved = _refined(catalog, sums, solution, settings.refine_min_snr)
        if moved.any():
            sums, solution, refused = _measure(ms_paths, refined, settings)
    seen = np.flatnonzero(sums.peak_gain >= BEAM_GAIN_MIN)
    error = np.hypot(solution.error, settings.systematic_fraction * np.abs(solution.flux))
    transit_unix = sums.transit_time - UNIX_EPOCH_MJD_S
    own_start = job.block.own_first_slot * job.block.slot_sec
    elsewhere = ~((transit_unix >= own_start) & (transit_unix < job.block.end))
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
        if elsewhere[s]:  # another block owns this transit (TRANSIT_OWNERSHIP)
            flags.append("transit_elsewhere")
        if sums.n_vis[s] == 0:
            flags.append("no_data")
        if solution.blended[s]:
            flags.append("blended")
        if moved[s] > 0:
            flags.append("position_refined")
        rows.append(
            {
                "source_id": catalog.ids[s],
                "ra_deg": float(catalog.ra_deg[s]),
                "dec_deg": float(catalog.dec_deg[s]),
                "block_id": job.block_id,
                "mjd": float(mjd[s]),
                "transit_mjd": float(sums.transit_time[s] / SECONDS_PER_DAY),
                "flux_jy": float(solution.flux[s]),
                "flux_err_jy": float(error[s]),
                "n_vis": int(sums.n_vis[s]),
                "beam_gain": float(gain[s]),
                "pointing_dec_deg": math.degrees(sums.pointing_dec),
                "beam_offset_deg": math.degrees(sums.min_offset[s]),
                "beam_model": settings.beam.kind,
                "position_offset_arcsec": float(moved[s]),
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
            "beam_model": "string",
            "n_vis": "int64",
            "version": "int64",
        }
    )


def _measure(
    ms_paths: Sequence[Path], catalog: Catalog, settings: PhotometrySettings
) -> tuple[Sums, Solution, int]:
    """The block's sums and fluxes, and how many of its MSs were refused (uncalibrated)."""
    sums = Sums(len(catalog))
    refused = 0
    for path in sorted(ms_paths):
        refused += not measure_ms(Path(path), catalog, sums, settings)
    return sums, solve(sums, catalog.flux_jy), refused


def _refined(
    catalog: Catalog, sums: Sums, solution: Solution, min_snr: float
) -> tuple[Catalog, NDArray[np.float64]]:
    """The catalog with its bright, significantly offset sources moved to where the data put
    them (settings.PhotometrySettings.refine_min_snr), and each source's move in arcsec."""
    offsets = position_offsets(sums, solution.flux)
    with np.errstate(invalid="ignore", divide="ignore"):
        bright = np.abs(solution.flux) >= min_snr * solution.error
        size = np.hypot(offsets.dl, offsets.dm)
        move = bright & ~solution.blended & (offsets.chi2 > REFINE_MIN_CHI2)
        move &= size < REFINE_MAX_RAD
    dec = np.radians(catalog.dec_deg)
    ra_deg = catalog.ra_deg + np.where(move, np.degrees(offsets.dl / np.cos(dec)), 0.0)
    dec_deg = catalog.dec_deg + np.where(move, np.degrees(offsets.dm), 0.0)
    arcsec = np.where(move, np.degrees(size) * 3600.0, 0.0)
    return replace(catalog, ra_deg=ra_deg % 360.0, dec_deg=dec_deg), arcsec


def photometry_path(config: Config, block_id: str) -> Path:
    return config.paths.results_dir / "photometry" / f"{block_id}.parquet"


def write_photometry(frame: pd.DataFrame, final: Path) -> None:
    """Publish a block's photometry atomically (readers never see a partial file)."""
    with atomic_file(final) as temp:
        frame.to_parquet(temp, index=False)


def photometry_stage(
    job: BlockJob, ms_paths: Sequence[Path], config: Config, scratch: Path
) -> StageResult:
    """Forced photometry of the catalog sources and the monitored new sources in the beam;
    writes the block's Parquet file."""
    if config.paths.catalog is None:
        return StageResult("photometry", "skipped", message="paths.catalog is not configured")
    catalog = with_monitored(read_catalog(config.paths.catalog), job.monitored)
    frame = measure_block(job, ms_paths, catalog, PhotometrySettings.from_config(config))
    final = photometry_path(config, job.block_id)
    write_photometry(frame, final)
    return StageResult(
        "photometry",
        "ok",
        outputs={"photometry": str(final)},
        summary={"sources": len(frame), "version": job.version},
    )
