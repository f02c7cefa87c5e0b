"""The demo's verdict against the simulator's truth: recovered, unjudged and false positives."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dsa110d.demo_report import ParsedVerdict, judge, parse_verdict, verdict_line
from dsa110d.science import photometry
from dsa110d.science.variability import CLASS_INSUFFICIENT, CLASS_STABLE, CLASS_VARIABLE
from tests.integration.services.seed import block_rows


def _source(sid: str, kind: str | None) -> dict[str, object]:
    return {"id": sid, "variable": kind is not None,
            "variability": {"kind": kind} if kind else None}  # fmt: skip


def test_judge_counts_recovered_unjudged_and_false_positives(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"sources": [
        _source("A", "flare"), _source("B", "step"), _source("C", "sinusoid"),
        _source("D", None), _source("E", None), _source("F", "flare"), _source("G", "step"),
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
    # G: measured in one block, flagged there (the processor's flag names, its writer)
    flagged = block_rows(0).iloc[:1].assign(source_id="G", flags="partial_transit")
    photometry.write_photometry(
        flagged.astype({"source_id": "string", "flags": "string"}),
        tmp_path / "results" / "photometry" / "blk.parquet",
    )
    verdict = judge(truth, tmp_path / "results")
    found = {i.source_id: (i.found_class, i.recovered, i.judged) for i in verdict.injected}
    assert found == {
        "A": (CLASS_VARIABLE, True, True),
        "B": (CLASS_STABLE, False, True),
        "C": (CLASS_INSUFFICIENT, False, False),
        "F": ("not measured", False, False),
        "G": ("no usable measurement", False, False),
    }
    assert (verdict.recovered, verdict.judged) == (1, 2)
    assert verdict.false_positives == ["D"]
    assert [p.name for p in verdict.plots] == ["eta_v.png", "A.png"]


def test_the_printed_verdict_reads_back_and_only_a_perfect_one_passes(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"sources": [_source("A", "flare"), _source("D", None)]}))
    variability = tmp_path / "results" / "variability"
    variability.mkdir(parents=True)
    pd.DataFrame(
        {"source_id": ["A", "D"], "class": [CLASS_VARIABLE, CLASS_VARIABLE], "n": [5, 5],
         "v": [0.5, 0.3], "eta": [40.0, 20.0]}
    ).to_parquet(variability / "latest.parquet")  # fmt: skip
    line = verdict_line(judge(truth, tmp_path / "results"))
    wrapped = "plots:\n" + line.replace(" injected ", "\n injected ").replace("; ", ";\n")
    assert parse_verdict(wrapped) == ParsedVerdict(1, 1, 1, 1)


def test_a_verdict_with_any_variable_missed_or_any_false_positive_fails() -> None:
    def parsed(recovered: int, injected: int, judged: int, false_positives: int) -> ParsedVerdict:
        text = (
            f"recovered {recovered} of {injected} injected variables ({judged} had enough "
            f"measurements to judge); false positives: {false_positives}"
        )
        found = parse_verdict(text)
        assert found == ParsedVerdict(recovered, injected, judged, false_positives)
        return found

    assert parsed(8, 8, 8, 0).perfect
    assert not parsed(0, 8, 8, 0).perfect  # the pattern of old accepted this
    assert not parsed(7, 8, 8, 0).perfect
    assert not parsed(8, 8, 8, 1).perfect
    assert not parsed(0, 0, 0, 0).perfect  # nothing injected proves nothing
    assert parse_verdict("no verdict here") is None
