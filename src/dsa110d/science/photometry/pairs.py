"""The joint fit's pair terms: what each fitted source puts into another's rotated sum.

Summed per channel block with a Dirichlet kernel (:func:`add_pairs`), a partly flagged block
corrected channel by channel (:func:`_deficit_gram`); and the running joint solution whose
sidelobes the thermal noise estimate subtracts (:func:`running_fluxes`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dsa110d.science.photometry.geometry import ChannelBlocks
from dsa110d.science.photometry.sums import JACKKNIFE_GROUPS, Integration, Sums

RUNNING_FIT_RIDGE = 1e-3
"""Ridge added to the normalised matrix of the running joint solution (:func:`running_fluxes`)
so that an unseparable pair cannot make its model fluxes blow up."""

_PAIR_ROWS = 1024
"""Rows per step of the pair terms (bounds their (rows, sources, sources) work arrays)."""

_DIRICHLET_EPS = 1e-6
"""Below this |sin(x / 2)| the within-block channel sum takes its limit (the channel count)."""


def add_pairs(
    sums: Sums,
    joint: NDArray[np.intp],
    delays: NDArray[np.float64],
    gains: NDArray[np.float32],
    it: Integration,
    channels: ChannelBlocks,
) -> NDArray[np.float32]:
    """Add the pair terms of the ``joint`` sources at one integration to ``sums.pair``; return
    their imaginary parts per row, (rows, j, k): what source k of unit flux puts into the
    imaginary part of source j's rotated sum.

    Per row, with gain constant over a channel block of n uniformly spaced channels, the sum
    over the block of exp(2 pi i f (d_k - d_j)) is exp(2 pi i f_c (d_k - d_j)) D_n(x) with
    f_c the block's centre frequency, x = 2 pi df (d_k - d_j) and D_n(x) = sin(n x / 2) /
    sin(x / 2) the Dirichlet kernel: so the pair sums cost rows x pairs x blocks (a Gram
    matrix of the block-centre phasors per row), not x channels. A partly flagged block
    (channels of unequal weight) is summed at its largest channel weight, less the
    difference at each lighter channel, taken channel by channel (:func:`_deficit_gram`).
    """
    n_rows, n_src = delays.shape
    pair = np.zeros((JACKKNIFE_GROUPS, n_src, n_src), dtype=np.float64)
    coupling = np.empty((n_rows, n_src, n_src), dtype=np.float32)
    uneven = it.uneven.any(axis=1)
    steps = []  # (group, rows, exact): each step's rows are of one baseline group
    for group in range(JACKKNIFE_GROUPS):
        mine = it.group == group
        steps += [(group, r, False) for r in _steps(np.flatnonzero(mine & ~uneven), _PAIR_ROWS)]
        partly = np.flatnonzero(mine & uneven)
        steps += [(group, r, True) for r in _steps(partly, _PAIR_ROWS // channels.split)]
    for group, rows, exact in steps:
        d = delays[rows]
        if exact:  # partly flagged blocks: as if unflagged, less their flagged channels
            full = it.block_max[rows]
            t = _block_gram(d, gains, full * np.float32(channels.split), channels)
            t -= _deficit_gram(d, gains, full, it.channel_weight[rows], channels)
        else:
            t = _block_gram(d, gains, it.row_weight[rows], channels)
        pair[group] += t.real.sum(axis=0)
        coupling[rows] = t.imag
    slots = sums.slots_for(joint)
    sums.pair[np.ix_(slots, slots)] += pair.transpose(1, 2, 0)
    return coupling


def running_fluxes(
    sums: Sums, joint: NDArray[np.intp], catalog_flux: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The joint solution for ``joint`` from the sums so far (their catalog fluxes where it
    is not finite): the model whose sidelobes the thermal estimate subtracts."""
    slots = sums.slot_of[joint]
    a = sums.pair[np.ix_(slots, slots)].sum(axis=2)
    diag = sums.weight[joint].sum(axis=1)
    a[np.diag_indices_from(a)] = diag
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = 1.0 / np.sqrt(diag)
        normal = a * np.outer(scale, scale) + RUNNING_FIT_RIDGE * np.eye(joint.size)
        normal = np.where(np.isfinite(normal), normal, 0.0)
    normal[np.diag_indices_from(normal)] = np.where(diag > 0, normal.diagonal(), 1.0)
    rhs = np.where(diag > 0, sums.signal[joint].sum(axis=1) * scale, 0.0)
    flux = scale * np.linalg.solve(normal, rhs)
    return np.where(np.isfinite(flux) & (diag > 0), flux, catalog_flux[joint])


