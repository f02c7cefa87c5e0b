"""Science acceptance of the ``flag`` stage (issue #17) on the simulator's RFI and antenna
faults, judged against the truth file only.

The chain block of issue #7 (small scale, bright sources of known flux) is simulated with the
``rfi`` corruption model alone (other models of level ``all``, e.g. antenna gains, need a
calibration this test does not run), converted and flagged:
- >= 95 % of the cross-correlation samples whose injected interference exceeds 3 sigma are
  flagged, <= 2 % of the clean ones, and every injected bad antenna is named;
- the photometry acceptance (>= 95 % of the bright sources within 3 sigma, bias < 2 %) holds;
- negative control: measured without the flag stage, it does not.
That block's 41 minutes happen to hold no broadband burst; further simulations (the generated
sky, three sets, BURST_SEEDS: seeds whose interference holds broadband bursts, one of them
at 5 sigma, two in one chunk, one beside a dropped packet) are flagged by the stage alone and
held to the same numbers: >= 95 % of the interference above 3 sigma flagged, <= 2 % of the
clean data, every bad antenna named. Negative control: without the burst test along time
(``flagging.burst_sigma`` off) the recall falls below 95 % on each of them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from astropy.time import Time
from casacore import tables

from dsa110d.config import Config, ProcessorConfig
from dsa110d.science.catalog import Catalog, write_catalog
from dsa110d.science.constants import FILE_DURATION_S
from dsa110d.science.conversion.convert import convert_set
from dsa110d.science.photometry.stage import measure_block, photometry_path
from dsa110d.science.pipeline.blocks import BlockPlan
from dsa110d.science.pipeline.rfi import flag_stage
from dsa110d.science.pipeline.stage import BlockJob
from dsa110d.science.pipeline.stages import build_pipeline, run_pipeline
from dsa110d.science.simulation import corruptions
from dsa110d.science.simulation.corrupt_rfi import RFI, truth_masks
from dsa110d.science.simulation.simulate import SimulationSpec, simulate
from tests.unit.science.conftest import config_under
from tests.unit.science.pipeline.test_chain_acceptance import (
    BIAS_MAX,
    CATALOG_SEED,
    FRACTION_WITHIN,
    N_SETS,
    POINTING_DEC_DEG,
    START,
    _accept,
    _catalog,
    _sets,
)

NO_AOFLAGGER = shutil.which("aoflagger") is None
pytestmark = [pytest.mark.unit, pytest.mark.skipif(NO_AOFLAGGER, reason="no aoflagger")]

RFI_SEED = 5
"""The simulation's seed: its sky and noise, and (its own stream) the interference."""
RECALL_MIN = 0.95
"""Fraction of the samples with interference above RFI_SIGMA that must be flagged..."""
RFI_SIGMA = 3.0
CLEAN_FLAGGED_MAX = 0.02
"""...and the most of the untouched samples that may be."""
BURST_SEEDS = (1, 3, 6)
"""Seeds whose interference holds broadband bursts: 1 one of 5 sigma, 3 two in one chunk (one
beside a dropped packet), 6 one of ~50 sigma over most of the band."""
BURST_SETS = 3


@dataclass(frozen=True)
class RfiBlock:
    ms_paths: list[Path]
    catalog_path: Path
    catalog: Catalog
    injected_jy: dict[str, float]
    truth: dict[str, Any]
    job: BlockJob


