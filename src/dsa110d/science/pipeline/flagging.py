"""The ``flag-mad`` stage: robust outlier flagging written into each Measurement Set's FLAG column.

Per baseline, channel and polarisation, the visibility amplitudes of a chunk are compared
with their median across time; a sample further than ``FLAG_MAD_THRESHOLD`` robust standard
deviations (1.4826 * MAD) from it is flagged. Exact zeros (dropped packets) and
autocorrelations are flagged too. Existing flags are kept. The MS is read and written in
slabs of at most ``FLAG_SLAB_VISIBILITIES`` visibilities, so memory is bounded by one slab:
slabs of whole baselines when the rows are the full (time, baseline) grid, as the converter
writes them (each slab is then a few row ranges, read whole as the MS stores them), slabs of
channels otherwise. The flag stage flags a block's MSs in parallel, each in a forked child.

Flagging an MS is done once: the statistics exclude samples already flagged, so a second
pass would clip further (iterative sigma-clipping) and change the photometry of a block that
is re-run (after a crash, a late chunk) or of the next block sharing the chunk (overlap). The
table keyword :data:`FLAGGED_KEYWORD`, written after the last slab, marks a flagged MS and
later passes leave it as it is.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from casacore import tables
from numpy.typing import NDArray

from dsa110d.config import Config
from dsa110d.errors import DSA110Error, InputFileError, StageError, describe
from dsa110d.science.isolate import run_forked_each
from dsa110d.science.pipeline.stage import BlockJob, StageResult

log = logging.getLogger(__name__)

FLAG_MAD_THRESHOLD = 5.0
"""Flag samples more than this many robust sigmas from the median over time (dimensionless)."""
FLAGGED_KEYWORD = "DSA110_FLAGGED"
"""Main-table keyword set once the flag stage has flagged this MS (its value: the threshold)."""
MAD_TO_SIGMA = 1.4826
"""Robust sigma of a Gaussian from its median absolute deviation (1 / Phi^-1(3/4))."""
FLAG_SLAB_VISIBILITIES = 2**23
"""Visibilities read, flagged and written at once (~67 MB of DATA): bounds the memory of
flagging one MS (~250 MB at its peak at real scale). Measured on a real-scale chunk, wider
slabs are no faster (2**25: 0.7 GB, 2**27: 2.1 GB, both ~15% slower), narrower ones no faster."""
KERNEL_SERIES = 16384
"""Time series whose statistics are computed together (their ~1.5 MB stays in cache)."""

Counts = dict[str, int]
OutlierFinder = Callable[[NDArray[np.float32], NDArray[np.bool_]], NDArray[np.bool_]]


def _grid(
    ms: tables.table,
) -> tuple[NDArray[np.intp], NDArray[np.intp], int, int, NDArray[np.bool_]]:
    """Each row's (time index, baseline index), the grid shape and which rows are autos."""
    times = ms.getcol("TIME")
    ant1, ant2 = ms.getcol("ANTENNA1"), ms.getcol("ANTENNA2")
    _, t_index = np.unique(times, return_inverse=True)
    pairs = ant1.astype(np.int64) * 100_000 + ant2
    _, b_index = np.unique(pairs, return_inverse=True)
    return t_index, b_index, int(t_index.max()) + 1, int(b_index.max()) + 1, ant1 == ant2


def _is_regular(
    t_index: NDArray[np.intp], b_index: NDArray[np.intp], n_time: int, n_base: int
) -> bool:
    """Whether the rows are the full (time, baseline) grid, time after time, each time with its
    baselines in the same order: row ``t * n_base + k`` is then baseline ``k`` at time ``t``."""
    if t_index.size != n_time * n_base:
        return False
    times = t_index.reshape(n_time, n_base)
    baselines = b_index.reshape(n_time, n_base)
    return bool((times == np.arange(n_time)[:, None]).all() and (baselines == baselines[0]).all())


