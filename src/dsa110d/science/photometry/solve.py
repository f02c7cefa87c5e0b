"""Fluxes and errors from a block's sums: the joint fit's normal equations, which sources it
can separate, and the thermal and jackknife errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dsa110d.science.photometry.sums import Sums

JOINT_FIT_MAX_CORRELATION = 0.95
"""Two sources whose normalised coupling A_jk / sqrt(A_jj A_kk) exceeds this (closer than about
a synthesized beam) cannot be separated usefully (the joint error would be > 3x the isolated
one): the fainter is measured alone, its flux includes the brighter's, and it is flagged
``blended``."""

JACKKNIFE_EXCESS = 1.4284
"""The jackknife error replaces the thermal one only when it exceeds it by this factor:
sqrt(chi2_0.99(15) / 15), the 99th percentile of the ratio a jackknife over 16 groups (15
degrees of freedom) scatters to when the thermal error is right. Below it the two agree within
the jackknife's own ~18 % scatter and the thermal error, which scatters far less, is the one
reported (taking the larger of the two, as before, made errors 0-35 % too large and biased eta
low); above it the data hold something the model lacks (a source missing from the catalog, a
wrong beam) and the jackknife measures it."""

JOINT_FIT_MIN_EIGENVALUE = 1e-3
"""If the normalised joint matrix still has an eigenvalue below this (several sources jointly
degenerate), the most entangled source is taken out of the fit (flagged ``blended``) until not."""


def _jackknife_spread(loo: NDArray[np.float64], used: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Jackknife error from leave-one-group-out values (sources, groups), over used groups."""
    k = used.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        loo = np.where(used, loo, 0.0)
        mean = loo.sum(axis=1, keepdims=True) / k[:, None]
        spread = np.where(used, (loo - mean) ** 2, 0.0).sum(axis=1)
        return np.asarray(np.sqrt((k - 1) / k * spread), dtype=np.float64)


