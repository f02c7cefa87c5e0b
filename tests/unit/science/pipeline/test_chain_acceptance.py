"""Science acceptance of the whole chain (issue #7): simulator -> converter -> flag ->
photometry, on simulated sets at small scale with a catalog of known fluxes.

For sources at SNR >= 20 the measured flux is within 3 sigma of the injected flux (the
truth file's flux for the sets) for >= 95% of them, with mean bias < 2%; sources outside the
beam are not reported; an RFI burst written into one MS is flagged by the flag stage and
does not bias the fluxes. The sets are simulated and converted once per session.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import FK5, SkyCoord
from astropy.time import Time
from casacore import tables

from dsa110d.config import ProcessorConfig
from dsa110d.science.catalog import Catalog, write_catalog
from dsa110d.science.constants import FILE_DURATION_S, SIDEREAL_DAY_S
from dsa110d.science.conversion.convert import convert_set
from dsa110d.science.photometry.settings import PhotometrySettings
from dsa110d.science.photometry.stage import measure_block, photometry_path
from dsa110d.science.pipeline.blocks import BlockPlan
from dsa110d.science.pipeline.stage import BlockJob
from dsa110d.science.pipeline.stages import build_pipeline, run_pipeline
from dsa110d.science.simulation.catalog_errors import offsets_arcsec, with_position_errors
from dsa110d.science.simulation.simulate import SimulationSpec, simulate
from dsa110d.science.simulation.visibilities import lst_for
from tests.unit.science.conftest import config_under

# --- The acceptance criteria (issue #7) ------------------------------------------------------
SNR_MIN = 20.0
"""Sources at or above this measured flux / error are held to the criteria."""
PULL_MAX = 3.0
"""|measured - injected| / error must be within this many sigma..."""
FRACTION_WITHIN = 0.95
"""...for at least this fraction of the bright sources."""
BIAS_MAX = 0.02
"""|mean(measured / injected - 1)| over the bright sources must stay below this."""
MIN_BRIGHT_SOURCES = 8
"""The criteria mean little on fewer bright sources than this."""

# --- The simulated observation ---------------------------------------------------------------
START = datetime(2026, 3, 20, 8, 0, 0, tzinfo=UTC)
"""First set's start (inside the bundled IERS tables' range)."""
N_SETS = 8
"""Consecutive ~309 s sets (~41 min): ~10 deg of RA drifts through the ~2.7 deg beam."""
POINTING_DEC_DEG = 45.0
"""Off the zenith (latitude 37.2 deg), where a wrong fringe-stopping centre shows."""
N_BRIGHT = 10
BRIGHT_FLUX_RANGE_JY = (10.0, 30.0)
"""Sources held to the criteria, transiting at evenly spaced times (jittered). At small
scale (24 antennas) the error is set by the sidelobes of the other sources in the beam
(confusion, ~3% of their beam-weighted flux), not by the thermal noise (~1 mJy): the bright
sources are spread out so that only a few share the beam at once, as the real sky's are."""
N_FAINT = 10
FAINT_FLUX_RANGE_JY = (0.3, 2.0)
"""Fainter sources at random transit times: measured and reported, mostly below SNR 20."""
IN_BEAM_DEC_HALFWIDTH_DEG = 0.6
"""In-beam sources lie within this of the pointing declination."""
TRANSIT_MARGIN_S = 60.0
"""Sources transit at least this long after the first and before the last integration."""
OUT_OF_BEAM_DEC_OFFSET_DEG = 8.0
"""Sources this far from the pointing never enter the beam..."""
OUT_OF_BEAM_RA_OFFSET_DEG = 40.0
"""...nor those this far ahead in RA of the block."""
CATALOG_SEED = 7

# --- The RFI burst ---------------------------------------------------------------------------
RFI_JY = 5.0e4
"""Amplitude written into DATA for the burst (~100x the per-visibility noise)."""
RFI_INTEGRATIONS = (2, 3)
"""Integrations of the middle MS hit by the burst (of 6 at small scale)."""
RFI_CHANNELS = slice(40, 56)
"""Channels hit by the burst."""
RFI_SHIFT_MAX_SIGMA = 0.5
"""With the burst flagged, no bright source may move by more than this many sigma."""
UNFLAGGED_RFI_MIN_SHIFT_SIGMA = 5.0
"""Left unflagged, the burst does move some source by more than this: the check has teeth."""

OUT_OF_BEAM_IDS = ("OUT_DEC", "OUT_RA")


@dataclass(frozen=True)
class Chain:
    """The session's simulated and converted block."""

    ms_paths: list[Path]
    catalog_path: Path
    catalog: Catalog
    injected_jy: dict[str, float]
    job: BlockJob


def _lst_deg(moment: datetime) -> float:
    return math.degrees(float(lst_for(np.array([Time(moment).jd]))[0]))


