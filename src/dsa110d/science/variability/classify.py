"""The classification's statistics: false-alarm control across sources and the mean guard.

**False alarms across ~10^4 sources.** A per-source chi-square threshold p < 1e-3 lets through
about 10 constant sources per 10^4 by chance alone. The run therefore controls the *false
discovery rate* over all the sources it judges with Benjamini & Hochberg (1995, JRSS B 57,
289): with the p-values of the m judged sources sorted, p_(1) <= ... <= p_(m), reject the k
smallest where k is the largest i with p_(i) <= i q / m. The expected fraction of constant
sources among those rejected is then at most q (exactly q m0 / m for independent tests); when
no source varies, the chance of *any* false alarm in a run is at most q. Each source's BH
adjusted p-value (its *q-value*: the smallest q at which it would be rejected) is reported, so
an operator can re-cut at another rate without re-running.

**The two-epoch test** (Mooley et al. 2016, ApJ 818, 105): a pair of epochs with
|Vs| >= 4.3 and |m| >= 0.26. With N epochs a source offers N (N - 1) / 2 pairs, so on its own
the test's false-alarm rate grows with the light curve; it decides *how much* a source varies
(a single-epoch flare can have a small V and a large m), never *whether* the variation is real:
that is the chi-square test under the FDR above.

**Near-zero means.** V = std / mean and m = 2 (S_a - S_b) / (S_a + S_b) are ratios to the flux
density: for a source whose mean is consistent with zero they are unbounded and say nothing.
The mean is *defined* when |xi| >= k sigma_xi, with xi the weighted mean and
sigma_xi = 1 / sqrt(sum 1 / sigma_i^2) its error, k = ``min_mean_snr``. Otherwise V and m are
reported as NaN and the source is classed ``faint``: neither variable nor stable; only the
new-source (transient) test, which needs no ratio, applies to it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_FALSE_DISCOVERY_RATE = 0.01
"""Expected fraction of false alarms among a run's variables (BH's q)."""
DEFAULT_MIN_MEAN_SNR = 3.0
"""k: |weighted mean| / its error below which V and m are undefined (3 sigma)."""
DEFAULT_M_THRESHOLD = 0.26
"""|m| a significant pair needs (Mooley et al. 2016, sec. 5: 0.26, a 30% flux change)."""

VARIABLE_BY_ETA_V = "eta_v"
VARIABLE_BY_TWO_EPOCH = "two_epoch"
VARIABLE_BY_BOTH = "eta_v+two_epoch"


def bh_qvalues(p: FloatArray, family: BoolArray) -> FloatArray:
    """Benjamini-Hochberg adjusted p-values of the sources in ``family`` (NaN outside it).

    q_(i) = min over j >= i of p_(j) m / j, capped at 1; a source is rejected at rate q
    exactly when its q-value is <= q. NaN p-values inside the family count as 1.
    """
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(family)
    m = idx.size
    if m == 0:
        return out
    pv = np.where(np.isfinite(p[idx]), p[idx], 1.0)
    order = np.argsort(pv, kind="stable")
    scaled = pv[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(adjusted, 1.0)
    out[idx] = q
    return out


def bh_reject(p: FloatArray, family: BoolArray, rate: float) -> BoolArray:
    """The sources of ``family`` that BH rejects (declares non-constant) at false discovery
    rate ``rate``; False outside the family."""
    q = bh_qvalues(p, family)
    result: BoolArray = family & (np.nan_to_num(q, nan=np.inf) <= rate)
    return result


def mean_defined(wmean: FloatArray, weight_sum: FloatArray, k: float) -> BoolArray:
    """|xi| >= k sigma_xi, sigma_xi = 1 / sqrt(sum w): the mean is measured, V and m mean
    something (False where there is no measurement)."""
    with np.errstate(invalid="ignore"):
        snr = np.abs(wmean) * np.sqrt(weight_sum)
    result: BoolArray = np.nan_to_num(snr, nan=-np.inf) >= k
    return result


def mean_snr(wmean: FloatArray, weight_sum: FloatArray) -> FloatArray:
    """xi / sigma_xi (signed), NaN without measurements."""
    with np.errstate(invalid="ignore"):
        out: FloatArray = np.where(weight_sum > 0, wmean * np.sqrt(weight_sum), np.nan)
    return out


def two_epoch(vs: FloatArray, m: FloatArray, vs_threshold: float, m_threshold: float) -> BoolArray:
    """Mooley's test on the reported pair (the largest |m| among pairs with |Vs| >= the search
    threshold, so a pair passing both exists exactly when the reported one does)."""
    with np.errstate(invalid="ignore"):
        result: BoolArray = (np.abs(vs) >= vs_threshold) & (np.abs(m) >= m_threshold)
    return result
