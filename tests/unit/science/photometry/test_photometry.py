"""Forced photometry on synthetic MSs of known sources: accuracy, beam, RFI, output file."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.time import Time
from casacore import tables

from dsa110d.config import Config, ProcessorConfig
from dsa110d.science.catalog import Catalog, write_catalog
from dsa110d.science.constants import OVRO_LAT_DEG, UNIX_EPOCH_MJD_S
from dsa110d.science.photometry.geometry import ChannelBlocks, phasors
from dsa110d.science.photometry.stage import (
    SCHEMA,
    measure_block,
    photometry_path,
    photometry_stage,
)
from dsa110d.science.pipeline.blocks import BlockPlan
from dsa110d.science.pipeline.flagging import flag_ms
from dsa110d.science.pipeline.stage import BlockJob
from dsa110d.science.simulation.layout import SCALES
from dsa110d.science.simulation.simulate import SimulationSpec, simulate
from dsa110d.science.simulation.visibilities import lst_for
from tests.helpers.reference import icrs_of_apparent_meridian, pyuvdata_convert
from tests.helpers.testms import START_MJD_S, SimBlock

SNR_MIN = 20.0
PULL_MAX = 3.0
FRACTION_WITHIN = 0.95
BIAS_MAX = 0.02
RFI_JY = 2000.0

PLAN = BlockPlan.from_config(ProcessorConfig())
JOB = BlockJob(PLAN.block(int(START_MJD_S - UNIX_EPOCH_MJD_S) // 3600), version=2)


def _compare(frame: pd.DataFrame, sim: SimBlock) -> tuple[float, float]:
    truth = dict(zip(sim.catalog.ids, sim.catalog.flux_jy, strict=True))
    bright = frame[frame.flux_jy / frame.flux_err_jy >= SNR_MIN]
    true = bright.source_id.map(truth).to_numpy(dtype=float)
    pulls = (bright.flux_jy.to_numpy() - true) / bright.flux_err_jy.to_numpy()
    within = float(np.mean(np.abs(pulls) <= PULL_MAX))
    bias = float(np.mean(bright.flux_jy.to_numpy() / true - 1))
    assert len(bright) >= 10
    return within, bias


def test_fluxes_match_the_injected_ones_within_errors(sim_block: SimBlock) -> None:
    frame = measure_block(JOB, sim_block.ms_paths, sim_block.catalog)
    within, bias = _compare(frame, sim_block)
    assert within >= FRACTION_WITHIN
    assert abs(bias) < BIAS_MAX


def test_sources_outside_the_beam_are_not_reported(sim_block: SimBlock) -> None:
    frame = measure_block(JOB, sim_block.ms_paths, sim_block.catalog)
    reported = set(frame.source_id)
    assert not sim_block.outside_ids & reported
    assert len(reported) >= len(sim_block.catalog) - len(sim_block.outside_ids) - 2


def _inject_rfi(path: Path) -> None:
    with tables.table(str(path), readonly=False, ack=False) as ms:
        data = ms.getcol("DATA")
        times = np.unique(ms.getcol("TIME"))
        burst = np.isin(ms.getcol("TIME"), times[10:12])
        data[burst, 20:28, :] += RFI_JY
        ms.putcol("DATA", data)


def test_a_flagged_rfi_burst_does_not_bias_the_fluxes(sim_block: SimBlock) -> None:
    for path in sim_block.ms_paths[1:4]:
        _inject_rfi(path)
    unflagged = measure_block(JOB, sim_block.ms_paths, sim_block.catalog)
    truth = dict(zip(sim_block.catalog.ids, sim_block.catalog.flux_jy, strict=True))
    raw_error = unflagged.flux_jy / unflagged.source_id.map(truth).astype(float) - 1
    assert raw_error.abs().max() > 10 * BIAS_MAX  # the burst does hurt when left in
    counts = [flag_ms(path) for path in sim_block.ms_paths]
    assert all(c["outliers"] > 0 for c in counts[1:4])
    within, bias = _compare(measure_block(JOB, sim_block.ms_paths, sim_block.catalog), sim_block)
    assert within >= FRACTION_WITHIN
    assert abs(bias) < BIAS_MAX


def test_factored_phasors_equal_direct_exponentials() -> None:
    freq = np.linspace(1498.75e6, 1311.25e6, 768)
    delay = np.random.default_rng(0).uniform(-1e-5, 1e-5, 50)
    direct = np.exp(2j * np.pi * delay[:, None] * freq[None, :])
    assert np.max(np.abs(phasors(delay, freq) - direct)) < 1e-5


def test_stage_writes_the_documented_schema_atomically(sim_block: SimBlock, config: Config) -> None:
    config = config.model_copy(
        update={"paths": config.paths.model_copy(update={"catalog": sim_block.catalog_path})}
    )
    result = photometry_stage(JOB, sim_block.ms_paths, config, config.paths.results_dir)
    final = photometry_path(config, JOB.block_id)
    assert result.status == "ok" and result.outputs["photometry"] == str(final)
    frame = pd.read_parquet(final)
    assert list(frame.columns) == list(SCHEMA)
    assert set(frame.block_id) == {JOB.block_id} and set(frame.version) == {2}
    assert frame.n_vis.dtype == np.int64 and (frame.n_vis > 0).all()
    assert [p.name for p in final.parent.iterdir()] == [final.name]  # no temporary left


def test_stage_without_a_catalog_is_skipped(sim_block: SimBlock, config: Config) -> None:
    assert config.paths.catalog is None
    result = photometry_stage(JOB, sim_block.ms_paths, config, config.paths.results_dir)
    assert result.status == "skipped"
    assert not photometry_path(config, JOB.block_id).exists()


@pytest.mark.parametrize("missing", [(), (5,)])
def test_missing_chunks_are_flagged_on_every_row(
    sim_block: SimBlock, missing: tuple[int, ...]
) -> None:
    job = BlockJob(JOB.block, missing_slots=missing)
    frame = measure_block(job, sim_block.ms_paths[:2], sim_block.catalog)
    assert frame["flags"].str.contains("missing_chunks").all() == bool(missing)


def test_block_factored_rotation_equals_the_direct_sum() -> None:
    rng = np.random.default_rng(1)
    freq = np.linspace(1498.75e6, 1311.25e6, 768)
    delay = rng.uniform(-8e-6, 8e-6, 40)
    vis = (rng.standard_normal((40, 768)) + 1j * rng.standard_normal((40, 768))).astype(
        np.complex64
    )
    blocks = ChannelBlocks.of(freq)
    gain = np.ones(blocks.centre_hz.size, dtype=np.float32)
    direct = (vis * np.exp(2j * np.pi * delay[:, None] * freq[None, :])).sum(axis=1)
    assert blocks.split > 1
    assert np.max(np.abs(blocks.rotated_sums(vis, delay, gain) - direct)) < 1e-2


@pytest.fixture
def config(science_config: Config) -> Config:
    """This module's stages need a Config but no server."""
    return science_config


