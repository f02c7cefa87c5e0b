"""One Pareto staircase of every source, as padded arrays: the points a new measurement must be
paired with (``pairs``), kept for the incremental state (``state``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsa110d.science.variability.metrics import FloatArray, IntArray

STAIRCASE_HEADROOM = 8
"""Columns added at a time when a staircase outgrows its padded arrays."""


@dataclass
class Staircase:
    """Padded (sources, K) flux, err, mjd of one staircase, points packed to the left; NaN
    flux marks an empty cell and ``count`` says how many cells of a row are used."""

    flux: FloatArray
    err: FloatArray
    mjd: FloatArray
    count: IntArray

    @classmethod
    def empty(cls, size: int) -> Staircase:
        flux, err, mjd = (np.full((size, 1), np.nan) for _ in range(3))
        return cls(flux, err, mjd, np.zeros(size, np.int64))

    @classmethod
    def of(cls, cols: list[FloatArray]) -> Staircase:
        return cls(cols[0], cols[1], cols[2], np.isfinite(cols[0]).sum(axis=1).astype(np.int64))

    def arrays(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        return (self.flux, self.err, self.mjd)

    def grow(self, size: int, width: int) -> None:
        """Make room for ``size`` sources and ``width`` points per source (with headroom, so
        widening, which copies every row, happens only a few times in a state's life)."""
        rows, cols = self.flux.shape
        if size <= rows and width <= cols:
            return
        new_cols = cols if width <= cols else max(width, cols + STAIRCASE_HEADROOM)
        for name in ("flux", "err", "mjd"):
            old = getattr(self, name)
            new = np.full((max(size, rows), new_cols), np.nan)
            new[:rows, :cols] = old
            setattr(self, name, new)
        if size > rows:
            self.count = np.concatenate([self.count, np.zeros(size - rows, np.int64)])

    def take(self, idx: IntArray, width: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The first ``width`` cells of some rows (callers pick width >= their counts)."""
        w = min(width, self.flux.shape[1])
        f, e, t = (a[idx, :w] for a in self.arrays())  # one gather (2x a view's [idx])
        return f, e, t

    def put(self, idx: IntArray, cols: list[FloatArray], old_width: int | None = None) -> None:
        """Replace rows ``idx`` by packed ``cols``; cells past ``old_width`` are known empty."""
        width = cols[0].shape[1]
        self.grow(self.flux.shape[0], width)
        clear = self.flux.shape[1] if old_width is None else max(old_width, width)
        for dst, src in zip(self.arrays(), cols, strict=True):
            if clear > width:
                src = np.concatenate([src, np.full((src.shape[0], clear - width), np.nan)], axis=1)
            dst[idx, :clear] = src
        self.count[idx] = np.isfinite(cols[0]).sum(axis=1)
