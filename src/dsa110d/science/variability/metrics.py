"""Variability metrics per source from forced photometry, and the classification.

The metrics are those of the VAST pipeline and LOFAR TraP, so results compare with theirs:

* N, mean flux, weighted mean flux xi = sum w I / sum w with w = 1/sigma^2;
* V = std(ddof=1) / mean (the coefficient of variation);
* eta = 1/(N-1) sum w (I - xi)^2 (the weighted reduced chi-square about xi);
* p_constant = chi2.sf((N-1) eta, N-1): the probability that a constant source scatters this much;
* the two-epoch |Vs| and |m| of the significant pair with the largest |m|
  (``pairs.py``);
* the "new source" test of TraP: significantly detected in a block after at least
  TRANSIENT_MIN_PRIOR_BLOCKS earlier blocks all measured it consistent with zero;
* mean_snr = xi / sigma_xi, sigma_xi = 1 / sqrt(sum w): V and m are NaN below ``min_mean_snr``;
* q_value: the Benjamini-Hochberg adjusted p_constant over the run's judged sources.

The classification (:func:`classify`; the statistics in ``classify.py``), first
match wins:

1. ``transient``: the new-source test holds (even with few points: the prior non-detections
   are the evidence);
2. ``insufficient_data``: fewer than ``min_data_points`` measurements;
3. ``faint``: the mean is consistent with zero (|xi| < ``min_mean_snr`` sigma_xi): V and m are
   undefined, so the source is neither variable nor stable;
4. ``variable``: the variation is real, p_constant < ``p_threshold`` *and* rejected by
   Benjamini-Hochberg at ``false_discovery_rate`` over all judged sources (the sources of
   classes 3-5: enough points and a defined mean), *and* large: V >= ``variability_threshold``
   (the eta-V test) or the two-epoch test |Vs| >= ``vs_threshold`` and |m| >= ``m_threshold``
   (Mooley et al. 2016); ``variable_by`` says which;
5. ``stable``: everything else.

Everything is computed from *sums* (``SourceSums``), which both the full recompute here and
the incremental state (``state.py``) produce, so the two give the same numbers.

Rows are used when their flag code is 0 (``photometry_table.flags_code``: the processor's flag
names are mapped here too, so the processor's Parquet can be passed as read) and the flux and
its (positive) error are finite, and only the latest version of each block counts.

Public API (what the analyzer service calls):
``usable_rows``, ``recompute`` -> ``SourceMetrics``, ``metrics_frame``, ``classify``,
``Thresholds``, the ``CLASS_*`` names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from dsa110d.science.photometry import table as photometry_table
from dsa110d.science.variability import classify as vclass
from dsa110d.science.variability import pairs as pairs
from dsa110d.science.variability import rowwise

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PHOTOMETRY_COLUMNS = (
    "source_id",
    "ra_deg",
    "dec_deg",
    "block_id",
    "mjd",
    "flux_jy",
    "flux_err_jy",
    "n_vis",
    "beam_gain",
    "flags",
    "version",
)
"""Columns of the processor's photometry rows (one row per source per block version)."""

REQUIRED_COLUMNS = photometry_table.REQUIRED_COLUMNS

TRANSIENT_DETECTION_SNR = 5.0
"""flux/err at which a block counts as a significant detection (TraP's usual 5 sigma)."""
ZERO_CONSISTENT_SNR = 3.0
"""|flux/err| below which a block measured the source consistent with zero (3 sigma)."""
TRANSIENT_MIN_PRIOR_BLOCKS = 2
"""Earlier blocks, all consistent with zero, needed before a detection makes a new source."""

CLASS_VARIABLE = "variable"
CLASS_TRANSIENT = "transient"
CLASS_STABLE = "stable"
CLASS_INSUFFICIENT = "insufficient_data"
CLASS_FAINT = "faint"
"""Mean flux consistent with zero: V and m undefined, neither variable nor stable."""
CLASSES = (CLASS_TRANSIENT, CLASS_VARIABLE, CLASS_STABLE, CLASS_INSUFFICIENT, CLASS_FAINT)