def _jackknife_error(
    signal: NDArray[np.float64], weight: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Leave-one-group-out error of signal / weight, per source (rows)."""
    total_s, total_w = signal.sum(axis=1, keepdims=True), weight.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        loo = (total_s - signal) / (total_w - weight)
    return _jackknife_spread(loo, weight > 0)


@dataclass
class Solution:
    """Fluxes and errors of every catalog source (NaN where it has no data)."""

    flux: NDArray[np.float64]
    error: NDArray[np.float64]
    blended: NDArray[np.bool_]


def _separable(
    a: NDArray[np.float64], brightness: NDArray[np.float64]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Which sources of the joint matrix ``a`` can be fitted together (see
    JOINT_FIT_MAX_CORRELATION, JOINT_FIT_MIN_EIGENVALUE; the brighter are kept first), and
    which are blended: too close to another catalog source, or left out as degenerate."""
    scale = 1.0 / np.sqrt(np.diag(a))
    corr = a * scale[:, None] * scale[None, :]
    close = np.abs(corr) > JOINT_FIT_MAX_CORRELATION
    np.fill_diagonal(close, False)
    keep = np.zeros(a.shape[0], dtype=bool)
    for j in np.argsort(-brightness, kind="stable"):
        keep[j] = not close[j, keep].any()
    while keep.sum() > 1:
        kept = np.flatnonzero(keep)
        sub = corr[np.ix_(kept, kept)]
        if np.linalg.eigvalsh(sub)[0] >= JOINT_FIT_MIN_EIGENVALUE:
            break
        keep[kept[int(np.argmax(np.abs(sub).sum(axis=1)))]] = False
    return keep, ~keep | close.any(axis=1)


def solve(sums: Sums, catalog_flux: NDArray[np.float64]) -> Solution:
    """Fluxes and errors: sources never fitted jointly by signal / weight, the others by the
    normal equations A S = b over the slots, each with its jackknife (leave one baseline group
    out of both A and b) and thermal error (sigma sqrt((A^-1)_jj), sigma^2 the residual
    imaginary power per unit weight)."""
    signal, weight = sums.signal.sum(axis=1), sums.weight.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = signal / weight
        thermal = np.sqrt(sums.noise_sq) / weight
    jackknife = _jackknife_error(sums.signal, sums.weight)
    blended = np.zeros(signal.size, dtype=bool)
    slots = np.asarray(sums.slots, dtype=np.intp)
    with_data = weight[slots] > 0
    if with_data.sum() > 1:
        pick = np.flatnonzero(with_data)
        a_g = sums.pair[np.ix_(pick, pick)]  # (m, m, groups), zero diagonal
        a_g[np.arange(pick.size), np.arange(pick.size)] = sums.weight[slots[pick]]
        keep, close = _separable(
            a_g.sum(axis=2), catalog_flux[slots[pick]] * sums.peak_gain[slots[pick]]
        )
        blended[slots[pick[close]]] = True
        joint = slots[pick[keep]]
        a_g = a_g[np.ix_(keep, keep)]
        b_g = sums.signal[joint]
        a, b = a_g.sum(axis=2), b_g.sum(axis=1)
        inverse = np.linalg.inv(a)
        flux[joint] = inverse @ b
        thermal[joint] = np.sqrt(sums.noise_sq[joint] / np.diag(a) * np.diag(inverse))
        jackknife[joint] = _joint_jackknife(a, b, a_g, b_g)
    return Solution(flux, combined_error(thermal, jackknife), blended)


def combined_error(
    thermal: NDArray[np.float64], jackknife: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The statistical error: thermal, unless the jackknife exceeds it by JACKKNIFE_EXCESS."""
    with np.errstate(invalid="ignore"):
        excess = jackknife > JACKKNIFE_EXCESS * thermal
    return np.asarray(np.where(excess, jackknife, thermal), dtype=np.float64)


def _joint_jackknife(
    a: NDArray[np.float64], b: NDArray[np.float64], a_g: NDArray[np.float64],
    b_g: NDArray[np.float64],
) -> NDArray[np.float64]:  # fmt: skip
    """Jackknife error of the joint solution: S^(-g) = (A - A^g)^-1 (b - b^g) per group g."""
    loo_a = a[None] - np.moveaxis(a_g, 2, 0)  # (groups, m, m)
    loo_b = b[None] - b_g.T
    diag = np.diagonal(loo_a, axis1=1, axis2=2)
    empty = diag <= 0  # a source with data in this group only: left out of that solve
    loo_a = np.where(empty[:, :, None] | empty[:, None, :], 0.0, loo_a)
    loo_a += np.eye(a.shape[0])[None] * empty[:, None, :]
    loo_b = np.where(empty, 0.0, loo_b)
    loo = np.linalg.solve(loo_a, loo_b[..., None])[..., 0]
    used = (np.diagonal(a_g, axis1=0, axis2=1) > 0) & ~empty  # (groups, m)
    return _jackknife_spread(np.asarray(loo.T, dtype=np.float64), used.T)


REFINE_MIN_CHI2 = 11.8
"""An offset from the catalog position is taken as real when its chi-square (2 degrees of
freedom) exceeds this: 3 sigma (p = 0.0027)."""
REFINE_MAX_RAD = float(np.radians(10.0 / 3600.0))
"""Offsets beyond 10 arcsec are not a catalog's astrometric error (another source, a blend):
never applied."""


@dataclass
class Offsets:
    """Each source's estimated offset from its catalog position (tangent plane, rad) and the
    offset's chi-square against none (NaN without data)."""

    dl: NDArray[np.float64]
    dm: NDArray[np.float64]
    chi2: NDArray[np.float64]


def position_offsets(sums: Sums, flux: NDArray[np.float64]) -> Offsets:
    """(dl, dm) = Q^-1 y / S from the position sums (accumulation._add_position_sums), with
    sigma^2 the residual imaginary power per unit weight (as for the thermal error):
    y ~ N(S Q d, sigma^2 Q), so chi2 = y^T Q^-1 y / sigma^2."""
    q = np.stack([sums.pos_q[:, [0, 1]], sums.pos_q[:, [1, 2]]], axis=1)  # (n, 2, 2)
    weight = sums.weight.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        det = q[:, 0, 0] * q[:, 1, 1] - q[:, 0, 1] ** 2
        ok = (det > 0) & (weight > 0) & (sums.noise_sq > 0)
        safe = np.where(ok[:, None, None], q, np.eye(2)[None])
        solved = np.linalg.solve(safe, sums.pos_y[..., None])[..., 0]  # Q^-1 y
        sigma_sq = sums.noise_sq / weight
        chi2 = np.einsum("ni,ni->n", sums.pos_y, solved) / sigma_sq
        d = solved / flux[:, None]
    nan = np.full(weight.size, np.nan)
    return Offsets(np.where(ok, d[:, 0], nan), np.where(ok, d[:, 1], nan), np.where(ok, chi2, nan))
