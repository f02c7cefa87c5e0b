"""Metrics, the pair search and the classification of science/variability/metrics.py."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsa110d.errors import VariabilityInputError
from dsa110d.science.variability import metrics as var
from dsa110d.science.variability import pairs as pairs
from dsa110d.science.variability import rowwise
from dsa110d.science.variability.metrics import FloatArray
from dsa110d.science.variability.state import METRIC_RTOL, VariabilityState

HAND_TOL = 1e-12


def photometry(
    fluxes: Sequence[float] | FloatArray,
    errs: Sequence[float] | FloatArray,
    *,
    source_id: int = 1,
    blocks: list[str] | None = None,
    version: int = 1,
    mjd0: float = 60000.0,
    flags: int = 0,
) -> pd.DataFrame:
    """Rows of one source, one per block."""
    n = len(fluxes)
    blocks = blocks or [f"blk{i:03d}" for i in range(n)]
    return pd.DataFrame(
        {
            "source_id": source_id,
            "ra_deg": 10.0,
            "dec_deg": 20.0,
            "block_id": blocks,
            "mjd": mjd0 + np.arange(n, dtype=float),
            "flux_jy": np.asarray(fluxes, dtype=float),
            "flux_err_jy": np.asarray(errs, dtype=float),
            "n_vis": 1000,
            "beam_gain": 1.0,
            "flags": flags,
            "version": version,
        }
    )


def frame_of(rows: pd.DataFrame, **thresholds: Any) -> pd.DataFrame:
    return var.metrics_frame(var.recompute(rows), var.Thresholds(**thresholds))


def test_metrics_match_hand_computed_values() -> None:
    # fluxes 1, 2, 4 Jy with errors 0.1, 0.1, 0.2 Jy (weights 100, 100, 25):
    # mean 7/3; std(ddof=1) = sqrt(7/3); xi = 400/225 = 16/9;
    # eta = (100 (7/9)^2 + 100 (2/9)^2 + 25 (20/9)^2) / 2 = 15300/162;
    # chi2 with 2 dof: sf(x) = exp(-x/2).
    row = frame_of(photometry([1.0, 2.0, 4.0], [0.1, 0.1, 0.2]), min_data_points=3).iloc[0]
    assert row["n"] == 3
    assert row["mean_flux_jy"] == pytest.approx(7 / 3, abs=HAND_TOL)
    assert row["wmean_flux_jy"] == pytest.approx(16 / 9, abs=HAND_TOL)
    assert row["std_flux_jy"] == pytest.approx(math.sqrt(7 / 3), abs=HAND_TOL)
    assert row["v"] == pytest.approx(math.sqrt(7 / 3) / (7 / 3), abs=HAND_TOL)
    assert row["eta"] == pytest.approx(15300 / 162, rel=HAND_TOL)
    assert row["p_constant"] == pytest.approx(math.exp(-15300 / 162), rel=1e-9)
    # pairs: (4,1) Vs = 3/sqrt(0.05), m = 6/5 is the largest m and significant.
    assert row["m"] == pytest.approx(1.2, abs=HAND_TOL)
    assert row["vs"] == pytest.approx(3 / math.sqrt(0.05), abs=HAND_TOL)
    assert (row["pair_mjd_a"], row["pair_mjd_b"]) == (60002.0, 60000.0)
    assert row["class"] == var.CLASS_VARIABLE


def test_pair_with_largest_m_is_skipped_when_not_significant() -> None:
    # (3, 1): m = 1.0 but Vs = 2/sqrt(1.01) < 4.3; (2, 1): m = 2/3, Vs = 1/sqrt(0.02) = 7.07.
    row = frame_of(photometry([1.0, 2.0, 3.0], [0.1, 0.1, 1.0])).iloc[0]
    assert row["m"] == pytest.approx(2 / 3, abs=HAND_TOL)
    assert row["vs"] == pytest.approx(1 / math.sqrt(0.02), abs=HAND_TOL)


def test_no_significant_pair_gives_nan() -> None:
    row = frame_of(photometry([1.0, 1.01, 0.99], [0.1, 0.1, 0.1])).iloc[0]
    assert math.isnan(row["m"]) and math.isnan(row["vs"])


def test_non_positive_fluxes_take_no_part_in_pairs() -> None:
    # (1, -1) would have an unbounded m; only (1, 0.5) counts: m = 2/3, Vs = 0.5/sqrt(0.0002).
    row = frame_of(photometry([1.0, -1.0, 0.5], [0.01, 0.01, 0.01])).iloc[0]
    assert row["m"] == pytest.approx(2 / 3, abs=HAND_TOL)
    assert row["vs"] == pytest.approx(0.5 / math.sqrt(2e-4), rel=1e-12)


def test_only_the_latest_version_of_each_block_counts() -> None:
    old = photometry([1.0, 2.0, 3.0], [0.1, 0.1, 0.1], version=1)
    new = photometry([5.0], [0.1], blocks=["blk001"], version=2, mjd0=60001.0)
    got = frame_of(pd.concat([old, new]))
    want = frame_of(pd.concat([old[old["block_id"] != "blk001"], new]))
    pd.testing.assert_frame_equal(got, want)
    assert got.iloc[0]["mean_flux_jy"] == pytest.approx(3.0, abs=HAND_TOL)


def test_flagged_and_non_finite_rows_are_ignored() -> None:
    rows = photometry([1.0, 2.0, 3.0, 4.0, 5.0], [0.1, 0.1, 0.1, 0.1, 0.0])
    rows.loc[1, "flags"] = 4
    rows.loc[2, "flux_jy"] = np.nan
    row = frame_of(rows).iloc[0]
    assert row["n"] == 2
    assert row["mean_flux_jy"] == pytest.approx(2.5, abs=HAND_TOL)


def test_missing_column_names_the_input() -> None:
    rows = photometry([1.0], [0.1]).drop(columns=["flux_err_jy"])
    with pytest.raises(
        VariabilityInputError, match=r"blk\.parquet: missing column\(s\) flux_err_jy"
    ):
        var.usable_rows(rows, where="blk.parquet")


def test_classes_follow_the_thresholds() -> None:
    rng = np.random.default_rng(5)
    n = 20
    steady = 1.0 + rng.normal(0, 0.01, n)
    swinging = np.where(np.arange(n) % 2 == 0, 1.0, 1.6)
    rows = pd.concat(
        [
            photometry(steady, np.full(n, 0.01), source_id=1),
            photometry(swinging, np.full(n, 0.01), source_id=2),
            photometry(steady[:5], np.full(5, 0.01), source_id=3),
            # a variable in V but consistent with constant (errors as large as the swing)
            photometry(swinging, np.full(n, 1.0), source_id=4),
        ]
    )
    got = dict(
        zip(*frame_of(rows, min_data_points=10)[["source_id", "class"]].T.values, strict=True)
    )
    assert got[1] == var.CLASS_STABLE
    assert got[2] == var.CLASS_VARIABLE
    assert got[3] == var.CLASS_INSUFFICIENT
    assert got[4] == var.CLASS_STABLE


def _snr_curve(snrs: list[float]) -> pd.DataFrame:
    return photometry(np.asarray(snrs, dtype=float) * 0.01, np.full(len(snrs), 0.01))


def test_new_source_after_blocks_consistent_with_zero_is_transient() -> None:
    row = frame_of(_snr_curve([0.5, -1.0, 2.9, 12.0, 11.0]), min_data_points=10).iloc[0]
    assert row["class"] == var.CLASS_TRANSIENT
    assert row["first_detection_mjd"] == 60003.0
    assert row["first_detection_snr"] == pytest.approx(12.0)
    assert row["n_prior_blocks"] == 3


@pytest.mark.parametrize(
    "snrs",
    [
        [0.0, var.TRANSIENT_DETECTION_SNR * 2],  # one prior block is not enough
        [0.0, var.ZERO_CONSISTENT_SNR + 0.5, 0.0, 12.0],  # a prior block was not zero
        [0.0, 1.0, var.TRANSIENT_DETECTION_SNR - 0.1],  # never significantly detected
        [12.0, 0.0, 0.0, 12.0],  # detected from the start: not new
    ],
)
def test_not_a_new_source(snrs: list[float]) -> None:
    assert not frame_of(_snr_curve(snrs)).iloc[0]["is_new_source"]


def brute_force_pair(
    flux: FloatArray, err: FloatArray, mjd: FloatArray
) -> tuple[float, float, float, float]:
    """Every ordered pair: the definition, for the property test."""
    best = (-math.inf, -math.inf, math.nan, math.nan)
    for i, j in significant_pairs(flux, err):
        vs, m = (float(x) for x in pairs.pair_metrics(flux[i], err[i], flux[j], err[j]))
        if m > best[0] or (m == best[0] and vs > best[1]):
            best = (m, vs, float(mjd[i]), float(mjd[j]))
    return best


def significant_pairs(flux: FloatArray, err: FloatArray) -> Iterator[tuple[int, int]]:
    for i, j in itertools.permutations(range(len(flux)), 2):
        if not (flux[i] > flux[j] > 0) or not (np.isfinite(flux[i]) and np.isfinite(flux[j])):
            continue
        if pairs.pair_metrics(flux[i], err[i], flux[j], err[j])[0] >= pairs.VS_THRESHOLD:
            yield i, j


def near_best_vs(flux: FloatArray, err: FloatArray, best_m: float) -> list[float]:
    """Vs of every significant pair whose m ties the best to METRIC_RTOL (float-noise ties)."""
    return [
        float(pairs.pair_metrics(flux[i], err[i], flux[j], err[j])[0])
        for i, j in significant_pairs(flux, err)
        if pairs.pair_metrics(flux[i], err[i], flux[j], err[j])[1]
        == pytest.approx(best_m, rel=METRIC_RTOL)
    ]


flux_values = st.one_of(
    st.floats(-0.5, 3.0, allow_nan=False),
    st.sampled_from([0.0, 0.5, 1.0, 2.0]),  # exact ties
)
err_values = st.one_of(st.floats(0.001, 0.5), st.sampled_from([0.01, 0.1]))
light_curves = st.lists(
    st.lists(st.tuples(flux_values, err_values), min_size=0, max_size=14), min_size=1, max_size=6
)


@settings(max_examples=300, deadline=None)
@given(light_curves)
def test_staircase_search_equals_brute_force(curves: list[list[tuple[float, float]]]) -> None:
    check_against_brute_force(curves)


@settings(max_examples=100, deadline=None)
@given(light_curves)
def test_staircase_search_one_row_per_chunk_equals_brute_force(
    curves: list[list[tuple[float, float]]],
) -> None:
    # Every row its own chunk of the sort: staircases of different widths joined after.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pairs, "STAIRCASE_CHUNK_CELLS", 1)
        check_against_brute_force(curves)


def check_against_brute_force(curves: list[list[tuple[float, float]]]) -> None:
    width = max(max(len(c) for c in curves), 1)
    flux = np.full((len(curves), width), np.nan)
    err = np.full((len(curves), width), np.nan)
    mjd = np.tile(np.arange(width, dtype=float), (len(curves), 1))
    for r, c in enumerate(curves):
        for k, (f, e) in enumerate(c):
            flux[r, k], err[r, k] = f, e
    vs, m, _, _ = pairs.best_pairs_dense(flux, err, mjd)
    for r in range(len(curves)):
        want_m, _, _, _ = brute_force_pair(flux[r], err[r], mjd[r])
        if want_m == -math.inf:
            assert math.isnan(m[r]) and math.isnan(vs[r])
        else:
            # computed vectorised vs scalar, m agrees to the last few ulps; pairs whose m ties
            # within that noise may be chosen either way, so Vs must be one of theirs
            assert m[r] == pytest.approx(want_m, rel=METRIC_RTOL)
            assert any(
                vs[r] == pytest.approx(v, rel=METRIC_RTOL)
                for v in near_best_vs(flux[r], err[r], want_m)
            )


def test_block_layout_fast_path_equals_the_general_path() -> None:
    rng = np.random.default_rng(9)
    n_src, n_blk = 50, 12
    rows = pd.concat(
        [
            photometry(rng.normal(1, 0.2, n_blk), rng.uniform(0.01, 0.05, n_blk), source_id=s)
            for s in range(n_src)
        ]
    ).sort_values(["block_id", "source_id"], kind="stable")
    rows.loc[rows.index[:7], "flags"] = 1
    shuffled = rows.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(frame_of(rows), frame_of(shuffled), rtol=1e-12)


def _unit_snr_curve(snrs: list[float]) -> pd.DataFrame:
    """Flux = SNR with a 1 Jy error, so every SNR in the curve is exact in floating point."""
    return photometry(np.asarray(snrs, dtype=float), np.ones(len(snrs)))


def _new_source_by_every_path(rows: pd.DataFrame) -> list[bool]:
    """is_new_source from the full recompute, the incremental state fed in time order, and the
    state fed in reverse order (late blocks: its rebuild from the held light curves)."""
    in_order, reverse = VariabilityState(), VariabilityState()
    blocks = [rows[rows["block_id"] == b] for b in rows["block_id"]]
    for block in blocks:
        in_order.apply_block(block)
    for block in reversed(blocks):
        reverse.apply_block(block)
    return [
        bool(var.metrics_frame(m).iloc[0]["is_new_source"])
        for m in (var.recompute(rows), in_order.metrics(), reverse.metrics())
    ]


NEW_SOURCE_BOUNDARIES = [
    # exactly TRANSIENT_MIN_PRIOR_BLOCKS earlier blocks at zero, then a clear detection
    ([0.0] * var.TRANSIENT_MIN_PRIOR_BLOCKS + [12.0], True),
    ([0.0] * (var.TRANSIENT_MIN_PRIOR_BLOCKS - 1) + [12.0], False),
    # a detection at exactly TRANSIENT_DETECTION_SNR counts; just below it does not
    ([0.0, 0.0, var.TRANSIENT_DETECTION_SNR], True),
    ([0.0, 0.0, float(np.nextafter(var.TRANSIENT_DETECTION_SNR, 0.0))], False),
    # a prior block at exactly ZERO_CONSISTENT_SNR was not consistent with zero; just below was
    ([0.0, var.ZERO_CONSISTENT_SNR, 12.0], False),
    ([0.0, -var.ZERO_CONSISTENT_SNR, 12.0], False),
    ([0.0, float(np.nextafter(var.ZERO_CONSISTENT_SNR, 0.0)), 12.0], True),
]


@pytest.mark.parametrize(("snrs", "new"), NEW_SOURCE_BOUNDARIES)
def test_new_source_rule_at_its_boundaries(snrs: list[float], new: bool) -> None:
    assert TRANSIENT_RULE == (2, 5.0, 3.0)  # the constants these cases were worked out for
    assert _new_source_by_every_path(_unit_snr_curve(snrs)) == [new, new, new]


TRANSIENT_RULE = (
    var.TRANSIENT_MIN_PRIOR_BLOCKS,
    var.TRANSIENT_DETECTION_SNR,
    var.ZERO_CONSISTENT_SNR,
)


def test_block_layout_in_small_chunks_matches_per_source_formulas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Chunks of 3 and 2 sources for the per-row work and the staircase sort: the chunk
    # boundaries fall inside the processor's (blocks, sources) layout read as a view.
    n_src, n_blk = 7, 12
    monkeypatch.setattr(rowwise, "ROW_CHUNK_CELLS", 3 * n_blk)
    monkeypatch.setattr(pairs, "STAIRCASE_CHUNK_CELLS", 2 * n_blk)
    rng = np.random.default_rng(21)
    flux = rng.normal(1.0, 0.3, (n_src, n_blk))
    err = rng.uniform(0.01, 0.05, (n_src, n_blk))
    flux[4, :3] = 0.0  # source 4: three blocks consistent with zero, then detected
    rows = pd.concat([photometry(flux[s], err[s], source_id=s) for s in range(n_src)]).sort_values(
        ["block_id", "source_id"], kind="stable"
    )
    got = frame_of(rows).set_index("source_id")
    mjd = 60000.0 + np.arange(n_blk, dtype=float)
    for s in range(n_src):
        f, e = flux[s], err[s]
        w = 1 / e**2
        xi = float((w * f).sum() / w.sum())
        row = got.loc[s]
        assert row["n"] == n_blk
        assert row["mean_flux_jy"] == pytest.approx(f.mean(), rel=1e-12)
        assert row["wmean_flux_jy"] == pytest.approx(xi, rel=1e-12)
        assert row["std_flux_jy"] == pytest.approx(f.std(ddof=1), rel=1e-12)
        assert row["eta"] == pytest.approx((w * (f - xi) ** 2).sum() / (n_blk - 1), rel=1e-12)
        detected = mjd[f / e >= var.TRANSIENT_DETECTION_SNR]
        assert row["first_detection_mjd"] == detected.min()
        want_m, want_vs, _, _ = brute_force_pair(f, e, mjd)
        assert row["m"] == pytest.approx(want_m, rel=METRIC_RTOL)
        assert row["vs"] == pytest.approx(want_vs, rel=METRIC_RTOL)
    assert got.loc[4, "is_new_source"]
    assert got.loc[4, "n_prior_blocks"] == 3
