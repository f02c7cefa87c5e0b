"""The classification's boundaries: the two-epoch test, Benjamini-Hochberg, the mean guard.

Every expected value is worked by hand from the formulas (Mooley et al. 2016; Benjamini &
Hochberg 1995); the light curves are built so that those formulas give the boundary exactly in
IEEE doubles, which each test checks with plain Python arithmetic before asking the code.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dsa110d.science.variability import classify as vclass
from dsa110d.science.variability import metrics as var

N_POINTS = 10
S_BRIGHT = 113 / 128  # Jy; dyadic, so S_a - S_b and S_a + S_b are exact
S_FAINT = 87 / 128
DIFF = S_BRIGHT - S_FAINT  # 26/128 Jy
# m = 2 DIFF / (S_a + S_b) = (52/128) / (200/128) = 0.26 exactly.
# Errors from the 3-4-5 triangle: sqrt(e_a^2 + e_b^2) = DIFF / 4.3, so Vs = 4.3.
ERR_BRIGHT = 3 / 5 * DIFF / 4.3
ERR_FAINT = 4 / 5 * DIFF / 4.3
NO_ETA_V = 1e9
"""A V threshold no source reaches: these tests isolate the two-epoch test."""


def mooley(s_a: float, e_a: float, s_b: float, e_b: float) -> tuple[float, float]:
    """Vs and m by the paper's formulas (the tests' reference, not the code's)."""
    return (s_a - s_b) / math.sqrt(e_a * e_a + e_b * e_b), 2 * (s_a - s_b) / (s_a + s_b)


def one_flare(s_a: float, e_a: float, e_b: float, source_id: str = "src") -> pd.DataFrame:
    """N_POINTS epochs at S_FAINT (error e_b) but one at s_a (error e_a): every significant
    pair is (s_a, S_FAINT), so the reported pair is that one."""
    flux = np.full(N_POINTS, S_FAINT)
    err = np.full(N_POINTS, e_b)
    flux[4], err[4] = s_a, e_a
    return pd.DataFrame(
        {
            "source_id": source_id,
            "block_id": [f"b{i}" for i in range(N_POINTS)],
            "mjd": 60000.0 + np.arange(N_POINTS),
            "flux_jy": flux,
            "flux_err_jy": err,
            "flags": "",
            "version": 1,
        }
    )


def classified(rows: pd.DataFrame, **limits: float) -> pd.Series:
    thresholds = var.Thresholds(**{"variability_threshold": NO_ETA_V, **limits})  # type: ignore[arg-type]
    frame = var.metrics_frame(var.recompute(rows, vs_threshold=thresholds.vs_threshold), thresholds)
    return frame.iloc[0]


def test_a_pair_exactly_at_vs_4_3_and_m_0_26_makes_a_variable() -> None:
    assert mooley(S_BRIGHT, ERR_BRIGHT, S_FAINT, ERR_FAINT) == (4.3, 0.26)
    row = classified(one_flare(S_BRIGHT, ERR_BRIGHT, ERR_FAINT))
    assert (row["vs"], row["m"]) == (4.3, 0.26)
    assert row["v"] < 0.1  # the eta-V test would not have found it
    assert row["class"] == var.CLASS_VARIABLE
    assert row["variable_by"] == vclass.VARIABLE_BY_TWO_EPOCH


def test_vs_just_below_4_3_is_not_variable() -> None:
    e_a = float(np.nextafter(ERR_BRIGHT, 1.0))
    vs, m = mooley(S_BRIGHT, e_a, S_FAINT, ERR_FAINT)
    assert vs < 4.3 and m == 0.26
    row = classified(one_flare(S_BRIGHT, e_a, ERR_FAINT))
    assert math.isnan(row["vs"])  # no pair reaches the search threshold
    assert row["class"] == var.CLASS_STABLE


def test_m_just_below_0_26_is_not_variable_however_significant() -> None:
    s_a = float(np.nextafter(S_BRIGHT, 0.0))
    vs, m = mooley(s_a, ERR_BRIGHT / 2, S_FAINT, ERR_FAINT / 2)
    assert m < 0.26 and vs > 8.59
    row = classified(one_flare(s_a, ERR_BRIGHT / 2, ERR_FAINT / 2))
    assert row["m"] < 0.26 and row["vs"] > 8.59
    assert row["class"] == var.CLASS_STABLE
    # the thresholds are configuration: a lower m threshold takes it
    assert (
        classified(one_flare(s_a, ERR_BRIGHT / 2, ERR_FAINT / 2), m_threshold=0.25)["class"]
        == var.CLASS_VARIABLE
    )


def test_a_higher_configured_vs_threshold_is_searched_for() -> None:
    # |Vs| = 8.6 with halved errors: variable at 8.6, not at the next double above it.
    rows = one_flare(S_BRIGHT, ERR_BRIGHT / 2, ERR_FAINT / 2)
    assert mooley(S_BRIGHT, ERR_BRIGHT / 2, S_FAINT, ERR_FAINT / 2)[0] == 8.6
    assert classified(rows, vs_threshold=8.6)["class"] == var.CLASS_VARIABLE
    above = float(np.nextafter(8.6, 9.0))
    assert classified(rows, vs_threshold=above)["class"] == var.CLASS_STABLE


