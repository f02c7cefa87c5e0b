"""Science acceptance on simulated photometry (issues 8 and 19).

Modulation is the radio astronomer's modulation index of the noiseless light curve,
std/mean: every injected variable has at least MIN_MODULATION. Per-measurement SNR is
mean flux / error, at least MIN_SNR for every source. Stable sources are constant with
Gaussian noise of the stated error. The classification runs with the service's defaults
(eta-V and the two-epoch test, Benjamini-Hochberg at a 1% false discovery rate), over
several seeds.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from dsa110d.science.variability import classify as vclass
from dsa110d.science.variability import metrics as var
from dsa110d.science.variability.metrics import FloatArray

SEEDS = (20260108, 7, 1919)
N_STABLE = 10_000
N_PER_SHAPE = 200
N_BLOCKS = 40
MIN_SNR = 20.0
MAX_SNR = 200.0
MIN_MODULATION = 0.30
MAX_MODULATION = 0.60
REQUIRED_RECALL = 0.95
MAX_FALSE_POSITIVE_RATE = 1e-3
THRESHOLDS = var.Thresholds(min_data_points=10)
SHAPES = ("flare", "step", "sinusoid")


def unit_shape(kind: str, rng: np.random.Generator, t: FloatArray) -> FloatArray:
    """A light-curve shape with mean 0 and std 1 over the epochs t (0..1)."""
    if kind == "flare":  # fast rise, exponential decay
        t0, tau = rng.uniform(0.1, 0.7), rng.uniform(0.03, 0.2)
        g = np.where(t >= t0, np.exp(-(t - t0) / tau), 0.0)
    elif kind == "step":
        g = (t >= rng.uniform(0.2, 0.8)).astype(float) * rng.choice([-1.0, 1.0])
    else:
        g = np.sin(2 * np.pi * (t * rng.uniform(0.5, 4.0) + rng.uniform()))
    shaped: FloatArray = (g - g.mean()) / g.std()
    return shaped


def simulate(
    rng: np.random.Generator, snr_range: tuple[float, float] = (MIN_SNR, MAX_SNR)
) -> tuple[pd.DataFrame, npt.NDArray[np.bool_], FloatArray]:
    t = np.linspace(0.0, 1.0, N_BLOCKS)
    n_var = N_PER_SHAPE * len(SHAPES)
    n_src = N_STABLE + n_var
    mean = 10 ** rng.uniform(-2, 0, n_src)  # 10 mJy .. 1 Jy
    snr = rng.uniform(*snr_range, n_src)
    err = mean / snr
    truth = np.tile(mean[:, None], (1, N_BLOCKS))
    for i, kind in enumerate(np.repeat(SHAPES, N_PER_SHAPE)):
        src = N_STABLE + i
        mod = rng.uniform(MIN_MODULATION, MAX_MODULATION)
        shape = unit_shape(kind, rng, t)
        # keep the flux positive: a dimming step deeper than the mean is not a source
        mod = min(mod, 0.9 / max(-shape.min(), 1e-9))
        truth[src] = mean[src] * (1 + mod * shape)
    flux = truth + rng.normal(0, 1, truth.shape) * err[:, None]
    rows = pd.DataFrame(
        {
            "source_id": np.repeat(np.arange(n_src), N_BLOCKS),
            "block_id": np.tile([f"blk{b:03d}" for b in range(N_BLOCKS)], n_src),
            "mjd": np.tile(60000.0 + t * 30, n_src),
            "flux_jy": flux.ravel(),
            "flux_err_jy": np.repeat(err, N_BLOCKS),
            "flags": 0,
            "version": 1,
        }
    )
    modulation = truth.std(axis=1) / truth.mean(axis=1)
    return rows, np.arange(n_src) >= N_STABLE, modulation


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", SEEDS)
def test_recall_and_false_positive_rate(seed: int) -> None:
    rows, is_variable, modulation = simulate(np.random.default_rng(seed))
    assert modulation[is_variable].min() >= MIN_MODULATION - 1e-9
    frame = var.metrics_frame(var.recompute(rows), THRESHOLDS).sort_values("source_id")
    flagged = frame["class"].isin([var.CLASS_VARIABLE, var.CLASS_TRANSIENT]).to_numpy()
    recall = flagged[is_variable].mean()
    false_positive_rate = flagged[~is_variable].mean()
    assert recall >= REQUIRED_RECALL, f"recall {recall:.3f}"
    assert false_positive_rate <= MAX_FALSE_POSITIVE_RATE, (
        f"false positives {false_positive_rate:.4%}"
    )
    for kind, sel in zip(SHAPES, np.split(np.flatnonzero(is_variable), len(SHAPES)), strict=True):
        assert flagged[sel].mean() >= REQUIRED_RECALL, kind


@pytest.mark.timeout(120)
def test_false_alarms_stay_rare_at_the_lowest_snr_where_the_two_epoch_test_alone_fails() -> None:
    """Every source at SNR = MIN_SNR: a significant pair (|Vs| >= 4.3) of a constant source
    then has |m| ~ 4.3 sqrt(2) / 20 = 0.30 >= 0.26, so the two-epoch test alone passes every
    constant source whose 40 epochs offer a 4.3-sigma pair (780 pairs: ~0.5%). The negative
    control shows that rate above the limit; the classification (the pair test only decides
    the size of a variation the chi-square test under the FDR found real) stays below it."""
    rows, is_variable, _ = simulate(np.random.default_rng(SEEDS[0]), (MIN_SNR, MIN_SNR))
    frame = var.metrics_frame(var.recompute(rows), THRESHOLDS).sort_values("source_id")
    flagged = frame["class"].isin([var.CLASS_VARIABLE, var.CLASS_TRANSIENT]).to_numpy()
    pair_alone = vclass.two_epoch(
        frame["vs"].to_numpy(), frame["m"].to_numpy(), THRESHOLDS.vs_threshold,
        THRESHOLDS.m_threshold,
    )  # fmt: skip
    assert pair_alone[~is_variable].mean() > MAX_FALSE_POSITIVE_RATE  # the negative control
    assert flagged[~is_variable].mean() <= MAX_FALSE_POSITIVE_RATE
    assert flagged[is_variable].mean() >= REQUIRED_RECALL
