"""Catalog position errors: a source measured at a position dtheta from its own loses the flux
fraction 1 - <cos(2 pi uvw . dlmn / lambda)> over the baselines used (an independent sum over
the MS's UVW), and a cut at uv_max_lambda lessens it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from casacore import tables

from dsa110d.science.catalog import Catalog
from dsa110d.science.constants import SPEED_OF_LIGHT_M_S
from dsa110d.science.photometry.settings import PhotometrySettings
from dsa110d.science.photometry.stage import measure_block
from tests.helpers.testms import START_MJD_S, SkyModel, band, job_around, make_ms

PHASE_RA_DEG, DEC_DEG = 100.0, 30.0
N_CHAN = 32
OFFSETS_ARCSEC = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
ANGLES_DEG = np.array([0.0, 30.0, 100.0, 200.0, 290.0])
"""Direction of each catalog error, from north through east."""
TRUE = Catalog(("P",), np.array([PHASE_RA_DEG + 0.2]), np.array([DEC_DEG + 0.3]), np.array([3.0]))
"""One source (alone, so that what is measured is its own loss: in a joint fit the position
errors of its neighbours leave their sidelobes in its data as well)."""
LOSS_TOL = 0.003
"""The measured flux ratio against the predicted one (noise-free data; the gain's variation
over the chunk and the band is left out of the prediction)."""
UV_MAX_LAMBDA = 3000.0


def _listed(offset_arcsec: float, angle_deg: float) -> Catalog:
    """TRUE with its position moved by ``offset_arcsec`` towards ``angle_deg`` (N through E)."""
    rad = math.radians(offset_arcsec / 3600.0)
    d_dec = math.degrees(rad * math.cos(math.radians(angle_deg)))
    d_ra = math.degrees(rad * math.sin(math.radians(angle_deg))) / np.cos(np.radians(TRUE.dec_deg))
    return Catalog(TRUE.ids, TRUE.ra_deg + d_ra, TRUE.dec_deg + d_dec, TRUE.flux_jy)


LISTED = [_listed(o, a) for o, a in zip(OFFSETS_ARCSEC, ANGLES_DEG, strict=True)]


@pytest.fixture(scope="module")
def noiseless(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ms(
        tmp_path_factory.mktemp("positions") / "p.ms",
        SkyModel(TRUE.ra_deg, TRUE.dec_deg, TRUE.flux_jy), mid_time_mjd_s=START_MJD_S,
        phase_ra_deg=PHASE_RA_DEG, dec_deg=DEC_DEG, n_chan=N_CHAN, noise_jy=0.0,
    )  # fmt: skip


def _lmn(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg - PHASE_RA_DEG), np.radians(dec_deg)
    d0 = math.radians(DEC_DEG)
    return np.stack(
        [
            np.cos(dec) * np.sin(ra),
            np.sin(dec) * math.cos(d0) - np.cos(dec) * math.sin(d0) * np.cos(ra),
            np.sin(dec) * math.sin(d0) + np.cos(dec) * math.cos(d0) * np.cos(ra),
        ],
        axis=1,
    )


def predicted_ratio(ms: Path, lo: float, hi: float) -> np.ndarray:
    """<cos(2 pi f uvw . (lmn_true - lmn_listed) / c)> over the cross rows within [lo, hi]
    lambda at the band centre, and all channels, for each listed position."""
    freq = band(N_CHAN)
    with tables.table(str(ms), ack=False) as t:
        uvw = t.getcol("UVW")
        cross = t.getcol("ANTENNA1") != t.getcol("ANTENNA2")
    uv = np.hypot(uvw[:, 0], uvw[:, 1]) * float(np.mean(freq)) / SPEED_OF_LIGHT_M_S
    uvw = uvw[cross & (uv >= lo) & (uv <= hi)]
    listed = np.concatenate([_lmn(c.ra_deg, c.dec_deg) for c in LISTED])
    d = _lmn(TRUE.ra_deg, TRUE.dec_deg) - listed
    turns = (uvw @ d.T)[:, :, None] * freq[None, None, :] / SPEED_OF_LIGHT_M_S
    return np.asarray(np.cos(2 * np.pi * turns).mean(axis=(0, 2)))


def _measured(ms: Path, hi: float = math.inf) -> np.ndarray:
    """Flux at each listed position over flux at the true one (the same noise-free data: what
    the position error alone does)."""
    settings = PhotometrySettings(uv_max_lambda=hi, systematic_fraction=0.0)
    job = job_around(START_MJD_S)
    true = float(measure_block(job, [ms], TRUE, settings).flux_jy.iloc[0])
    return np.array([measure_block(job, [ms], c, settings).flux_jy.iloc[0] / true for c in LISTED])


def test_flux_loss_against_catalog_offset_is_the_decorrelation(noiseless: Path) -> None:
    measured = _measured(noiseless)
    expected = predicted_ratio(noiseless, 100.0, math.inf)
    assert np.allclose(measured, expected, atol=LOSS_TOL), (measured, expected)
    assert measured[0] == pytest.approx(1.0, abs=LOSS_TOL)
    assert 1 - measured[-1] > 5 * LOSS_TOL  # 4 arcsec costs flux on this 2.4 km array


def test_a_uv_max_cut_lessens_the_loss(noiseless: Path) -> None:
    measured = _measured(noiseless, UV_MAX_LAMBDA)
    expected = predicted_ratio(noiseless, 100.0, UV_MAX_LAMBDA)
    assert np.allclose(measured, expected, atol=LOSS_TOL)
    assert np.all(1 - measured[1:] < 1 - _measured(noiseless)[1:])


REFINED_LOSS_MAX = 0.002
"""With the position refined, what is left of the loss (the offset's estimate is good to a
small fraction of an arcsec on noise-free data)."""
REFINED_OFFSET_TOL_ARCSEC = 0.3


def test_position_refinement_recovers_the_flux_and_the_offset(noiseless: Path) -> None:
    settings = PhotometrySettings(systematic_fraction=0.0, refine_min_snr=10.0)
    job = job_around(START_MJD_S)
    true = float(measure_block(job, [noiseless], TRUE, settings).flux_jy.iloc[0])
    for offset, listed in zip(OFFSETS_ARCSEC[1:], LISTED[1:], strict=True):
        row = measure_block(job, [noiseless], listed, settings).iloc[0]
        assert abs(row.flux_jy / true - 1) < REFINED_LOSS_MAX
        assert abs(row.position_offset_arcsec - offset) < REFINED_OFFSET_TOL_ARCSEC
        assert row["flags"] == "position_refined"
