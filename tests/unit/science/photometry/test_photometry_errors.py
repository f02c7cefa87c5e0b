"""Errors that mean what they say: across noise realisations of the same sky the pulls
(measured - true) / error scatter with unit standard deviation; a systematic fraction adds in
quadrature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dsa110d.science.catalog import Catalog
from dsa110d.science.photometry import solve
from dsa110d.science.photometry.settings import PhotometrySettings
from dsa110d.science.photometry.stage import measure_block
from tests.helpers.testms import (
    START_MJD_S,
    SkyModel,
    job_around,
    make_ms,
    noise_realisation,
)

PHASE_RA_DEG, DEC_DEG = 100.0, 30.0
SEEDS = 48
"""Noise realisations; with N_SOURCES each, ~380 pulls: their std is known to ~4 %."""
RNG = np.random.default_rng(19)
N_SOURCES = 8
SKY = Catalog(
    tuple(f"E{i}" for i in range(N_SOURCES)),
    PHASE_RA_DEG + RNG.uniform(-0.4, 0.4, N_SOURCES),
    DEC_DEG + np.linspace(-1.8, 1.8, N_SOURCES),  # beam gains from ~0.3 to ~1
    RNG.uniform(0.3, 1.5, N_SOURCES),
)
NOISE_JY = 1.0
"""Per visibility and part, on the small array below: SNR ~5-60 across the sources."""
PULL_STD_TOL = 0.10
"""|std(pull) - 1| must be below this (issue #19: within 10 % of 1)."""
OLD_RULE_MIN_EXCESS = 0.03
"""On the same data, the old rule (the larger of thermal and jackknife) gives pulls whose std is
smaller than the new rule's by more than this (0.93 against 0.98 here: errors 8 % too large on
this array; issue #19 measured 0-35 % on others)."""
SYSTEMATIC = 0.05


@pytest.fixture(scope="module")
def realisations(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """SEEDS noise realisations of one noiseless chunk of SKY (n_ant 16, 16 channels)."""
    root = tmp_path_factory.mktemp("pulls")
    model = make_ms(
        root / "model.ms", SkyModel(SKY.ra_deg, SKY.dec_deg, SKY.flux_jy),
        mid_time_mjd_s=START_MJD_S, phase_ra_deg=PHASE_RA_DEG, dec_deg=DEC_DEG,
        n_ant=16, n_chan=16, n_times=12, noise_jy=0.0,
    )  # fmt: skip
    return [noise_realisation(model, root / f"s{i}.ms", NOISE_JY, 1000 + i) for i in range(SEEDS)]


def _pulls(paths: list[Path]) -> np.ndarray:
    settings = PhotometrySettings(systematic_fraction=0.0)
    truth = pd.Series(SKY.flux_jy, index=list(SKY.ids))
    pulls = []
    for ms in paths:
        frame = measure_block(job_around(START_MJD_S), [ms], SKY, settings)
        frame = frame.set_index("source_id")
        pulls.append(((frame.flux_jy - truth[frame.index]) / frame.flux_err_jy).to_numpy())
    return np.concatenate(pulls)


@pytest.fixture(scope="module")
def pulls(realisations: list[Path]) -> np.ndarray:
    return _pulls(realisations)


def test_pulls_have_unit_scatter_across_noise_realisations(pulls: np.ndarray) -> None:
    assert pulls.size >= SEEDS * (N_SOURCES - 1)
    assert abs(float(np.std(pulls)) - 1.0) < PULL_STD_TOL, np.std(pulls)
    assert abs(float(np.mean(pulls))) < 3.0 / np.sqrt(pulls.size)  # and no bias


def test_the_larger_of_thermal_and_jackknife_overstates_the_errors(
    realisations: list[Path], pulls: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The negative control: on the same data the rule before issue #19 (the larger of the two)
    makes the errors larger than the scatter, by more than OLD_RULE_MIN_EXCESS."""
    new = float(np.std(pulls))
    monkeypatch.setattr(solve, "combined_error", np.fmax)
    old = float(np.std(_pulls(realisations)))
    assert old < new - OLD_RULE_MIN_EXCESS, (old, new)


def test_the_systematic_fraction_adds_in_quadrature(realisations: list[Path]) -> None:
    job = job_around(START_MJD_S)
    bare = measure_block(job, realisations[:1], SKY, PhotometrySettings(systematic_fraction=0.0))
    floor = measure_block(
        job, realisations[:1], SKY, PhotometrySettings(systematic_fraction=SYSTEMATIC)
    )
    assert np.allclose(floor.flux_jy, bare.flux_jy)
    expected = np.hypot(bare.flux_err_jy, SYSTEMATIC * bare.flux_jy.abs())
    assert np.allclose(floor.flux_err_jy, expected, rtol=1e-12)