def test_benjamini_hochberg_hand_worked_step_up() -> None:
    # m = 5, q = 0.05: critical values i q / m = 0.01, 0.02, 0.03, 0.04, 0.05.
    # sorted p: 0.001 (ok), 0.030 (> 0.02), 0.031 (> 0.03), 0.032 (<= 0.04: k = 4), 0.9.
    # Step-up: the four smallest are rejected although two of them miss their own line.
    p = np.array([0.032, 0.9, 0.001, 0.031, 0.030])
    family = np.ones(5, dtype=bool)
    assert list(vclass.bh_reject(p, family, 0.05)) == [True, False, True, True, True]
    # q-values: min over j >= i of p_(j) m / j -> sorted 0.005, 0.04, 0.04, 0.04, 0.9
    np.testing.assert_allclose(
        vclass.bh_qvalues(p, family), [0.04, 0.9, 0.005, 0.04, 0.04], rtol=1e-12
    )
    # at q = 0.03 the critical values are 0.006 ... 0.03: only 0.001 passes (0.030 > 0.012)
    assert list(vclass.bh_reject(p, family, 0.03)) == [False, False, True, False, False]


def test_benjamini_hochberg_ignores_sources_outside_the_family() -> None:
    p = np.array([0.001, 0.0001, 0.5])
    family = np.array([True, False, True])  # m = 2: critical values 0.005, 0.01
    q = vclass.bh_qvalues(p, family)
    assert math.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2]], [0.002, 0.5], rtol=1e-12)
    assert list(vclass.bh_reject(p, family, 0.01)) == [True, False, False]


def frame_of_p(p_values: list[float]) -> pd.DataFrame:
    """A metrics frame of strongly varying sources (V = 0.5) with the given p_constant."""
    size = len(p_values)
    return pd.DataFrame(
        {
            "n": np.full(size, 20),
            "wmean_flux_jy": np.ones(size),
            "mean_snr": np.full(size, 100.0),
            "p_constant": p_values,
            "v": np.full(size, 0.5),
            "vs": np.full(size, np.nan),
            "m": np.full(size, np.nan),
            "is_new_source": np.zeros(size, dtype=bool),
        }
    )


def test_a_per_source_significant_p_is_not_enough_among_many_sources() -> None:
    # 1000 sources, one at p = 5e-4 < p_threshold = 1e-3, the rest at p = 0.5: BH at
    # q = 0.01 needs p_(1) <= 0.01 / 1000 = 1e-5, so nothing is variable; at p = 9e-6 it is.
    p = [5e-4] + [0.5] * 999
    decision = var.decide(frame_of_p(p), var.Thresholds())
    assert (decision.classes == var.CLASS_STABLE).all()
    assert decision.q_value[0] == pytest.approx(0.5, rel=1e-12)  # 5e-4 * 1000 / 1
    p[0] = 9e-6
    decision = var.decide(frame_of_p(p), var.Thresholds())
    assert decision.classes[0] == var.CLASS_VARIABLE
    assert decision.variable_by[0] == vclass.VARIABLE_BY_ETA_V
    assert (decision.classes[1:] == var.CLASS_STABLE).all()


def constant(flux: float, err: float, n: int = 4) -> pd.DataFrame:
    rows = one_flare(flux, err, err).iloc[:n].copy()
    rows["flux_jy"] = flux
    return rows


def test_the_mean_guard_at_exactly_k_sigma() -> None:
    # 4 points of error 1 Jy: sigma_xi = 1 / sqrt(4) = 0.5 Jy; |xi| = 1.5 Jy is exactly 3 sigma.
    at = classified(constant(1.5, 1.0), min_data_points=4, min_mean_snr=3.0)
    assert at["mean_snr"] == 3.0
    assert at["class"] == var.CLASS_STABLE and at["v"] == 0.0
    below = classified(
        constant(float(np.nextafter(1.5, 0.0)), 1.0), min_data_points=4, min_mean_snr=3.0
    )
    assert below["mean_snr"] < 3.0
    assert below["class"] == var.CLASS_FAINT
    assert math.isnan(below["v"])


def test_a_source_swinging_about_zero_is_faint_not_variable() -> None:
    # +-1 Jy about a zero mean with 0.01 Jy errors: chi-square enormous, V = std / 0 undefined
    rows = one_flare(1.0, 0.01, 0.01)
    rows["flux_jy"] = np.where(np.arange(N_POINTS) % 2 == 0, 1.0, -1.0)
    row = classified(rows, variability_threshold=0.1)
    assert row["mean_snr"] == 0.0 and row["p_constant"] < 1e-100
    assert row["class"] == var.CLASS_FAINT
    assert math.isnan(row["v"]) and math.isnan(row["m"])
    assert row["variable_by"] == ""


def test_a_faint_source_can_still_be_a_new_source() -> None:
    # zero in four blocks of error 1 Jy, then 6 Jy (6 sigma): xi = 6/5 Jy, sigma_xi = 1/sqrt(5),
    # xi / sigma_xi = 6/sqrt(5) = 2.68 < 3: the mean is undefined, yet the source is new.
    rows = constant(0.0, 1.0, n=5)
    rows.loc[rows.index[-1], "flux_jy"] = 6.0
    row = classified(rows, min_data_points=3, min_mean_snr=3.0)
    assert row["mean_snr"] == pytest.approx(6 / math.sqrt(5), rel=1e-12)
    assert row["class"] == var.CLASS_TRANSIENT