@functools.cache
def _median_network(n: int) -> tuple[tuple[int, int], ...]:
    """Comparators (i, j), i < j (the minimum goes to i, the maximum to j) that put the
    ``n // 2 + 1`` smallest of ``n`` values in order at 0..n//2: where any median lies.

    Batcher's odd-even merge sort, built for the next power of two without the comparators
    that touch the padding (+inf, which they would leave in place), then without those that
    feed no position up to n//2.
    """
    size = 1 << max(n - 1, 0).bit_length()
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    same_merge = (i + j) // (2 * p) == (i + j + k) // (2 * p)
                    if same_merge and i + j + k < n:
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    needed, kept = set(range(n // 2 + 1)), []
    for i, j in reversed(pairs):
        if i in needed or j in needed:
            kept.append((i, j))
            needed |= {i, j}
    return tuple(reversed(kept))


def _median(values: NDArray[np.float32], excluded: NDArray[np.bool_]) -> NDArray[np.float32]:
    """Median of each column of ``values`` (time, series) over its samples neither excluded nor
    NaN; NaN where none is left.

    A sorting network of elementwise minima and maxima over whole rows: ~3x faster than
    ``np.sort`` along time, which sorts the short series one by one. Excluded samples become
    +inf, which sorts after every valid value (an infinite one is equal to it), so the k valid
    values come first in order; their median sits at (k-1)//2 and k//2, at most n//2.
    """
    missing = excluded | np.isnan(values)
    n = values.shape[0]
    valid = n - np.count_nonzero(missing, axis=0)
    rows = list(np.where(missing, np.float32(np.inf), values))
    spare = np.empty_like(rows[0])
    for i, j in _median_network(n):
        np.minimum(rows[i], rows[j], out=spare)
        np.maximum(rows[i], rows[j], out=rows[j])
        rows[i], spare = spare, rows[i]
    ordered = np.stack(rows[: n // 2 + 1])
    low = np.take_along_axis(ordered, (np.maximum(valid - 1, 0) // 2)[None], axis=0)[0]
    high = np.take_along_axis(ordered, (valid // 2)[None], axis=0)[0]
    high = np.where(valid % 2 == 1, low, high)
    return np.asarray(np.where(valid > 0, 0.5 * (low + high), np.nan), dtype=np.float32)


def _outliers(values: NDArray[np.float32], excluded: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """True where a sample of ``values`` (time, series) lies beyond FLAG_MAD_THRESHOLD robust
    sigmas of its series' median, the statistics and the result leaving out excluded and NaN
    samples; KERNEL_SERIES series at a time."""
    out = np.empty(values.shape, dtype=bool)
    limit = FLAG_MAD_THRESHOLD * MAD_TO_SIGMA
    for j0 in range(0, values.shape[1], KERNEL_SERIES):
        part = slice(j0, j0 + KERNEL_SERIES)
        amplitude, skip = values[:, part], excluded[:, part]
        with np.errstate(invalid="ignore"):  # inf - inf: NaN, left out like an absent sample
            deviation = np.abs(amplitude - _median(amplitude, skip))
            np.greater(deviation, limit * _median(deviation, skip), out=out[:, part])
        out[:, part] &= ~skip
    return out


def outlier_mask(amplitude: NDArray[np.float32], axis: int = 0) -> NDArray[np.bool_]:
    """True where ``amplitude`` lies beyond FLAG_MAD_THRESHOLD robust sigmas of its median
    along ``axis`` (time). NaN marks samples that are absent or already flagged."""
    series = np.moveaxis(np.asarray(amplitude, dtype=np.float32), axis, 0)
    if series.size == 0:
        return np.zeros(np.shape(amplitude), dtype=bool)
    flat = series.reshape(series.shape[0], -1)
    mask = _outliers(flat, np.isnan(flat)).reshape(series.shape)
    return np.moveaxis(mask, 0, axis)


def flag_ms(path: Path, slab_visibilities: int = FLAG_SLAB_VISIBILITIES) -> Counts:
    """Flag one MS in place; returns counts of newly flagged samples by reason (``total``:
    all new ones), and ``samples`` looked at and ``flagged`` among them afterwards (old and
    new: the flag fraction's terms; both 0 for an MS flagged before)."""
    counts = {"outliers": 0, "zeros": 0, "autocorrelations": 0, "total": 0, "samples": 0,
              "flagged": 0}  # fmt: skip
    try:
        ms = tables.table(str(path), readonly=False, ack=False)
    except RuntimeError as exc:
        raise InputFileError(f"{path}: cannot open Measurement Set: {exc}") from None
    with ms:
        if FLAGGED_KEYWORD in ms.keywordnames():
            log.info("%s: already flagged, left as it is", path)
            return counts
        t_index, b_index, n_time, n_base, autos = _grid(ms)
        if _is_regular(t_index, b_index, n_time, n_base):
            _flag_by_baselines(ms, n_time, autos[:n_base], slab_visibilities, counts)
        else:
            _flag_by_channels(ms, t_index, b_index, autos, slab_visibilities, counts)
        ms.putkeyword(FLAGGED_KEYWORD, FLAG_MAD_THRESHOLD)
    return counts


def _flag_by_baselines(
    ms: tables.table, n_time: int, autos: NDArray[np.bool_], slab: int, counts: Counts
) -> None:
    """A full grid, in slabs of whole baselines: each time's rows of a slab are contiguous, so
    a slab is read and written in whole rows, as the MS stores them (tiles of whole rows)."""
    n_base = autos.size
    cell = ms.getcell("DATA", 0)
    step = max(1, slab // (n_time * cell.size))

    def outliers(amplitude: NDArray[np.float32], excluded: NDArray[np.bool_]) -> NDArray[np.bool_]:
        by_time = (n_time, -1)  # rows are (time, baseline): one series per column
        found = _outliers(amplitude.reshape(by_time), excluded.reshape(by_time))
        return found.reshape(amplitude.shape)

    for b0 in range(0, n_base, step):
        n = min(step, n_base - b0)
        data = np.empty((n_time, n, *cell.shape), dtype=cell.dtype)
        old = np.empty(data.shape, dtype=bool)
        for t in range(n_time):
            ms.getcolnp("DATA", data[t], t * n_base + b0, n)
            ms.getcolnp("FLAG", old[t], t * n_base + b0, n)
        rows = (n_time * n, *cell.shape)
        slab_autos = np.tile(autos[b0 : b0 + n], n_time)
        flags = _flag_slab(data.reshape(rows), old.reshape(rows), slab_autos, outliers, counts)
        if flags is not None:
            flags = flags.reshape(data.shape)
            for t in range(n_time):
                ms.putcol("FLAG", flags[t], t * n_base + b0, n)


def _flag_by_channels(
    ms: tables.table,
    t_index: NDArray[np.intp],
    b_index: NDArray[np.intp],
    autos: NDArray[np.bool_],
    slab: int,
    counts: Counts,
) -> None:
    """Any other MS (rows missing or in another order), in slabs of channels, each scattered
    into a dense (time, baseline, channel, polarisation) cube with the absent rows excluded."""
    n_time, n_base = int(t_index.max()) + 1, int(b_index.max()) + 1
    n_chan, n_pol = ms.getcell("DATA", 0).shape
    step = max(1, slab // (n_time * n_base * n_pol))

    def outliers(amplitude: NDArray[np.float32], excluded: NDArray[np.bool_]) -> NDArray[np.bool_]:
        shape = (n_time, n_base, *amplitude.shape[1:])
        cube = np.zeros(shape, dtype=np.float32)
        cube[t_index, b_index] = amplitude
        absent = np.ones(shape, dtype=bool)
        absent[t_index, b_index] = excluded
        by_time = (n_time, -1)
        found = _outliers(cube.reshape(by_time), absent.reshape(by_time)).reshape(shape)
        return np.asarray(found[t_index, b_index])

    for c0 in range(0, n_chan, step):
        blc, trc = [c0, -1], [min(n_chan, c0 + step) - 1, -1]
        data = ms.getcolslice("DATA", blc, trc)
        old = ms.getcolslice("FLAG", blc, trc)
        flags = _flag_slab(data, old, autos, outliers, counts)
        if flags is not None:
            ms.putcolslice("FLAG", flags, blc, trc)


def _flag_slab(
    data: NDArray[np.complexfloating],
    old: NDArray[np.bool_],
    autos: NDArray[np.bool_],
    outliers: OutlierFinder,
    counts: Counts,
) -> NDArray[np.bool_] | None:
    """The flags of a slab of rows (row, channel, polarisation), or None if none is new: the
    old ones, zeros, autocorrelations and the outliers among the other samples' amplitudes."""
    zeros = data == 0
    excluded = old | zeros
    excluded[autos] = True
    found = outliers(np.abs(data).astype(np.float32, copy=False), excluded)
    auto_flags = np.broadcast_to(autos[:, None, None], data.shape)
    kept = ~old
    new = (found | zeros | auto_flags) & kept
    counts["outliers"] += int(np.count_nonzero(found & kept))
    counts["zeros"] += int(np.count_nonzero(zeros & kept))
    counts["autocorrelations"] += int(np.count_nonzero(auto_flags & kept))
    counts["total"] += int(np.count_nonzero(new))
    counts["samples"] += int(data.size)
    counts["flagged"] += int(np.count_nonzero(old | new))
    return old | new if new.any() else None


def flag_processes(config: Config, n_ms: int) -> int:
    """How many MSs of a block to flag at once: ``supervisor.workers`` (0: one per core the
    process may use), at most one per MS. Each holds one slab (~250 MB at real scale)."""
    cores = config.supervisor.workers or len(os.sched_getaffinity(0))
    return max(1, min(cores, n_ms))


def _flag_one(path: Path) -> Counts:
    """flag_ms, any failure but a known one turned into a StageError naming the MS."""
    try:
        return flag_ms(path)
    except DSA110Error:
        raise
    except Exception as exc:
        raise StageError(f"{path}: flagging failed: {describe(exc)}") from exc


def flag_stage(
    job: BlockJob, ms_paths: Sequence[Path], config: Config, scratch: Path
) -> StageResult:
    """Flag every MS of the block (outliers, zeros, autocorrelations), several at once in
    forked children (see :func:`flag_processes`) when the block has several."""
    processes = flag_processes(config, len(ms_paths))
    if processes > 1:
        counts = run_forked_each(ms_paths, _flag_one, processes=processes, failure=StageError)
    else:
        counts = [_flag_one(path) for path in ms_paths]
    totals: dict[str, int] = {}
    for one in counts:
        for reason, n in one.items():
            totals[reason] = totals.get(reason, 0) + n
    log.info("block %s: flagged %s (%d at once)", job.block_id, totals, processes)
    summary: dict[str, int | float] = {
        f"flagged_{k}": v for k, v in totals.items() if k not in FRACTION_TERMS
    }
    if totals.get("samples"):
        summary["samples"] = totals["samples"]
        summary["flag_fraction"] = totals["flagged"] / totals["samples"]
    return StageResult("flag-mad", "ok", summary=summary)


FRACTION_TERMS = ("samples", "flagged")
"""Counts of flag_ms that are not reasons: the flag fraction's denominator and numerator."""
