"""Publishing a variability run: Parquet tables, candidates JSON, plots and the run summary.

Layout under ``<results_dir>/variability/``::

    <run>.parquet            every source's metrics and class for the run at <run>
    latest.parquet           the same, for the newest run
    <run>.candidates.json    candidates (transients, then variables), ranked
    candidates.json          the same, for the newest run
    <run>.candidates.vot     the candidates as an IVOA VOTable
    candidates.vot           the same, for the newest run
    <run>/eta_v.png          the eta-V diagnostic plot
    <run>/lightcurves/<source>.png|.csv|.vot   each plotted candidate's light curve
    voevents/<source>_<class>.xml   a VOEvent 2.0 packet, written once per new candidate

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
from dsa110d.science.variability import formats as formats
from dsa110d.science.variability import plots, voevent
from dsa110d.science.variability.metrics import (
    CLASS_TRANSIENT,
    CLASS_VARIABLE,
    CLASSES,
    Thresholds,
)

RESULTS_SUBDIR = "variability"
LATEST_TABLE = "latest.parquet"
LATEST_CANDIDATES = "candidates.json"
LATEST_CANDIDATES_VOTABLE = "candidates.vot"
VOEVENT_SUBDIR = "voevents"
MAX_NEW_VOEVENTS = 100
"""VOEvent packets written (and announced) per run at most, best-ranked first; the rest are
new in the next run (a first run over a large sky must not flood the alerts stream)."""
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
    "q_value",
    "variable_by",
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
    candidates_votable: Path | None = None
    light_curve_tables: list[Path] = field(default_factory=list)
    voevents: list[dict[str, Any]] = field(default_factory=list)
    """The packets this run wrote: source_id, class, ivorn, path, ra_deg, dec_deg, flux."""


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
            "vs_threshold": thresholds.vs_threshold,
            "m_threshold": thresholds.m_threshold,
            "false_discovery_rate": thresholds.false_discovery_rate,
            "min_mean_snr": thresholds.min_mean_snr,
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
    voevent_authority: str | None = None,
) -> RunOutputs:
    """Write a run's table, candidates and plots, then replace the ``latest`` files; with a
    ``voevent_authority``, a VOEvent packet for each candidate that has none yet."""
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
    outputs.candidates_votable = formats.write_candidates_votable(
        cands, CANDIDATE_FIELDS, out_dir / f"{stamp}.candidates.vot"
    )
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
            outputs.light_curve_tables += [
                formats.write_light_curve_csv(curve, path.with_suffix(".csv")),
                formats.write_light_curve_votable(curve, path.with_suffix(".vot")),
            ]
    if voevent_authority is not None:
        outputs.voevents = write_new_voevents(
            candidate_records(cands), out_dir / VOEVENT_SUBDIR, voevent_authority, run_time
        )
    with atomic_file(outputs.latest) as tmp:
        frame.to_parquet(tmp, index=False)
    with atomic_file(outputs.candidates) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    formats.write_candidates_votable(cands, CANDIDATE_FIELDS, out_dir / LATEST_CANDIDATES_VOTABLE)
    return outputs


def write_new_voevents(
    records: list[dict[str, Any]],
    directory: Path,
    authority: str,
    run_time: datetime,
    limit: int = MAX_NEW_VOEVENTS,
) -> list[dict[str, Any]]:
    """A packet for each candidate (source, class) without one yet, best-ranked first; the
    packet's file is what makes a candidate old, so a re-run or a retry writes none twice.
    A candidate without a position (photometry rows without ra_deg/dec_deg) gets none: a
    VOEvent must say where."""
    written: list[dict[str, Any]] = []
    for record in records:
        if len(written) >= limit:
            break
        if record.get("ra_deg") is None or record.get("dec_deg") is None:
            continue
        path = directory / f"{voevent.local_id(record['source_id'], str(record['class']))}.xml"
        if path.exists():
            continue
        packet = voevent.build(record, authority, run_time)
        voevent.write(packet, path)
        written.append(
            {
                "source_id": record["source_id"],
                "class": record["class"],
                "ivorn": packet.get("ivorn"),
                "path": str(path),
                "ra_deg": record.get("ra_deg"),
                "dec_deg": record.get("dec_deg"),
                "mean_flux_jy": record.get("mean_flux_jy"),
            }
        )
    return written
