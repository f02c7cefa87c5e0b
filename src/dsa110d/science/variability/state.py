"""Incremental variability state: a new block costs O(rows in the block), not O(history).

(Up to the pair staircases' length, ~ln N; see "Cost" below.)

Per source the state holds

* the Welford/West sums (``SourceSums``): added with Chan's combination, removed with its
  exact inverse, so a superseded block version is subtracted and its replacement added;
* the best significant pair and the two Pareto staircases U and L (``pairs``):
  exact under addition, because an optimal pair of the grown light curve is either the old
  best or pairs the new point with an old staircase point;
* the new-source facts (``TransientState``), exact while blocks arrive in time order;
* the light curve itself, one chunk per block, which is what makes the two non-incremental
  cases exact too: when a block is superseded, or arrives out of time order, the pair and
  new-source facts of the sources it touches are rebuilt from their light curves
  (O(history of those sources); rare: a reprocessed block).

Cost of a new block: the sums and new-source facts are O(rows in the block). The pair
update is O(rows x staircase length), and the staircase length grows only like the harmonic
number of the history (about ln N + 0.58 points each for exchangeable errors: 5 at N = 100),
so in practice the block cost is flat in the history. Measured per block in
``bench/bench_variability.py`` after 1, 10, 50 and 99 blocks of history.

``state.metrics()`` then equals ``variability.recompute`` of the same rows to within
``METRIC_RTOL`` (tested). The state saves to a directory of Parquet files and one JSON
manifest (no pickle): :mod:`dsa110d.science.variability.store`. The staircases' padded arrays
are :class:`~dsa110d.science.variability.staircase.Staircase`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dsa110d.science.variability import metrics as var
from dsa110d.science.variability import pairs
from dsa110d.science.variability.metrics import FloatArray, IntArray
from dsa110d.science.variability.staircase import Staircase

log = logging.getLogger(__name__)

METRIC_RTOL = 1e-9
"""Relative agreement of incremental and recomputed metrics (float64 rounding of ~1e3 updates)."""


@dataclass
class BlockChunk:
    """The usable rows of one block version, as source codes of the state."""

    version: int
    codes: IntArray
    flux: FloatArray
    err: FloatArray
    mjd: FloatArray
    saved: bool = False


@dataclass
class BlockUpdate:
    """What one ``apply_block`` did: for the service's log line and message."""

    block_id: str
    version: int
    action: str  # "added", "replaced", "ignored" (an older or equal version)
    rows: int
    rebuilt_sources: int = 0


