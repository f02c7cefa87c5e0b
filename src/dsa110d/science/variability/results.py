"""Publishing a variability run: Parquet tables, candidates JSON, plots and the run summary.

Layout under ``<results_dir>/variability/``::

    <run>.parquet            every source's metrics and class for the run at <run>
    latest.parquet           the same, for the newest run
    <run>.candidates.json    candidates (transients, then variables), ranked
    candidates.json          the same, for the newest run
    <run>/eta_v.png          the eta-V diagnostic plot
    <run>/lightcurves/<source>.png   one light curve per plotted candidate

Every file is written through ``atomic_file``: a reader never sees a half-written file, and
``latest`` is replaced only after the run's own files exist.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from dsa110d.science.atomic import atomic_file
from dsa110d.science.variability import plots
from dsa110d.science.variability.metrics import (
    CLASS_TRANSIENT,
    CLASS_VARIABLE,
    CLASSES,
    Thresholds,
)

RESULTS_SUBDIR = "variability"
LATEST_TABLE = "latest.parquet"
LATEST_CANDIDATES = "candidates.json"
TOP_CANDIDATES = 10
"""Candidates listed in the run summary (the VARIABILITY_ANALYSIS message stays small)."""
MAX_LIGHT_CURVES = 50
"""Light-curve PNGs per run at most (the best-ranked candidates)."""
CANDIDATE_FIELDS = (
    "source_id",
    "class",
    "ra_deg",
    "dec_deg",
    "n",
    "mean_flux_jy",
    "wmean_flux_jy",
    "v",
    "eta",
    "p_constant",
    "vs",
    "m",
    "pair_mjd_a",
    "pair_mjd_b",
    "first_detection_mjd",
    "first_detection_snr",
)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")

LightCurveSource = Callable[[list[Any]], pd.DataFrame]
"""Gives the light curves (source_id, mjd, flux_jy, flux_err_jy) of the named sources."""


@dataclass
class RunOutputs:
    """Where one run's outputs went."""

    table: Path
    latest: Path
    candidates: Path
    eta_v_plot: Path | None = None
    light_curves: list[Path] = field(default_factory=list)


def run_stamp(run_time: datetime) -> str:
    """File-name form of a run time: UTC, no colons (``2026-11-26T12-00-00Z``)."""
    return run_time.astimezone(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")


def candidates(frame: pd.DataFrame) -> pd.DataFrame:
    """Transients (brightest first detection first), then variables (largest eta first)."""
    trans = frame[frame["class"] == CLASS_TRANSIENT].sort_values(
        "first_detection_snr", ascending=False
    )
    varb = frame[frame["class"] == CLASS_VARIABLE].sort_values("eta", ascending=False)
    return pd.concat([trans, varb], ignore_index=True)


def _json_value(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def candidate_records(cands: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-able dicts of candidates (NaN becomes null)."""
    cols = [c for c in CANDIDATE_FIELDS if c in cands.columns]
    return [
        {c: _json_value(v) for c, v in zip(cols, row, strict=True)}
        for row in cands[cols].astype(object).itertuples(index=False, name=None)
    ]


def summary(
    frame: pd.DataFrame, run_time: datetime, thresholds: Thresholds, top: int = TOP_CANDIDATES
) -> dict[str, Any]:
    """The run summary the service puts in its VARIABILITY_ANALYSIS message."""
    counts = frame["class"].value_counts()
    cands = candidates(frame)
    return {
        "run_time": run_time.astimezone(UTC).isoformat(),
        "n_sources": len(frame),
        "n_measurements": int(frame["n"].sum()),
        "counts": {c: int(counts.get(c, 0)) for c in CLASSES},
        "thresholds": {
            "min_data_points": thresholds.min_data_points,
            "variability_threshold": thresholds.variability_threshold,
            "variability_p_threshold": thresholds.p_threshold,
        },
        "n_candidates": len(cands),
        "top_candidates": candidate_records(cands.head(top)),
    }


def write_results(
    frame: pd.DataFrame,
    results_dir: Path,
    run_time: datetime,
    thresholds: Thresholds,
    light_curves: LightCurveSource | None = None,
    *,
    max_light_curves: int = MAX_LIGHT_CURVES,
) -> RunOutputs:
    """Write a run's table, candidates and plots, then replace the ``latest`` files."""
    out_dir = results_dir / RESULTS_SUBDIR
    stamp = run_stamp(run_time)
    table = out_dir / f"{stamp}.parquet"
    with atomic_file(table) as tmp:
        frame.to_parquet(tmp, index=False)
    cands = candidates(frame)
    doc = {"run_time": run_time.astimezone(UTC).isoformat(), "candidates": candidate_records(cands)}
    run_cands = out_dir / f"{stamp}.candidates.json"
    with atomic_file(run_cands) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    outputs = RunOutputs(table, out_dir / LATEST_TABLE, out_dir / LATEST_CANDIDATES)
    outputs.eta_v_plot = plots.plot_eta_v(frame, out_dir / stamp / "eta_v.png", thresholds)
    if light_curves is not None and len(cands):
        shown = cands.head(max_light_curves)
        curves = light_curves(list(shown["source_id"]))
        by_source: dict[Any, pd.DataFrame] = dict(iter(curves.groupby("source_id", sort=False)))
        for row in shown.itertuples(index=False):
            curve = by_source.get(row.source_id)
            if curve is None:
                continue
            name = _UNSAFE.sub("_", str(row.source_id))
            title = f"source {row.source_id}: {row[frame.columns.get_loc('class')]}"
            title += f"  V={row.v:.3g} eta={row.eta:.3g}"
            path = out_dir / stamp / "lightcurves" / f"{name}.png"
            outputs.light_curves.append(plots.plot_light_curve(curve, path, title))
    with atomic_file(outputs.latest) as tmp:
        frame.to_parquet(tmp, index=False)
    with atomic_file(outputs.candidates) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    return outputs
