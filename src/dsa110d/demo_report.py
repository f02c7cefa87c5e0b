"""What ``dsa110d demo`` prints at the end: the variability results against the simulator's truth.

Pure functions over files (the truth JSON, ``variability/latest.parquet``, the run's plots), so
the demo's verdict can be tested without running the pipeline. A source the simulator made
variable is *recovered* when the analysis classed it variable or transient; it is *unseen*
when the analysis had too few measurements of it to judge (it never crossed the beam often
enough in the simulated hours). A candidate that the truth holds constant is a false positive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dsa110d.science.variability.metrics import CLASS_INSUFFICIENT, CLASS_TRANSIENT, CLASS_VARIABLE
from dsa110d.science.variability.results import LATEST_TABLE, RESULTS_SUBDIR

CANDIDATE_CLASSES = (CLASS_VARIABLE, CLASS_TRANSIENT)


@dataclass(frozen=True)
class Injected:
    """One source the simulator made vary, and what the analysis made of it."""

    source_id: str
    kind: str
    found_class: str
    """The analysis class, or ``"not measured"`` when no photometry of it exists."""
    n: int

    @property
    def recovered(self) -> bool:
        return self.found_class in CANDIDATE_CLASSES

    @property
    def judged(self) -> bool:
        """The analysis had enough measurements to decide (so a miss is a real miss)."""
        return self.found_class not in (CLASS_INSUFFICIENT, "not measured")


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
        return sum(i.recovered for i in self.injected)

    @property
    def judged(self) -> int:
        return sum(i.judged for i in self.injected)


def latest_table(results_dir: Path) -> Path:
    return results_dir / RESULTS_SUBDIR / LATEST_TABLE


def newest_plots(results_dir: Path) -> list[Path]:
    """The plots of the newest run (its eta-V plot and light curves), if any."""
    runs = sorted(p for p in (results_dir / RESULTS_SUBDIR).glob("*/eta_v.png"))
    if not runs:
        return []
    run_dir = runs[-1].parent
    return [runs[-1], *sorted((run_dir / "lightcurves").glob("*.png"))]


def judge(truth_path: Path, results_dir: Path) -> Verdict:
    """Compare the newest variability results with the truth JSON."""
    truth: dict[str, Any] = json.loads(truth_path.read_text())
    frame = pd.read_parquet(latest_table(results_dir))
    frame["source_id"] = frame["source_id"].astype(str)
    found_by_id = {
        str(sid): (str(cls), int(n))
        for sid, cls, n in zip(frame["source_id"], frame["class"], frame["n"], strict=True)
    }
    verdict = Verdict(counts={str(c): int(n) for c, n in frame["class"].value_counts().items()})
    constant: set[str] = set()
    for source in truth["sources"]:
        sid = str(source["id"])
        if not source["variable"]:
            constant.add(sid)
            continue
        found, n = found_by_id.get(sid, ("not measured", 0))
        verdict.injected.append(Injected(sid, str(source["variability"]["kind"]), found, n))
    cands = frame[frame["class"].isin(CANDIDATE_CLASSES)]
    verdict.candidates = cands
    verdict.false_positives = sorted(set(cands["source_id"]) & constant)
    verdict.plots = newest_plots(results_dir)
    return verdict
