"""The photometry stage measures the monitored new sources beside the catalog's: a sky source
left out of the catalog is measured at its true flux once it is monitored (and not before);
a monitored source that is a catalog source (same position) is not measured twice."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from dsa110d.config import Config
from dsa110d.science.catalog import write_catalog
from dsa110d.science.imaging.monitoring import MonitoredSource, with_monitored
from dsa110d.science.photometry.stage import photometry_path, photometry_stage
from tests.helpers.testms import SimBlock
from tests.unit.science.photometry.test_photometry import JOB

pytestmark = pytest.mark.unit

FLUX_SIGMA_TOL = 3.0
LEFT_OUT = 3
"""The sky source left out of the catalog: the blind search's new source."""


def _run(sim: SimBlock, config: Config, watch: tuple[MonitoredSource, ...]) -> pd.DataFrame:
    catalog = sim.catalog.subset(np.arange(len(sim.catalog)) != LEFT_OUT)
    path = config.paths.results_dir.parent / "partial.csv"
    write_catalog(path, catalog)
    config = config.model_copy(update={"paths": config.paths.model_copy(update={"catalog": path})})
    photometry_stage(replace(JOB, monitored=watch), sim.ms_paths, config, config.paths.results_dir)
    return pd.read_parquet(photometry_path(config, JOB.block_id))


def test_a_monitored_source_is_measured_at_its_true_flux(
    sim_block: SimBlock, science_config: Config
) -> None:
    sky = sim_block.catalog
    new = MonitoredSource(
        "DSA J000000.0+000000", float(sky.ra_deg[LEFT_OUT]), float(sky.dec_deg[LEFT_OUT]), 0.5
    )
    before = _run(sim_block, science_config, ())
    assert new.source_id not in set(before.source_id)
    after = _run(sim_block, science_config, (new,))
    row = after[after.source_id == new.source_id]
    assert len(row) == 1
    flux, error = float(row.flux_jy.iloc[0]), float(row.flux_err_jy.iloc[0])
    assert abs(flux - float(sky.flux_jy[LEFT_OUT])) <= FLUX_SIGMA_TOL * error
    assert len(after) == len(before) + 1


def test_a_monitored_catalog_source_is_not_added_twice(sim_block: SimBlock) -> None:
    sky = sim_block.catalog
    same = MonitoredSource("DSA J1", float(sky.ra_deg[0]), float(sky.dec_deg[0]), 1.0)
    also = MonitoredSource(sky.ids[1], float(sky.ra_deg[1]), float(sky.dec_deg[1]), 1.0)
    apart = MonitoredSource("DSA J2", float(sky.ra_deg[0]) + 0.1, float(sky.dec_deg[0]), 1.0)
    merged = with_monitored(sky, (same, also, apart))
    assert merged.ids == (*sky.ids, "DSA J2")