def _catalog(rng: np.random.Generator) -> Catalog:
    """Bright and faint sources transiting inside the block near the pointing dec, plus two
    that never enter the beam."""
    first_s, last_s = TRANSIT_MARGIN_S, N_SETS * FILE_DURATION_S - TRANSIT_MARGIN_S
    spacing = (last_s - first_s) / N_BRIGHT
    bright_s = first_s + spacing * (np.arange(N_BRIGHT) + rng.uniform(0.25, 0.75, N_BRIGHT))
    transit_s = np.r_[bright_s, rng.uniform(first_s, last_s, N_FAINT)]
    n = N_BRIGHT + N_FAINT
    lst0 = _lst_deg(START)
    app_ra = lst0 + transit_s * 360.0 / SIDEREAL_DAY_S  # apparent RA on the meridian then
    app_dec = POINTING_DEC_DEG + rng.uniform(-1, 1, n) * IN_BEAM_DEC_HALFWIDTH_DEG
    epoch = Time(START) + (N_SETS * FILE_DURATION_S / 2) * u.s
    icrs = SkyCoord(app_ra * u.deg, app_dec * u.deg, frame=FK5(equinox=epoch)).icrs
    flux = np.r_[_log_uniform(rng, BRIGHT_FLUX_RANGE_JY, N_BRIGHT),
                 _log_uniform(rng, FAINT_FLUX_RANGE_JY, N_FAINT)]  # fmt: skip
    ids = tuple(f"S{i:03d}" for i in range(n)) + OUT_OF_BEAM_IDS
    ra = np.r_[icrs.ra.deg, lst0 + 2.0, lst0 + OUT_OF_BEAM_RA_OFFSET_DEG] % 360.0
    dec = np.r_[icrs.dec.deg, POINTING_DEC_DEG + OUT_OF_BEAM_DEC_OFFSET_DEG, POINTING_DEC_DEG]
    return Catalog(ids, ra, dec, np.r_[flux, 10.0, 10.0])


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    low, high = np.log(bounds)
    return np.exp(rng.uniform(low, high, n))