@dataclass
class VariabilityState:
    """Everything the analyzer keeps between runs; see the module docstring."""

    ids: pd.Index = field(default_factory=lambda: pd.Index([]))
    ra_deg: FloatArray = field(default_factory=lambda: np.zeros(0))
    dec_deg: FloatArray = field(default_factory=lambda: np.zeros(0))
    sums: var.SourceSums = field(default_factory=lambda: var.SourceSums.zeros(0))
    pair: var.PairState = field(default_factory=lambda: var.PairState.empty(0))
    transient: var.TransientState = field(default_factory=lambda: var.TransientState.empty(0))
    upper: Staircase = field(default_factory=lambda: Staircase.empty(0))
    lower: Staircase = field(default_factory=lambda: Staircase.empty(0))
    blocks: dict[str, BlockChunk] = field(default_factory=dict)
    vs_threshold: float = pairs.VS_THRESHOLD
    """|Vs| the held best pairs had to reach; a state searched at another threshold is rebuilt
    (``run``), the staircases do not depend on it."""
    superseded: set[tuple[str, int]] = field(default_factory=set)
    """Saved block versions (block id, version) superseded since the last save: the store
    removes their files once its manifest no longer names them."""
    # The sharpest staircase point p0 of each source (inf when none): derived, not saved.
    _sharp_err: FloatArray = field(init=False, repr=False)
    _sharp_flux: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._sharp_err = np.full(len(self.ids), np.inf)
        self._sharp_flux = np.full(len(self.ids), np.nan)
        self._refresh_sharp()

    # ---- the API the service calls -------------------------------------------------------

    def apply_block(self, rows: pd.DataFrame, *, where: str = "photometry") -> list[BlockUpdate]:
        """Fold photometry rows into the state, one block at a time (latest version wins).

        A block already held at the same or a newer version is ignored (idempotent replays);
        an older held version is subtracted first.
        """
        var.usable_rows(rows.iloc[:0], where=where)  # column check with a readable message
        codes, block_ids = pd.factorize(rows["block_id"], sort=False)
        if len(block_ids) == 1:  # the usual call: one block's file
            return [self._apply_one(str(block_ids[0]), rows, where)]
        return [
            self._apply_one(str(block_ids[i]), rows[codes == i], where)
            for i in range(len(block_ids))
        ]

    def metrics(self) -> var.SourceMetrics:
        """The per-source metrics, as ``variability.recompute`` would give them."""
        return var.SourceMetrics(
            source_id=np.asarray(self.ids),
            ra_deg=self.ra_deg,
            dec_deg=self.dec_deg,
            sums=self.sums,
            pair=self.pair,
            transient=self.transient,
        )

    def light_curves(self, source_ids: list[Any]) -> pd.DataFrame:
        """The held measurements of some sources (for plots), sorted by source and time."""
        wanted = np.zeros(len(self.ids), dtype=bool)
        codes = self.ids.get_indexer(pd.Index(source_ids))
        wanted[codes[codes >= 0]] = True
        parts = []
        for block_id, chunk in self.blocks.items():
            sel = wanted[chunk.codes]
            parts.append(
                pd.DataFrame(
                    {
                        "source_id": np.asarray(self.ids)[chunk.codes[sel]],
                        "block_id": block_id,
                        "mjd": chunk.mjd[sel],
                        "flux_jy": chunk.flux[sel],
                        "flux_err_jy": chunk.err[sel],
                    }
                )
            )
        if not parts:
            return pd.DataFrame(columns=["source_id", "block_id", "mjd", "flux_jy", "flux_err_jy"])
        return pd.concat(parts, ignore_index=True).sort_values(["source_id", "mjd"])

    # ---- adding and removing blocks --------------------------------------------------------

    def _apply_one(self, block_id: str, rows: pd.DataFrame, where: str) -> BlockUpdate:
        version = int(rows["version"].max())
        held = self.blocks.get(block_id)
        if held is not None and held.version >= version:
            return BlockUpdate(block_id, version, "ignored", 0)
        use = var.usable_rows(rows, where=where)
        codes = self._codes_for(use)
        chunk = BlockChunk(
            version,
            codes,
            use["flux_jy"].to_numpy(dtype=np.float64),
            use["flux_err_jy"].to_numpy(dtype=np.float64),
            use["mjd"].to_numpy(dtype=np.float64),
        )
        rebuilt = 0
        if held is not None:
            rebuilt = self._remove(block_id, held)
        self._add(block_id, chunk)
        action = "added" if held is None else "replaced"
        log.debug("block %s v%d %s: %d rows", block_id, version, action, codes.size)
        return BlockUpdate(block_id, version, action, int(codes.size), rebuilt)

    def _codes_for(self, rows: pd.DataFrame) -> IntArray:
        """Source codes of the rows, registering new sources (arrays grow amortised)."""
        ids = rows["source_id"]
        codes = self.ids.get_indexer(pd.Index(ids))
        new = codes < 0
        if new.any():
            fresh = pd.Index(pd.unique(ids[new]))
            self._grow(len(self.ids) + len(fresh))
            self.ids = self.ids.append(fresh)
            codes = self.ids.get_indexer(pd.Index(ids))
        codes = codes.astype(np.int64)
        if "ra_deg" in rows:
            self.ra_deg[codes] = rows["ra_deg"].to_numpy(dtype=np.float64)
            self.dec_deg[codes] = rows["dec_deg"].to_numpy(dtype=np.float64)
        return codes

    def _grow(self, size: int) -> None:
        extra = size - len(self.ids)

        def pad(a: FloatArray, fill: float) -> FloatArray:
            return np.concatenate([a, np.full(extra, fill)])

        self.ra_deg = pad(self.ra_deg, np.nan)
        self.dec_deg = pad(self.dec_deg, np.nan)
        self.sums = var.SourceSums(*(pad(a, 0.0) for a in self.sums.arrays()))
        self.pair = var.PairState(*(pad(a, np.nan) for a in self.pair.arrays()))
        empty = var.TransientState.empty(extra)
        self.transient = var.TransientState(
            *(
                np.concatenate([a, b])
                for a, b in zip(self.transient.arrays(), empty.arrays(), strict=True)
            )
        )
        self.upper.grow(size, 1)
        self.lower.grow(size, 1)
        self._sharp_err = pad(self._sharp_err, np.inf)
        self._sharp_flux = pad(self._sharp_flux, np.nan)

    def _add(self, block_id: str, chunk: BlockChunk) -> None:
        uniq, inv = self._distinct(chunk.codes)
        part = var.SourceSums.from_rows(inv.astype(np.int64), uniq.size, chunk.flux, chunk.err)
        self.sums.put(uniq, self.sums.take(uniq).merged(part))
        # Rounds: the r-th row of each source in this block, so each round has one new point
        # per source and the staircase update stays a vectorised per-source step.
        occurrence = np.zeros(chunk.codes.size, dtype=np.int64)
        if uniq.size < chunk.codes.size:
            order = np.argsort(chunk.codes, kind="stable")
            counts = np.bincount(inv, minlength=uniq.size)
            first = np.repeat(np.cumsum(counts) - counts, counts)
            occurrence[order] = np.arange(chunk.codes.size) - first
        out_of_order: list[IntArray] = []
        for r in range(int(occurrence.max(initial=-1)) + 1):
            if uniq.size == chunk.codes.size:
                idx, f, e, t = chunk.codes, chunk.flux, chunk.err, chunk.mjd
            else:
                sel = occurrence == r
                idx = chunk.codes[sel]
                f, e, t = chunk.flux[sel], chunk.err[sel], chunk.mjd[sel]
            out_of_order.append(self._add_transient(idx, f, e, t))
            self._add_pairs(idx, f, e, t)
        self.blocks[block_id] = chunk
        late = np.unique(np.concatenate(out_of_order)) if out_of_order else np.zeros(0, np.int64)
        if late.size:
            self._rebuild(late, pairs_too=False)

    def _distinct(self, codes: IntArray) -> tuple[IntArray, IntArray]:
        """(unique codes, inverse); O(rows) when no source repeats, the usual block."""
        seen = np.zeros(len(self.ids), dtype=bool)
        seen[codes] = True
        if int(np.count_nonzero(seen)) == codes.size:
            return codes, np.arange(codes.size, dtype=np.int64)
        uniq, inv = np.unique(codes, return_inverse=True)
        return uniq, inv.astype(np.int64)

    def _add_transient(
        self, idx: IntArray, f: FloatArray, e: FloatArray, t: FloatArray
    ) -> IntArray:
        """Time-ordered new-source update; returns the sources that need a rebuild instead."""
        ts = self.transient
        in_order = t > ts.last_mjd[idx]
        waiting = in_order & ~np.isfinite(ts.first_det_mjd[idx])
        snr = f / e
        det = waiting & (snr >= var.TRANSIENT_DETECTION_SNR)
        prior = waiting & ~det
        ts.first_det_mjd[idx[det]] = t[det]
        ts.first_det_snr[idx[det]] = snr[det]
        ts.n_prior[idx[prior]] += 1
        ts.prior_max_abs_snr[idx[prior]] = np.maximum(
            ts.prior_max_abs_snr[idx[prior]], np.abs(snr[prior])
        )
        ts.last_mjd[idx[in_order]] = t[in_order]
        late: IntArray = idx[~in_order]
        return late

    def _add_pairs(self, idx: IntArray, f: FloatArray, e: FloatArray, t: FloatArray) -> None:
        """Best pair of each new point with the old staircases, then insert it into them.

        A new point k covered on both staircases changes nothing: any pair it forms is
        matched by one of old points (module docstring of ``pairs``) and it joins
        neither staircase. Most new points are such, and the source's sharpest point p0 (on
        both staircases) decides one side for free: unless k is sharper than p0, p0 covers
        k on L when k is brighter, on U when k is fainter. Only the other side's staircase
        is read for the cover check, and only uncovered points are searched and inserted.
        """
        positive = f > 0
        idx, f, e, t = idx[positive], f[positive], e[positive], t[positive]
        e0, f0 = self._sharp_err[idx], self._sharp_flux[idx]
        sharper = np.flatnonzero(e < e0)  # covered on neither side
        rest = e >= e0
        check_low = np.flatnonzero(rest & (f < f0))  # p0 covers k on U
        check_up = np.flatnonzero(rest & (f > f0))  # p0 covers k on L
        open_low = np.concatenate([sharper, self._uncovered(self.lower, idx, f, e, check_low)])
        open_up = np.concatenate([sharper, self._uncovered(self.upper, idx, f, e, check_up)])
        self._add_side(idx, f, e, t, open_up, self.upper)
        self._add_side(idx, f, e, t, open_low, self.lower)
        self._sharp_err[idx[sharper]] = e[sharper]
        self._sharp_flux[idx[sharper]] = f[sharper]

    def _uncovered(
        self, stair: Staircase, idx: IntArray, f: FloatArray, e: FloatArray, rows: IntArray
    ) -> IntArray:
        """Which of ``rows`` no point of ``stair`` covers, read in buckets of similar length.

        On L a point no brighter and no less sharp covers k; on U, one no fainter and no
        less sharp.
        """
        counts = stair.count[idx[rows]]
        found = []
        lo = -1
        while lo < int(counts.max(initial=0)):
            hi = max(2 * lo, 4)
            sel = rows[(counts > lo) & (counts <= hi)]
            lo = hi
            if sel.size == 0:
                continue
            sf, se, _ = pairs.columns(stair.take(idx[sel], hi))
            fc, ec = f[sel, None], e[sel, None]
            with np.errstate(invalid="ignore"):
                near = (sf >= fc) if stair is self.upper else (sf <= fc)
                hit = near & (se <= ec)
            found.append(sel[~hit.any(axis=1)])
        return np.concatenate(found) if found else np.zeros(0, np.int64)

    def _add_side(
        self,
        idx: IntArray,
        f: FloatArray,
        e: FloatArray,
        t: FloatArray,
        rows: IntArray,
        stair: Staircase,
    ) -> None:
        """Pair uncovered new points (at ``rows``) with the other, old staircase, then insert
        them into ``stair`` (U when ``stair`` is ``self.upper``)."""
        if rows.size == 0:
            return
        other_stair = self.lower if stair is self.upper else self.upper
        size = np.maximum(stair.count[idx[rows]], other_stair.count[idx[rows]])
        lo = -1
        while lo < int(size.max(initial=0)):
            hi = max(2 * lo, 4)
            sel = rows[(size > lo) & (size <= hi)]
            lo = hi
            if sel.size:
                self._add_side_bucket(idx[sel], f[sel], e[sel], t[sel], stair, other_stair, hi)

    def _add_side_bucket(
        self,
        idx: IntArray,
        f: FloatArray,
        e: FloatArray,
        t: FloatArray,
        stair: Staircase,
        other_stair: Staircase,
        width: int,
    ) -> None:
        is_upper = stair is self.upper
        point = (f[:, None], e[:, None], t[:, None])
        other = pairs.columns(other_stair.take(idx, width))
        mine_cells = stair.take(idx, width)
        mine = pairs.columns(mine_cells)
        vs, m, ta, tb = (
            pairs.best_pairs(point, other, self.vs_threshold)
            if is_upper
            else pairs.best_pairs(other, point, self.vs_threshold)
        )
        cur = self.pair
        win = pairs.better(m, vs, cur.m[idx], cur.vs[idx])
        for dst, val in zip(cur.arrays(), (vs, m, ta, tb), strict=True):
            dst[idx[win]] = val[win]
        with np.errstate(invalid="ignore"):
            if is_upper:  # k covers U points no brighter and no sharper
                drop = (mine[0] <= point[0]) & (mine[1] >= point[1])
            else:  # k covers L points no fainter and no sharper
                drop = (mine[0] >= point[0]) & (mine[1] >= point[1])
        keep = np.isfinite(mine[0]) & ~drop
        mask = np.concatenate([keep, np.ones((idx.size, 1), dtype=bool)], axis=1)
        cells = np.concatenate([mine_cells, np.stack([f, e, t], axis=1)[:, None, :]], axis=1)
        stair.put(idx, pairs.compact(mask, *pairs.columns(cells)), old_width=mine[0].shape[1])

    def _refresh_sharp(self, sources: IntArray | None = None) -> None:
        """Recompute the sharpest staircase point p0 of some (default all) sources."""
        if sources is None:
            sources = np.arange(len(self.ids), dtype=np.int64)
        err = np.where(np.isfinite(self.upper.flux[sources]), self.upper.err[sources], np.inf)
        col = np.argmin(err, axis=1)
        self._sharp_err[sources] = err[np.arange(sources.size), col]
        self._sharp_flux[sources] = self.upper.flux[sources, col]

    def _remove(self, block_id: str, chunk: BlockChunk) -> int:
        """Subtract a superseded block version; rebuild what sums cannot un-add."""
        uniq, inv = np.unique(chunk.codes, return_inverse=True)
        part = var.SourceSums.from_rows(inv.astype(np.int64), uniq.size, chunk.flux, chunk.err)
        self.sums.put(uniq, self.sums.take(uniq).merged(part, sign=-1.0))
        del self.blocks[block_id]
        if chunk.saved:
            self.superseded.add((block_id, chunk.version))
        self._rebuild(uniq, pairs_too=True)
        return int(uniq.size)

    def _rebuild(self, sources: IntArray, *, pairs_too: bool) -> None:
        """Recompute pair/staircase (optional) and new-source facts of some sources from their
        held light curves: O(history), used only on supersession and late blocks."""
        local = np.full(len(self.ids), -1, dtype=np.int64)
        local[sources] = np.arange(sources.size)
        parts = [(local[c.codes], c.flux, c.err, c.mjd) for c in self.blocks.values()]
        sel = [p[0] >= 0 for p in parts]
        codes, flux, err, mjd = (
            np.concatenate([p[i][s] for p, s in zip(parts, sel, strict=True)] or [np.zeros(0)])
            for i in range(4)
        )
        codes = codes.astype(np.int64)
        fresh = var.TransientState.from_rows(codes, sources.size, mjd, flux, err)
        for dst, src in zip(self.transient.arrays(), fresh.arrays(), strict=True):
            dst[sources] = src
        if not pairs_too:
            return
        d_flux, d_err, d_mjd = var.dense(codes, sources.size, flux, err, mjd)
        upper, lower = pairs.staircase_cells(d_flux, d_err, d_mjd)
        self.upper.put(sources, upper)
        self.lower.put(sources, lower)
        self._refresh_sharp(sources)
        best = pairs.best_pairs_dense(d_flux, d_err, d_mjd, self.vs_threshold)
        for dst, val in zip(self.pair.arrays(), best, strict=True):
            dst[sources] = val
