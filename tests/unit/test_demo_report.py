"""The demo's verdict against the simulator's truth: recovered, unjudged and false positives."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dsa110d.demo_report import judge
from dsa110d.science.variability.metrics import CLASS_INSUFFICIENT, CLASS_STABLE, CLASS_VARIABLE


def _source(sid: str, kind: str | None) -> dict[str, object]:
    return {"id": sid, "variable": kind is not None,
            "variability": {"kind": kind} if kind else None}  # fmt: skip


def test_judge_counts_recovered_unjudged_and_false_positives(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"sources": [
        _source("A", "flare"), _source("B", "step"), _source("C", "sinusoid"),
        _source("D", None), _source("E", None), _source("F", "flare"),
    ]}))  # fmt: skip
    variability = tmp_path / "results" / "variability"
    (variability / "2026-01-01T00-00-00Z" / "lightcurves").mkdir(parents=True)
    (variability / "2026-01-01T00-00-00Z" / "eta_v.png").write_bytes(b"png")
    (variability / "2026-01-01T00-00-00Z" / "lightcurves" / "A.png").write_bytes(b"png")
    pd.DataFrame(
        {
            "source_id": ["A", "B", "C", "D", "E"],
            "class": [CLASS_VARIABLE, CLASS_STABLE, CLASS_INSUFFICIENT, CLASS_VARIABLE,
                      CLASS_STABLE],
            "n": [5, 5, 1, 5, 5],
            "v": [0.5, 0.01, float("nan"), 0.3, 0.01],
            "eta": [40.0, 0.9, float("nan"), 20.0, 1.1],
        }
    ).to_parquet(variability / "latest.parquet")  # fmt: skip
    verdict = judge(truth, tmp_path / "results")
    found = {i.source_id: (i.found_class, i.recovered, i.judged) for i in verdict.injected}
    assert found == {
        "A": (CLASS_VARIABLE, True, True),
        "B": (CLASS_STABLE, False, True),
        "C": (CLASS_INSUFFICIENT, False, False),
        "F": ("not measured", False, False),
    }
    assert (verdict.recovered, verdict.judged) == (1, 2)
    assert verdict.false_positives == ["D"]
    assert [p.name for p in verdict.plots] == ["eta_v.png", "A.png"]
