"""One chunk (MS) of a calibration: what it holds, its StEFCal sums in one read, the apply.

The solve reads the chunk's DATA once (:func:`accumulate`): per solution interval, baseline,
channel and polarisation it sums ``w R conj(M)``, ``w |M|^2``, ``w |R|^2`` and ``w`` over the
interval's integrations (R the data, M the sky model of :func:`model.integration_model`, w the
unflagged mask). Both solutions come from these :class:`ChunkSums` without reading again: the
bandpass sums them over the intervals (one solution per channel and polarisation), the gains
contract them over the channels with the bandpass divided out (``R / (b_i conj(b_j))`` makes
``A c_i conj(c_j)``, ``C |c_i c_j|^2`` with ``c = 1 / b``; B and the count keep their values
where both bandpasses are unflagged). The apply (:func:`apply`) reads DATA a second time, as
it needs the solutions, and writes ``CORRECTED_DATA`` and FLAG.

Arithmetic: the data are complex64 and so are the per-channel sums (at most an interval's
integrations, tens of terms, each); everything summed further is float64.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from casacore import tables
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from dsa110d.config import CalibrationConfig
from dsa110d.errors import InputFileError
from dsa110d.science.calibration.model import (
    SkyModel,
    calibrator_peak_gain,
    integration_model,
    sky_model,
)
from dsa110d.science.catalog import Catalog
from dsa110d.science.constants import SECONDS_PER_DAY
from dsa110d.science.photometry.geometry import read_geometry
from dsa110d.science.pipeline.calstatus import CORRECTED

ROWS_PER_READ = 4096
"""Main-table rows read at once (~50 MB of DATA at 768 channels x 2 polarisations), whole
integrations (at least one)."""
ROWS_PER_BLOCK = 256
"""Rows an elementwise step works on at once: its operands (~3 MB each at 768 x 2) stay in
the processor's cache between the steps instead of streaming through memory at each."""
SUM_THREADS = 2
"""Threads adding an integration's blocks of rows to the sums (the two cores of the goal)."""
BLAS_THREADS = 1
"""The model's small matrix products (antennas x sources x antennas per channel) run in one
BLAS thread: OpenBLAS's threads spin against each other on a shared, loaded machine (25x
slower measured at load 8 on 2 cores), and the daemon's worker processes share the cores."""


@dataclass
class ChunkInfo:
    """One MS: its sky model, antennas, integrations and calibrator."""

    path: Path
    set_id: str
    model: SkyModel
    antennas: NDArray[np.int64]
    times: NDArray[np.float64]
    calibrator: int | None
    calibrator_gain: float

    @property
    def mid_mjd(self) -> float:
        return float(self.times.mean()) / SECONDS_PER_DAY


def open_ms(path: Path, readonly: bool = True) -> Any:
    try:
        return tables.table(str(path), readonly=readonly, ack=False)
    except RuntimeError as exc:
        raise InputFileError(f"{path}: cannot open Measurement Set: {exc}") from None


def inspect_chunk(path: Path, catalog: Catalog) -> ChunkInfo:
    with open_ms(path) as ms:
        geometry = read_geometry(ms, path)
        antennas = np.unique(np.r_[ms.getcol("ANTENNA1"), ms.getcol("ANTENNA2")]).astype(np.int64)
    model = sky_model(geometry, catalog)
    cal, gain = calibrator_peak_gain(model, catalog)
    return ChunkInfo(path, path.stem, model, antennas, geometry.times, cal, gain)


def intervals(times: NDArray[np.float64], config: CalibrationConfig) -> NDArray[np.intp]:
    """The gain solution interval of each time."""
    return np.asarray(np.floor((times - times[0]) / config.solution_interval_sec).astype(np.intp))


