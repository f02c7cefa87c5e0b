"""The demo's verdict against the simulator's truth: recovered, unjudged and false positives."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dsa110d.demo_report import ParsedVerdict, judge, parse_verdict, verdict_line
from dsa110d.science.photometry import stage as photometry
from dsa110d.science.variability.metrics import CLASS_INSUFFICIENT, CLASS_STABLE, CLASS_VARIABLE
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


def test_a_verdict_with_any_judged_variable_missed_or_any_false_positive_fails() -> None:
    def parsed(recovered: int, judged: int, injected: int, false_positives: int) -> ParsedVerdict:
        text = (
            f"recovered {recovered} of {judged} judged injected variables ({injected} injected; "
            "the others had too few usable measurements or varied too little while measured); "
            f"false positives: {false_positives}"
        )
        found = parse_verdict(text)
        assert found == ParsedVerdict(recovered, judged, injected, false_positives)
        return found

    assert parsed(8, 8, 8, 0).perfect
    assert parsed(1, 1, 2, 0).perfect  # one injected variable could not be judged
    assert not parsed(0, 8, 8, 0).perfect  # the pattern of old accepted this
    assert not parsed(7, 8, 8, 0).perfect
    assert not parsed(8, 8, 8, 1).perfect
    assert not parsed(0, 0, 3, 0).perfect  # nothing judged proves nothing
    assert parse_verdict("recovered 0 of 8 injected variables; false positives: 0") is None


def test_a_variable_that_barely_changed_between_its_measured_epochs_is_not_judged(
    tmp_path: Path,
) -> None:
    # Three sets starting at MJD 61000.0, 61000.5, 61001.0 (UTC midnight, noon, midnight).
    # H: true 1.00, 0.95, 2.00 Jy, measured in sets 0 and 1 only: m = 2 (1 - 0.95) / 1.95
    #    = 0.051 < 0.26, so not judged, whatever the analysis says.
    # J: true 1.00, 1.40, 1.00 Jy, measured in sets 0 and 1: m = 2 (0.4) / 2.4 = 0.333: judged,
    #    and the analysis called it stable: a real miss.
    starts = ["2025-11-21T00:00:00+00:00", "2025-11-21T12:00:00+00:00", "2025-11-22T00:00:00"]
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({
        "sets": [{"start": s} for s in starts],
        "sources": [
            {**_source("H", "sinusoid"), "flux_per_set_jy": [1.0, 0.95, 2.0]},
            {**_source("J", "step"), "flux_per_set_jy": [1.0, 1.4, 1.0]},
        ],
    }))  # fmt: skip
    variability = tmp_path / "results" / "variability"
    variability.mkdir(parents=True)
    pd.DataFrame(
        {"source_id": ["H", "J"], "class": [CLASS_STABLE, CLASS_STABLE], "n": [2, 2],
         "v": [0.03, 0.2], "eta": [1.0, 30.0]}
    ).to_parquet(variability / "latest.parquet")  # fmt: skip
    for b, mjd in enumerate((61000.01, 61000.52)):  # inside sets 0 and 1
        rows = block_rows(b).iloc[:2].assign(source_id=["H", "J"], mjd=mjd, flags="")
        photometry.write_photometry(
            rows.astype({"source_id": "string", "flags": "string"}),
            tmp_path / "results" / "photometry" / f"b{b}.parquet",
        )
    verdict = judge(truth, tmp_path / "results")
    swing = {i.source_id: (i.true_swing, i.judged) for i in verdict.injected}
    assert swing["H"][0] == pytest.approx(0.1 / 1.95, rel=1e-12) and not swing["H"][1]
    assert swing["J"][0] == pytest.approx(0.8 / 2.4, rel=1e-12) and swing["J"][1]
    parsed = parse_verdict(verdict_line(verdict))
    assert parsed == ParsedVerdict(0, 1, 2, 0) and not parsed.perfect