@pytest.fixture(scope="session")
def rfi_block(tmp_path_factory: pytest.TempPathFactory) -> RfiBlock:
    root = tmp_path_factory.mktemp("rfi")
    catalog = _catalog(np.random.default_rng(CATALOG_SEED))
    catalog_path = root / "catalog.csv"
    write_catalog(catalog_path, catalog)
    spec = SimulationSpec(
        out=root / "incoming", start=START, sets=N_SETS, scale="small", seed=RFI_SEED,
        catalog=catalog_path, variable_fraction=0.0, dec_deg=POINTING_DEC_DEG, corrupt="all",
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:  # the rfi model alone (see the docstring)
        patch.setattr(corruptions, "build", lambda level, instrument: [RFI(instrument)])
        result = simulate(spec)
    assert result.truth_path is not None
    truth = json.loads(result.truth_path.read_text())
    ms_paths = [
        convert_set(files, root / "ms" / f"{s['set_id']}.ms").ms
        for files, s in zip(_sets(result.files, truth), truth["sets"], strict=True)
    ]
    injected = {s["id"]: float(s["flux_per_set_jy"][0]) for s in truth["sources"]}
    plan = BlockPlan.from_config(ProcessorConfig())
    mid_s = (Time(START).mjd * 86400.0) + N_SETS * FILE_DURATION_S / 2
    job = BlockJob(plan.block(int(mid_s) // 3600))
    return RfiBlock(ms_paths, catalog_path, catalog, injected, truth, job)


@dataclass(frozen=True)
class Flagged:
    ms_paths: list[Path]
    config: Config
    summary: dict[str, Any]
    photometry: pd.DataFrame


@pytest.fixture(scope="session")
def flagged(rfi_block: RfiBlock, tmp_path_factory: pytest.TempPathFactory) -> Flagged:
    """The configured pipeline (flag, photometry) run on a copy of the block."""
    root = tmp_path_factory.mktemp("rfi_run")
    (root / "ms").mkdir()
    paths = [Path(shutil.copytree(p, root / "ms" / p.name)) for p in rfi_block.ms_paths]
    config = config_under(root, rfi_block.catalog_path)
    results = run_pipeline(build_pipeline(config), rfi_block.job, paths, config, root / "s")
    summary = dict(next(r for r in results if r.stage == "flag").summary)
    frame = pd.read_parquet(photometry_path(config, rfi_block.job.block_id))
    return Flagged(paths, config, summary, frame)


@dataclass(frozen=True)
class Scored:
    hit: int
    caught: int
    clean: int
    lost: int
    faulty_whole: bool


def _score(ms_paths: list[Path], rfi: dict[str, Any]) -> Scored:
    """Flags against the truth: samples with interference above RFI_SIGMA and how many are
    flagged, untouched samples and how many are flagged, whether faulty antennas are whole."""
    hit = caught = clean = lost = 0
    whole = True
    for path in ms_paths:
        jd, freq, ant1, ant2, flags = _grid(path)
        masks = truth_masks(rfi, jd, freq, ant1, ant2)
        cross = (ant1 != ant2)[None, :, None]
        strong = masks.rfi_above(RFI_SIGMA) & ~masks.faulty & cross
        untouched = masks.clean & cross
        hit, caught = hit + int(strong.sum()), caught + int((strong & flags).sum())
        clean, lost = clean + int(untouched.sum()), lost + int((untouched & flags).sum())
        whole &= bool(flags[:, masks.faulty.all(axis=(0, 2))].all())
    return Scored(hit, caught, clean, lost, whole)


def _grid(path: Path) -> tuple[np.ndarray, ...]:
    """(time JD, freq Hz, ant1, ant2, flags (Nt, Nbls, Nchan)) of a full-grid MS."""
    with tables.table(str(path), ack=False) as ms:
        times, flag = ms.getcol("TIME"), ms.getcol("FLAG").any(axis=2)
        ant1, ant2 = ms.getcol("ANTENNA1"), ms.getcol("ANTENNA2")
    with tables.table(f"{path}::SPECTRAL_WINDOW", ack=False) as spw:
        freq = spw.getcol("CHAN_FREQ")[0]
    unique = np.unique(times)
    n_bls = len(times) // len(unique)
    jd = unique / 86400.0 + 2400000.5
    return jd, freq, ant1[:n_bls], ant2[:n_bls], flag.reshape(len(unique), n_bls, -1)


@pytest.mark.timeout(300)
def test_the_injected_rfi_is_flagged_and_the_clean_data_kept(
    rfi_block: RfiBlock, flagged: Flagged
) -> None:
    scored = _score(flagged.ms_paths, rfi_block.truth["corruptions"]["rfi"])
    assert scored.hit > 1000 and scored.clean > 1000
    assert scored.faulty_whole  # every baseline of a faulty antenna
    recall, lost = scored.caught / scored.hit, scored.lost / scored.clean
    assert recall >= RECALL_MIN, f"{recall:.4f} of the RFI > 3 sigma flagged"
    assert lost <= CLEAN_FLAGGED_MAX, f"{lost:.4f} of the clean data flagged"


@dataclass(frozen=True)
class BurstBlock:
    ms_paths: list[Path]
    rfi: dict[str, Any]


@pytest.fixture(scope="module", params=BURST_SEEDS)
def burst_block(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> BurstBlock:
    root = tmp_path_factory.mktemp(f"bursts{request.param}")
    spec = SimulationSpec(
        out=root / "incoming", start=START, sets=BURST_SETS, scale="small", seed=request.param,
        variable_fraction=0.0, dec_deg=POINTING_DEC_DEG, corrupt="all",
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(corruptions, "build", lambda level, instrument: [RFI(instrument)])
        result = simulate(spec)
    assert result.truth_path is not None
    truth = json.loads(result.truth_path.read_text())
    paths = [
        convert_set(files, root / "ms" / f"{s['set_id']}.ms").ms
        for files, s in zip(_sets(result.files, truth), truth["sets"], strict=True)
    ]
    return BurstBlock(paths, truth["corruptions"]["rfi"])


def _flag_copy(block: BurstBlock, root: Path, config: Config) -> tuple[Scored, dict[str, Any]]:
    """The flag stage on a copy of ``block``; its flags scored against the truth, its summary."""
    paths = [Path(shutil.copytree(p, root / "ms" / p.name)) for p in block.ms_paths]
    job = BlockJob(BlockPlan.from_config(ProcessorConfig()).block(0))
    summary = dict(flag_stage(job, paths, config, root / "scratch").summary)
    return _score(paths, block.rfi), summary


@pytest.mark.timeout(300)
def test_broadband_bursts_are_flagged_in_the_channels_they_cover(
    burst_block: BurstBlock, tmp_path: Path
) -> None:
    assert any(e["kind"] == "burst" for e in burst_block.rfi["events"])
    scored, summary = _flag_copy(burst_block, tmp_path, config_under(tmp_path))
    assert scored.hit > 1000 and scored.clean > 1000 and scored.faulty_whole
    recall, lost = scored.caught / scored.hit, scored.lost / scored.clean
    assert recall >= RECALL_MIN, f"{recall:.4f} of the RFI > 3 sigma flagged"
    assert lost <= CLEAN_FLAGGED_MAX, f"{lost:.4f} of the clean data flagged"
    named = {a for kind in burst_block.rfi["bad_antenna_names"].values() for a in kind}
    assert set(str(summary["bad_antennas"]).split(",")) == named


@pytest.mark.timeout(300)
def test_without_the_burst_test_the_bursts_are_missed(
    burst_block: BurstBlock, tmp_path: Path
) -> None:
    config = config_under(tmp_path)
    off = config.flagging.model_copy(update={"burst_sigma": None})
    scored, _ = _flag_copy(burst_block, tmp_path, config.model_copy(update={"flagging": off}))
    assert scored.caught / scored.hit < RECALL_MIN


def test_every_injected_bad_antenna_is_named(rfi_block: RfiBlock, flagged: Flagged) -> None:
    injected = rfi_block.truth["corruptions"]["rfi"]["bad_antenna_names"]
    summary = flagged.summary
    assert summary["dead_antennas"].split(",") == injected["dead"]
    assert summary["hot_antennas"].split(",") == injected["hot"]
    assert summary["unstable_antennas"].split(",") == injected["oscillating"]
    named = {a for kind in injected.values() for a in kind}
    assert set(summary["bad_antennas"].split(",")) == named
    assert summary["status"] == "ok" and summary["flagger"] == "aoflagger"


def test_the_photometry_acceptance_holds_with_rfi(rfi_block: RfiBlock, flagged: Flagged) -> None:
    within, bias = _accept(flagged.photometry, rfi_block.injected_jy)
    assert within >= FRACTION_WITHIN
    assert abs(bias) < BIAS_MAX


@pytest.mark.timeout(300)
def test_without_the_flagger_the_photometry_acceptance_fails(rfi_block: RfiBlock) -> None:
    frame = measure_block(rfi_block.job, rfi_block.ms_paths, rfi_block.catalog)
    within, bias = _accept(frame, rfi_block.injected_jy)
    assert within < FRACTION_WITHIN or abs(bias) >= BIAS_MAX