def _sets(files: list[Path], truth: dict[str, object]) -> list[list[Path]]:
    by_name = {p.name: p for p in files}
    return [[by_name[n] for n in s["files"]] for s in truth["sets"]]  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    root = tmp_path_factory.mktemp("chain")
    catalog = _catalog(np.random.default_rng(CATALOG_SEED))
    catalog_path = root / "catalog.csv"
    write_catalog(catalog_path, catalog)
    spec = SimulationSpec(
        out=root / "incoming", start=START, sets=N_SETS, scale="small", seed=3,
        catalog=catalog_path, variable_fraction=0.0, dec_deg=POINTING_DEC_DEG,
    )  # fmt: skip
    result = simulate(spec)
    assert result.truth_path is not None
    truth = json.loads(result.truth_path.read_text())
    ms_paths = [
        convert_set(files, root / "ms" / f"{s['set_id']}.ms").ms
        for files, s in zip(_sets(result.files, truth), truth["sets"], strict=True)
    ]
    # The injected flux is the truth file's per-set flux (steady sources: one value).
    injected = {}
    for source in truth["sources"]:
        per_set = np.array(source["flux_per_set_jy"])
        assert np.ptp(per_set) == 0.0
        injected[source["id"]] = float(per_set[0])
    plan = BlockPlan.from_config(ProcessorConfig())
    mid_s = START.timestamp() + N_SETS * FILE_DURATION_S / 2  # Unix s, as the block grid
    job = BlockJob(plan.block(int(mid_s) // 3600))
    return Chain(ms_paths, catalog_path, catalog, injected, job)


def _copy(chain: Chain, dest: Path) -> list[Path]:
    dest.mkdir()
    return [Path(shutil.copytree(p, dest / p.name)) for p in chain.ms_paths]


def _run_block(chain: Chain, ms_paths: list[Path], tmp_path: Path) -> pd.DataFrame:
    """The configured pipeline (flag, photometry) on the block; its photometry table."""
    config = config_under(tmp_path, chain.catalog_path)
    assert [name for name, _ in build_pipeline(config)] == ["flag", "photometry"]
    scratch = tmp_path / "scratch"
    run_pipeline(build_pipeline(config), chain.job, ms_paths, config, scratch)
    return pd.read_parquet(photometry_path(config, chain.job.block_id))


def _bright(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame.flux_jy / frame.flux_err_jy >= SNR_MIN]


def _accept(frame: pd.DataFrame, injected: dict[str, float]) -> tuple[float, float]:
    """(fraction within PULL_MAX sigma, mean bias) over the bright sources."""
    bright = _bright(frame)
    assert len(bright) >= MIN_BRIGHT_SOURCES, f"only {len(bright)} sources at SNR >= {SNR_MIN}"
    true = bright.source_id.map(injected).to_numpy(dtype=float)
    measured, error = bright.flux_jy.to_numpy(), bright.flux_err_jy.to_numpy()
    within = float(np.mean(np.abs(measured - true) / error <= PULL_MAX))
    return within, float(np.mean(measured / true - 1.0))


@pytest.mark.timeout(180)
def test_bright_sources_are_measured_at_their_injected_flux(chain: Chain, tmp_path: Path) -> None:
    frame = _run_block(chain, _copy(chain, tmp_path / "ms"), tmp_path)
    within, bias = _accept(frame, chain.injected_jy)
    assert within >= FRACTION_WITHIN
    assert abs(bias) < BIAS_MAX


@pytest.mark.timeout(180)
def test_sources_outside_the_beam_are_not_reported(chain: Chain, tmp_path: Path) -> None:
    frame = measure_block(chain.job, chain.ms_paths, chain.catalog)
    reported = set(frame.source_id)
    assert reported.isdisjoint(OUT_OF_BEAM_IDS)
    # Every source that transits within IN_BEAM_DEC_HALFWIDTH_DEG of the pointing is.
    assert reported == {f"S{i:03d}" for i in range(N_BRIGHT + N_FAINT)}


CATALOG_ERROR_ARCSEC = 1.2
"""Gaussian sigma per coordinate of the catalog's position errors: offsets of 1-2 arcsec."""
REFINE_MIN_SNR = 30.0


@pytest.mark.timeout(300)
def test_catalog_position_errors_of_1_to_2_arcsec_with_the_bright_positions_refined(
    chain: Chain,
) -> None:
    """The simulated sets measured at catalog positions 1-2 arcsec off (issue #19 item 5).
    On this 24-antenna array the sidelobes of a mislocated bright source that its model leaves
    behind shift a faint neighbour (S014, 0.55 Jy, by +10 %: 3.6 sigma, the negative control);
    with the bright sources' positions refined from their data the criteria hold again."""
    listed = with_position_errors(chain.catalog, CATALOG_ERROR_ARCSEC, np.random.default_rng(19))
    in_beam = slice(0, N_BRIGHT + N_FAINT)
    assert 1.0 <= float(np.median(offsets_arcsec(chain.catalog, listed)[in_beam])) <= 2.0
    plain = measure_block(chain.job, chain.ms_paths, listed)
    bright = _bright(plain)
    true = bright.source_id.map(chain.injected_jy).to_numpy(dtype=float)
    assert (np.abs(bright.flux_jy - true) / bright.flux_err_jy).max() > PULL_MAX
    refined = measure_block(
        chain.job, chain.ms_paths, listed, PhotometrySettings(refine_min_snr=REFINE_MIN_SNR)
    )
    within, bias = _accept(refined, chain.injected_jy)
    assert within >= FRACTION_WITHIN
    assert abs(bias) < BIAS_MAX
    assert refined["flags"].str.contains("position_refined").any()
    assert not refined["flags"].str.contains("transit_elsewhere").any()


def _inject_burst(ms: Path) -> None:
    """Write RFI_JY into DATA for RFI_INTEGRATIONS and RFI_CHANNELS of every baseline."""
    with tables.table(str(ms), readonly=False, ack=False) as t:
        times = t.getcol("TIME")
        hit = np.flatnonzero(np.isin(times, np.unique(times)[list(RFI_INTEGRATIONS)]))
        data = t.getcol("DATA")
        data[hit, RFI_CHANNELS, :] = RFI_JY
        t.putcol("DATA", data)


def _flagged_burst(ms: Path) -> bool:
    with tables.table(str(ms), ack=False) as t:
        times, flags = t.getcol("TIME"), t.getcol("FLAG")
        cross = t.getcol("ANTENNA1") != t.getcol("ANTENNA2")
    hit = np.isin(times, np.unique(times)[list(RFI_INTEGRATIONS)]) & cross
    return bool(flags[hit][:, RFI_CHANNELS].all())


def _max_shift_sigma(a: pd.DataFrame, b: pd.DataFrame) -> float:
    merged = a.merge(b, on="source_id", suffixes=("_a", "_b"))
    merged = merged[merged.flux_jy_a / merged.flux_err_jy_a >= SNR_MIN]
    assert len(merged) >= MIN_BRIGHT_SOURCES
    return float((np.abs(merged.flux_jy_b - merged.flux_jy_a) / merged.flux_err_jy_a).max())


@pytest.mark.timeout(180)
def test_a_flagged_rfi_burst_does_not_bias_the_fluxes(chain: Chain, tmp_path: Path) -> None:
    clean = _run_block(chain, _copy(chain, tmp_path / "clean"), tmp_path / "a")
    burst = _copy(chain, tmp_path / "burst")
    middle = burst[len(burst) // 2]
    _inject_burst(middle)
    unflagged = measure_block(chain.job, burst, chain.catalog)
    assert _max_shift_sigma(clean, unflagged) > UNFLAGGED_RFI_MIN_SHIFT_SIGMA

    frame = _run_block(chain, burst, tmp_path / "b")
    assert _flagged_burst(middle)
    assert _max_shift_sigma(clean, frame) < RFI_SHIFT_MAX_SIGMA
    within, bias = _accept(frame, chain.injected_jy)
    assert within >= FRACTION_WITHIN
    assert abs(bias) < BIAS_MAX