def _slabs(ms: Any) -> list[tuple[int, int]]:
    """(start, rows) of the slabs to read: whole integrations of about ROWS_PER_READ rows."""
    times = ms.getcol("TIME")
    edges = np.flatnonzero(np.diff(times) != 0) + 1
    starts = np.r_[0, edges]
    per = max(1, int(ROWS_PER_READ // max(1, int(np.diff(np.r_[starts, times.size]).max()))))
    bounds = [*starts[::per].tolist(), int(times.size)]
    return [(a, b - a) for a, b in itertools.pairwise(bounds)]


@dataclass(frozen=True)
class Integration:
    """The rows of one integration as read: antenna indices (into the chunk's antennas),
    integration index, DATA and FLAG (views into the slab's buffers)."""

    i1: NDArray[np.intp]
    i2: NDArray[np.intp]
    t_index: int
    uvw: NDArray[np.float64]
    data: NDArray[np.complex64]
    flag: NDArray[np.bool_]
    start: int


def _integrations(ms: Any, info: ChunkInfo) -> Iterator[Integration]:
    """Every integration of the MS, read slab by slab (DATA and FLAG once)."""
    n_chan = info.model.freq_hz.size
    buffers: dict[tuple[int, int], tuple[NDArray[np.complex64], NDArray[np.bool_]]] = {}
    for start, n in _slabs(ms):
        n_pol = int(ms.getcell("FLAG", start).shape[1])
        if (n, n_pol) not in buffers:
            buffers = {
                (n, n_pol): (np.empty((n, n_chan, n_pol), np.complex64),
                             np.empty((n, n_chan, n_pol), bool))
            }  # fmt: skip
        data, flag = buffers[(n, n_pol)]
        ms.getcolnp("DATA", data, start, n)
        ms.getcolnp("FLAG", flag, start, n)
        i1 = np.searchsorted(info.antennas, ms.getcol("ANTENNA1", start, n))
        i2 = np.searchsorted(info.antennas, ms.getcol("ANTENNA2", start, n))
        t_index = np.searchsorted(info.times, ms.getcol("TIME", start, n))
        uvw = ms.getcol("UVW", start, n)
        edges = [0, *(np.flatnonzero(np.diff(t_index) != 0) + 1).tolist(), n]
        for a, b in itertools.pairwise(edges):
            yield Integration(
                i1[a:b], i2[a:b], int(t_index[a]), uvw[a:b], data[a:b], flag[a:b], start + a
            )


@dataclass(frozen=True)
class ChunkSums:
    """Per solution interval and baseline (i1 < or > i2 as the MS has them; no autos) the
    StEFCal sums per channel and polarisation: ``a`` (Nint, Nbl, Nchan, Npol) complex64 and
    ``b``, ``c``, ``count`` float32 (see the module docstring)."""

    i1: NDArray[np.intp]
    i2: NDArray[np.intp]
    a: NDArray[np.complex64]
    b: NDArray[np.float32]
    c: NDArray[np.float32]
    count: NDArray[np.float32]
    interval_of: NDArray[np.intp]
    """The solution interval of each of the chunk's integrations."""


def _baselines(info: ChunkInfo) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """The cross baselines of the MS (i1, i2) and a table from ``i1 * Nant + i2`` to their
    slot (-1 for autocorrelations)."""
    n_ant = info.antennas.size
    with open_ms(info.path) as ms:
        pair = np.unique(
            np.searchsorted(info.antennas, ms.getcol("ANTENNA1")) * n_ant
            + np.searchsorted(info.antennas, ms.getcol("ANTENNA2"))
        )
    pair = pair[pair // n_ant != pair % n_ant]
    slot = np.full(n_ant * n_ant, -1, np.intp)
    slot[pair] = np.arange(pair.size)
    return pair // n_ant, pair % n_ant, slot


def _add_block(
    sums: tuple[NDArray[Any], ...],
    where: slice | NDArray[np.intp],
    data: NDArray[np.complex64],
    flag: NDArray[np.bool_],
    model: NDArray[np.complex64],
) -> None:
    """Add one block of rows (data and flag modified in place: the buffers are scratch)."""
    a, b, c, count = sums
    np.copyto(data, 0, where=flag)
    parts = data.view(np.float32).reshape(*data.shape, 2)
    c[where] += np.einsum("rfpx,rfpx->rfp", parts, parts)
    model_parts = model.view(np.float32).reshape(*model.shape, 2)
    power = np.einsum("rfx,rfx->rf", model_parts, model_parts)
    data *= np.conj(model)[:, :, None]
    a[where] += data
    weight = np.logical_not(flag).astype(np.float32)
    count[where] += weight
    weight *= power[:, :, None]
    b[where] += weight


def accumulate(info: ChunkInfo, config: CalibrationConfig) -> ChunkSums:
    """The chunk's :class:`ChunkSums`, in one read of its DATA and FLAG."""
    i1_all, i2_all, slot = _baselines(info)
    interval_of = intervals(info.times, config)
    n_ant, n_bl = info.antennas.size, i1_all.size
    sums: tuple[NDArray[Any], ...] | None = None
    with (
        open_ms(info.path) as ms,
        threadpool_limits(BLAS_THREADS, user_api="blas"),
        ThreadPoolExecutor(SUM_THREADS) as pool,
    ):
        for rows in _integrations(ms, info):
            if sums is None:
                shape = (int(interval_of.max()) + 1, n_bl, *rows.data.shape[1:])
                sums = (np.zeros(shape, np.complex64),
                        *(np.zeros(shape, np.float32) for _ in range(3)))  # fmt: skip
            k = int(interval_of[rows.t_index])
            target = slot[rows.i1 * n_ant + rows.i2]
            model = integration_model(info.model, rows.uvw, rows.i1, rows.i2, rows.t_index, n_ant)
            interval = tuple(s[k] for s in sums)
            tasks = []
            for lo in range(0, target.size, ROWS_PER_BLOCK):
                hi = min(lo + ROWS_PER_BLOCK, target.size)
                keep = target[lo:hi]
                cross = keep >= 0
                block: slice | NDArray[np.intp] = slice(lo, hi)
                if cross.all() and np.all(np.diff(keep) == 1):
                    where: slice | NDArray[np.intp] = slice(int(keep[0]), int(keep[-1]) + 1)
                else:  # autocorrelations among the rows, or another order: index
                    block = np.arange(lo, hi)[cross]
                    where = keep[cross]
                tasks.append((interval, where, rows.data[block], rows.flag[block], model[block]))
            # The blocks of one integration are distinct baselines: they add to distinct rows
            # of the sums, so threads (numpy releases the GIL in these loops) need no lock.
            list(pool.map(lambda task: _add_block(*task), tasks))
    if sums is None:
        raise InputFileError(f"{info.path}: no rows to calibrate")
    a, b, c, count = sums
    return ChunkSums(i1_all, i2_all, a, b, c, count, interval_of)


def apply(
    info: ChunkInfo,
    bandpass_gain: NDArray[np.complex128],
    bandpass_flag: NDArray[np.bool_],
    gain: NDArray[np.complex128],
    gain_flag: NDArray[np.bool_],
    config: CalibrationConfig,
) -> None:
    """Write ``CORRECTED_DATA = DATA / (G_i conj(G_j))``, ``G`` = bandpass (Nant, Nchan, Npol)
    x gain (Nint, Nant, 1, Npol) for the chunk's antennas, adding the column when missing, and
    flag the data of antennas whose solution is flagged."""
    total_flag = bandpass_flag[None] | gain_flag  # (Nint, Nant, Nchan, Npol)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.where(total_flag, 0.0, 1.0 / (bandpass_gain[None] * gain))
    inverse = inverse.astype(np.complex64)
    interval_of = intervals(info.times, config)
    cached: tuple[int, NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]] | None = None
    with open_ms(info.path, readonly=False) as ms:
        if CORRECTED not in ms.colnames():
            desc = ms.getcoldesc("DATA")
            desc["comment"] = "DATA divided by the antenna gains (dsa110d calibrate)"
            dminfo = ms.getdminfo("DATA")
            dminfo["NAME"] = "TiledCORRECTED_DATA"
            ms.addcols(tables.maketabdesc([tables.makecoldesc(CORRECTED, desc)]), dminfo)
        for rows in _integrations(ms, info):
            k = int(interval_of[rows.t_index])
            # An interval's integrations have the same baselines: their factors are reused.
            if (
                cached is None
                or cached[0] != k
                or not np.array_equal(cached[1], rows.i1)
                or not np.array_equal(cached[2], rows.i2)
            ):
                factor = inverse[k, rows.i1] * np.conj(inverse[k, rows.i2])
                bad = total_flag[k, rows.i1] | total_flag[k, rows.i2]
                cached = (k, rows.i1, rows.i2, factor, bad)
            data, flag = rows.data, rows.flag  # views into the slab's buffers: scratch
            data *= cached[3]
            flag |= cached[4]
            np.copyto(data, 0, where=flag)
            ms.putcol(CORRECTED, data, rows.start, data.shape[0])
            ms.putcol("FLAG", flag, rows.start, data.shape[0])
