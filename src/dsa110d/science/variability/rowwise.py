"""Per-source reductions of dense (sources, K) light curves, done a chunk of rows at a time
(the kernels of ``metrics.SourceSums.from_dense`` and ``metrics.TransientState.from_dense``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from dsa110d.science.variability import pairs

FloatArray = npt.NDArray[np.float64]

ROW_CHUNK_CELLS = 1 << 18
"""Cells of (sources, K) arrays done at a time by :func:`by_row_chunks` (2 MiB of float64)."""

RowFn = Callable[..., tuple[FloatArray, ...]]


def by_row_chunks(fn: RowFn, n_out: int, *arrays: FloatArray) -> list[FloatArray]:
    """``fn``, per-row work on (rows, K) arrays giving ``n_out`` per-row results, applied a
    chunk of rows at a time: its temporaries stay small, in cache and reused, where at 10^7
    cells each would be fresh memory to fault in (the first full recompute in a process
    spent more on that than on the arithmetic)."""
    n_rows, n_cols = arrays[0].shape
    out = [np.empty(n_rows) for _ in range(n_out)]
    for rows in pairs.row_chunks(n_rows, n_cols, ROW_CHUNK_CELLS):
        chunk = (np.ascontiguousarray(a[rows]) for a in arrays)  # any view in, rows out
        for dst, val in zip(out, fn(*chunk), strict=True):
            dst[rows] = val
    return out


def dense_sums(flux: FloatArray, err: FloatArray) -> tuple[FloatArray, ...]:
    """``metrics.SourceSums.from_dense`` of some rows: (n, mean, m2, w, wmean, wm2). Three
    temporaries, reused in place, and row dot products (``einsum``) instead of product arrays."""
    missing = ~np.isfinite(flux)
    x = np.where(missing, 0.0, flux)
    w_cell = np.multiply(err, err)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(1.0, w_cell, out=w_cell)
    np.copyto(w_cell, 0.0, where=missing)
    n = (flux.shape[1] - np.count_nonzero(missing, axis=1)).astype(np.float64)
    w = w_cell.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nan_to_num(x.sum(axis=1) / n)
        wmean = np.nan_to_num(np.einsum("ij,ij->i", w_cell, x) / w)
    dev = np.subtract(x, mean[:, None])
    np.copyto(dev, 0.0, where=missing)
    m2 = np.einsum("ij,ij->i", dev, dev)
    np.subtract(x, wmean[:, None], out=dev)
    np.copyto(dev, 0.0, where=missing)
    np.multiply(dev, dev, out=dev)
    return n, mean, m2, w, wmean, np.einsum("ij,ij->i", w_cell, dev)


def dense_transient(
    mjd: FloatArray, flux: FloatArray, err: FloatArray, detection_snr: float
) -> tuple[FloatArray, ...]:
    """``metrics.TransientState.from_dense`` of some rows (detections at ``detection_snr``);
    two float buffers reused in place."""
    missing = ~np.isfinite(flux)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.divide(flux, err)
        det = snr >= detection_snr
    det &= ~missing
    buf = np.where(det, mjd, np.inf)
    first = buf.min(axis=1)
    at_first = det
    at_first &= mjd == first[:, None]
    buf.fill(-np.inf)
    np.copyto(buf, snr, where=at_first)
    first_snr = buf.max(axis=1)
    prior = mjd < first[:, None]
    prior &= ~missing
    np.abs(snr, out=snr)
    np.copyto(snr, 0.0, where=~prior)
    np.copyto(buf, mjd)
    np.copyto(buf, -np.inf, where=missing)
    return (
        first,
        np.where(np.isfinite(first), first_snr, np.nan),
        np.count_nonzero(prior, axis=1).astype(np.float64),
        snr.max(axis=1, initial=0.0),
        buf.max(axis=1, initial=-np.inf),
    )
