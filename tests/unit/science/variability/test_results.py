"""Publishing a variability run: files, candidates, plots and the summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import votable

from dsa110d.science.atomic import TEMP_PREFIX
from dsa110d.science.variability import metrics as var
from dsa110d.science.variability import results
from dsa110d.science.variability.plots import eta_threshold
from dsa110d.science.variability.state import VariabilityState
from tests.helpers.xmltree import text

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUN_TIME = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def analysed_state() -> VariabilityState:
    rng = np.random.default_rng(11)
    state = VariabilityState()
    n_src, n_blk = 60, 15
    for b in range(n_blk):
        sid = np.arange(n_src)
        level = np.where(sid < 3, 1.0 + 0.6 * (b % 2), 1.0)  # 3 variables
        level = np.where((sid == 10) & (b < 8), 0.0, level)  # 1 new source
        err = np.full(n_src, 0.01)
        state.apply_block(
            pd.DataFrame(
                {
                    "source_id": sid,
                    "ra_deg": 1.0 * sid,
                    "dec_deg": 5.0,
                    "block_id": f"blk{b:02d}",
                    "mjd": 60000.0 + b,
                    "flux_jy": level + rng.normal(0, 0.01, n_src),
                    "flux_err_jy": err,
                    "flags": 0,
                    "version": 1,
                }
            )
        )
    return state


def test_run_writes_table_latest_candidates_and_plots(tmp_path: Path) -> None:
    state = analysed_state()
    thresholds = var.Thresholds(min_data_points=10)
    frame = var.metrics_frame(state.metrics(), thresholds)
    out = results.write_results(frame, tmp_path, RUN_TIME, thresholds, state.light_curves)
    vdir = tmp_path / "variability"
    assert out.table == vdir / "2026-11-26T12-00-00Z.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(out.table), pd.read_parquet(out.latest))
    assert len(pd.read_parquet(out.latest)) == 60
    doc = json.loads(out.candidates.read_text())
    assert doc["candidates"][0]["source_id"] == 10  # the transient leads
    assert {c["source_id"] for c in doc["candidates"]} == {0, 1, 2, 10}
    assert doc["candidates"][0]["class"] == "transient"
    assert out.eta_v_plot is not None and out.eta_v_plot.read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(p.name for p in out.light_curves) == ["0.png", "1.png", "10.png", "2.png"]
    assert all(p.read_bytes()[:8] == PNG_SIGNATURE for p in out.light_curves)
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def test_run_writes_votables_light_curve_tables_and_one_voevent_per_new_candidate(
    tmp_path: Path,
) -> None:
    state = analysed_state()
    thresholds = var.Thresholds(min_data_points=10)
    frame = var.metrics_frame(state.metrics(), thresholds)
    out = results.write_results(
        frame, tmp_path, RUN_TIME, thresholds, state.light_curves, voevent_authority="x.test"
    )
    vdir = tmp_path / "variability"
    cands = votable.parse_single_table(str(vdir / "candidates.vot")).to_table()
    doc = json.loads(out.candidates.read_text())
    assert list(cands["source_id"]) == [c["source_id"] for c in doc["candidates"]]  # same ranking
    np.testing.assert_array_equal(
        np.asarray(cands["mean_flux_jy"]), [c["mean_flux_jy"] for c in doc["candidates"]]
    )
    assert out.candidates_votable == vdir / "2026-11-26T12-00-00Z.candidates.vot"
    names = sorted(p.name for p in out.light_curve_tables)
    assert names == sorted(f"{s}.{ext}" for s in (0, 1, 2, 10) for ext in ("csv", "vot"))
    curve = pd.read_csv(next(p for p in out.light_curve_tables if p.name == "10.csv"))
    held = state.light_curves([10])
    np.testing.assert_array_equal(curve["flux_jy"].to_numpy(), held["flux_jy"].to_numpy())
    # one packet per candidate, under the authority; the transient's position is its own
    assert sorted(v["ivorn"] for v in out.voevents) == sorted(
        f"ivo://x.test/dsa110d/variability#{s}_{c}"
        for s, c in ((10, "transient"), (0, "variable"), (1, "variable"), (2, "variable"))
    )
    transient = next(v for v in out.voevents if v["source_id"] == 10)
    root = ET.parse(transient["path"]).getroot()
    assert float(text(root, ".//Position2D/Value2/C1")) == 10.0  # ra_deg = source id
    # a second run (or a retried one) finds every candidate announced: no packet twice
    again = results.write_results(
        frame, tmp_path, RUN_TIME + timedelta(hours=1), thresholds, voevent_authority="x.test"
    )
    assert again.voevents == []
    assert len(list((vdir / "voevents").glob("*.xml"))) == 4


def test_summary_counts_classes_and_is_json(tmp_path: Path) -> None:
    state = analysed_state()
    thresholds = var.Thresholds(min_data_points=10)
    frame = var.metrics_frame(state.metrics(), thresholds)
    summary = results.summary(frame, RUN_TIME, thresholds, top=2)
    assert summary["counts"] == {
        "transient": 1,
        "variable": 3,
        "stable": 56,
        "insufficient_data": 0,
        "faint": 0,
    }
    assert summary["n_candidates"] == 4 and len(summary["top_candidates"]) == 2
    assert summary["n_measurements"] == 900
    decoded = json.loads(json.dumps(summary, allow_nan=False))
    assert decoded["top_candidates"][0]["source_id"] == 10


def test_eta_threshold_is_the_chi_square_quantile() -> None:
    # 2 degrees of freedom: sf(x) = exp(-x/2), so x = -2 ln p and eta = x / 2.
    assert abs(eta_threshold(1e-3, 3) - (-np.log(1e-3))) < 1e-9


def test_a_candidate_without_a_position_gets_no_voevent(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = [
        {"source_id": "A", "class": "variable", "ra_deg": None, "dec_deg": None},
        {"source_id": "B", "class": "transient", "ra_deg": 1.5, "dec_deg": -2.0},
    ]
    written = results.write_new_voevents(records, tmp_path, "x.test", RUN_TIME)
    assert [w["source_id"] for w in written] == ["B"]
    assert [p.name for p in tmp_path.iterdir()] == ["B_transient.xml"]
