"""Science acceptance through the whole chain the daemon runs: simulator -> the processor's
conversion job (``convert_job``) -> its block job (``flag`` + ``photometry``), on half an hour
of small-scale simulated sets: injected fluxes recovered within errors, sources outside the
beam not reported, a flagged RFI burst without effect."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from casacore import tables

from dsa110d.config import Config, PathsConfig, PipelineConfig, ProcessorConfig, ServicesConfig
from dsa110d.science.astrometry import use_offline_iers
from dsa110d.science.catalog import Catalog, write_catalog
from dsa110d.science.pipeline.blocks import BlockPlan, Chunk
from dsa110d.science.simulation.simulate import DEFAULT_DEC_DEG, SimulationSpec, simulate
from dsa110d.services.processor_jobs import block_job, convert_job, publish_outputs

pytestmark = pytest.mark.timeout(300)

N_SETS = 6
BLOCK_MIN = 30
START = datetime(2026, 3, 20, 6, 0, 0, tzinfo=UTC)
SNR_MIN = 20.0
"""The acceptance applies to sources measured at this SNR or better (issue 7)."""
PULL_MAX = 3.0
"""A measured flux is within this many sigma of the injected one..."""
WITHIN_FRACTION = 0.95
"""...for at least this share of the SNR >= 20 sources."""
BIAS_SERVICE_MAX = 0.05
"""Mean fractional bias over five sources: a wiring check (a sign or scale error gives ~100%);
the issue's 2% is checked on ten bright sources by
tests/unit/science/pipeline/test_chain_acceptance.py."""
OUTSIDE_OFFSET_DEG = 10.0
"""Decoy catalog sources this far north of the pointing never enter the beam."""
RFI_JY = 500.0
"""The burst added to a few integrations and channels of one chunk (flagged by ``flag``)."""
RFI_CHANNELS = slice(10, 20)
SHIFT_MAX_SIGMA = 0.2
"""The burst run may differ from the run with the same samples flagged by hand by this much
(sigma): the burst slightly moves the flagging statistics of its baselines and channels."""


def _config(root: Path, catalog: Path) -> Config:
    paths = PathsConfig(
        incoming_dir=root / "incoming", ms_dir=root / "ms", results_dir=root / "results",
        processed_dir=root / "processed", state_dir=root / "state", log_dir=root / "logs",
        catalog=catalog,
    )  # fmt: skip
    processor = ProcessorConfig(mosaic_duration_min=BLOCK_MIN, mosaic_overlap_min=0)
    return Config(
        env="testing",
        paths=paths,
        services=ServicesConfig(ms_processor=processor),
        pipeline=PipelineConfig(stages=["flag", "photometry"]),
    )


def _run_block(config: Config, ms_paths: list[str], staging: Path) -> pd.DataFrame:
    plan = BlockPlan.from_config(config.services.ms_processor)
    first = Chunk(START.timestamp(), START.timestamp() + 309.0)
    block = plan.blocks_of_chunk(first)[0]
    doc = config.model_dump(mode="json", exclude={"redis"})
    stages = block_job(doc, block.id, 1, [], ms_paths, str(staging))
    outputs = {k: v for s in stages for k, v in s["outputs"].items()}
    finals = publish_outputs(staging, config.paths.results_dir, outputs, 1, 1)
    return pd.read_parquet(finals["photometry"])


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Simulate, convert with the processor's job, photometer clean and with an RFI burst."""
    use_offline_iers()
    root = tmp_path_factory.mktemp("science-chain")
    spec = SimulationSpec(
        out=root / "incoming", start=START, sets=N_SETS, scale="small", seed=11,
        variable_fraction=0.0,
    )  # fmt: skip
    sim = simulate(spec)
    assert sim.truth_path is not None
    truth = json.loads(sim.truth_path.read_text())["sources"]
    injected = {s["id"]: float(np.mean(s["flux_per_set_jy"])) for s in truth}
    decoys = [f"DECOY{i}" for i in range(5)]
    ras = [s["ra_deg"] for s in truth]
    catalog = Catalog(
        tuple([s["id"] for s in truth] + decoys),
        np.array(ras + list(np.linspace(min(ras), max(ras), len(decoys)))),
        np.array([s["dec_deg"] for s in truth] + [DEFAULT_DEC_DEG + OUTSIDE_OFFSET_DEG] * 5),
        np.array([s["flux_jy"] for s in truth] + [10.0] * len(decoys)),
    )
    write_catalog(root / "catalog.csv", catalog)
    config = _config(root, root / "catalog.csv")
    ms_paths = []
    for set_id in sim.set_ids:
        files = sorted(str(f) for f in sim.files if f.name.startswith(set_id[:16]))
        done = convert_job(files, str(root / "ms" / f"{set_id}.ms"), False)
        ms_paths.append(done["ms"])

    # Each case gets pristine copies: the flag stage flags an MS once (a table keyword), as
    # converted data never changes; these cases change the data after conversion.
    def pristine(case: str) -> list[str]:
        return [str(shutil.copytree(p, root / case / Path(p).name)) for p in ms_paths]

    clean_ms, flagged_ms, burst_ms = pristine("clean"), pristine("flagged"), pristine("burst")
    clean = _run_block(config, clean_ms, root / "staging-clean")
    _burst(flagged_ms[2], flag=True, add_jy=0.0)  # the burst's samples flagged, no burst
    flagged = _run_block(config, flagged_ms, root / "staging-flagged")
    _burst(burst_ms[2], flag=False, add_jy=RFI_JY)  # the burst, for the flag stage to find
    burst = _run_block(config, burst_ms, root / "staging-burst")
    return {
        "clean": clean, "flagged": flagged, "burst": burst, "injected": injected,
        "decoys": decoys,
    }  # fmt: skip


