"""Calibration solution records as the calibrate stage writes them (the contract in
``state.calibration``): sidecar documents and the files of a staged run, for the tests of the
registry, the processor's registration, the CLI and the metrics, without the solver."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsa110d.state.calibration import CalSolution

DAY0_MJD = 61119.0
"""2026-03-20T00:00 UTC."""


def sidecar(
    solution_id: str,
    kind: str = "gains",
    valid_from_mjd: float = DAY0_MJD,
    valid_to_mjd: float | None = None,
    *,
    block_id: str = "2026-03-20T06:00:00",
    block_version: int = 1,
    status: str = "ok",
    amp_scatter: float = 0.02,
    phase_scatter_deg: float = 2.0,
    calibrator: str | None = None,
) -> dict[str, Any]:
    """One sidecar document with every contract field."""
    span = 3.0 if kind == "bandpass" else 1.0 / 24
    return {
        "solution_id": solution_id,
        "kind": kind,
        "block_id": block_id,
        "block_version": block_version,
        "set_ids": [block_id],
        "valid_from_mjd": valid_from_mjd,
        "valid_to_mjd": valid_from_mjd + span if valid_to_mjd is None else valid_to_mjd,
        "calibrator": calibrator if calibrator or kind == "gains" else "3C286",
        "reference_antenna": 3,
        "n_antennas": 96,
        "flagged_antennas": [7, 40],
        "snr_median": 85.5,
        "amp_scatter": amp_scatter,
        "phase_scatter_deg": phase_scatter_deg,
        "outlier_antennas": [],
        "table": f"{solution_id}.tab",
        "created_at": "2026-03-20T07:00:00+00:00",
        "status": status,
    }


def solution(solution_id: str, kind: str = "gains", *args: Any, **kw: Any) -> CalSolution:
    return CalSolution.from_sidecar(sidecar(solution_id, kind, *args, **kw))


def stage_sidecar(staging: Path, doc: dict[str, Any]) -> str:
    """Write a sidecar and its (stand-in) table where the calibrate stage would, under a
    run's staging directory; the output path relative to it."""
    folder = staging / "cal" / doc["kind"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / doc["table"]).mkdir(exist_ok=True)
    (folder / doc["table"] / "table.dat").write_bytes(b"stand-in for a CASA table")
    (folder / f"{doc['solution_id']}.json").write_text(json.dumps(doc))
    return f"cal/{doc['kind']}/{doc['solution_id']}.json"
