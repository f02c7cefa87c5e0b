"""Diagnostic plots of the variability analysis: the eta-V plane and candidate light curves.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so plotting holds no
global state, needs no display and is safe in worker processes and threads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from dsa110d.science.atomic import atomic_file
from dsa110d.science.variability.metrics import CLASS_TRANSIENT, CLASS_VARIABLE, Thresholds

FIGURE_DPI = 110
ETA_V_SIZE_IN = (6.4, 5.2)
LIGHT_CURVE_SIZE_IN = (7.0, 3.6)
EMPTY_V_LIMITS = (1e-3, 10.0)
"""V axis of an eta-V plot with no plottable source (log axes need positive limits)."""
EMPTY_ETA_LIMITS = (1e-2, 1e3)
"""eta axis of an eta-V plot with no plottable source."""
SINGLE_EPOCH_HALFWIDTH_D = 0.01
"""Half-width (days) of a light curve's time axis when every point has the same MJD."""


def eta_threshold(p_threshold: float, n: int) -> float:
    """The eta above which a source with n points has p_constant < p_threshold."""
    dof = max(n - 1, 1)
    return float(stats.chi2.isf(p_threshold, dof) / dof)


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=FIGURE_DPI)


def plot_eta_v(frame: pd.DataFrame, path: Path, thresholds: Thresholds) -> Path:
    """Log-log eta against V of every source with both defined; thresholds and candidates marked.

    The eta line is drawn for the median N of the plotted sources (it depends on N).
    """
    ok = (frame["v"] > 0) & (frame["eta"] > 0)
    data = frame[ok]
    is_cand = data["class"].isin([CLASS_VARIABLE, CLASS_TRANSIENT]).to_numpy()
    fig = Figure(figsize=ETA_V_SIZE_IN)
    ax = fig.add_subplot()
    ax.scatter(
        data["v"][~is_cand], data["eta"][~is_cand], s=3, c="0.6", label="sources", rasterized=True
    )
    ax.scatter(data["v"][is_cand], data["eta"][is_cand], s=14, c="tab:red", label="candidates")
    if not len(data):  # nothing to plot: log axes need positive limits to exist at all
        ax.set_xlim(*EMPTY_V_LIMITS)
        ax.set_ylim(*EMPTY_ETA_LIMITS)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axvline(
        thresholds.variability_threshold, color="tab:blue", ls="--", lw=1, label="V threshold"
    )
    if len(data):
        n_med = int(np.median(data["n"]))
        ax.axhline(
            eta_threshold(thresholds.p_threshold, n_med),
            color="tab:green",
            ls="--",
            lw=1,
            label=f"eta at p={thresholds.p_threshold:g} (N={n_med})",
        )
    ax.set_xlabel("V = std / mean")
    ax.set_ylabel("eta (weighted reduced chi-square)")
    ax.set_title(f"eta-V: {len(data)} sources, {int(is_cand.sum())} candidates")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    _save(fig, path)
    return path


def plot_light_curve(curve: pd.DataFrame, path: Path, title: str) -> Path:
    """Flux against time with 1-sigma error bars; ``curve`` has mjd, flux_jy, flux_err_jy."""
    curve = curve.sort_values("mjd")
    fig = Figure(figsize=LIGHT_CURVE_SIZE_IN)
    ax = fig.add_subplot()
    ax.errorbar(
        curve["mjd"],
        curve["flux_jy"] * 1e3,
        yerr=curve["flux_err_jy"] * 1e3,
        fmt="o",
        ms=3,
        capsize=2,
        lw=1,
    )
    ax.axhline(0.0, color="0.7", lw=0.8)
    if curve["mjd"].nunique() == 1:  # one epoch: give the time axis a width of its own
        ax.set_xlim(curve["mjd"].iloc[0] - SINGLE_EPOCH_HALFWIDTH_D,
                    curve["mjd"].iloc[0] + SINGLE_EPOCH_HALFWIDTH_D)  # fmt: skip
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.set_xlabel("MJD")
    ax.set_ylabel("flux density (mJy)")
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    _save(fig, path)
    return path
