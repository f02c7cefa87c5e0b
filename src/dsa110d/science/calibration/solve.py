"""The bandpass and the gains of a chunk from its :class:`~chunk.ChunkSums`, and applying them.

The bandpass: one gain per antenna, channel and polarisation over the whole chunk (the
calibrator's transit). The gains: one per antenna, polarisation and solution interval with
the bandpass divided out (see :mod:`dsa110d.science.calibration.chunk` for how both come from
one read). Solutions are referenced to the reference antenna (:func:`solver.choose_reference`)
and flagged below ``calibration.min_snr``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from dsa110d.config import CalibrationConfig
from dsa110d.science.calibration import chunk
from dsa110d.science.calibration.caltables import Kind, Solution
from dsa110d.science.calibration.chunk import ChunkInfo, ChunkSums
from dsa110d.science.calibration.solver import (
    GainSolution,
    SumsAccumulator,
    choose_reference,
    referenced,
    stefcal,
)


def _finish(
    kind: Kind,
    solved: GainSolution,
    weight: NDArray[np.float64],
    shape: tuple[int, int, int, int],
    info: ChunkInfo,
    times: NDArray[np.float64],
    interval: NDArray[np.float64],
    config: CalibrationConfig,
) -> Solution:
    """Reshape solver output (Nt*Nchan*Npol, Nant) to (Nt, Nant, Nchan, Npol), flag, reference."""
    n_t, n_ant, n_chan, n_pol = shape

    def cube(x: NDArray[Any]) -> NDArray[Any]:
        return np.asarray(x.reshape(n_t, n_chan, n_pol, n_ant).transpose(0, 3, 1, 2))

    gain, error, snr = cube(solved.gain), cube(solved.error), cube(solved.snr)
    flag = cube(solved.flagged) | (snr < config.min_snr)
    antenna_flagged = np.asarray(flag.all(axis=(0, 2, 3)), dtype=bool)
    ref = choose_reference(
        antenna_flagged, config.reference_antenna, info.antennas, cube(weight).sum(axis=(0, 2, 3))
    )
    gain = np.moveaxis(referenced(np.moveaxis(gain, 1, -1), ref), -1, 1)
    gain = np.where(flag, 1.0 + 0j, gain)
    return Solution(
        kind,
        times,
        interval,
        info.antennas,
        info.model.freq_hz,
        gain,
        error,
        snr,
        flag,
        int(info.antennas[ref]),
    )


def _solve(
    products: tuple[NDArray[Any], ...], sums: ChunkSums, n_solutions: int, n_ant: int
) -> tuple[GainSolution, NDArray[np.float64]]:
    """StEFCal on per-baseline products (Nsol, Nbl, K): the solution and its weights."""
    k = products[0].shape[2]
    acc = SumsAccumulator(n_solutions, n_ant, k)
    solution = np.repeat(np.arange(n_solutions), sums.i1.size)
    dm, mm, dd, w = (p.reshape(n_solutions * sums.i1.size, k) for p in products)
    acc.add(dm, mm, dd, w, np.tile(sums.i1, n_solutions), np.tile(sums.i2, n_solutions), solution)
    normal = acc.result()
    return stefcal(normal), normal.weight


def solve_bandpass(sums: ChunkSums, info: ChunkInfo, config: CalibrationConfig) -> Solution:
    """One gain per antenna, channel and polarisation over the whole chunk."""
    n_bl, n_chan, n_pol = sums.a.shape[1:]
    products = tuple(
        np.asarray(x.sum(axis=0, dtype=x.dtype).reshape(1, n_bl, n_chan * n_pol))
        for x in (sums.a, sums.b, sums.c, sums.count)
    )
    solved, weight = _solve(products, sums, 1, info.antennas.size)
    times = np.array([float(info.times.mean())])
    interval = np.array([float(np.ptp(info.times))])
    shape = (1, info.antennas.size, n_chan, n_pol)
    return _finish("bandpass", solved, weight, shape, info, times, interval, config)


def lookup(solution: Solution, antennas: NDArray[np.int64]) -> tuple[NDArray[Any], NDArray[Any]]:
    """``solution``'s gains and flags for ``antennas`` (absent antennas flagged):
    (Nt, len(antennas), Nchan, Npol)."""
    where = np.searchsorted(solution.antennas, antennas)
    where = np.clip(where, 0, solution.antennas.size - 1)
    present = solution.antennas[where] == antennas
    gain = np.where(present[None, :, None, None], solution.gain[:, where], 1.0 + 0j)
    flag = np.where(present[None, :, None, None], solution.flag[:, where], True)
    return gain, flag


def solve_gains(
    sums: ChunkSums, info: ChunkInfo, bandpass: Solution, config: CalibrationConfig
) -> Solution:
    """One gain per antenna, polarisation and solution interval, the bandpass divided out."""
    bp, bp_flag = lookup(bandpass, info.antennas)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.where(bp_flag[0], 0.0, 1.0 / bp[0]).astype(np.complex64)  # (Nant, F, P)
    factor = inverse[sums.i1] * np.conj(inverse[sums.i2])  # 1 / (b_i conj(b_j)), per baseline
    usable = (factor != 0).astype(np.float32)
    scale = (factor.real**2 + factor.imag**2).astype(np.float32)
    n_int = sums.a.shape[0]
    # Summed over the channels in double precision (the residual is a difference of sums).
    products = (
        np.einsum("kbfp,bfp->kbp", sums.a, factor, dtype=np.complex128),
        np.einsum("kbfp,bfp->kbp", sums.b, usable, dtype=np.float64),
        np.einsum("kbfp,bfp->kbp", sums.c, scale, dtype=np.float64),
        np.einsum("kbfp,bfp->kbp", sums.count, usable, dtype=np.float64),
    )
    solved, weight = _solve(products, sums, n_int, info.antennas.size)
    of = sums.interval_of
    times = np.array([float(info.times[of == k].mean()) for k in range(n_int)])
    spans = np.array([float(np.ptp(info.times[of == k])) for k in range(n_int)])
    shape = (n_int, info.antennas.size, 1, products[0].shape[2])
    return _finish("gains", solved, weight, shape, info, times, spans, config)


def apply(info: ChunkInfo, bandpass: Solution, gains: Solution, config: CalibrationConfig) -> None:
    """Write ``CORRECTED_DATA = DATA / (G_i conj(G_j))`` with ``G = bandpass x gain`` and flag
    the data of antennas whose solution is flagged (:func:`chunk.apply`)."""
    bp, bp_flag = lookup(bandpass, info.antennas)
    g, g_flag = lookup(gains, info.antennas)
    chunk.apply(info, bp[0], bp_flag[0], g, g_flag, config)


def concatenate(solutions: list[Solution]) -> Solution:
    """The per-MS gain solutions of a block as one (antennas: the union, absent ones flagged)."""
    antennas = np.unique(np.concatenate([s.antennas for s in solutions]))
    parts = [lookup(s, antennas) for s in solutions]
    first = solutions[0]

    def stack(name: str, fill: float) -> NDArray[Any]:
        out = []
        for s in solutions:
            where = np.clip(np.searchsorted(s.antennas, antennas), 0, s.antennas.size - 1)
            present = (s.antennas[where] == antennas)[None, :, None, None]
            out.append(np.where(present, getattr(s, name)[:, where], fill))
        return np.concatenate(out)

    return Solution(
        "gains",
        np.concatenate([s.times_mjd_s for s in solutions]),
        np.concatenate([s.interval_s for s in solutions]),
        antennas,
        first.freq_hz,
        np.concatenate([p[0] for p in parts]),
        stack("error", np.inf),
        stack("snr", 0.0),
        np.concatenate([p[1] for p in parts]),
        first.reference_antenna,
    )