def _burst(ms_path: str, flag: bool, add_jy: float) -> None:
    """One integration x ten channels of one chunk: set their flags, add ``add_jy`` to them."""
    with tables.table(ms_path, readonly=False, ack=False) as ms:
        times = ms.getcol("TIME")
        hit = times == np.unique(times)[2]  # one of six integrations: a median over time sees it
        data, flags = ms.getcol("DATA"), ms.getcol("FLAG")
        data[hit, RFI_CHANNELS, :] += add_jy
        flags[hit, RFI_CHANNELS, :] = flag
        ms.putcol("DATA", data)
        ms.putcol("FLAG", flags)


def _accepted(frame: pd.DataFrame, injected: dict[str, float]) -> tuple[float, float, int]:
    # ``frame.flags`` would be pandas' own DataFrame.flags: use the column
    unflagged = frame["flags"].fillna("") == ""  # partial transits and missing chunks left out
    good = frame[(frame.flux_jy / frame.flux_err_jy >= SNR_MIN) & unflagged]
    truth = good.source_id.map(injected).to_numpy(dtype=float)
    pull = np.abs(good.flux_jy.to_numpy() - truth) / good.flux_err_jy.to_numpy()
    within = float(np.mean(pull <= PULL_MAX)) if len(good) else 0.0
    bias = float(np.mean(good.flux_jy.to_numpy() / truth - 1.0)) if len(good) else np.inf
    return within, bias, len(good)


def test_fluxes_of_bright_sources_match_the_injected_ones(chain: dict[str, Any]) -> None:
    within, bias, n = _accepted(chain["clean"], chain["injected"])
    assert n >= 5, "too few sources at SNR >= 20 to judge"
    # The mean-bias criterion (< 2%) is pinned on a larger sky by
    # tests/unit/science/pipeline/test_chain_acceptance.py; five sources here measure it to
    # only ~1%.
    assert within >= WITHIN_FRACTION
    assert abs(bias) < BIAS_SERVICE_MAX


def test_sources_outside_the_beam_are_not_reported(chain: dict[str, Any]) -> None:
    reported = set(chain["clean"].source_id)
    assert reported and not reported & set(chain["decoys"])


def test_a_flagged_rfi_burst_does_not_bias_the_fluxes(chain: dict[str, Any]) -> None:
    flagged = chain["flagged"].set_index("source_id")
    burst = chain["burst"].set_index("source_id")
    assert list(flagged.index) == list(burst.index)
    shift = (burst.flux_jy - flagged.flux_jy) / flagged.flux_err_jy
    assert float(np.max(np.abs(shift))) < SHIFT_MAX_SIGMA
    within, bias, n = _accepted(chain["burst"], chain["injected"])
    assert n >= 5 and within >= WITHIN_FRACTION and abs(bias) < BIAS_SERVICE_MAX
