"""One Pareto staircase of every source, as one padded array: the points a new measurement must
be paired with (``pairs``), kept for the incremental state (``state``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsa110d.science.variability.metrics import FloatArray, IntArray

STAIRCASE_HEADROOM = 8
"""Columns added at a time when a staircase outgrows its padded arrays."""


@dataclass
class Staircase:
    """Padded (sources, K, 3) cells of one staircase, (flux, err, mjd) each, points packed to
    the left; NaN flux marks an empty cell and ``count`` says how many cells of a row are used.

    One array, not three, so reading a source's staircase is one gather of adjacent cells
    (the incremental update reads the staircases of every source a block touches).
    """

    cells: FloatArray
    count: IntArray

    @classmethod
    def empty(cls, size: int) -> Staircase:
        return cls(np.full((size, 1, 3), np.nan), np.zeros(size, np.int64))

    @classmethod
    def of(cls, cells: FloatArray) -> Staircase:
        return cls(cells, np.isfinite(cells[:, :, 0]).sum(axis=1).astype(np.int64))

    @property
    def flux(self) -> FloatArray:
        return self.cells[:, :, 0]

    @property
    def err(self) -> FloatArray:
        return self.cells[:, :, 1]

    @property
    def mjd(self) -> FloatArray:
        return self.cells[:, :, 2]

    def grow(self, size: int, width: int) -> None:
        """Make room for ``size`` sources and ``width`` points per source (with headroom, so
        widening, which copies every row, happens only a few times in a state's life)."""
        rows, cols, _ = self.cells.shape
        if size <= rows and width <= cols:
            return
        new_cols = cols if width <= cols else max(width, cols + STAIRCASE_HEADROOM)
        new = np.full((max(size, rows), new_cols, 3), np.nan)
        new[:rows, :cols] = self.cells
        self.cells = new
        if size > rows:
            self.count = np.concatenate([self.count, np.zeros(size - rows, np.int64)])

    def take(self, idx: IntArray, width: int) -> FloatArray:
        """The first ``width`` cells of some rows, (len(idx), width, 3) (callers pick width >=
        their counts): one gather. Whole rows (``np.take``, a copy per row) when the width is
        most of the row: about twice as fast as indexing ``[idx, :width]`` cell by cell."""
        cols = self.cells.shape[1]
        if 2 * width >= cols:
            whole: FloatArray = np.take(self.cells, idx, axis=0)
            return whole[:, :width]
        taken: FloatArray = self.cells[idx, :width]
        return taken

    def put(self, idx: IntArray, cells: FloatArray, old_width: int | None = None) -> None:
        """Replace rows ``idx`` by packed (len(idx), width, 3) ``cells``; cells past
        ``old_width`` are known empty."""
        width = cells.shape[1]
        self.grow(self.cells.shape[0], width)
        clear = self.cells.shape[1] if old_width is None else max(old_width, width)
        if clear > width:
            pad = np.full((cells.shape[0], clear - width, 3), np.nan)
            cells = np.concatenate([cells, pad], axis=1)
        self.cells[idx, :clear] = cells
        self.count[idx] = np.isfinite(cells[:, :, 0]).sum(axis=1)
