"""The flag stage over a block: its MSs flagged several at once, as they would be one by one."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from casacore import tables

from dsa110d.config import Config, SupervisorConfig
from dsa110d.errors import InputFileError, StageError
from dsa110d.science.pipeline.blocks import BlockPlan
from dsa110d.science.pipeline.flagging import FLAGGED_KEYWORD, flag_processes, flag_stage
from dsa110d.science.pipeline.stage import BlockJob
from tests.helpers.testms import SimBlock, copy_sim_block


def _with_workers(config: Config, workers: int) -> Config:
    return config.model_copy(update={"supervisor": SupervisorConfig(workers=workers)})


def _job(config: Config) -> BlockJob:
    return BlockJob(BlockPlan.from_config(config.services.ms_processor).block(0))


def _number(value: object) -> float:
    """A count or fraction of the stage's summary (whose values may be any scalar)."""
    assert isinstance(value, int | float | np.integer | np.floating), value
    return float(value)


def _flags(paths: list[Path]) -> list[np.ndarray]:
    found = []
    for path in paths:
        with tables.table(str(path), ack=False) as ms:
            assert FLAGGED_KEYWORD in ms.keywordnames()
            found.append(ms.getcol("FLAG"))
    return found


def test_processes_follow_the_workers_setting_and_the_block(science_config: Config) -> None:
    assert flag_processes(_with_workers(science_config, 3), 5) == 3
    assert flag_processes(_with_workers(science_config, 8), 5) == 5  # one per MS at most
    assert flag_processes(_with_workers(science_config, 1), 5) == 1
    assert flag_processes(_with_workers(science_config, 0), 1) == 1


def test_a_block_is_flagged_in_parallel_as_serially(
    sim_block: SimBlock, science_config: Config, tmp_path: Path
) -> None:
    other = copy_sim_block(sim_block, tmp_path / "other")
    serial = flag_stage(
        _job(science_config), sim_block.ms_paths, _with_workers(science_config, 1), tmp_path
    )
    parallel = flag_stage(
        _job(science_config), other.ms_paths, _with_workers(science_config, 3), tmp_path
    )
    assert parallel.summary == serial.summary
    assert _number(serial.summary["flagged_autocorrelations"]) > 0
    for one, another in zip(_flags(sim_block.ms_paths), _flags(other.ms_paths), strict=True):
        assert np.array_equal(one, another)


def test_the_summary_gives_the_flag_fraction_of_the_flags_written(
    sim_block: SimBlock, science_config: Config, tmp_path: Path
) -> None:
    block = copy_sim_block(sim_block, tmp_path / "fraction")
    done = flag_stage(_job(science_config), block.ms_paths, science_config, tmp_path)
    written = _flags(block.ms_paths)
    samples = sum(f.size for f in written)
    assert done.summary["samples"] == samples
    assert done.summary["flag_fraction"] == pytest.approx(
        sum(int(np.count_nonzero(f)) for f in written) / samples, abs=1e-12
    )
    assert 0 < _number(done.summary["flag_fraction"]) < 1
    again = flag_stage(_job(science_config), block.ms_paths, science_config, tmp_path)
    assert "flag_fraction" not in again.summary  # flagged before: left as it is, not measured


def test_a_failing_chunk_is_named(sim_block: SimBlock, science_config: Config) -> None:
    bad = sim_block.ms_paths[2]
    with tables.table(str(bad), readonly=False, ack=False) as ms:
        ms.removecols("FLAG")
    config = _with_workers(science_config, 2)
    with pytest.raises(StageError, match=rf"^{re.escape(str(bad))}: flagging failed: "):
        flag_stage(_job(config), sim_block.ms_paths, config, bad.parent)


def test_a_chunk_that_is_not_an_ms_is_an_input_error(
    sim_block: SimBlock, science_config: Config
) -> None:
    bad = sim_block.ms_paths[1].parent / "missing.ms"
    paths = [*sim_block.ms_paths[:1], bad, *sim_block.ms_paths[1:]]
    config = _with_workers(science_config, 2)
    with pytest.raises(InputFileError, match=re.escape(str(bad))):
        flag_stage(_job(config), paths, config, bad.parent)
