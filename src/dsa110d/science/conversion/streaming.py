"""The block loop of a conversion: read every subband's rows once, phase them, place the
channels in ascending frequency, and write the block into the MS at its start row.

Memory is fixed by the block size (preallocated arrays reused for every block), not by the
number of integrations.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import signal
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
from casacore import tables

from dsa110d.errors import ConversionError, InputFileError
from dsa110d.science.constants import SPEED_OF_LIGHT_M_S
from dsa110d.science.conversion import msio
from dsa110d.science.conversion.layout import Placement, SetLayout
from dsa110d.science.conversion.phasing import SubbandPhasors
from dsa110d.science.hdf5.reader import RowBuffers, SubbandHeader, read_rows


class _Slot:
    """One block's results, ready to write: in shared memory (``mmap``) when a forked
    reader fills it, so the writer sees them without copying."""

    def __init__(self, nrows: int, layout: SetLayout, shared: bool) -> None:
        nchan, npol = layout.freq_hz.size, layout.reference.npols
        cube, pair = (nrows, nchan, npol), (nrows, npol)
        self.vis = _array(cube, np.complex64, shared)
        self.flags = _array(cube, np.bool_, shared)
        self.nsamples = _array(cube, np.float32, shared)
        self.weight = _array(pair, np.float32, shared)
        self.sigma = _array(pair, np.float32, shared)
        self.flag_row = _array((nrows,), np.bool_, shared)
        self.uniform = _array((1,), np.bool_, shared)  # nsamples equal WEIGHT in every cell


def _array(shape: tuple[int, ...], dtype: type, shared: bool) -> npt.NDArray[Any]:
    if not shared:
        return np.empty(shape, dtype=dtype)
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buffer = mmap.mmap(-1, max(size, 1))  # anonymous and shared: survives fork
    return np.frombuffer(buffer, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


class _Work:
    """The reader's scratch arrays for one subband's rows of a block (its rows as read, and
    the phasor terms over its channels; ~20 MB at 8192 rows of 48 channels), reused for
    every subband, so the read, the phasing and the placement work on cached memory."""

    def __init__(self, nrows: int, layout: SetLayout, w: npt.NDArray[np.float64]) -> None:
        sub = layout.reference
        freq_over_c = layout.freq_hz / SPEED_OF_LIGHT_M_S
        # f/c of each subband's channels in the file's own order (the phasing runs on the
        # rows as read, before they are placed in ascending frequency)
        per_subband = [
            freq_over_c[p.channels][:: -1 if p.descending else 1] for p in layout.placements
        ]
        self.phasors = SubbandPhasors(per_subband, w, nrows)
        self.subband = RowBuffers.allocate(nrows, sub.nfreqs, sub.npols)


class _Reader:
    """Prepares blocks: reads every subband's rows once, phases them, places channels."""

    def __init__(
        self,
        layout: SetLayout,
        w: npt.NDArray[np.float64],
        flip: npt.NDArray[np.bool_] | None,
        block_rows: int,
        files: list[h5py.File],
    ) -> None:
        self.layout, self.w, self.flip, self.files = layout, w, flip, files
        self.work = _Work(block_rows, layout, w)
        # nsamples are placed only when WEIGHT cannot say it all (see _DeferredNsamples)
        self.defer_nsamples = not layout.missing_channels

    def fill(self, slot: _Slot, start: int, stop: int) -> None:
        m, work, layout = stop - start, self.work, self.layout
        v, fl, ns = slot.vis[:m], slot.flags[:m], slot.nsamples[:m]
        deferred = _DeferredNsamples(ns) if self.defer_nsamples else None
        work.phasors.block(self.w[start:stop])
        for index, (f, p) in enumerate(zip(self.files, layout.placements, strict=True)):
            sub = work.subband
            _read_subband(f, p, start, stop, sub)
            _phase(sub.vis[:m], work.phasors.subband(index))
            skip = deferred is not None and deferred.defer(p.channels, sub.nsamples[:m])
            _place(sub, m, p, slot, nsamples=not skip)
        for gap in layout.missing_channels:
            v[:, gap] = 0
            fl[:, gap] = True
            ns[:, gap] = 0
        if self.flip is not None and self.flip[start:stop].any():
            rows = np.flatnonzero(self.flip[start:stop])
            v[rows] = np.conjugate(v[rows])
        weight = slot.weight[:m]
        if deferred is not None and deferred.value is not None and not deferred.placed:
            weight[:] = deferred.value[:, None]  # nsamples equal it in every cell
            slot.uniform[0] = True
        else:
            slot.uniform[0] = band_weight(ns, out=weight)
            # the writer keeps WEIGHT_SPECTRUM from the first block that needs it on
            self.defer_nsamples = self.defer_nsamples and bool(slot.uniform[0])
        slot.sigma[:m] = 0
        np.power(weight, -0.5, where=weight > 0, out=slot.sigma[:m])
        slot.flag_row[:m] = fl.reshape(m, -1).all(axis=1)


