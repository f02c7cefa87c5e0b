"""The truth file: what the simulator put in the data, for the tests to check the pipeline
against (DESIGN section 10: expected values come from here, never from the code under test).

One JSON document: the run's parameters, every set (id, day, start, file names), every
catalogued source (true and catalogued position, flux, whether and how it varies, its true flux
in each set), each corruption's own record and the uncatalogued sky. Written whole under a
temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from dsa110d.science.beam import BeamModel
from dsa110d.science.catalog import Catalog, calibrator_rows, flux_models
from dsa110d.science.hdf5.subbands import subband_file_name
from dsa110d.science.simulation.corruptions import Corruption
from dsa110d.science.simulation.diffuse import Diffuse
from dsa110d.science.simulation.sky import Variability
from dsa110d.science.simulation.spec import CALIBRATOR_ID, SetPlan, SimulationSpec
from dsa110d.science.simulation.uncatalogued import Uncatalogued


class SimulatedRun(Protocol):
    """What the truth is drawn from: a finished simulation run (``simulate._Simulation``)."""

    spec: SimulationSpec
    plans: list[SetPlan]
    set_ids: list[str]
    set_fluxes: list[NDArray[np.float64]]
    """Every catalogued source's true flux in each set, by set."""
    catalog: Catalog
    """The sky as simulated (true positions)."""
    listed: Catalog
    """The catalog the pipeline reads (with position errors)."""
    variable: dict[int, Variability]
    corrupt: str
    beam: BeamModel
    corruptions: list[Corruption]
    hidden: Uncatalogued
    hidden_fluxes: list[NDArray[np.float64]]
    diffuse: Diffuse


def write_truth(path: Path, sim: SimulatedRun) -> None:
    """The truth JSON: run parameters, sets, and every source's true flux per set."""
    spec = sim.spec
    fluxes = np.stack(sim.set_fluxes, axis=1)  # (Nsources, Nsets)
    sets = [
        {
            "set_id": set_id,
            "index": plan.index,
            "day": plan.day,
            "start": plan.start.isoformat(),
            "files": [subband_file_name(plan.name_times[sb], sb) for sb in range(spec.n_subbands)],
        }
        for set_id, plan in zip(sim.set_ids, sim.plans, strict=True)
    ]
    sources = []
    calibrators = set(calibrator_rows(sim.catalog).tolist())
    models = flux_models(sim.catalog)
    for row, source_id in enumerate(sim.catalog.ids):
        var = sim.variable.get(row)
        sources.append(
            {
                "id": source_id,
                "ra_deg": float(sim.catalog.ra_deg[row]),
                "dec_deg": float(sim.catalog.dec_deg[row]),
                "catalog_ra_deg": float(sim.listed.ra_deg[row]),
                "catalog_dec_deg": float(sim.listed.dec_deg[row]),
                "flux_jy": float(sim.catalog.flux_jy[row]),
                "calibrator": source_id == CALIBRATOR_ID or row in calibrators,
                "flux_model": models[row] or None,
                "variable": var is not None,
                "variability": var.to_json() if var is not None else None,
                "flux_per_set_jy": [float(f) for f in fluxes[row]],
            }
        )
    record: dict[str, Any] = {
        "simulator": "dsa110d simulate",
        "seed": spec.seed,
        "scale": spec.scale,
        "n_subbands": spec.n_subbands,
        "days": spec.days,
        "sets_per_day": spec.sets,
        "pointing_dec_deg": spec.dec_deg,
        "sefd_jy": spec.sefd_jy,
        "variable_fraction": spec.variable_fraction,
        "catalog": str(spec.catalog) if spec.catalog else None,
        "corrupt": sim.corrupt,
        "beam": sim.beam.describe(),
        "catalog_error_arcsec": spec.catalog_error_arcsec,
        "corruptions": {c.name: c.truth() for c in sim.corruptions},
        "sets": sets,
        "sources": sources,
        "uncatalogued": sim.hidden.truth(sim.hidden_fluxes),
        "diffuse": sim.diffuse.truth(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)