@dataclass(frozen=True)
class Thresholds:
    """Classification thresholds; the service fills them from ``variability_analyzer`` config.

    ``vs_threshold`` is also the |Vs| the pair search needs: pass the same value to
    :func:`recompute` (or the state), else the reported pair may not be the one to test.
    """

    min_data_points: int = 10
    variability_threshold: float = 0.1
    p_threshold: float = 1e-3
    vs_threshold: float = pairs.VS_THRESHOLD
    m_threshold: float = vclass.DEFAULT_M_THRESHOLD
    false_discovery_rate: float = vclass.DEFAULT_FALSE_DISCOVERY_RATE
    min_mean_snr: float = vclass.DEFAULT_MIN_MEAN_SNR


@dataclass
class SourceSums:
    """Per-source running sums (Welford / West form), arrays of one length.

    ``m2`` is sum (I - mean)^2 and ``wm2`` is sum w (I - wmean)^2, kept about the running
    means rather than as raw power sums, so no large numbers cancel.
    """

    n: FloatArray
    mean: FloatArray
    m2: FloatArray
    w: FloatArray
    wmean: FloatArray
    wm2: FloatArray

    @classmethod
    def zeros(cls, size: int) -> SourceSums:
        return cls(*(np.zeros(size) for _ in range(6)))

    @classmethod
    def from_rows(cls, codes: IntArray, size: int, flux: FloatArray, err: FloatArray) -> SourceSums:
        """Exact two-pass sums per source code."""
        w_row = 1.0 / (err * err)
        n = np.bincount(codes, minlength=size).astype(np.float64)
        w = np.bincount(codes, w_row, minlength=size).astype(np.float64, copy=False)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.nan_to_num(np.bincount(codes, flux, minlength=size) / n)
            wmean = np.nan_to_num(np.bincount(codes, w_row * flux, minlength=size) / w)
        dev = flux - mean[codes]
        wdev = flux - wmean[codes]
        m2 = np.bincount(codes, dev * dev, minlength=size).astype(np.float64, copy=False)
        wm2 = np.bincount(codes, w_row * wdev * wdev, minlength=size).astype(np.float64, copy=False)
        return cls(n, mean, m2, w, wmean, wm2)

    @classmethod
    def from_dense(cls, flux: FloatArray, err: FloatArray) -> SourceSums:
        """Exact two-pass sums per row of dense (sources, K) arrays, NaN = no measurement."""
        return cls(*rowwise.by_row_chunks(rowwise.dense_sums, 6, flux, err))

    def take(self, idx: IntArray) -> SourceSums:
        return SourceSums(*(a[idx] for a in self.arrays()))

    def put(self, idx: IntArray, other: SourceSums) -> None:
        for dst, src in zip(self.arrays(), other.arrays(), strict=True):
            dst[idx] = src

    def arrays(self) -> tuple[FloatArray, ...]:
        return (self.n, self.mean, self.m2, self.w, self.wmean, self.wm2)

    def merged(self, part: SourceSums, sign: float = 1.0) -> SourceSums:
        """Chan's parallel combination (sign=+1) or its exact inverse (sign=-1, remove part)."""
        n, mean, m2 = _combine(self.n, self.mean, self.m2, part.n, part.mean, part.m2, sign)
        w, wmean, wm2 = _combine(self.w, self.wmean, self.wm2, part.w, part.wmean, part.wm2, sign)
        return SourceSums(n, mean, m2, w, wmean, wm2)