class _DeferredNsamples:
    """One block's nsamples, placed only when needed. While every subband's rows hold one
    value per row, the same in every subband (the usual case: WEIGHT is that value and no
    WEIGHT_SPECTRUM is written), placing them is skipped; the first subband that differs
    places the skipped ones (that value per row) and itself, and every later subband is
    placed as usual. Values are compared bit for bit, so a row taken as uniform is uniform
    (a NaN in the first subband places everything: it is never uniform)."""

    def __init__(self, block: npt.NDArray[np.float32]) -> None:
        self.block = block  # the slot's (rows, channels, pols) nsamples
        self.value: npt.NDArray[np.float32] | None = None  # per row
        self.skipped: list[slice] = []
        self.placed = False

    def defer(self, channels: slice, nsamples: npt.NDArray[np.float32]) -> bool:
        """Whether this subband's ``nsamples`` (rows as read) need not be placed."""
        if self.placed:
            return False
        m = nsamples.shape[0]
        if self.value is None:
            self.value = nsamples[:, 0, 0].copy()
            if np.isnan(self.value).any():
                self.placed = True
                return False
        bits = self.value.view(np.uint32)
        if np.all(nsamples.view(np.uint32).reshape(m, -1) == bits[:, None]):
            self.skipped.append(channels)
            return True
        self.placed = True
        for skipped in self.skipped:
            self.block[:, skipped] = self.value[:, None, None]
        return False


class _Writer:
    """Writes prepared blocks into the main table at their start rows."""

    def __init__(self, table: tables.table, layout: SetLayout, block_rows: int) -> None:
        self.table, self.layout, self.block_rows = table, layout, block_rows
        self.spectrum = False  # WEIGHT_SPECTRUM exists (from the first block that needs it)

    def write(self, slot: _Slot, start: int, stop: int) -> None:
        m, table = stop - start, self.table
        table.putcol("DATA", slot.vis[:m], startrow=start, nrow=m)
        table.putcol("FLAG", slot.flags[:m], startrow=start, nrow=m)
        if not self.spectrum and not slot.uniform[0]:
            _start_weight_spectrum(table, self.layout, start, self.block_rows)
            self.spectrum = True
        if self.spectrum:
            table.putcol("WEIGHT_SPECTRUM", slot.nsamples[:m], startrow=start, nrow=m)
        table.putcol("WEIGHT", slot.weight[:m], startrow=start, nrow=m)
        table.putcol("SIGMA", slot.sigma[:m], startrow=start, nrow=m)
        table.putcol("FLAG_ROW", slot.flag_row[:m], startrow=start, nrow=m)


