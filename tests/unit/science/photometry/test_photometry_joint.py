"""The joint fit of the in-beam sources and the partial_transit flag, on synthetic MSs.

A source's forced flux measured alone carries the sidelobes of the other catalog sources in the
beam; fitting them together removes that bias, so the errors can be thermal and still honest
(the scatter of repeated measurements matches them). A block far from a source's transit is
flagged partial_transit; one near it is not, even when the transit itself falls just outside.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dsa110d.science.catalog import Catalog
from dsa110d.science.constants import INTEGRATION_TIME_S
from dsa110d.science.photometry import accumulation as photometry
from dsa110d.science.photometry.geometry import (
    SIDEREAL_RATE_RAD_S,
    ChannelBlocks,
    apparent_positions,
)
from dsa110d.science.photometry.pairs import add_pairs
from dsa110d.science.photometry.settings import PhotometrySettings
from dsa110d.science.photometry.solve import JOINT_FIT_MAX_CORRELATION
from dsa110d.science.photometry.stage import measure_block
from dsa110d.science.photometry.sums import JACKKNIFE_GROUPS, Sums, integrations
from tests.helpers.testms import (
    START_MJD_S,
    START_RA_DEG,
    SimBlock,
    SkyModel,
    job_around,
    make_ms,
)

JOB = job_around(START_MJD_S)
STATISTICAL = PhotometrySettings(systematic_fraction=0.0)
"""Errors as the data give them (the systematic floor is tested on its own)."""
PHASE_RA_DEG, DEC_DEG = 100.0, 30.0
NOISE_JY = 1.0
"""Per visibility and part: the thermal error of a few-Jy source is then ~1 mJy."""

# A bright source and a faint one ~80 arcsec away (a few synthesized beams of the 2.4 km
# array), plus three more in the beam: the confusion a real field has.
SKY = Catalog(
    ("BRIGHT", "FAINT", "C1", "C2", "C3"),
    np.array([PHASE_RA_DEG, PHASE_RA_DEG + 0.02, 99.5, 100.6, 100.3]),
    np.array([DEC_DEG, DEC_DEG + 0.01, 30.6, 29.5, 29.2]),
    np.array([10.0, 0.5, 3.0, 4.0, 2.0]),
)
SIDELOBE_BIAS_MIN_SIGMA = 50.0
"""Measured alone, the faint source is off by more than this many of its joint errors."""
PULL_MAX = 4.0
"""Jointly, every source is within this many errors of its injected flux."""
ERROR_MAX_JY = 0.005
"""...and its error is thermal-level (~1 mJy), not the ~0.1-0.5 Jy of confusion."""
REALISATIONS = 8
"""Noise realisations of the same sky and uv coverage (like the same LST on repeated days)."""
PULL_STD_TOL = 0.35
"""|std of (flux - mean) / error - 1| over all sources and realisations (48 values: the std's
own scatter is ~0.1)."""


def _ms(root: Path, seed: int, sky: Catalog = SKY) -> Path:
    return make_ms(
        root / f"seed{seed}.ms", SkyModel(sky.ra_deg, sky.dec_deg, sky.flux_jy),
        mid_time_mjd_s=START_MJD_S, phase_ra_deg=PHASE_RA_DEG, dec_deg=DEC_DEG,
        noise_jy=NOISE_JY, seed=seed,
    )  # fmt: skip


@pytest.fixture(scope="module")
def realisations(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("joint")
    return [_ms(root, seed) for seed in range(REALISATIONS)]


def _measure(paths: list[Path], catalog: Catalog) -> pd.DataFrame:
    return measure_block(JOB, paths, catalog, STATISTICAL).set_index("source_id")


def _only(catalog: Catalog, source_id: str) -> Catalog:
    i = catalog.ids.index(source_id)
    sl = slice(i, i + 1)
    return Catalog((source_id,), catalog.ra_deg[sl], catalog.dec_deg[sl], catalog.flux_jy[sl])


def test_joint_fit_removes_the_sidelobe_bias_of_a_neighbour(realisations: list[Path]) -> None:
    joint = _measure(realisations[:1], SKY)
    alone = measure_block(JOB, realisations[:1], _only(SKY, "FAINT"), STATISTICAL).set_index(
        "source_id"
    )
    truth = pd.Series(SKY.flux_jy, index=list(SKY.ids))
    error = joint.flux_err_jy
    assert (error < ERROR_MAX_JY).all()
    assert (abs(joint.flux_jy - truth) / error < PULL_MAX).all()
    bias = abs(alone.flux_jy["FAINT"] - truth["FAINT"])
    assert bias > SIDELOBE_BIAS_MIN_SIGMA * error["FAINT"]
    assert (joint["flags"] == "").all()


def test_errors_match_the_scatter_of_repeated_measurements(realisations: list[Path]) -> None:
    frames = [_measure([ms], SKY) for ms in realisations]
    flux = pd.concat([f.flux_jy for f in frames], axis=1).to_numpy()
    error = pd.concat([f.flux_err_jy for f in frames], axis=1).to_numpy()
    residual = flux - flux.mean(axis=1, keepdims=True)
    normalised = residual / error * math.sqrt(REALISATIONS / (REALISATIONS - 1))
    assert abs(float(normalised.std()) - 1.0) < PULL_STD_TOL


def test_unresolved_pair_is_flagged_blended_not_fitted(tmp_path: Path) -> None:
    """Two sources 2 arcsec apart (well inside a synthesized beam) cannot be separated: the
    fainter is measured alone and flagged; the fit does not blow up."""
    sky = Catalog(
        ("A", "B"),
        np.array([PHASE_RA_DEG, PHASE_RA_DEG + 0.0005]),
        np.array([DEC_DEG, DEC_DEG]),
        np.array([3.0, 1.0]),
    )
    frame = _measure([_ms(tmp_path, 0, sky)], sky)
    assert JOINT_FIT_MAX_CORRELATION < 1.0
    assert (frame["flags"] == "blended").all()
    assert np.isfinite(frame.flux_jy).all()
    assert abs(frame.flux_jy["B"] - 4.0) < 0.1  # both sources' flux: what "blended" means


# --- partial_transit ---------------------------------------------------------------------------
NEAR_S = 60.0
"""Transit at most this long before or after the block's nearest integration (~0.2 deg of
hour angle: > 95% of the transit gain): a usable block, never flagged."""
FAR_S = 300.0
"""Transit at least this long away (~1.1 deg: < 70% of the transit gain): always flagged."""


def _transit_distance_s(sim: SimBlock, chunk: int) -> pd.Series:
    """Seconds from each source's transit (pointing RA = its apparent RA) to the nearest
    integration of one chunk (0 when the transit is inside it)."""
    from tests.helpers.testms import CHUNK_SEC, POINTING_DEC_DEG, START_MJD_S

    app_ra, _ = apparent_positions(
        np.radians(sim.catalog.ra_deg), np.radians(sim.catalog.dec_deg), START_MJD_S
    )
    # The first chunk's phase centre (ICRS) is the pointing there, in apparent coordinates.
    point_ra, _ = apparent_positions(
        np.radians([START_RA_DEG]), np.radians([POINTING_DEC_DEG]), START_MJD_S
    )
    transit = START_MJD_S + (app_ra - point_ra[0]) / SIDEREAL_RATE_RAD_S
    mid = START_MJD_S + chunk * CHUNK_SEC
    half = (CHUNK_SEC - INTEGRATION_TIME_S) / 2
    distance = np.clip(np.abs(transit - mid) - half, 0.0, None)
    return pd.Series(distance, index=list(sim.catalog.ids))


def test_partial_transit_flags_exactly_the_blocks_far_from_transit(
    sim_block_master: SimBlock,
) -> None:
    near_outside = far = inside = 0
    for chunk, ms in enumerate(sim_block_master.ms_paths):
        frame = measure_block(JOB, [ms], sim_block_master.catalog, STATISTICAL).set_index(
            "source_id"
        )
        distance = _transit_distance_s(sim_block_master, chunk)[frame.index]
        flagged = frame["flags"].str.contains("partial_transit")
        assert not flagged[distance <= NEAR_S].any()
        assert flagged[distance >= FAR_S].all()
        inside += int((distance == 0).sum())
        near_outside += int(((distance > 0) & (distance <= NEAR_S)).sum())
        far += int((distance >= FAR_S).sum())
    # The cases the old definition (peak on the block's first or last integration) got wrong
    # are there, and so are the ones it must flag.
    assert inside >= 5 and near_outside >= 3 and far >= 5


# --- The pair terms' factorisation --------------------------------------------------------------
PAIR_REL_TOL = 1e-4
"""Pair sums by block x Dirichlet kernel vs the direct channel sum (float32 phasors)."""


@pytest.mark.parametrize("partly_flagged", [False, True])
def test_pair_terms_equal_the_direct_channel_sum(partly_flagged: bool) -> None:
    """A_jk = sum over rows, channels of w g_j g_k exp(2 pi i f (d_k - d_j)), real part into
    the pair sums per baseline group and imaginary part returned per row, whether the blocks
    are evenly weighted (Dirichlet path) or partly flagged (channel-by-channel path)."""
    rng = np.random.default_rng(3)
    n_rows, n_src = 40, 4
    freq = np.linspace(1498.75e6, 1311.25e6, 768)
    channels = ChannelBlocks.of(freq)
    assert channels.split > 1
    delays = rng.uniform(-4e-7, 4e-7, (n_rows, n_src))
    gains = rng.uniform(0.2, 1.0, (n_src, channels.centre_hz.size)).astype(np.float32)
    weight = np.full((n_rows, freq.size), 2.0, dtype=np.float32)
    if partly_flagged:
        weight[::3, 40:56] = 0.0  # half a block
        weight[1::4, 100:101] = 1.0  # one polarisation of one channel
    group = rng.integers(0, JACKKNIFE_GROUPS, n_rows)
    (it,) = integrations(np.zeros(n_rows, dtype=np.intp), group, weight, channels.split)
    assert it.uneven.any() == partly_flagged
    sums = Sums(n_src)
    coupling = add_pairs(sums, np.arange(n_src), delays, gains, it, channels)

    g = np.repeat(gains, channels.split, axis=1)  # (sources, channels)
    phase = np.exp(2j * np.pi * (delays[:, None, :] - delays[:, :, None])[..., None] * freq)
    direct = np.einsum("rc,jc,kc,rjkc->rjk", weight, g, g, phase)
    per_group = np.stack([direct[group == k].real.sum(axis=0) for k in range(JACKKNIFE_GROUPS)])
    scale = np.abs(direct).max()
    assert np.abs(sums.pair[:n_src, :n_src].transpose(2, 0, 1) - per_group).max() < (
        PAIR_REL_TOL * scale
    )
    assert np.abs(coupling - direct.imag).max() < PAIR_REL_TOL * scale


def test_sources_beyond_the_cap_are_measured_alone(
    realisations: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for two, the brightest two (by apparent flux) are fitted jointly and the rest
    are measured as if alone: every source is still reported, the faint neighbour again with
    its single-source bias."""
    monkeypatch.setattr(photometry, "JOINT_FIT_MAX_SOURCES", 2)
    capped = _measure(realisations[:1], SKY)
    alone = measure_block(JOB, realisations[:1], _only(SKY, "FAINT"), STATISTICAL).set_index(
        "source_id"
    )
    assert set(capped.index) == set(SKY.ids)
    assert np.isfinite(capped.flux_jy).all() and np.isfinite(capped.flux_err_jy).all()
    assert capped.flux_jy["FAINT"] == pytest.approx(alone.flux_jy["FAINT"], rel=1e-6)
