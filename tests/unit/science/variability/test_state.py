"""The incremental state of science/variability/state.py agrees with a full recompute, and
survives a save and load (science/variability/store.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsa110d.errors import VariabilityInputError
from dsa110d.science.variability import metrics as var
from dsa110d.science.variability.state import METRIC_RTOL, VariabilityState
from dsa110d.science.variability.store import load_state, save_state

N_SOURCES = 120
N_BLOCKS = 24


def make_blocks(
    seed: int,
    n_sources: int = N_SOURCES,
    n_blocks: int = N_BLOCKS,
    offset: float = 0.0,
    repeats: bool = False,
) -> list[pd.DataFrame]:
    """Per-block photometry: steady, variable, new and faint sources, some flagged rows."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.005, 2.0, n_sources) + offset
    blocks = []
    for b in range(n_blocks):
        sid = np.arange(n_sources)
        if repeats:  # a block that measured some sources twice
            sid = np.concatenate([sid, rng.choice(n_sources, n_sources // 4)])
        err = rng.uniform(0.002, 0.05, sid.size)
        level = truth[sid] * np.where(sid % 7 == 0, 1 + 0.5 * np.sin(b / 3), 1.0)
        level = np.where((sid % 11 == 0) & (b < n_blocks // 2), 0.0, level)
        flux = level + rng.normal(0, 1, sid.size) * err
        blocks.append(
            pd.DataFrame(
                {
                    "source_id": sid,
                    "ra_deg": sid * 0.5,
                    "dec_deg": -10.0,
                    "block_id": f"2026-01-01T{b:02d}",
                    "mjd": 61000.0 + b / 24 + rng.uniform(0, 1e-3, sid.size),
                    "flux_jy": flux,
                    "flux_err_jy": err,
                    "n_vis": 100,
                    "beam_gain": 0.9,
                    "flags": (rng.uniform(size=sid.size) < 0.02).astype(np.int32),
                    "version": 1,
                }
            )
        )
    return blocks


def assert_same_metrics(state: VariabilityState, rows: pd.DataFrame) -> None:
    got = var.metrics_frame(state.metrics()).sort_values("source_id").reset_index(drop=True)
    want = var.metrics_frame(var.recompute(rows))
    assert list(got.columns) == list(want.columns)
    for col in want.columns:
        a, b = want[col].to_numpy(), got[col].to_numpy()
        if a.dtype.kind == "f":
            np.testing.assert_allclose(b, a, rtol=METRIC_RTOL, atol=0, equal_nan=True, err_msg=col)
        else:
            np.testing.assert_array_equal(b, a, err_msg=col)


def test_incremental_equals_full_recompute_in_time_order() -> None:
    blocks = make_blocks(1)
    state = VariabilityState()
    for block in blocks:
        state.apply_block(block)
    assert_same_metrics(state, pd.concat(blocks))


def test_incremental_equals_full_recompute_out_of_order_and_repeated_sources() -> None:
    blocks = make_blocks(2, repeats=True)
    state = VariabilityState()
    for i in np.random.default_rng(0).permutation(len(blocks)):
        state.apply_block(blocks[i])
    assert_same_metrics(state, pd.concat(blocks))


def test_running_sums_stay_accurate_far_from_zero() -> None:
    # 1e4 Jy offset with mJy scatter: naive power sums would lose every digit of the variance.
    blocks = make_blocks(3, offset=1e4)
    state = VariabilityState()
    for block in blocks:
        state.apply_block(block)
    assert_same_metrics(state, pd.concat(blocks))


def test_superseded_block_is_subtracted_and_its_replacement_added() -> None:
    blocks = make_blocks(4)
    state = VariabilityState()
    for block in blocks:
        state.apply_block(block)
    redo = blocks[5].copy()
    redo["version"] = 2
    redo["flux_jy"] = redo["flux_jy"] * 1.7
    [update] = state.apply_block(redo)
    assert update.action == "replaced"
    assert_same_metrics(state, pd.concat([*blocks, redo]))
    assert_same_metrics(state, pd.concat([*blocks[:5], redo, *blocks[6:]]))


def test_older_or_same_version_of_a_held_block_is_ignored() -> None:
    blocks = make_blocks(5, n_blocks=6)
    state = VariabilityState()
    redo = blocks[2].copy()
    redo["version"] = 3
    for block in [*blocks, redo]:
        state.apply_block(block)
    stale = blocks[2].copy()
    stale["flux_jy"] = 99.0
    assert [u.action for u in state.apply_block(stale)] == ["ignored"]
    assert [u.action for u in state.apply_block(redo)] == ["ignored"]
    assert_same_metrics(state, pd.concat([*blocks, redo]))


def test_save_and_load_round_trip_then_continue(tmp_path: Path) -> None:
    blocks = make_blocks(6)
    state = VariabilityState()
    for block in blocks[:12]:
        state.apply_block(block)
    save_state(state, tmp_path / "state")
    restored = load_state(tmp_path / "state")
    assert_same_metrics(restored, pd.concat(blocks[:12]))
    redo = blocks[3].copy()
    redo["version"] = 2
    for block in [*blocks[12:], redo]:
        restored.apply_block(block)
    save_state(restored, tmp_path / "state")
    again = load_state(tmp_path / "state")
    assert_same_metrics(again, pd.concat([*blocks, redo]))
    manifest = json.loads((tmp_path / "state" / "manifest.json").read_text())
    assert manifest["blocks"]["2026-01-01T03"]["version"] == 2
    files = sorted(p.name for p in (tmp_path / "state" / "blocks").iterdir())
    assert len(files) == len(blocks) and "2026-01-01T03.v1.parquet" not in files
    assert all(p.suffix in {".parquet", ".json"} for p in (tmp_path / "state").rglob("*.*"))


def test_missing_state_is_empty_and_corrupt_state_names_the_directory(tmp_path: Path) -> None:
    assert len(load_state(tmp_path / "none").ids) == 0
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(VariabilityInputError, match="bad: unreadable variability state"):
        load_state(tmp_path / "bad")


def test_light_curves_are_the_held_measurements() -> None:
    blocks = make_blocks(7, n_blocks=4)
    state = VariabilityState()
    for block in blocks:
        state.apply_block(block)
    curve = state.light_curves([3])
    usable = var.usable_rows(pd.concat(blocks))
    want = usable[usable["source_id"] == 3].sort_values("mjd")
    np.testing.assert_array_equal(curve["flux_jy"].to_numpy(), want["flux_jy"].to_numpy())


points = st.lists(
    st.tuples(
        st.one_of(st.floats(-0.2, 2.0), st.sampled_from([0.5, 1.0])),
        st.one_of(st.floats(0.005, 0.3), st.sampled_from([0.01, 0.05])),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(points, st.randoms(use_true_random=False))
def test_incremental_pair_metric_is_exact_point_by_point(
    pts: list[tuple[float, float]], rnd: random.Random
) -> None:
    # Two sources fed the same points in different orders, one block per point.
    order = list(range(len(pts)))
    rnd.shuffle(order)
    rows: list[dict[str, Any]] = []
    for b, (f, e) in enumerate(pts):
        for sid, pos in ((0, b), (1, order.index(b))):
            rows.append(
                {
                    "source_id": sid,
                    "block_id": f"b{b}",
                    "mjd": 60000.0 + pos,
                    "flux_jy": f,
                    "flux_err_jy": e,
                    "flags": 0,
                    "version": 1,
                }
            )
    frame = pd.DataFrame(rows)
    state = VariabilityState()
    for _, block in frame.groupby("block_id", sort=False):
        state.apply_block(block)
    got = var.metrics_frame(state.metrics()).sort_values("source_id")
    want = var.metrics_frame(var.recompute(frame))
    for col in ("vs", "m"):
        np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy())


def test_many_blocks_in_one_call_equal_one_at_a_time() -> None:
    blocks = make_blocks(8, n_blocks=8)
    state = VariabilityState()
    updates = state.apply_block(pd.concat(blocks))
    assert [u.action for u in updates] == ["added"] * 8
    assert_same_metrics(state, pd.concat(blocks))
