"""The uv range in wavelengths: baselines outside [uv_min_lambda, uv_max_lambda] at the band
centre are not used; a large-scale (diffuse) component on the short ones biases the fluxes
when they are kept (the negative control) and not when the cut removes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from casacore import tables

from dsa110d.science.catalog import Catalog
from dsa110d.science.constants import SPEED_OF_LIGHT_M_S
from dsa110d.science.photometry.settings import PhotometrySettings
from dsa110d.science.photometry.stage import measure_block
from tests.helpers.testms import START_MJD_S, SkyModel, band, job_around, make_ms

PHASE_RA_DEG, DEC_DEG = 100.0, 30.0
SKY = Catalog(
    ("A", "B", "C"),
    np.array([PHASE_RA_DEG, PHASE_RA_DEG + 0.3, PHASE_RA_DEG - 0.2]),
    np.array([DEC_DEG, DEC_DEG - 0.5, DEC_DEG + 0.8]),
    np.array([2.0, 1.5, 1.0]),
)
N_CHAN = 32
DIFFUSE_JY = 300.0
"""Peak of the diffuse component's visibility (a smooth 300 Jy blob about the pointing, at A)."""
DIFFUSE_SCALE_LAMBDA = 1000.0
"""Its visibility falls as exp(-(|uv| / this)^2): structure of ~3 arcmin and larger."""
CUT_LAMBDA = 4000.0
"""A cut at 4x the diffuse scale leaves exp(-16) of it."""
PULL_MAX = 4.0
BIAS_MIN_SIGMA = 5.0


@pytest.fixture(scope="module")
def diffuse_ms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("uvrange")
    ms = make_ms(
        root / "d.ms", SkyModel(SKY.ra_deg, SKY.dec_deg, SKY.flux_jy), mid_time_mjd_s=START_MJD_S,
        phase_ra_deg=PHASE_RA_DEG, dec_deg=DEC_DEG, n_chan=N_CHAN, noise_jy=1.0, seed=4,
    )  # fmt: skip
    freq = band(N_CHAN)
    with tables.table(str(ms), readonly=False, ack=False) as t:
        uv = np.hypot(*t.getcol("UVW")[:, :2].T)[:, None] * freq[None, :] / SPEED_OF_LIGHT_M_S
        cross = (t.getcol("ANTENNA1") != t.getcol("ANTENNA2"))[:, None]
        data = t.getcol("DATA")
        diffuse = np.where(cross, DIFFUSE_JY * np.exp(-((uv / DIFFUSE_SCALE_LAMBDA) ** 2)), 0.0)
        data += diffuse[:, :, None].astype(np.complex64)
        t.putcol("DATA", data)
    return ms


def _measure(ms: Path, lo: float, hi: float = np.inf) -> pd.DataFrame:
    settings = PhotometrySettings(uv_min_lambda=lo, uv_max_lambda=hi, systematic_fraction=0.0)
    return measure_block(job_around(START_MJD_S), [ms], SKY, settings).set_index("source_id")


def _pulls(frame: pd.DataFrame) -> pd.Series:
    truth = pd.Series(SKY.flux_jy, index=list(SKY.ids))
    return (frame.flux_jy - truth) / frame.flux_err_jy


def test_the_cut_in_wavelengths_removes_diffuse_emission(diffuse_ms: Path) -> None:
    assert (_pulls(_measure(diffuse_ms, CUT_LAMBDA)).abs() < PULL_MAX).all()
    kept = _pulls(_measure(diffuse_ms, 0.0))
    assert (kept.abs() > BIAS_MIN_SIGMA).any(), kept  # the negative control


def test_only_baselines_within_the_range_are_used(diffuse_ms: Path) -> None:
    lo, hi = 1000.0, 6000.0
    centre = float(np.mean(band(N_CHAN)))
    with tables.table(str(diffuse_ms), ack=False) as t:
        uv = np.hypot(*t.getcol("UVW")[:, :2].T) * centre / SPEED_OF_LIGHT_M_S
        cross = t.getcol("ANTENNA1") != t.getcol("ANTENNA2")
    rows = int((cross & (uv >= lo) & (uv <= hi)).sum())
    assert 0 < rows < int(cross.sum())
    frame = _measure(diffuse_ms, lo, hi)
    assert (frame.n_vis == rows * N_CHAN * 2).all()  # rows x channels x 2 polarisations
