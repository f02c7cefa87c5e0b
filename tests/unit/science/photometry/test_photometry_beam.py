"""The beam model: a wrong one biases off-axis fluxes by the ratio of the models (the negative
control), the right one leaves none; each row carries the pointing, offset and gain used."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dsa110d.science.beam import AIRY, TAPERED, BeamModel, primary_beam
from dsa110d.science.catalog import Catalog
from dsa110d.science.constants import INTEGRATION_TIME_S
from dsa110d.science.photometry.settings import PhotometrySettings
from dsa110d.science.photometry.stage import measure_block
from tests.helpers.testms import (
    SIDEREAL_RATE_RAD_S,
    START_MJD_S,
    SkyModel,
    band,
    job_around,
    make_ms,
)

PHASE_RA_DEG, DEC_DEG = 100.0, 30.0
OFFSETS_DEG = (0.0, 1.5, -1.8)
"""Declination offsets of the three sources from the pointing (all transit at mid-chunk)."""
FLUX_JY = 5.0
NOISE_JY = 1.0
SKY = Catalog(
    ("ON", "OFF15", "OFF18"),
    np.full(3, PHASE_RA_DEG),
    DEC_DEG + np.array(OFFSETS_DEG),
    np.full(3, FLUX_JY),
)
RIGHT_BEAM_PULL_MAX = 4.0
"""With the right beam every flux is within this many (statistical) errors of the truth."""
WRONG_BEAM_RATIO_TOL = 0.02
"""With the wrong beam, measured / true is the ratio of the two models at transit (~0.94 at
1.5 deg, ~0.87 at 2 deg: the bias issue #19 quotes) to this (the chunk also sees the source
up to 0.5 deg from transit in RA, where the ratio is ~1 % lower still)."""
GAIN_TOL = 0.01
"""The effective gain a row reports against an independent sum over the chunk."""
MIN_BIAS_SIGMA = 20.0
"""...and that bias is many errors: no test of the right beam could miss it."""


def _settings(beam: BeamModel) -> PhotometrySettings:
    return PhotometrySettings(beam=beam, systematic_fraction=0.0)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same sky observed through each truth beam."""
    root = tmp_path_factory.mktemp("beam")
    sky = SkyModel(SKY.ra_deg, SKY.dec_deg, SKY.flux_jy)
    return {
        beam.kind: make_ms(
            root / f"{beam.kind}.ms",
            sky,
            mid_time_mjd_s=START_MJD_S,
            phase_ra_deg=PHASE_RA_DEG,
            dec_deg=DEC_DEG,
            noise_jy=NOISE_JY,
            seed=3,
            beam=beam,
        )
        for beam in (TAPERED, AIRY)
    }


def _measure(ms: Path, beam: BeamModel) -> pd.DataFrame:
    return measure_block(job_around(START_MJD_S), [ms], SKY, _settings(beam)).set_index("source_id")


@pytest.mark.parametrize("truth", [TAPERED, AIRY])
def test_the_right_beam_leaves_no_bias(observed: dict[str, Path], truth: BeamModel) -> None:
    frame = _measure(observed[truth.kind], truth)
    pulls = (frame.flux_jy - FLUX_JY) / frame.flux_err_jy
    assert (pulls.abs() < RIGHT_BEAM_PULL_MAX).all(), pulls


@pytest.mark.parametrize(("truth", "assumed"), [(AIRY, TAPERED), (TAPERED, AIRY)])
def test_a_wrong_beam_biases_off_axis_fluxes_by_the_model_ratio(
    observed: dict[str, Path], truth: BeamModel, assumed: BeamModel
) -> None:
    frame = _measure(observed[truth.kind], assumed)
    freq = band(64)
    for source_id, offset in zip(SKY.ids, OFFSETS_DEG, strict=True):
        # at the source's offset at transit (as the row gives it), the least-squares ratio
        # sum g_truth g_assumed / sum g_assumed^2 over the band
        theta = math.radians(frame.beam_offset_deg[source_id])
        g_truth = primary_beam(theta, freq, model=truth)
        g_assumed = primary_beam(theta, freq, model=assumed)
        ratio = float(g_truth @ g_assumed / (g_assumed @ g_assumed))
        measured = frame.flux_jy[source_id] / FLUX_JY
        assert abs(measured - ratio) < WRONG_BEAM_RATIO_TOL, (source_id, measured, ratio)
        if offset != 0.0:
            bias = abs(frame.flux_jy[source_id] - FLUX_JY) / frame.flux_err_jy[source_id]
            assert bias > MIN_BIAS_SIGMA


def test_rows_carry_the_pointing_the_offset_and_the_gain_used(observed: dict[str, Path]) -> None:
    frame = _measure(observed["tapered"], TAPERED)
    assert np.allclose(frame.pointing_dec_deg, DEC_DEG, atol=1e-6)
    # the smallest offset during the chunk is at transit: |dec offset| (the pointing is the
    # meridian at the phase centre's ICRS dec, the gain the source's apparent position: the
    # two differ by precession since J2000, 0.03 deg here)
    assert np.allclose(frame.beam_offset_deg, np.abs(OFFSETS_DEG), atol=0.05)
    assert (frame.beam_model == "tapered").all()
    # the effective gain sum g^2 / sum g over the chunk's 24 integrations and 64 channels, the
    # offset at each from the transit offset and the hour angle from the row's transit time
    # (small angles, flat sky)
    times = START_MJD_S + INTEGRATION_TIME_S * (np.arange(24) - 11.5)
    since_transit = times[None, :] - frame.transit_mjd.to_numpy()[:, None] * 86400.0
    along_ra = SIDEREAL_RATE_RAD_S * since_transit * math.cos(math.radians(DEC_DEG))
    offset = np.hypot(np.radians(frame.beam_offset_deg.to_numpy())[:, None], along_ra)
    g = primary_beam(offset[:, :, None], band(64)[None, None, :])
    expected = (g * g).sum(axis=(1, 2)) / g.sum(axis=(1, 2))
    assert np.allclose(frame.beam_gain, expected, atol=GAIN_TOL)
    assert (frame.transit_mjd - START_MJD_S / 86400.0).abs().max() * 86400.0 < 120.0
