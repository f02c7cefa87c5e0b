"""The flag stage's mechanics on a clean block: once per MS, the static channel mask, the
autocorrelations flagged, the QA in the record and the file, the fallback without AOFlagger."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from casacore import tables

from dsa110d.config import Config, FlaggingConfig
from dsa110d.science.pipeline import rfi
from dsa110d.science.pipeline.blocks import BlockPlan
from dsa110d.science.pipeline.flagging import FLAGGED_KEYWORD
from dsa110d.science.pipeline.stage import BlockJob
from tests.helpers.testms import SimBlock

pytestmark = pytest.mark.unit


def _job(config: Config) -> BlockJob:
    return BlockJob(BlockPlan.from_config(config.services.ms_processor).block(0))


def _static(config: Config, ranges: list[tuple[float, float]]) -> Config:
    flagging = FlaggingConfig(static_channel_ranges_mhz=ranges)
    return config.model_copy(update={"flagging": flagging})


def _freq_mhz(path: Path) -> np.ndarray:
    with tables.table(f"{path}::SPECTRAL_WINDOW", ack=False) as spw:
        return np.asarray(spw.getcol("CHAN_FREQ")[0] / 1e6)


@pytest.mark.skipif(shutil.which("aoflagger") is None, reason="no aoflagger")
def test_a_clean_block_is_flagged_once_with_its_static_channels(
    sim_block: SimBlock, science_config: Config, tmp_path: Path
) -> None:
    freq = _freq_mhz(sim_block.ms_paths[0])
    masked = (float(freq[2]) - 0.01, float(freq[2]) + 0.01)
    config = _static(science_config, [masked])
    result = rfi.flag_stage(_job(config), sim_block.ms_paths, config, tmp_path)
    summary = result.summary
    assert summary["flagger"] == "aoflagger" and summary["status"] == "ok"
    assert summary["bad_antennas"] == ""
    assert float(summary["flag_fraction"]) < 0.1  # type: ignore[arg-type]
    for path in sim_block.ms_paths:
        with tables.table(str(path), ack=False) as ms:
            assert ms.getkeyword(FLAGGED_KEYWORD) == rfi.FLAGGED_BY
            flags = ms.getcol("FLAG")
            autos = ms.getcol("ANTENNA1") == ms.getcol("ANTENNA2")
        assert flags[:, 2].all() and flags[autos].all()
    qa = json.loads(Path(result.outputs["flag_qa"]).read_text())
    fractions = dict(zip(qa["channels"]["freq_mhz"], qa["channels"]["fraction"], strict=True))
    assert fractions[float(freq[2])] == 1.0
    assert len(qa["chunks"]) == len(sim_block.ms_paths)
    # A second run (a re-run of the block) changes no flag and reports the same QA.
    before = [tables.table(str(p), ack=False).getcol("FLAG") for p in sim_block.ms_paths]
    again = rfi.flag_stage(_job(config), sim_block.ms_paths, config, tmp_path)
    after = [tables.table(str(p), ack=False).getcol("FLAG") for p in sim_block.ms_paths]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert again.summary["flag_fraction"] == summary["flag_fraction"]


def test_without_aoflagger_the_mad_flagger_stands_in_and_says_so(
    sim_block: SimBlock, science_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dsa110d.science.pipeline.rfi.shutil.which", lambda name: None)
    result = rfi.flag_stage(_job(science_config), sim_block.ms_paths, science_config, tmp_path)
    assert result.summary["flagger"] == "mad"
    with tables.table(str(sim_block.ms_paths[0]), ack=False) as ms:
        assert ms.getkeyword(FLAGGED_KEYWORD) == rfi.FLAGGED_BY


NO_ZEROS_STRATEGY = """aoflagger.require_min_version("3.0")
function execute(input)
  input:flag_nans()
end
"""


def _drop_packets(path: Path) -> np.ndarray:
    """Zero the first integration's first four channels (a dropped packet); the rows hit."""
    with tables.table(str(path), readonly=False, ack=False) as ms:
        times = ms.getcol("TIME")
        hit = times == times.min()
        data = ms.getcol("DATA")
        data[hit, :4] = 0
        ms.putcol("DATA", data)
    return np.asarray(hit)


@pytest.mark.skipif(shutil.which("aoflagger") is None, reason="no aoflagger")
@pytest.mark.parametrize("strategy", ["shipped", "without zeros"])
def test_dropped_packets_are_flagged_whichever_strategy_runs(
    sim_block: SimBlock, science_config: Config, tmp_path: Path, strategy: str
) -> None:
    """The shipped strategy flags exact zeros itself (and the pass after it reads FLAG alone);
    after a strategy that does not, the pass reads DATA and flags them."""
    config = science_config
    if strategy != "shipped":
        path = tmp_path / "nozeros.lua"
        path.write_text(NO_ZEROS_STRATEGY)
        config = config.model_copy(update={"flagging": FlaggingConfig(strategy=str(path))})
    hit = _drop_packets(sim_block.ms_paths[0])
    rfi.flag_stage(_job(config), sim_block.ms_paths, config, tmp_path)
    with tables.table(str(sim_block.ms_paths[0]), ack=False) as ms:
        flags = ms.getcol("FLAG")
    assert flags[hit, :4].all()
