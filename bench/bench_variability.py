"""Variability metrics: ours against the VAST pipeline's way and a vectorised pandas way.

Workload (issue 8): 10^5 sources x 100 blocks = 10^7 photometry rows; every figure includes
the latest-version filter, N, mean, weighted mean, V, eta, p_constant and the Mooley pair
metrics (|Vs|, |m| of the significant pair with the largest |m|).

* ours, full: ``variability.recompute`` + ``metrics_frame`` (with classification).
* ours, incremental: ``VariabilityState.apply_block`` of one 10^5-row block, measured after
  1, 10, 50 and 99 blocks of history, plus ``metrics_frame`` of the state.
* VAST way: ``groupby("source_id").apply`` of a per-source Python function (all pairs by
  ``np.triu_indices``). Timed on SUBSET_SOURCES sources and scaled linearly to 10^5.
* groupby-agg: ``groupby().agg`` of power sums for the moments over all 10^7 rows; its pair
  metrics by a self-merge on source (all pairs, as vectorised pandas must), timed on
  SUBSET_SOURCES sources and scaled linearly (10^5 x 4950 pairs would not fit in memory).

Both baselines are checked against ours on the subset before any figure is reported.

``BENCH_VARIABILITY_SOURCES`` sets the number of sources (default 10^5) for a quick run at a
reduced scale; ``bench/profile_variability.py`` reads it too.
"""

from __future__ import annotations

import copy
import gc
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bench.common import ratio, report
from dsa110d.science.variability import metrics as var
from dsa110d.science.variability.pairs import VS_THRESHOLD
from dsa110d.science.variability.state import BlockUpdate, VariabilityState

N_SOURCES = int(os.environ.get("BENCH_VARIABILITY_SOURCES", "100000"))
N_BLOCKS = 100
SUBSET_SOURCES = min(1_000, N_SOURCES)
SEED = 8
GOAL_FULL_SEC = 3.0
GOAL_INCREMENTAL_SEC = 0.100
GOAL_VAST_RATIO = 10.0
CHECK_RTOL = 1e-6
HISTORY_POINTS = (1, 10, 50, N_BLOCKS - 1)
REPEATS = 3
"""Every timed step runs this many times and reports its best."""


def make_block(rng: np.random.Generator, b: int, truth: np.ndarray) -> pd.DataFrame:
    """One block: every source once, catalog order, as the processor writes it."""
    n = truth.size
    err = rng.uniform(0.8, 1.2, n) * 2e-3
    level = truth * np.where(np.arange(n) % 100 == 0, 1 + 0.5 * np.sin(b / 5), 1.0)
    return pd.DataFrame(
        {
            "source_id": np.arange(n, dtype=np.int64),
            "ra_deg": np.linspace(0, 360, n, endpoint=False),
            "dec_deg": np.full(n, 33.0),
            "block_id": pd.Categorical(np.full(n, f"2026-11-{1 + b // 24:02d}T{b % 24:02d}:00")),
            "mjd": np.full(n, 61000.0 + b / 24),
            "flux_jy": level + rng.normal(0, 1, n) * err,
            "flux_err_jy": err,
            "n_vis": np.full(n, 4000, dtype=np.int32),
            "beam_gain": np.full(n, 0.8),
            "flags": np.zeros(n, dtype=np.int32),
            "version": np.ones(n, dtype=np.int32),
        }
    )


CPU_SECONDS: dict[int, float] = {}
"""Process CPU seconds of the best run of each timed call, keyed by id of its result."""


def timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[float, Any]:
    """Best wall time of ``repeats`` runs (the machine is shared: the best is the least
    disturbed), and the last result; the CPU time of that run goes to CPU_SECONDS."""
    best = float("inf")
    best_cpu = float("inf")
    out = None
    for _ in range(repeats):
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < best:
            best, best_cpu = wall, cpu
    CPU_SECONDS[id(out)] = best_cpu
    return best, out


def latest_only(rows: pd.DataFrame) -> pd.DataFrame:
    latest = rows.groupby("block_id", observed=True)["version"].transform("max")
    keep = (rows["version"] == latest) & (rows["flags"] == 0)
    kept: pd.DataFrame = rows[keep & np.isfinite(rows["flux_jy"]) & (rows["flux_err_jy"] > 0)]
    return kept