PYUVDATA_MS_FLUX_JY = 10.0
PYUVDATA_MS_REL_TOL = 0.01
"""Flux recovered from a near-noiseless MS written by pyuvdata, relative."""


@pytest.mark.timeout(120)
def test_measures_an_ms_written_by_pyuvdata(
    tiny_spec: Callable[..., SimulationSpec], tmp_path: Path
) -> None:
    """The MS convention is pyuvdata's write_ms (the converter's reference), not one of our
    own: a source simulated at the zenith pointing (where pyuvdata phases drift data right),
    phased and written by pyuvdata, is measured at its flux, not at ~0 or a sign flip."""
    start = datetime(2026, 3, 20, 6, 0, 0, tzinfo=UTC)
    scale = SCALES["tiny"]
    mid_jd = Time(start).jd + scale.integrations * scale.integration_time_s / 2 / 86400
    lst_mid = math.degrees(float(lst_for(np.array([mid_jd]))[0]))
    ra, dec = lst_mid + 0.3, OVRO_LAT_DEG + 0.4  # off the phase centre in both l and m
    one = Catalog(("P",), np.array([ra]), np.array([dec]), np.array([PYUVDATA_MS_FLUX_JY]))
    write_catalog(tmp_path / "one.csv", one)
    spec = tiny_spec(
        tmp_path / "in", sets=1, n_subbands=2, start=start, catalog=tmp_path / "one.csv",
        sefd_jy=1.0, variable_fraction=0.0,
    )  # fmt: skip
    ms = tmp_path / "pyuvdata.ms"
    centre = icrs_of_apparent_meridian(mid_jd, OVRO_LAT_DEG)  # where the converter phases
    pyuvdata_convert(sorted(simulate(spec).files), ms, *np.radians(centre))
    job = BlockJob(PLAN.block(int(Time(start).mjd * 86400) // 3600))
    frame = measure_block(job, [ms], one)
    assert len(frame) == 1
    assert abs(frame.flux_jy[0] / PYUVDATA_MS_FLUX_JY - 1) < PYUVDATA_MS_REL_TOL
