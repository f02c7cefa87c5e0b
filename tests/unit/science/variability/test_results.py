"""Publishing a variability run: files, candidates, plots and the summary."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from dsa110d.science.atomic import TEMP_PREFIX
from dsa110d.science.variability import metrics as var
from dsa110d.science.variability import results
from dsa110d.science.variability.plots import eta_threshold
from dsa110d.science.variability.state import VariabilityState

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUN_TIME = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def analysed_state():
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


def test_run_writes_table_latest_candidates_and_plots(tmp_path):
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


def test_summary_counts_classes_and_is_json(tmp_path):
    state = analysed_state()
    thresholds = var.Thresholds(min_data_points=10)
    frame = var.metrics_frame(state.metrics(), thresholds)
    summary = results.summary(frame, RUN_TIME, thresholds, top=2)
    assert summary["counts"] == {
        "transient": 1,
        "variable": 3,
        "stable": 56,
        "insufficient_data": 0,
    }
    assert summary["n_candidates"] == 4 and len(summary["top_candidates"]) == 2
    assert summary["n_measurements"] == 900
    decoded = json.loads(json.dumps(summary, allow_nan=False))
    assert decoded["top_candidates"][0]["source_id"] == 10


def test_eta_threshold_is_the_chi_square_quantile():
    # 2 degrees of freedom: sf(x) = exp(-x/2), so x = -2 ln p and eta = x / 2.
    assert abs(eta_threshold(1e-3, 3) - (-np.log(1e-3))) < 1e-9