def best_pair_of(f: np.ndarray, e: np.ndarray) -> tuple[float, float]:
    """All pairs of one source (what VAST does per source)."""
    i, j = np.triu_indices(f.size, 1)
    hi = np.maximum(f[i], f[j])
    lo = np.minimum(f[i], f[j])
    ehi = np.where(f[i] >= f[j], e[i], e[j])
    elo = np.where(f[i] >= f[j], e[j], e[i])
    vs = (hi - lo) / np.sqrt(ehi**2 + elo**2)
    m = 2 * (hi - lo) / (hi + lo)
    ok = (hi > lo) & (lo > 0) & (vs >= VS_THRESHOLD)
    if not ok.any():
        return np.nan, np.nan
    m_ok, vs_ok = m[ok], vs[ok]
    top = m_ok == m_ok.max()
    return float(vs_ok[top].max()), float(m_ok.max())


def vast_source(g: pd.DataFrame) -> pd.Series:
    f = g["flux_jy"].to_numpy()
    e = g["flux_err_jy"].to_numpy()
    n = f.size
    w = 1 / e**2
    wmean = (w * f).sum() / w.sum()
    eta = (w * (f - wmean) ** 2).sum() / (n - 1) if n > 1 else np.nan
    vs, m = best_pair_of(f, e)
    return pd.Series(
        {
            "n": n,
            "mean_flux_jy": f.mean(),
            "wmean_flux_jy": wmean,
            "v": f.std(ddof=1) / f.mean() if n > 1 else np.nan,
            "eta": eta,
            "p_constant": stats.chi2.sf(eta * (n - 1), n - 1) if n > 1 else np.nan,
            "vs": vs,
            "m": m,
        }
    )


def vast_way(rows: pd.DataFrame) -> pd.DataFrame:
    use = latest_only(rows)
    cols = ["flux_jy", "flux_err_jy"]
    per_source = use.groupby("source_id")[cols].apply(vast_source)
    assert isinstance(per_source, pd.DataFrame)  # vast_source returns one Series per source
    return per_source


def agg_moments(rows: pd.DataFrame) -> pd.DataFrame:
    use = latest_only(rows)
    f = use["flux_jy"]
    w = 1 / use["flux_err_jy"] ** 2
    frame = pd.DataFrame(
        {"source_id": use["source_id"], "f": f, "w": w, "wf": w * f, "wff": w * f * f}
    )
    g = frame.groupby("source_id").agg(
        n=("f", "size"),
        mean_flux_jy=("f", "mean"),
        std=("f", "std"),
        sw=("w", "sum"),
        swf=("wf", "sum"),
        swff=("wff", "sum"),
    )
    out = pd.DataFrame(index=g.index)
    out["n"] = g["n"]
    out["mean_flux_jy"] = g["mean_flux_jy"]
    out["wmean_flux_jy"] = g["swf"] / g["sw"]
    out["v"] = g["std"] / g["mean_flux_jy"]
    out["eta"] = (g["swff"] - g["swf"] ** 2 / g["sw"]) / (g["n"] - 1)
    out["p_constant"] = stats.chi2.sf(out["eta"] * (g["n"] - 1), g["n"] - 1)
    return out


def agg_pairs(rows: pd.DataFrame) -> pd.DataFrame:
    use = latest_only(rows)[["source_id", "mjd", "flux_jy", "flux_err_jy"]]
    pairs = use.merge(use, on="source_id", suffixes=("_a", "_b"))
    pairs = pairs[(pairs["flux_jy_a"] > pairs["flux_jy_b"]) & (pairs["flux_jy_b"] > 0)]
    diff = pairs["flux_jy_a"] - pairs["flux_jy_b"]
    pairs = pairs.assign(
        vs=diff / np.sqrt(pairs["flux_err_jy_a"] ** 2 + pairs["flux_err_jy_b"] ** 2),
        m=2 * diff / (pairs["flux_jy_a"] + pairs["flux_jy_b"]),
    )
    sig = pairs[pairs["vs"] >= VS_THRESHOLD].sort_values(["source_id", "m", "vs"])
    return sig.groupby("source_id")[["vs", "m"]].last()


def check(ours: pd.DataFrame, theirs: pd.DataFrame, cols: list[str], what: str) -> None:
    mine = ours.set_index("source_id").loc[theirs.index, cols]
    for c in cols:
        np.testing.assert_allclose(
            theirs[c].to_numpy(float),
            mine[c].to_numpy(float),
            rtol=CHECK_RTOL,
            equal_nan=True,
            err_msg=f"{what}: {c}",
        )


