"""One measurement per source per transit: of two overlapping blocks that both see a transit
near its peak, only the block whose own slots hold the transit counts it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dsa110d.config import ProcessorConfig
from dsa110d.science.catalog import Catalog
from dsa110d.science.constants import SECONDS_PER_DAY, UNIX_EPOCH_MJD_S
from dsa110d.science.photometry import table as photometry_table
from dsa110d.science.photometry.settings import PhotometrySettings
from dsa110d.science.photometry.stage import PARTIAL_TRANSIT_GAIN_FRACTION, measure_block
from dsa110d.science.pipeline.blocks import BlockPlan
from dsa110d.science.pipeline.stage import BlockJob
from dsa110d.science.variability import metrics as var
from dsa110d.science.variability import run
from tests.helpers.testms import (
    SIDEREAL_RATE_RAD_S,
    START_MJD_S,
    SkyModel,
    _apparent,
    make_ms,
)

BOUNDARY_MJD_S = START_MJD_S
"""Block k+1's own slots begin here (a whole Unix hour); block k takes its 5 min before too."""
PLAN = BlockPlan.from_config(ProcessorConfig())  # 60 min blocks, 5 min overlap
AFTER = BlockJob(PLAN.block(int(BOUNDARY_MJD_S - UNIX_EPOCH_MJD_S) // 3600))
BEFORE = BlockJob(PLAN.block(AFTER.block.index - 1))
CHUNK_MIDS_S = (-450.0, -150.0, 150.0, 450.0)
"""Chunk mid-times from the boundary: -150 s is the overlap slot, in both blocks."""
DEC_DEG = 30.0
RA0_DEG = 100.0
"""Pointing (apparent) RA at the boundary."""
TRANSITS_S = {"EARLY": -400.0, "BEFORE_EDGE": -100.0, "AFTER_EDGE": 100.0}
"""Transit times from the boundary: all three within 5 min of both blocks' data."""
OWNER = {"EARLY": BEFORE, "BEFORE_EDGE": BEFORE, "AFTER_EDGE": AFTER}
TRANSIT_TOL_S = 15.0
"""The rows' transit time against the one placed (about an integration)."""


def _sky() -> Catalog:
    """Sources placed so that their *apparent* RA crosses the pointing at TRANSITS_S."""
    ids = tuple(TRANSITS_S)
    app_ra = RA0_DEG + np.degrees(SIDEREAL_RATE_RAD_S * np.array(list(TRANSITS_S.values())))
    dec = np.full(len(ids), DEC_DEG) + np.array([0.3, -0.4, 0.5])
    probe_ra, _ = _apparent(np.radians(app_ra), np.radians(dec), BOUNDARY_MJD_S)
    icrs_ra = app_ra - (np.degrees(probe_ra) - app_ra)  # undo precession to first order
    return Catalog(ids, icrs_ra, dec, np.full(len(ids), 2.0))


SKY = _sky()


@pytest.fixture(scope="module")
def chunks(tmp_path_factory: pytest.TempPathFactory) -> dict[float, Path]:
    root = tmp_path_factory.mktemp("transits")
    sky = SkyModel(SKY.ra_deg, SKY.dec_deg, SKY.flux_jy)
    out = {}
    for i, offset in enumerate(CHUNK_MIDS_S):
        # FIELD states the phase centre in ICRS: the apparent meridian carried back to J2000
        app = RA0_DEG + math.degrees(SIDEREAL_RATE_RAD_S * offset)
        probe, _ = _apparent(np.radians([app]), np.radians([DEC_DEG]), BOUNDARY_MJD_S + offset)
        ra = app - (math.degrees(float(probe[0])) - app)  # undo precession to first order
        out[offset] = make_ms(
            root / f"c{i}.ms", sky, mid_time_mjd_s=BOUNDARY_MJD_S + offset, phase_ra_deg=ra,
            dec_deg=DEC_DEG, n_ant=16, n_chan=16, noise_jy=1.0, seed=50 + i,
        )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def rows(chunks: dict[float, Path]) -> pd.DataFrame:
    """Both blocks' photometry, each block measured from the chunks in its slots."""
    frames = []
    for job in (BEFORE, AFTER):
        start = job.block.start + UNIX_EPOCH_MJD_S
        mine = [
            p
            for t, p in chunks.items()
            if start <= BOUNDARY_MJD_S + t < job.block.end + UNIX_EPOCH_MJD_S
        ]
        frames.append(measure_block(job, mine, SKY, PhotometrySettings()))
    return pd.concat(frames, ignore_index=True)


def test_both_blocks_see_each_transit_near_its_peak(rows: pd.DataFrame) -> None:
    """Why the rule is needed: without it each transit would count twice (no partial_transit
    flag, which would otherwise have dropped one)."""
    assert PARTIAL_TRANSIT_GAIN_FRACTION > 0.5
    for source_id in TRANSITS_S:
        mine = rows[rows.source_id == source_id]
        assert len(mine) == 2
        assert not mine["flags"].str.contains("partial_transit").any()


def test_the_block_holding_the_transit_owns_it(rows: pd.DataFrame) -> None:
    for source_id, offset in TRANSITS_S.items():
        mine = rows[rows.source_id == source_id].set_index("block_id")
        transit = (mine.transit_mjd * SECONDS_PER_DAY - BOUNDARY_MJD_S).to_numpy()
        assert np.all(np.abs(transit - offset) < TRANSIT_TOL_S)
        owner = OWNER[source_id].block_id
        other = next(b for b in mine.index if b != owner)
        assert mine["flags"][owner] == ""
        assert mine["flags"][other] == "transit_elsewhere"


def test_variability_counts_each_transit_once(rows: pd.DataFrame) -> None:
    typed = photometry_table.typed(rows)
    usable = typed[photometry_table.usable_mask(typed)]
    assert usable.groupby("source_id").size().to_dict() == dict.fromkeys(TRANSITS_S, 1)
    thresholds = {"min_data_points": 2, "variability_threshold": 0.1, "p_threshold": 1e-3}
    metrics = var.metrics_frame(var.recompute(rows), run.thresholds_from(thresholds))
    assert (metrics.set_index("source_id")["n"] == 1).all()