def _steps(rows: NDArray[np.intp], size: int) -> list[NDArray[np.intp]]:
    return [rows[lo : lo + size] for lo in range(0, rows.size, size)]


def _block_gram(
    delays: NDArray[np.float64], gains: NDArray[np.float32], block_weight: NDArray[np.float32],
    channels: ChannelBlocks,
) -> NDArray[np.complex64]:  # fmt: skip
    """sum over channels of w g_j g_k exp(2 pi i f (d_k - d_j)), (rows, j, k), for rows whose
    blocks are evenly weighted: block-centre Gram matrix x Dirichlet kernel."""
    n = channels.split
    amp = np.sqrt(block_weight / n)[:, None, :] * gains[None, :, :]
    q = _block_phasors(delays, channels) * amp.astype(np.float32, copy=False)
    t = np.asarray(np.matmul(q.conj(), q.transpose(0, 2, 1)), dtype=np.complex64)
    if n > 1:
        t *= _dirichlet(delays, channels.step_hz, n)
    return t


def _deficit_gram(
    delays: NDArray[np.float64], gains: NDArray[np.float32], block_max: NDArray[np.float32],
    weight: NDArray[np.float32], channels: ChannelBlocks,
) -> NDArray[np.complex64]:  # fmt: skip
    """The sum of :func:`_block_gram` over the channels whose weight is below their block's
    largest (``block_max``), weighted by the difference, (rows, j, k): what a block summed at
    its largest weight has too much. The flagged channels are few, so each is taken exactly;
    the cost is flagged (row, channel)s x pairs, not rows x channels x pairs."""
    split = channels.split
    deficit = np.repeat(block_max, split, axis=1) - weight
    row, chan = np.nonzero(deficit > 0)
    n_rows, n_src = delays.shape
    counts = np.bincount(row, minlength=n_rows)
    if row.size == 0:
        return np.zeros((n_rows, n_src, n_src), dtype=np.complex64)
    block = chan // split
    freq = channels.first_hz[block] + channels.step_hz * (chan % split)
    phase = np.exp(2j * np.pi * delays[row] * freq[:, None])
    amp = np.sqrt(deficit[row, chan])[:, None] * gains[:, block].T
    padded = np.zeros((n_rows, int(counts.max()), n_src), dtype=np.complex64)
    padded[row, np.arange(row.size) - np.repeat(np.cumsum(counts) - counts, counts)] = phase * amp
    return np.asarray(np.matmul(padded.conj().transpose(0, 2, 1), padded), dtype=np.complex64)


def _block_phasors(delays: NDArray[np.float64], channels: ChannelBlocks) -> NDArray[np.complex64]:
    """exp(2 pi i d f_c) at each channel block's centre, (rows, sources, blocks)."""
    flat = delays.ravel()
    if channels.split > 1:
        # A running product over the blocks, each step one vectorised multiply over every
        # (row, source) in complex64 (~24 steps lose < 1e-6 in phase; the phases start in
        # float64); np.cumprod along the short axis is ~3x slower.
        n_blocks = channels.centre_hz.size
        by_block = np.empty((n_blocks, flat.size), dtype=np.complex64)
        by_block[0] = np.exp(2j * np.pi * flat * channels.centre_hz[0])
        step = np.exp(2j * np.pi * flat * (channels.split * channels.step_hz))
        step = step.astype(np.complex64)
        for a in range(1, n_blocks):
            np.multiply(by_block[a - 1], step, out=by_block[a])
        terms = np.ascontiguousarray(by_block.T)
    else:
        terms = np.exp(2j * np.pi * flat[:, None] * channels.centre_hz[None, :]).astype(
            np.complex64
        )
    return terms.reshape(*delays.shape, -1)


def _dirichlet(delays: NDArray[np.float64], step_hz: float, n: int) -> NDArray[np.float32]:
    """D_n(2 pi df (d_k - d_j)) for every row and pair, (rows, sources, sources).

    In float32 (2-3x faster than float64): the half-angles pi df d are < 3 rad inside the
    beam, so their differences are good to ~3e-7 rad, and D is smooth in them (|dD/dh| <
    n^2): D is good to ~1e-4 of its peak n."""
    half = (np.pi * step_hz * delays).astype(np.float32)
    pairs = half[:, None, :] - half[:, :, None]
    den = np.sin(pairs)
    dirichlet = np.full(pairs.shape, n, dtype=np.float32)
    pairs *= np.float32(n)
    np.divide(np.sin(pairs), den, out=dirichlet, where=np.abs(den) >= _DIRICHLET_EPS)
    return dirichlet