def stream_blocks(
    table: tables.table,
    layout: SetLayout,
    w: npt.NDArray[np.float64],
    block_rows: int,
    flip: npt.NDArray[np.bool_] | None = None,
    pipelined: bool = False,
) -> None:
    """Read, place, phase and write the visibilities one block of rows at a time.

    ``pipelined`` prepares the blocks in a forked reader process, two shared slots ahead
    of the writer, so reading and phasing (numpy, h5py) run beside casacore's ``putcol``
    (which holds the GIL, so threads could not overlap them).
    """
    n = layout.nrows
    block_rows = min(max(msio.TILE_ROWS, block_rows - block_rows % msio.TILE_ROWS), n)
    blocks = [(start, min(start + block_rows, n)) for start in range(0, n, block_rows)]
    writer = _Writer(table, layout, block_rows)
    if not pipelined:
        slot = _Slot(block_rows, layout, shared=False)
        with _opened(layout) as files:
            reader = _Reader(layout, w, flip, block_rows, files)
            for start, stop in blocks:
                reader.fill(slot, start, stop)
                writer.write(slot, start, stop)
        return
    slots = [_Slot(block_rows, layout, shared=True) for _ in range(PIPELINE_SLOTS)]
    ready_r, ready_w = os.pipe()  # reader -> writer: b"r" per block, or b"e" + JSON error
    free_r, free_w = os.pipe()  # writer -> reader: b"f" per slot written
    pid = os.fork()
    if pid == 0:  # the reader: never returns
        os.close(ready_r)
        os.close(free_w)
        _reader_main(layout, w, flip, block_rows, slots, blocks, free_r, ready_w)
    os.close(ready_w)
    os.close(free_r)
    try:
        for k, (start, stop) in enumerate(blocks):
            _await_block(ready_r)
            writer.write(slots[k % PIPELINE_SLOTS], start, stop)
            if k + PIPELINE_SLOTS < len(blocks):  # the reader waits for this slot
                os.write(free_w, b"f")
    finally:
        os.close(free_w)
        os.close(ready_r)
        _reap(pid)


PIPELINE_SLOTS = 2  # blocks in flight between the reader and the writer


def _reader_main(
    layout: SetLayout,
    w: npt.NDArray[np.float64],
    flip: npt.NDArray[np.bool_] | None,
    block_rows: int,
    slots: list[_Slot],
    blocks: list[tuple[int, int]],
    free_r: int,
    ready_w: int,
) -> None:
    code = 0
    try:
        with _opened(layout) as files:
            reader = _Reader(layout, w, flip, block_rows, files)
            for k, (start, stop) in enumerate(blocks):
                if k >= PIPELINE_SLOTS and os.read(free_r, 1) != b"f":
                    break  # the writer has gone
                reader.fill(slots[k % PIPELINE_SLOTS], start, stop)
                os.write(ready_w, b"r")
    except BaseException as exc:  # report anything; the writer raises it
        code = 1
        kind = "InputFileError" if isinstance(exc, InputFileError) else "ConversionError"
        with contextlib.suppress(OSError):
            os.write(ready_w, b"e" + json.dumps({"error": kind, "message": str(exc)}).encode())
    finally:
        os._exit(code)


def _await_block(ready_r: int) -> None:
    token = os.read(ready_r, 1)
    if token == b"r":
        return
    if token == b"e":
        chunks = []
        while chunk := os.read(ready_r, 65536):
            chunks.append(chunk)
        record = json.loads(b"".join(chunks))
        kind = InputFileError if record["error"] == "InputFileError" else ConversionError
        raise kind(record["message"])
    raise ConversionError("the reader process died before preparing every block")


def _reap(pid: int) -> None:
    """Wait for the reader; kill it first if it is still running (the writer failed)."""
    done, _ = os.waitpid(pid, os.WNOHANG)
    if done == 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@contextlib.contextmanager
def _opened(layout: SetLayout) -> Iterator[list[h5py.File]]:
    with ExitStack() as stack:
        yield [stack.enter_context(_open(p.header)) for p in layout.placements]


