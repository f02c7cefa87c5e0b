"""StEFCal: antenna-based complex gains from visibilities and a model, vectorised.

The data of antennas i, j are ``R_ij = g_i conj(g_j) M_ij + noise`` (M the model). With the
other gains held, the least-squares gain of antenna i over every sample of a solution (times,
and channels when the gain is taken constant across them) is

    g_i = sum_j A_ij g_j / sum_j B_ij |g_j|^2,
    A_ij = sum w R_ij conj(M_ij),  B_ij = sum w |M_ij|^2,

the alternating direction step of StEFCal (Salvini & Wijnholds 2014, A&A 571, A97), with the
average of the two last iterates taken every second step for convergence. The gains enter only
through A and B, so the samples are summed once (:class:`SumsAccumulator`)
and each iteration is one batched matrix-vector product for every solution at once: no Python
loop over baselines, antennas, channels or solutions.

Errors: the residual ``chi2 = sum w |R - g_i conj(g_j) M|^2`` follows from the same sums (and
``C_ij = sum w |R_ij|^2``); with ``sigma^2 = chi2 / (2 (n_vis - n_ant))`` the noise per real
and imaginary part, the 1-sigma error of each part of g_i is
``sigma / sqrt(sum_j B_ij |g_j|^2)``; the SNR of a gain is ``|g_i|`` over that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

MAX_ITERATIONS = 200
CONVERGENCE_TOL = 1e-6
"""Relative change of the gains at which StEFCal stops: three orders of magnitude below the
relative error of the best-measured gains (SNR ~300 on a calibrator transit), and reachable
in the single precision the iterations run in (their sums are single precision already)."""
MIN_WEIGHT = 1e-12
"""An antenna whose model power sum is below this (no unflagged data) has no solution."""


@dataclass(frozen=True)
class NormalSums:
    """The sums StEFCal needs: ``a`` and ``b`` per antenna pair and solution, Hermitian over
    (i, j), shapes (Nant, Nant, Nsol) with the solutions innermost (each iteration is a
    contiguous sweep over them), single precision (constants of the iteration, which runs in
    double: they move its fixed point by ~1e-7 relative, far below the gains' errors); ``c``
    and ``count`` (the unflagged visibilities) per solution only (Nsol,), double, each baseline
    counted once: the residual needs nothing finer."""

    a: NDArray[np.complex64]
    b: NDArray[np.float32]
    c: NDArray[np.float64]
    count: NDArray[np.float64]

    @property
    def weight(self) -> NDArray[np.float64]:
        """(Nsol, Nant): each antenna's model power, summed over its baselines."""
        return np.asarray(self.b.sum(axis=1, dtype=np.float64).T)


def normal_sums(
    data: NDArray[np.complexfloating],
    model: NDArray[np.complexfloating],
    weight: NDArray[np.floating],
    ant_1: NDArray[np.intp],
    ant_2: NDArray[np.intp],
    solution: NDArray[np.intp],
    n_solutions: int,
    n_antennas: int,
) -> NormalSums:
    """Sum the samples into :class:`NormalSums`.

    ``data``, ``model`` and ``weight`` are (rows, K): K independent solution channels (e.g.
    channel x polarisation for a bandpass, polarisation for a gain); ``ant_1``/``ant_2`` the
    antenna indices (0..n_antennas-1) of each row and ``solution`` its solution interval
    (0..n_solutions-1). Output solutions are ordered (interval, K). Autocorrelations and
    zero-weight samples do not count.
    """
    w = np.where((ant_1 == ant_2)[:, None], 0.0, weight).astype(np.float64)
    d = data.astype(np.complex128)
    m = model.astype(np.complex128)
    acc = SumsAccumulator(n_solutions, n_antennas, data.shape[1])
    acc.add(w * d * np.conj(m), w * np.abs(m) ** 2, w * np.abs(d) ** 2, w, ant_1, ant_2, solution)
    return acc.result()


class SumsAccumulator:
    """:class:`NormalSums` from per-row products (each already summed over whatever a solution
    takes as constant), over any number of slabs: the one entry point that builds the sums.
    ``add`` takes ``w R conj(M)``, ``w |M|^2``, ``w |R|^2`` and ``w``, each (rows, K), and adds
    each row of the first two to its pair (i, j) and, conjugated, to (j, i): rows of K
    contiguous values (a plain indexed add when the slab has each pair once), so the result is
    a reshape, not a copy. Autocorrelation rows must carry zero weight."""

    def __init__(self, n_solutions: int, n_antennas: int, k: int) -> None:
        self.n_solutions, self.n_antennas, self.k = n_solutions, n_antennas, k
        shape = (n_antennas, n_antennas, n_solutions, k)
        self.pairs: list[NDArray[Any]] = [
            np.zeros(shape, np.complex64),
            np.zeros(shape, np.float32),
        ]
        self.totals: list[NDArray[np.float64]] = [np.zeros((n_solutions, k)) for _ in range(2)]
        self.empty = True
        """Nothing added yet: a first slab with each pair once is assigned, not added (for a
        bandpass, hundreds of MB the adds would first read as zeros)."""

    def add(
        self,
        dm: NDArray[np.complexfloating],
        mm: NDArray[np.floating],
        dd: NDArray[np.floating],
        w: NDArray[np.floating],
        ant_1: NDArray[np.intp],
        ant_2: NDArray[np.intp],
        solution: NDArray[np.intp],
    ) -> None:
        n, n_sol = self.n_antennas, self.n_solutions
        forward = (ant_1 * n + ant_2) * n_sol + solution
        mirror = (ant_2 * n + ant_1) * n_sol + solution
        pair = np.r_[forward, mirror]
        unique = np.unique(pair).size == pair.size
        for target, product in zip(self.pairs, (dm, mm), strict=True):
            flat = target.reshape(-1, self.k)
            both = (product, np.conj(product) if np.iscomplexobj(product) else product)
            for where, values in zip((forward, mirror), both, strict=True):
                if unique and self.empty:
                    flat[where] = values
                elif unique:  # gather, add, scatter: numpy's indexed += is ~4x slower
                    total = np.take(flat, where, axis=0)
                    total += values
                    flat[where] = total
                else:
                    np.add.at(flat, where, values)
        for total, product in zip(self.totals, (dd, w), strict=True):
            for s in np.unique(solution).tolist():
                total[s] += np.asarray(product)[solution == s].sum(axis=0, dtype=np.float64)
        self.empty = False

    def result(self) -> NormalSums:
        n, size = self.n_antennas, self.n_solutions * self.k
        a, b = (x.reshape(n, n, size) for x in self.pairs)
        c, count = (x.reshape(size) for x in self.totals)
        return NormalSums(a, b, c, count)


@dataclass(frozen=True)
class GainSolution:
    """Gains (Nsol, Nant), their 1-sigma error per real/imaginary part, SNR and flags."""

    gain: NDArray[np.complex128]
    error: NDArray[np.float64]
    snr: NDArray[np.float64]
    flagged: NDArray[np.bool_]
    iterations: int
    sigma: NDArray[np.float64]
    """Noise per real/imaginary part of one visibility, per solution (Nsol,)."""


def stefcal(sums: NormalSums, initial: NDArray[np.complex128] | None = None) -> GainSolution:
    """Solve every solution of ``sums`` at once (see the module docstring); ``initial`` and
    the results are (Nsol, Nant)."""
    n_ant, _, n_sol = sums.a.shape
    weight = sums.b.sum(axis=1, dtype=np.float64)  # (Nant, Nsol)
    usable = weight > MIN_WEIGHT
    start = np.ones((n_sol, n_ant)) if initial is None else initial
    g = np.where(usable, start.T, 0.0).astype(np.complex64)
    iterations = 0
    for iterations in range(1, MAX_ITERATIONS + 1):
        num = np.einsum("ijs,js->is", sums.a, g)
        den = np.einsum("ijs,js->is", sums.b, (g.real**2 + g.imag**2).astype(np.float32))
        new = np.where(usable, num / np.where(usable, den, 1.0), 0.0).astype(np.complex64)
        if iterations % 2 == 0:
            new = 0.5 * (new + g)
        change = np.linalg.norm(new - g) / max(float(np.linalg.norm(new)), MIN_WEIGHT)
        g = new
        if change < CONVERGENCE_TOL:
            break
    gain = g.astype(np.complex128)
    # Residual from the sums: C - 2 Re(g_i* g_j A_ij) + |g_i|^2 |g_j|^2 B_ij over the
    # baselines; A and B hold each baseline twice (both halves), C once.
    power = np.abs(gain) ** 2
    info = np.einsum("ijs,js->is", sums.b, power)
    cross = np.einsum("is,is->s", np.conj(gain), np.einsum("ijs,js->is", sums.a, gain)).real
    chi2 = sums.c - cross + 0.5 * (power * info).sum(axis=0)
    dof = np.maximum(2.0 * (sums.count - usable.sum(axis=0)), 1.0)
    sigma = np.sqrt(np.maximum(chi2, 0.0) / dof)
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.where(usable, sigma[None, :] / np.sqrt(info), np.inf)
        snr = np.where(usable, np.abs(gain) / error, 0.0)
    return GainSolution(gain.T, error.T, snr.T, ~usable.T, iterations, sigma)


def choose_reference(
    flagged: NDArray[np.bool_],
    preferred: int,
    antennas: NDArray[np.int64],
    weight: NDArray[np.float64],
) -> int:
    """Index (into ``antennas``) of the reference antenna: ``preferred`` (an antenna number)
    unless it is flagged or absent, then the unflagged antenna with the most data (the
    largest ``weight``, summed over solutions)."""
    where = np.flatnonzero(antennas == preferred)
    if where.size and not flagged[where[0]]:
        return int(where[0])
    candidates = np.where(flagged, -np.inf, weight)
    return int(np.argmax(candidates))


def referenced(gain: NDArray[np.complex128], reference: int) -> NDArray[np.complex128]:
    """``gain`` (…, Nant) with the phase of antenna ``reference`` removed from every antenna."""
    ref = gain[..., reference : reference + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        phasor = np.where(np.abs(ref) > 0, np.conj(ref) / np.abs(ref), 1.0)
    return np.asarray(gain * phasor)