def main() -> None:
    rng = np.random.default_rng(SEED)
    truth = 10 ** rng.uniform(-2, 0, N_SOURCES)
    blocks = [make_block(rng, b, truth) for b in range(N_BLOCKS)]
    rows = pd.concat(blocks, ignore_index=True)
    rows["block_id"] = rows["block_id"].astype("category")
    subset = rows[rows["source_id"] < SUBSET_SOURCES]
    scale = N_SOURCES / SUBSET_SOURCES

    t_full, metrics = timed(lambda: var.recompute(rows), REPEATS)
    t_frame, frame = timed(lambda: var.metrics_frame(metrics), REPEATS)
    ours_full = t_full + t_frame
    ours_full_cpu = CPU_SECONDS[id(metrics)] + CPU_SECONDS[id(frame)]

    t_vast_sub, vast = timed(lambda: vast_way(subset), REPEATS)
    check(
        frame,
        vast,
        ["n", "mean_flux_jy", "wmean_flux_jy", "v", "eta", "p_constant", "vs", "m"],
        "VAST way",
    )
    t_agg_moments, agg = timed(lambda: agg_moments(rows), REPEATS)
    check(frame, agg, ["n", "mean_flux_jy", "wmean_flux_jy", "v"], "groupby-agg")
    t_agg_pairs_sub, agg_p = timed(lambda: agg_pairs(subset), REPEATS)
    check(frame, agg_p, ["vs", "m"], "groupby-agg pairs")
    t_vast = t_vast_sub * scale
    t_agg = t_agg_moments + t_agg_pairs_sub * scale

    state = VariabilityState()
    incremental: dict[str, float] = {}
    incremental_cpu: dict[str, float] = {}
    for b, block in enumerate(blocks):
        if b in HISTORY_POINTS:
            # The same block applied to REPEATS copies of the state: best of REPEATS.
            copies = [copy.deepcopy(state) for _ in range(REPEATS)]
            runs = iter(copies)

            def apply_to_a_copy(
                b: pd.DataFrame = block, r: Iterator[VariabilityState] = runs
            ) -> list[BlockUpdate]:
                return next(r).apply_block(b)

            t_block, upd = timed(apply_to_a_copy, REPEATS)
            incremental[f"after_{b}_blocks_sec"] = round(t_block, 4)
            incremental_cpu[f"after_{b}_blocks_sec"] = round(CPU_SECONDS[id(upd)], 4)
            del copies
        state.apply_block(block)
    t_state_frame, state_frame = timed(lambda: var.metrics_frame(state.metrics()))
    check(frame, state_frame.set_index("source_id"), ["eta", "v", "vs", "m"], "incremental")
    t_incremental = max(incremental.values())

    report(
        "variability",
        {
            "workload": {"sources": N_SOURCES, "blocks": N_BLOCKS, "rows": len(rows)},
            "timing": f"best of {REPEATS} wall-clock runs (incremental: the block applied to "
            f"{REPEATS} copies of the state)",
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "ours_full_recompute_sec": round(ours_full, 3),
            "ours_full_recompute_cpu_sec": round(ours_full_cpu, 3),
            "cpu_note": "process CPU time of the same best run: what the work costs without the "
            "other tenants of this shared 2-core machine",
            "ours_full_breakdown_sec": {
                "recompute": round(t_full, 3),
                "metrics_frame": round(t_frame, 3),
            },
            "vast_groupby_apply_sec": round(t_vast, 1),
            "vast_note": (
                f"timed on {SUBSET_SOURCES} sources ({t_vast_sub:.2f} s) and scaled x{scale:.0f}"
            ),
            "groupby_agg_sec": round(t_agg, 1),
            "groupby_agg_note": (
                f"moments on all rows {t_agg_moments:.2f} s; pairs by self-merge on "
                f"{SUBSET_SOURCES} sources {t_agg_pairs_sub:.2f} s scaled x{scale:.0f}"
            ),
            "groupby_agg_moments_only_sec": round(t_agg_moments, 3),
            "ratio_vs_vast": round(ratio(t_vast, ours_full), 1),
            "ratio_vs_groupby_agg": round(ratio(t_agg, ours_full), 1),
            "ratio_vs_groupby_agg_moments_only": round(ratio(t_agg_moments, ours_full), 2),
            "ours_incremental_block_sec": incremental,
            "ours_incremental_worst_sec": round(t_incremental, 4),
            "ours_incremental_block_cpu_sec": incremental_cpu,
            "ours_incremental_metrics_frame_sec": round(t_state_frame, 3),
            "goals_on_cpu_time": {
                "full_le_3s": ours_full_cpu <= GOAL_FULL_SEC,
                "incremental_le_100ms": max(incremental_cpu.values()) <= GOAL_INCREMENTAL_SEC,
            },
            "goals": {
                "full_le_3s": ours_full <= GOAL_FULL_SEC,
                "ge_10x_vast": ratio(t_vast, ours_full) >= GOAL_VAST_RATIO,
                "faster_than_groupby_agg": ours_full < t_agg,
                "incremental_le_100ms": t_incremental <= GOAL_INCREMENTAL_SEC,
            },
        },
    )


if __name__ == "__main__":
    main()
