"""The image stage's candidates: earlier blocks' published source lists and noise maps (fenced
names, staging runs) give a new source's first block and its earlier limits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS

from dsa110d.config import ImagingConfig
from dsa110d.science.atomic import STAGING_DIR
from dsa110d.science.imaging.candidates import UPPER_LIMIT_SIGMA
from dsa110d.science.pipeline.imaging import earlier_blocks, new_candidates

NOISE_JY = 0.002
RA, DEC = 150.0, 60.0


def _rms(path: Path, noise: float) -> Path:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    wcs.wcs.crval = [RA, DEC]
    wcs.wcs.crpix = [33, 33]
    wcs.wcs.cdelt = [-0.01, 0.01]
    header = wcs.to_header()
    header["BMAJ"], header["BMIN"], header["BPA"] = 0.02, 0.01, 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.full((64, 64), noise, np.float32), header).writeto(path)
    return path


def _sources(path: Path, new: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {"ra_deg": [RA + 0.05], "dec_deg": [DEC + 0.05], "peak_jy": [0.05], "new_source": [new]}
    )
    frame.to_parquet(path)


def test_a_new_source_carries_its_first_block_and_the_earlier_limits(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for block, version, noise in (
        ("2026-03-20T05:00:00", 1, 0.003),
        ("2026-03-20T06:00:00", 2, NOISE_JY),
    ):
        _sources(results / "sources" / f"{block}.v{version}.t{version}.parquet", new=False)
        _rms(results / "images" / f"{block}.rms.v{version}.t{version}.fits", noise)
    _sources(results / "sources" / "2026-03-20T06:00:00.v1.t1.parquet", new=True)  # superseded
    staging = results / STAGING_DIR / "2026-03-20T07:00:00.v1.t9"
    here = _rms(staging / "images" / "2026-03-20T07:00:00.rms.fits", NOISE_JY)
    earlier = earlier_blocks(staging, "2026-03-20T07:00:00")
    assert [b.block_id for b in earlier] == ["2026-03-20T05:00:00", "2026-03-20T06:00:00"]
    found = pd.DataFrame(
        {"ra_deg": [RA + 0.05], "dec_deg": [DEC + 0.05], "peak_jy": [0.05], "new_source": [True]}
    )
    table = new_candidates(staging, "2026-03-20T07:00:00", found, here, ImagingConfig())
    assert len(table) == 1 and table.first_block[0] == "2026-03-20T07:00:00"
    limits = json.loads(table.earlier_upper_limits[0])
    assert [x["block_id"] for x in limits] == ["2026-03-20T05:00:00", "2026-03-20T06:00:00"]
    assert math.isclose(limits[0]["limit_jy"], UPPER_LIMIT_SIGMA * 0.003, rel_tol=1e-6)
    assert math.isclose(limits[1]["limit_jy"], UPPER_LIMIT_SIGMA * NOISE_JY, rel_tol=1e-6)


def test_a_source_already_new_in_an_earlier_block_is_not_a_new_candidate(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _sources(results / "sources" / "2026-03-20T06:00:00.v1.t1.parquet", new=True)
    _rms(results / "images" / "2026-03-20T06:00:00.rms.v1.t1.fits", NOISE_JY)
    here = _rms(results / "images" / "2026-03-20T07:00:00.rms.fits", NOISE_JY)
    found = pd.DataFrame(
        {"ra_deg": [RA + 0.05], "dec_deg": [DEC + 0.05], "peak_jy": [0.05], "new_source": [True]}
    )
    table = new_candidates(results, "2026-03-20T07:00:00", found, here, ImagingConfig())
    assert table.empty