def _combine(
    n_a: FloatArray,
    mu_a: FloatArray,
    m2_a: FloatArray,
    n_b: FloatArray,
    mu_b: FloatArray,
    m2_b: FloatArray,
    sign: float,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Add (or remove) a part of weight n_b, mean mu_b, M2 m2_b to a whole (n_a, mu_a, m2_a)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if sign > 0:
            n = n_a + n_b
            delta = mu_b - mu_a
            mu = mu_a + delta * np.where(n > 0, n_b / n, 0.0)
            m2 = m2_a + m2_b + delta * delta * np.where(n > 0, n_a * n_b / n, 0.0)
        else:
            n = n_a - n_b
            rest = n > 0
            mu = np.where(rest, (n_a * mu_a - n_b * mu_b) / n, 0.0)
            delta = mu_b - mu
            m2 = np.where(rest, m2_a - m2_b - delta * delta * n * n_b / n_a, 0.0)
            n = np.where(rest, n, 0.0)
    # Removal may leave -1e-17 where the remainder is constant: a sum of squares is >= 0.
    return n, mu, np.maximum(m2, 0.0)


@dataclass
class TransientState:
    """Per-source facts for the new-source test, in time order.

    ``first_det_mjd`` is +inf until a block detects the source; ``n_prior`` and
    ``prior_max_abs_snr`` describe the blocks before that detection.
    """

    first_det_mjd: FloatArray
    first_det_snr: FloatArray
    n_prior: FloatArray
    prior_max_abs_snr: FloatArray
    last_mjd: FloatArray

    @classmethod
    def empty(cls, size: int) -> TransientState:
        return cls(
            np.full(size, np.inf),
            np.full(size, np.nan),
            np.zeros(size),
            np.zeros(size),
            np.full(size, -np.inf),
        )

    @classmethod
    def from_rows(
        cls, codes: IntArray, size: int, mjd: FloatArray, flux: FloatArray, err: FloatArray
    ) -> TransientState:
        state = cls.empty(size)
        snr = flux / err
        det = snr >= TRANSIENT_DETECTION_SNR
        np.minimum.at(state.first_det_mjd, codes[det], mjd[det])
        first = state.first_det_mjd[codes]
        at_first = det & (mjd == first)
        state.first_det_snr[:] = -np.inf
        np.maximum.at(state.first_det_snr, codes[at_first], snr[at_first])
        state.first_det_snr[~np.isfinite(state.first_det_mjd)] = np.nan
        prior = mjd < first
        state.n_prior[:] = np.bincount(codes[prior], minlength=size)
        np.maximum.at(state.prior_max_abs_snr, codes[prior], np.abs(snr[prior]))
        np.maximum.at(state.last_mjd, codes, mjd)
        return state

    @classmethod
    def from_dense(cls, mjd: FloatArray, flux: FloatArray, err: FloatArray) -> TransientState:
        """The same facts from dense (sources, K) arrays, NaN flux = no measurement."""
        facts = partial(rowwise.dense_transient, detection_snr=TRANSIENT_DETECTION_SNR)
        return cls(*rowwise.by_row_chunks(facts, 5, mjd, flux, err))

    def arrays(self) -> tuple[FloatArray, ...]:
        return (
            self.first_det_mjd,
            self.first_det_snr,
            self.n_prior,
            self.prior_max_abs_snr,
            self.last_mjd,
        )

    def is_new_source(self) -> npt.NDArray[np.bool_]:
        result: npt.NDArray[np.bool_] = (
            np.isfinite(self.first_det_mjd)
            & (self.n_prior >= TRANSIENT_MIN_PRIOR_BLOCKS)
            & (self.prior_max_abs_snr < ZERO_CONSISTENT_SNR)
        )
        return result


@dataclass
class PairState:
    """Per-source best significant pair: |Vs|, |m| and the two epochs (NaN when none)."""

    vs: FloatArray
    m: FloatArray
    mjd_a: FloatArray
    mjd_b: FloatArray

    @classmethod
    def empty(cls, size: int) -> PairState:
        return cls(*(np.full(size, np.nan) for _ in range(4)))

    def arrays(self) -> tuple[FloatArray, ...]:
        return (self.vs, self.m, self.mjd_a, self.mjd_b)


@dataclass
class SourceMetrics:
    """Everything the metrics frame is made of, one entry per source."""

    source_id: npt.NDArray[np.generic]
    ra_deg: FloatArray
    dec_deg: FloatArray
    sums: SourceSums
    pair: PairState
    transient: TransientState = field(repr=False)


def _usable_mask(
    rows: pd.DataFrame, where: str
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(latest version of its block, usable measurement) per row."""
    photometry_table.check_columns(rows, where)
    good = photometry_table.usable_mask(rows)
    version = rows["version"].to_numpy()
    if version.size == 0 or version.min() == version.max():  # one version: all are latest
        return np.ones(version.size, dtype=bool), good
    version = version.astype(np.int64, copy=False)
    codes, _ = pd.factorize(rows["block_id"], sort=False)
    latest = np.full(codes.max(initial=-1) + 1, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(latest, codes, version)
    is_latest = version == latest[codes]
    return is_latest, good


def usable_rows(rows: pd.DataFrame, *, where: str = "photometry") -> pd.DataFrame:
    """The rows that count: latest version of each block, unflagged, finite, positive error."""
    is_latest, good = _usable_mask(rows, where)
    keep = is_latest & good
    return rows if keep.all() else rows[keep]


def dense(codes: IntArray, size: int, *columns: FloatArray) -> list[FloatArray]:
    """Ragged rows -> dense (sources, K) arrays, NaN-padded, K the most rows of any source."""
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=size)
    width = max(int(counts.max(initial=0)), 1)
    starts = np.cumsum(counts) - counts
    # Row i of the sorted order goes to cell (code, i - start[code]) of the dense array.
    flat = np.arange(codes.size) + np.repeat(np.arange(size) * width - starts, counts)
    out = []
    for col in columns:
        d = np.full(size * width, np.nan)
        d[flat] = col[order]
        out.append(d.reshape(size, width))
    return out


def _block_layout(codes: IntArray, size: int) -> bool:
    """True for the processor's layout: whole blocks one after another, each listing every
    source once in the same order (source codes 0..size-1, as ``pd.factorize`` numbers them)."""
    n = codes.size
    if not size or n % size:
        return False
    table = codes.reshape(n // size, size)
    return bool((table[0] == np.arange(size)).all() and (table == table[0]).all())


def _dense_rows(
    codes: IntArray, size: int, *columns: FloatArray, blocks: bool = False
) -> list[FloatArray]:
    """``dense``; for the processor's layout (``blocks``, see ``_block_layout``) a reshape and
    transposed view, no sort and no copy (the dense consumers copy a chunk of rows at a time:
    ``rowwise.by_row_chunks``, ``pairs.staircase_cells``)."""
    if blocks:
        return [c.reshape(-1, size).T for c in columns]
    return dense(codes, size, *columns)


def recompute(
    rows: pd.DataFrame, *, where: str = "photometry", vs_threshold: float = pairs.VS_THRESHOLD
) -> SourceMetrics:
    """Full recompute from photometry rows (any versions; only the latest of a block counts).

    ``rows`` may be the processor's Parquet as read (flag names) or the typed frame of
    ``photometry_table``. Unusable measurements stay in place as NaN (so the fast layout
    survives flagging); superseded block versions are dropped. ``vs_threshold`` is the |Vs|
    the reported pair must reach (the classification's ``Thresholds.vs_threshold``).
    """
    is_latest, good = _usable_mask(rows, where)
    if not is_latest.all():
        rows, good = rows[is_latest], good[is_latest]
    codes_raw, ids = pd.factorize(rows["source_id"], sort=False)
    codes = codes_raw.astype(np.int64, copy=False)
    size = len(ids)
    flux = rows["flux_jy"].to_numpy(dtype=np.float64)
    err = rows["flux_err_jy"].to_numpy(dtype=np.float64)
    if not good.all():  # else no copy: the dense layout below copies anyway
        flux = np.where(good, flux, np.nan)
        err = np.where(good, err, np.nan)
    mjd = rows["mjd"].to_numpy(dtype=np.float64)
    blocks = _block_layout(codes, size)
    ra = np.full(size, np.nan)
    dec = np.full(size, np.nan)
    if "ra_deg" in rows:
        for dst, name in ((ra, "ra_deg"), (dec, "dec_deg")):
            col = rows[name].to_numpy(dtype=np.float64)
            if blocks:  # the last block's position of each source, as the scatter would give
                dst[:] = col[-size:]
            else:
                dst[codes] = col
    d_flux, d_err, d_mjd = _dense_rows(codes, size, flux, err, mjd, blocks=blocks)
    return SourceMetrics(
        source_id=np.asarray(ids),
        ra_deg=ra,
        dec_deg=dec,
        sums=SourceSums.from_dense(d_flux, d_err),
        pair=PairState(*pairs.best_pairs_dense(d_flux, d_err, d_mjd, vs_threshold)),
        transient=TransientState.from_dense(d_mjd, d_flux, d_err),
    )


def metrics_frame(metrics: SourceMetrics, thresholds: Thresholds | None = None) -> pd.DataFrame:
    """One row per source: the metrics and the class (sorted by source id)."""
    limits = thresholds or Thresholds()
    s = metrics.sums
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = s.n - 1.0
        std = np.sqrt(s.m2 / dof)
        v = std / s.mean
        eta = s.wm2 / dof
    has_spread = s.n >= 2
    defined = vclass.mean_defined(s.wmean, s.w, limits.min_mean_snr)
    std = np.where(has_spread, std, np.nan)
    v = np.where(has_spread & defined, v, np.nan)
    eta = np.where(has_spread, eta, np.nan)
    p_constant = np.where(has_spread, stats.chi2.sf(s.wm2, np.maximum(dof, 1.0)), np.nan)
    t = metrics.transient
    frame = pd.DataFrame(
        {
            "source_id": metrics.source_id,
            "ra_deg": metrics.ra_deg,
            "dec_deg": metrics.dec_deg,
            "n": s.n.astype(np.int64),
            "mean_flux_jy": np.where(s.n > 0, s.mean, np.nan),
            "wmean_flux_jy": np.where(s.n > 0, s.wmean, np.nan),
            "mean_snr": vclass.mean_snr(s.wmean, s.w),
            "std_flux_jy": std,
            "v": v,
            "eta": eta,
            "p_constant": p_constant,
            "vs": metrics.pair.vs,
            "m": np.where(defined, metrics.pair.m, np.nan),
            "pair_mjd_a": metrics.pair.mjd_a,
            "pair_mjd_b": metrics.pair.mjd_b,
            "first_detection_mjd": np.where(np.isfinite(t.first_det_mjd), t.first_det_mjd, np.nan),
            "first_detection_snr": t.first_det_snr,
            "n_prior_blocks": t.n_prior.astype(np.int64),
            "is_new_source": t.is_new_source(),
        }
    )
    frame = frame[frame["n"] > 0].sort_values("source_id", kind="stable")
    frame = frame.reset_index(drop=True)
    decision = decide(frame, limits)
    frame["q_value"] = decision.q_value
    frame["variable_by"] = decision.variable_by
    frame["class"] = decision.classes
    return frame


@dataclass(frozen=True)
class Decision:
    """The classification of a metrics frame and what it rests on (one entry per row)."""

    classes: pd.Series
    q_value: FloatArray
    """Benjamini-Hochberg adjusted p_constant over the judged sources (NaN outside them)."""
    variable_by: npt.NDArray[np.object_]
    """Which size test a variable passed: eta_v, two_epoch, both, or "" (not variable)."""


def decide(frame: pd.DataFrame, thresholds: Thresholds) -> Decision:
    """The class of each row (see the module docstring for the order and the tests).

    The false-discovery control runs over the rows of ``frame``: pass the whole run.
    """
    n = frame["n"].to_numpy()
    enough = n >= thresholds.min_data_points
    wmean = frame["wmean_flux_jy"].to_numpy(dtype=np.float64)
    if "mean_snr" in frame:
        snr = frame["mean_snr"].to_numpy(dtype=np.float64)
        defined = np.nan_to_num(np.abs(snr), nan=-np.inf) >= thresholds.min_mean_snr
    else:  # a frame from before the guard: no mean error known, the mean counts as defined
        defined = np.isfinite(wmean)
    judged = enough & defined
    p = frame["p_constant"].to_numpy(dtype=np.float64)
    q = vclass.bh_qvalues(p, judged)
    with np.errstate(invalid="ignore"):
        real = judged & (p < thresholds.p_threshold) & (q <= thresholds.false_discovery_rate)
        by_v = frame["v"].to_numpy(dtype=np.float64) >= thresholds.variability_threshold
    by_pair = vclass.two_epoch(
        frame["vs"].to_numpy(dtype=np.float64),
        frame["m"].to_numpy(dtype=np.float64),
        thresholds.vs_threshold,
        thresholds.m_threshold,
    )
    variable = real & (by_v | by_pair)
    cls = np.full(len(frame), CLASS_STABLE, dtype=object)
    cls[variable] = CLASS_VARIABLE
    cls[enough & ~defined] = CLASS_FAINT
    cls[~enough] = CLASS_INSUFFICIENT
    cls[frame["is_new_source"].to_numpy(dtype=bool)] = CLASS_TRANSIENT
    by = np.full(len(frame), "", dtype=object)
    by[variable & by_v] = vclass.VARIABLE_BY_ETA_V
    by[variable & by_pair] = vclass.VARIABLE_BY_TWO_EPOCH
    by[variable & by_v & by_pair] = vclass.VARIABLE_BY_BOTH
    by[cls != CLASS_VARIABLE] = ""
    classes = pd.Series(pd.Categorical(cls, categories=list(CLASSES)), index=frame.index)
    return Decision(classes, q, by)


def classify(frame: pd.DataFrame, thresholds: Thresholds) -> pd.Series:
    """The class of each row of a metrics frame (:func:`decide` without its reasons)."""
    return decide(frame, thresholds).classes
