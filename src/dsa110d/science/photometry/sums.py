"""The running sums of a block's photometry: per source, per baseline group, and per pair of
jointly fitted sources; and the integrations a slab of rows is cut into.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

JACKKNIFE_GROUPS = 16
"""Baselines are dealt into this many groups; the scatter of the leave-one-group-out joint
solutions measures the error including what the model lacks (sidelobes of sources missing from
the catalog or beyond the cap), which the thermal estimate misses."""


class Sums:
    """Per-source running sums over a block, and the joint fit's pair sums.

    Sources fitted jointly at some integration get a *slot*; ``pair[i, k, g]`` holds A_jk for
    the sources in slots i and k (j != k) over baseline group g (its diagonal is unused: the
    diagonal is ``weight``). Every sum is additive over MSs, slabs and integrations.
    """

    def __init__(self, n: int) -> None:
        self.signal = np.zeros((n, JACKKNIFE_GROUPS))  # b: sum g Re z, per baseline group
        self.weight = np.zeros((n, JACKKNIFE_GROUPS))  # A_jj: sum g^2 w, per baseline group
        self.gain_weight = np.zeros(n)  # sum g w
        self.noise_sq = np.zeros(n)  # sum over rows of (Im sum_c g z - running model)^2
        self.n_vis = np.zeros(n, dtype=np.int64)  # sum w
        self.time_weight = np.zeros(n)  # sum t g^2 w
        self.peak_gain = np.zeros(n)
        self.transit_gain = np.zeros(n)  # band-centre gain at transit
        self.transit_time = np.full(n, np.nan)  # when the source crosses the pointing, MJD s
        self.min_offset = np.full(n, np.inf)  # smallest offset from the pointing, rad
        self.pointing_dec = math.nan  # the pointing (phase centre) declination, ICRS rad
        self.pos_y = np.zeros((n, 2))  # sum Im r k (u, v): the offset's right-hand side
        self.pos_q = np.zeros((n, 3))  # sum g^2 w k^2 (uu, uv, vv): its normal matrix
        self.slot_of = np.full(n, -1, dtype=np.intp)
        self.slots: list[int] = []  # catalog index of each slot
        self.pair = np.zeros((0, 0, JACKKNIFE_GROUPS))

    def slots_for(self, sources: NDArray[np.intp]) -> NDArray[np.intp]:
        """The slots of ``sources``, giving new ones a slot (and growing ``pair``)."""
        new = sources[self.slot_of[sources] < 0]
        if new.size:
            self.slot_of[new] = len(self.slots) + np.arange(new.size)
            self.slots.extend(int(s) for s in new)
            held = self.pair.shape[0]
            if len(self.slots) > held:
                size = max(len(self.slots), 2 * held)
                grown = np.zeros((size, size, JACKKNIFE_GROUPS))
                grown[:held, :held] = self.pair
                self.pair = grown
        return self.slot_of[sources]


@dataclass(frozen=True)
class Integration:
    """The usable rows of one integration within a slab, and their weight per group/block."""

    index: int
    rows: slice
    group: NDArray[np.intp]
    weight: NDArray[np.float32]
    """(JACKKNIFE_GROUPS, n_blocks): unflagged visibilities per baseline group and block."""
    row_weight: NDArray[np.float32]
    """(rows, n_blocks): unflagged visibilities per row and channel block."""
    channel_weight: NDArray[np.float32]
    """(rows, channels): unflagged polarisations per row and channel."""
    uneven: NDArray[np.bool_]
    """(rows, n_blocks): the block's channels differ in weight (partly flagged)."""
    block_max: NDArray[np.float32]
    """(rows, n_blocks): the largest weight of a channel of the block."""


def integrations(
    t_index: NDArray[np.intp], group: NDArray[np.intp], weight: NDArray[np.float32], split: int
) -> list[Integration]:
    """Cut time-sorted rows into integrations, with their per-group, per-block weights."""
    bounds = np.flatnonzero(np.r_[True, t_index[1:] != t_index[:-1], True])
    by_block = weight.reshape(weight.shape[0], -1, split)
    per_block = by_block.sum(axis=2)
    block_max = by_block.max(axis=2)
    uneven = by_block.min(axis=2) != block_max
    found = []
    for lo, hi in itertools.pairwise(bounds):
        onehot = (group[lo:hi][None, :] == np.arange(JACKKNIFE_GROUPS)[:, None]).astype(np.float32)
        found.append(
            Integration(
                int(t_index[lo]), slice(lo, hi), group[lo:hi], onehot @ per_block[lo:hi],
                row_weight=per_block[lo:hi], channel_weight=weight[lo:hi],
                uneven=uneven[lo:hi], block_max=block_max[lo:hi],
            )
        )  # fmt: skip
    return found
