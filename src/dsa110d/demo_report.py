"""What ``dsa110d demo`` prints at the end: the variability results against the simulator's truth.

Pure functions over files (the truth JSON, ``variability/latest.parquet``, the run's plots), so
the demo's verdict can be tested without running the pipeline. A source the simulator made
variable is *recovered* when the analysis classed it variable or transient. It is *judged*
(counted in the verdict) when the pipeline could have seen it: enough usable measurements,
and a true flux that changed by a detectable amount between the epochs it was measured at
(Mooley's m = 2 (S_max - S_min) / (S_max + S_min) of the truth's fluxes at those epochs at
least :data:`TRUE_SWING_MIN`: a slow sinusoid caught at two nearly equal phases of its cycle
varied by a few per cent in the simulated hours, and no pipeline can call it variable). It is
*unjudged* when the analysis had too few measurements (it never crossed the beam often
enough), none usable (the photometry files, read through the one photometry reader, hold only
flagged rows of it), none at all, or it varied too little while measured. A candidate that the
truth holds constant is a false positive. The demo passes when it recovers every judged
variable (at least one) with no false positive.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from dsa110d.science.photometry import table as photometry_table
from dsa110d.science.variability.metrics import CLASS_INSUFFICIENT, CLASS_TRANSIENT, CLASS_VARIABLE
from dsa110d.science.variability.results import LATEST_TABLE, RESULTS_SUBDIR

CANDIDATE_CLASSES = (CLASS_VARIABLE, CLASS_TRANSIENT)
TRUE_SWING_MIN = 0.26
"""Smallest true swing (Mooley's m between the measured epochs) a judged variable must have:
the two-epoch test's own m threshold (a ~30% change)."""
MJD_ZERO = datetime(1858, 11, 17, tzinfo=UTC)
SECONDS_PER_DAY = 86400.0
NOT_MEASURED = "not measured"
NO_USABLE = "no usable measurement"


@dataclass(frozen=True)
class Injected:
    """One source the simulator made vary, and what the analysis made of it."""

    source_id: str
    kind: str
    found_class: str
    """The analysis class; ``"not measured"`` when no photometry of it exists, ``"no usable
    measurement"`` when every row of it is flagged."""
    n: int
    true_swing: float = math.inf
    """Mooley's m of the truth's fluxes at the measured epochs (inf: the truth has no sets)."""

    @property
    def recovered(self) -> bool:
        return self.found_class in CANDIDATE_CLASSES

    @property
    def measured_enough(self) -> bool:
        """The analysis had enough measurements to decide."""
        return self.found_class not in (CLASS_INSUFFICIENT, NOT_MEASURED, NO_USABLE)

    @property
    def judged(self) -> bool:
        """Enough measurements and a detectable true swing: a miss is a real miss."""
        return self.measured_enough and self.true_swing >= TRUE_SWING_MIN

    @property
    def why_unjudged(self) -> str:
        if not self.measured_enough:
            return "too few points to judge"
        return f"varied {self.true_swing:.0%} while measured: too little to judge"


@dataclass
class Verdict:
    """The demo's scorecard."""

    injected: list[Injected] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    candidates: pd.DataFrame = field(default_factory=pd.DataFrame)
    plots: list[Path] = field(default_factory=list)

    @property
    def recovered(self) -> int:
        """Judged variables recovered (what the verdict counts)."""
        return sum(i.recovered and i.judged for i in self.injected)

    @property
    def judged(self) -> int:
        return sum(i.judged for i in self.injected)


VERDICT_PATTERN = re.compile(
    r"recovered (\d+) of (\d+) judged injected variables \((\d+) injected; the others had too "
    r"few usable measurements or varied too little while measured\); false positives: (\d+)"
)
"""The verdict line as :func:`verdict_line` prints it (whitespace collapsed)."""


def verdict_line(verdict: Verdict) -> str:
    """The demo's one-line verdict; :func:`parse_verdict` reads it back."""
    line = (
        f"recovered {verdict.recovered} of {verdict.judged} judged injected variables "
        f"({len(verdict.injected)} injected; the others had too few usable measurements or "
        f"varied too little while measured); false positives: {len(verdict.false_positives)}"
    )
    if verdict.false_positives:
        line += f" ({', '.join(verdict.false_positives)})"
    return line


@dataclass(frozen=True)
class ParsedVerdict:
    """The numbers of a printed verdict line."""

    recovered: int
    judged: int
    injected: int
    false_positives: int

    @property
    def perfect(self) -> bool:
        """Every judged variable recovered (at least one judged) and no false positive."""
        return self.judged > 0 and self.recovered == self.judged and not self.false_positives


def parse_verdict(text: str) -> ParsedVerdict | None:
    """The verdict in the demo's output (rich may wrap it: whitespace is collapsed first);
    None when there is no verdict line."""
    found = VERDICT_PATTERN.search(" ".join(text.split()))
    if found is None:
        return None
    recovered, judged, injected, false_positives = (int(g) for g in found.groups())
    return ParsedVerdict(recovered, judged, injected, false_positives)


def latest_table(results_dir: Path) -> Path:
    return results_dir / RESULTS_SUBDIR / LATEST_TABLE


def newest_plots(results_dir: Path) -> list[Path]:
    """The plots of the newest run (its eta-V plot and light curves), if any."""
    runs = sorted(p for p in (results_dir / RESULTS_SUBDIR).glob("*/eta_v.png"))
    if not runs:
        return []
    run_dir = runs[-1].parent
    return [runs[-1], *sorted((run_dir / "lightcurves").glob("*.png"))]


def _mjd_of(iso: str) -> float:
    stamp = datetime.fromisoformat(iso)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return (stamp - MJD_ZERO).total_seconds() / SECONDS_PER_DAY


def true_swing(
    flux_per_set: list[float] | None, set_mjds: npt.NDArray[np.float64], epochs: Any
) -> float:
    """Mooley's m of the truth's fluxes in the sets the source was measured in (each
    measurement's set: the last one starting at or before it); inf when the truth has no
    per-set fluxes, NaN when nothing was measured."""
    if not flux_per_set or not len(set_mjds):
        return math.inf
    if epochs is None or not len(epochs):
        return math.nan
    index = np.searchsorted(set_mjds, np.asarray(epochs, dtype=np.float64), side="right") - 1
    flux = np.asarray(flux_per_set, dtype=np.float64)[np.clip(index, 0, len(flux_per_set) - 1)]
    high, low = float(flux.max()), float(flux.min())
    return 2.0 * (high - low) / (high + low) if high + low > 0 else math.inf


def judge(truth_path: Path, results_dir: Path) -> Verdict:
    """Compare the newest variability results with the truth JSON."""
    truth: dict[str, Any] = json.loads(truth_path.read_text())
    frame = pd.read_parquet(latest_table(results_dir))
    frame["source_id"] = frame["source_id"].astype(str)
    found_by_id = {
        str(sid): (str(cls), int(n))
        for sid, cls, n in zip(frame["source_id"], frame["class"], frame["n"], strict=True)
    }
    rows = photometry_table.read_tables(photometry_table.photometry_files(results_dir))
    measured = set(rows["source_id"].astype(str))
    usable = rows[photometry_table.usable_mask(rows)] if len(rows) else rows
    epochs = {str(s): g["mjd"].to_numpy() for s, g in usable.groupby("source_id", sort=False)}
    set_mjds = np.array([_mjd_of(s["start"]) for s in truth.get("sets") or []])
    verdict = Verdict(counts={str(c): int(n) for c, n in frame["class"].value_counts().items()})
    constant: set[str] = set()
    for source in truth["sources"]:
        sid = str(source["id"])
        if not source["variable"]:
            constant.add(sid)
            continue
        found, n = found_by_id.get(sid, (NO_USABLE if sid in measured else NOT_MEASURED, 0))
        swing = true_swing(source.get("flux_per_set_jy"), set_mjds, epochs.get(sid))
        verdict.injected.append(Injected(sid, str(source["variability"]["kind"]), found, n, swing))
    cands = frame[frame["class"].isin(CANDIDATE_CLASSES)]
    verdict.candidates = cands
    verdict.false_positives = sorted(set(cands["source_id"]) & constant)
    verdict.plots = newest_plots(results_dir)
    return verdict
