"""StEFCal: antenna-based complex gains from visibilities and a model, vectorised.

The data of antennas i, j are ``R_ij = g_i conj(g_j) M_ij + noise`` (M the model). With the
other gains held, the least-squares gain of antenna i over every sample of a solution (times,
and channels when the gain is taken constant across them) is

    g_i = sum_j A_ij g_j / sum_j B_ij |g_j|^2,
    A_ij = sum w R_ij conj(M_ij),  B_ij = sum w |M_ij|^2,

the alternating direction step of StEFCal (Salvini & Wijnholds 2014, A&A 571, A97), with the
average of the two last iterates taken every second step for convergence. The gains enter only
through A and B, so the samples are summed once (:func:`normal_sums`, :class:`SumsAccumulator`)
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
CONVERGENCE_TOL = 1e-8
"""Relative change of the gains at which StEFCal stops."""
MIN_WEIGHT = 1e-12
"""An antenna whose model power sum is below this (no unflagged data) has no solution."""


@dataclass(frozen=True)
class NormalSums:
    """The sums StEFCal needs, per solution and antenna pair, Hermitian over (i, j):
    shapes (Nsol, Nant, Nant); ``count`` is the number of unflagged visibilities."""

    a: NDArray[np.complex128]
    b: NDArray[np.float64]
    c: NDArray[np.float64]
    count: NDArray[np.float64]

    def __add__(self, other: NormalSums) -> NormalSums:
        """The sums over both sets of samples (the sums are additive over rows)."""
        return NormalSums(
            self.a + other.a, self.b + other.b, self.c + other.c, self.count + other.count
        )


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
    acc = SumsAccumulator(n_solutions, n_antennas, data.shape[1])
    add_samples(acc, data, model, weight, ant_1, ant_2, solution)
    return acc.result()


def add_samples(
    acc: SumsAccumulator,
    data: NDArray[np.complexfloating],
    model: NDArray[np.complexfloating],
    weight: NDArray[np.floating],
    ant_1: NDArray[np.intp],
    ant_2: NDArray[np.intp],
    solution: NDArray[np.intp],
) -> None:
    """Add one slab of samples (as :func:`normal_sums` takes them) to ``acc``."""
    w = np.where((ant_1 == ant_2)[:, None], 0.0, weight).astype(np.float64)
    d = data.astype(np.complex128)
    m = model.astype(np.complex128)
    acc.add(
        w * d * np.conj(m),
        w * np.abs(m) ** 2,
        w * np.abs(d) ** 2,
        w,
        ant_1,
        ant_2,
        solution,
    )


def sums_of_products(
    dm: NDArray[np.complex128],
    mm: NDArray[np.float64],
    dd: NDArray[np.float64],
    w: NDArray[np.float64],
    ant_1: NDArray[np.intp],
    ant_2: NDArray[np.intp],
    solution: NDArray[np.intp],
    n_solutions: int,
    n_antennas: int,
) -> NormalSums:
    """:class:`NormalSums` from per-row products already summed over what a solution takes
    as constant (e.g. channels): ``w R conj(M)``, ``w |M|^2``, ``w |R|^2`` and ``w``, each
    (rows, K). Autocorrelation rows must carry zero weight."""
    acc = SumsAccumulator(n_solutions, n_antennas, dm.shape[1])
    acc.add(dm, mm, dd, w, ant_1, ant_2, solution)
    return acc.result()


class SumsAccumulator:
    """:class:`NormalSums` summed over any number of row slabs: each slab's products are
    added into one (solution, antenna, antenna, K) array per sum (a plain indexed add when
    the slab has each pair once, as an integration of a time-major MS does), and the
    Hermitian (Nsol, Nant, Nant) matrices are built once, at the end."""

    def __init__(self, n_solutions: int, n_antennas: int, k: int) -> None:
        self.n_solutions, self.n_antennas, self.k = n_solutions, n_antennas, k
        shape = (n_solutions, n_antennas, n_antennas, k)
        self.arrays: list[NDArray[Any]] = [np.zeros(shape, np.complex128)] + [
            np.zeros(shape, np.float64) for _ in range(3)
        ]

    def add(
        self,
        dm: NDArray[np.complex128],
        mm: NDArray[np.float64],
        dd: NDArray[np.float64],
        w: NDArray[np.float64],
        ant_1: NDArray[np.intp],
        ant_2: NDArray[np.intp],
        solution: NDArray[np.intp],
    ) -> None:
        pair = (solution * self.n_antennas + ant_1) * self.n_antennas + ant_2
        unique = np.unique(pair).size == pair.size
        for target, product in zip(self.arrays, (dm, mm, dd, w), strict=True):
            flat = target.reshape(-1, self.k)
            if unique:
                flat[pair] += product
            else:
                np.add.at(flat, pair, product)

    def result(self) -> NormalSums:
        out = []
        for cube in self.arrays:
            # (Nsol, Nant, Nant, K) -> (Nsol, K, Nant, Nant), then add the mirror (j, i) half.
            cube = cube.transpose(0, 3, 1, 2)
            mirror = cube.transpose(0, 1, 3, 2)
            full = cube + (np.conj(mirror) if np.iscomplexobj(cube) else mirror)
            out.append(full.reshape(self.n_solutions * self.k, self.n_antennas, self.n_antennas))
        return NormalSums(out[0], out[1].real, out[2].real, out[3].real)


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
    """Solve every solution of ``sums`` at once (see the module docstring)."""
    n_sol, n_ant, _ = sums.a.shape
    weight = sums.b.sum(axis=2)
    usable = weight > MIN_WEIGHT
    g = np.ones((n_sol, n_ant), np.complex128) if initial is None else initial.astype(np.complex128)
    g = np.where(usable, g, 0.0)
    iterations = 0
    for iterations in range(1, MAX_ITERATIONS + 1):
        num = np.einsum("sij,sj->si", sums.a, g)
        den = np.einsum("sij,sj->si", sums.b, np.abs(g) ** 2)
        new = np.where(usable, num / np.where(usable, den, 1.0), 0.0)
        if iterations % 2 == 0:
            new = 0.5 * (new + g)
        change = np.linalg.norm(new - g) / max(float(np.linalg.norm(new)), MIN_WEIGHT)
        g = new
        if change < CONVERGENCE_TOL:
            break
    # Residual from the sums: C - 2 Re(g_i* g_j A_ij) + |g_i|^2 |g_j|^2 B_ij, over i != j
    # (each pair twice, as the sums hold both halves).
    cross = np.einsum("si,sij,sj->s", np.conj(g), sums.a, g).real
    power = np.einsum("si,sij,sj->s", np.abs(g) ** 2, sums.b, np.abs(g) ** 2)
    chi2 = 0.5 * (sums.c.sum(axis=(1, 2)) - 2 * cross + power)
    n_vis = 0.5 * sums.count.sum(axis=(1, 2))
    dof = np.maximum(2.0 * (n_vis - usable.sum(axis=1)), 1.0)
    sigma = np.sqrt(np.maximum(chi2, 0.0) / dof)
    info = np.einsum("sij,sj->si", sums.b, np.abs(g) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.where(usable, sigma[:, None] / np.sqrt(info), np.inf)
        snr = np.where(usable, np.abs(g) / error, 0.0)
    return GainSolution(g, error, snr, ~usable, iterations, sigma)


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
