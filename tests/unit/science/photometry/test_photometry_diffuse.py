"""Forced photometry with the simulator's extended emission in the sky (issue #18 item 6).

The same seed simulated with and without the extended components (their own random stream:
the sources, the uncatalogued sky and the noise are the same) and measured with the default
settings: no catalog source's flux moves by more than the acceptance's 3 sigma; with
``photometry.uv_min_lambda`` above the components' scale none moves by more than 1 sigma, and
the control: without that cut some source does (the cut in wavelengths is what removes it).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dsa110d.config import ProcessorConfig
from dsa110d.science.catalog import write_catalog
from dsa110d.science.conversion.convert import convert_set
from dsa110d.science.photometry.settings import PhotometrySettings
from dsa110d.science.photometry.stage import measure_block
from dsa110d.science.pipeline.blocks import BlockPlan
from dsa110d.science.pipeline.stage import BlockJob
from dsa110d.science.simulation.simulate import SimulationSpec, simulate, sky_catalog
from tests.helpers.truth import catalog_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

START = datetime(2026, 3, 20, 7, 0, 0, tzinfo=UTC)
DEC_DEG = 60.0
CHUNKS = 3
SUBBANDS = 16
SEEDS = (11, 12)
CATALOG_FLUX_JY = (0.02, 0.5)
CATALOG_SOURCES = 16
MAX_SHIFT_SIGMA = 3.0
"""With the default settings the extended emission may move a catalog source's forced flux by
at most this many of its errors: the photometry acceptance's tolerance (issue #7). Measured
up to 2.3 sigma at small scale, whose shortest spacings (~200 lambda) the default
``uv_min_lambda`` (100) keeps."""
CUT_SHIFT_SIGMA = 1.0
"""With ``uv_min_lambda`` above every component's scale, at most this (the same noise in both
runs: what is left is the component's far tail)."""
CUT_FWHM_FACTOR = 3.0
"""The control's cut: this many times the |uv| (wavelengths) where the component's visibility
falls to half, 1.665 / (pi theta) (the Gaussian then keeps 2^-9 of it)."""


def _block(root: Path, seed: int, diffuse: bool) -> tuple[list[Path], dict[str, Any]]:
    spec = SimulationSpec(
        out=root / "in", start=START, sets=CHUNKS, scale="small", seed=seed, dec_deg=DEC_DEG,
        corrupt="none", variable_fraction=0.0, n_sources=CATALOG_SOURCES, diffuse=diffuse,
    )  # fmt: skip
    root.mkdir(parents=True)
    write_catalog(root / "sky.csv", sky_catalog(spec, CATALOG_FLUX_JY, 0.3, 0.35))
    result = simulate(replace(spec, catalog=root / "sky.csv"))
    files = sorted(result.files, key=lambda p: p.name)
    ms = []
    for i in range(CHUNKS):
        path = root / f"chunk{i}.ms"
        convert_set(files[SUBBANDS * i : SUBBANDS * (i + 1)], path)
        ms.append(path)
    assert result.truth_path is not None
    return ms, json.loads(result.truth_path.read_text())


@pytest.mark.parametrize("seed", SEEDS)
def test_extended_emission_leaves_the_catalog_fluxes_and_the_uv_cut_removes_it(
    seed: int, tmp_path: Path
) -> None:
    ms_on, truth = _block(tmp_path / "on", seed, True)
    ms_off, truth_off = _block(tmp_path / "off", seed, False)
    components = truth["diffuse"]
    assert components and truth_off["diffuse"] == []
    plan = BlockPlan.from_config(ProcessorConfig())
    job = BlockJob(plan.block(int(START.timestamp() + 600) // 3600))
    catalog = catalog_of(truth["sources"])
    on = measure_block(job, ms_on, catalog).set_index("source_id")
    off = measure_block(job, ms_off, catalog).set_index("source_id")
    shift = (on.flux_jy - off.flux_jy) / off.flux_err_jy
    print(pd.DataFrame({"on": on.flux_jy, "off": off.flux_jy, "shift_sigma": shift}))
    assert len(shift) >= 8 and (shift.abs() <= MAX_SHIFT_SIGMA).all()
    widest = math.radians(max(c["fwhm_arcmin"] for c in components) / 60.0)
    cut = PhotometrySettings(uv_min_lambda=CUT_FWHM_FACTOR * 1.665 / (math.pi * widest))
    on_cut = measure_block(job, ms_on, catalog, cut).set_index("source_id")
    off_cut = measure_block(job, ms_off, catalog, cut).set_index("source_id")
    shift_cut = (on_cut.flux_jy - off_cut.flux_jy) / off_cut.flux_err_jy
    print(f"largest shift {shift.abs().max():.2f} sigma; cut: {shift_cut.abs().max():.2f}")
    assert (shift_cut.abs() <= CUT_SHIFT_SIGMA).all()
    # The control: the same check without the cut fails (the extended emission is there).
    assert (shift.abs() > CUT_SHIFT_SIGMA).any()