def _start_weight_spectrum(
    table: tables.table, layout: SetLayout, upto: int, block_rows: int
) -> None:
    """Add WEIGHT_SPECTRUM and fill the rows already written from their WEIGHT (their
    nsamples were uniform across channels, so that is exact)."""
    nchan = layout.freq_hz.size
    msio.add_weight_spectrum(table, msio.MainShape(layout.nrows, nchan, layout.reference.npols))
    for start in range(0, upto, block_rows):
        m = min(block_rows, upto - start)
        weight = table.getcol("WEIGHT", startrow=start, nrow=m)
        spectrum = np.repeat(weight[:, None, :], nchan, axis=1).astype(np.float32)
        table.putcol("WEIGHT_SPECTRUM", spectrum, startrow=start, nrow=m)


def band_weight(nsamples: npt.NDArray[np.float32], out: npt.NDArray[np.float32]) -> bool:
    """WEIGHT into ``out``: the median over channels of each row's nsamples per polarisation
    (as pyuvdata writes it). Rows whose nsamples are all equal (the usual case) skip the
    median. Returns whether nsamples equal WEIGHT in every cell (WEIGHT_SPECTRUM then says
    nothing more), checking cell by cell only the rows that took the median: an all-equal
    row holds no NaN, so its cells equal its WEIGHT."""
    m = nsamples.shape[0]
    flat = nsamples.reshape(m, -1)
    uniform = np.all(flat == flat[:, :1], axis=1)
    out[:] = nsamples[:, 0]
    if uniform.all():
        return True
    odd = ~uniform
    out[odd] = np.median(nsamples[odd], axis=1)
    return bool(np.all(nsamples[odd] == out[odd][:, None, :]))


def _open(header: SubbandHeader) -> h5py.File:
    try:
        return h5py.File(header.path, "r")
    except OSError as exc:
        raise InputFileError(f"{header.path}: cannot open ({exc})") from exc


def _phase(vis: npt.NDArray[np.complex64], phasor: npt.NDArray[np.complex64]) -> None:
    """conj(vis) x phasor for one subband's rows as read (in place, in cache)."""
    np.conjugate(vis, out=vis)
    # one multiply per polarisation: a broadcast over the short polarisation axis makes
    # numpy loop two elements at a time (~4x slower)
    for k in range(vis.shape[2]):
        np.multiply(vis[:, :, k], phasor, out=vis[:, :, k])


def _read_subband(f: h5py.File, p: Placement, start: int, stop: int, sub: RowBuffers) -> None:
    """Read one subband's rows [start, stop) of the set into ``sub`` (file channel order)."""
    rows: slice | npt.NDArray[np.int64]
    if isinstance(p.rows, slice):
        first = p.rows.start or 0
        rows = slice(first + start, first + stop)
    else:
        rows = p.rows[start:stop]
    try:
        read_rows(f, p.header, rows, sub)
    except (OSError, ValueError, TypeError) as exc:
        raise InputFileError(f"{p.header.path}: cannot read rows {start}..{stop} ({exc})") from exc


def _place(sub: RowBuffers, m: int, p: Placement, block: _Slot, nsamples: bool = True) -> None:
    """Copy one subband's ``m`` rows into its channels of the block, ascending."""
    step = -1 if p.descending else 1
    pairs = [(sub.vis, block.vis), (sub.flags, block.flags)]
    if nsamples:
        pairs.append((sub.nsamples, block.nsamples))
    # Move whole (pol) cells per channel: viewing the Npols axis as one wider item makes the
    # channel-reversing copy run over channels instead of over 2-element rows (~6x faster).
    for src, dst in pairs:
        _cells(dst[:m, p.channels])[:] = _cells(src[:m])[:, ::step]


_CELL_TYPES = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64, 16: np.complex128}
"""Plain types of 1-16 bytes: numpy copies these much faster than opaque void items."""


def _cells(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """View (rows, chans, pols) as (rows, chans) of one item per (pols) cell."""
    size = a.dtype.itemsize * a.shape[2]
    cell = np.dtype(_CELL_TYPES.get(size, np.dtype((np.void, size))))
    return a.view(cell).reshape(a.shape[:2])
