"""Converting one subband set (UVH5 files, one per subband) into one Measurement Set.

``convert_set`` is what the processor calls in a worker process and what
``dsa110d convert`` runs. It reads every header first and refuses bad input with one line
naming the file; then it streams over blocks of rows: each block reads every subband's
rows once, places the channels in ascending frequency, applies the w-term phase towards
the meridian at the set's mid-time, conjugates for the MS convention and writes the block
with ``putcol`` at its start row. The MS is built in a temporary sibling and renamed into
place with a completion marker (``science.atomic``).
"""

from __future__ import annotations

import errno
import logging
import shutil
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
from casacore import tables

from dsa110d.science.constants import CHANNEL_WIDTH_HZ, DISH_DIAMETER_M
from dsa110d.science.constants import N_SUBBANDS as SUBBANDS_PER_SET
from dsa110d.errors import ConversionError, DSA110Error, InputFileError
from dsa110d.science import msio
from dsa110d.science.atomic import atomic_dir, is_complete_dir
from dsa110d.science.phasing import (
    SPEED_OF_LIGHT_M_S,
    PhaseCentre,
    conj_w_phasor,
    lsts_for,
    meridian_centre,
    phased_geometry,
    telescope_location,
)
from dsa110d.science.uvh5 import RowBuffers, SubbandHeader, read_header, read_rows

log = logging.getLogger(__name__)

BLOCK_ROWS = 8192  # rows per streamed block: ~100 MB of DATA at 768 channels x 2 pols
TIME_TOL_DAYS = 1e-3 / 86400.0  # 1 ms: subbands of one set share their integration times
FREQ_TOL_HZ = 1.0  # channel centres agree with the grid to well under a channel


@dataclass(frozen=True)
class ConvertResult:
    """What a conversion produced (JSON-friendly via :meth:`to_dict`)."""

    ms: Path
    reused: bool
    n_rows: int
    n_times: int
    n_baselines: int
    n_antennas: int
    n_channels: int
    n_pols: int
    subbands: tuple[int, ...]
    missing_subbands: tuple[int, ...]
    dropped_antennas: tuple[int, ...]
    phase_ra_rad: float
    phase_dec_rad: float
    seconds: float

    def to_dict(self) -> dict[str, object]:
        record = asdict(self)
        record["ms"] = str(self.ms)
        return record


@dataclass(frozen=True)
class Placement:
    """Where one subband file's rows and channels go in the set."""

    header: SubbandHeader
    rows: slice | npt.NDArray[np.int64]  # rows of this file that are kept, in set order
    channels: slice  # destination channels (ascending grid)
    descending: bool  # file's channels run high to low


@dataclass(frozen=True)
class SetLayout:
    """The whole set's shape: kept rows, the channel grid, and each subband's place in it."""

    reference: SubbandHeader
    placements: tuple[Placement, ...]
    keep: npt.NDArray[np.bool_]  # rows of the reference file that are kept
    freq_hz: npt.NDArray[np.float64]
    channel_width_hz: npt.NDArray[np.float64]
    missing: tuple[int, ...]  # subband indices filled with flagged channels
    missing_channels: tuple[slice, ...]
    dropped_antennas: tuple[int, ...]

    @property
    def nrows(self) -> int:
        return int(self.keep.sum())


def plan_set(headers: Sequence[SubbandHeader], partial: bool) -> SetLayout:
    """Check that the subbands belong together and decide where each goes."""
    if not headers:
        raise ConversionError("no subband files given")
    ref = headers[0]
    for h in headers[1:]:
        _check_agrees(ref, h)
    common = _common_antennas(headers)
    data_ants = np.union1d(ref.ant1, ref.ant2)
    for h in headers:
        data_ants = np.union1d(data_ants, np.union1d(h.ant1, h.ant2))
    dropped = tuple(int(a) for a in np.setdiff1d(data_ants, common))
    keep = np.isin(ref.ant1, common) & np.isin(ref.ant2, common)
    kept_key = (ref.time[keep], ref.ant1[keep], ref.ant2[keep])
    grid, widths, slots = _channel_grid(headers, partial)
    placements = []
    for h, channels in zip(headers, slots, strict=True):
        mask = np.isin(h.ant1, common) & np.isin(h.ant2, common)
        rows = _rows_of(mask)
        _check_rows(h, rows, kept_key)
        placements.append(
            Placement(
                header=h, rows=rows, channels=channels, descending=bool(h.freq[0] > h.freq[-1])
            )
        )
    taken = np.zeros(grid.size, dtype=bool)
    for p in placements:
        taken[p.channels] = True
    missing_channels = _runs(~taken)
    missing = _missing_subbands(headers, partial)
    return SetLayout(
        reference=ref,
        placements=tuple(placements),
        keep=keep,
        freq_hz=grid,
        channel_width_hz=widths,
        missing=missing,
        missing_channels=missing_channels,
        dropped_antennas=dropped,
    )


def _check_agrees(ref: SubbandHeader, h: SubbandHeader) -> None:
    if h.npols != ref.npols or not np.array_equal(h.polarizations, ref.polarizations):
        raise h.fault(f"polarizations {h.polarizations.tolist()} differ from {ref.path.name}")
    if h.telescope_name != ref.telescope_name:
        raise h.fault(f"telescope {h.telescope_name!r} differs from {ref.path.name}")
    if not np.isclose(h.phase_center_dec, ref.phase_center_dec, rtol=0, atol=1e-9):
        raise h.fault(f"phase_center_dec {h.phase_center_dec} differs from {ref.path.name}")
    if not np.array_equal(h.antenna_numbers, ref.antenna_numbers) or not np.allclose(
        h.antenna_positions, ref.antenna_positions, rtol=0, atol=1e-3
    ):
        raise h.fault(f"antenna numbers or positions differ from {ref.path.name}")
    loc = (h.latitude_deg, h.longitude_deg, h.altitude_m)
    if not np.allclose(loc, (ref.latitude_deg, ref.longitude_deg, ref.altitude_m), atol=1e-9):
        raise h.fault(f"telescope location differs from {ref.path.name}")
    if h.nfreqs != ref.nfreqs or not np.allclose(np.abs(h.channel_width), CHANNEL_WIDTH_HZ):
        raise h.fault(
            f"{h.nfreqs} channels of {np.abs(h.channel_width[0])} Hz, expected "
            f"{ref.nfreqs} of {CHANNEL_WIDTH_HZ} Hz"
        )


def _common_antennas(headers: Sequence[SubbandHeader]) -> npt.NDArray[np.int64]:
    common = np.union1d(headers[0].ant1, headers[0].ant2)
    for h in headers[1:]:
        common = np.intersect1d(common, np.union1d(h.ant1, h.ant2))
    if common.size == 0:
        raise ConversionError(f"{headers[0].path.parent}: no antenna has data in every subband")
    return common


def _rows_of(mask: npt.NDArray[np.bool_]) -> slice | npt.NDArray[np.int64]:
    """A slice when the kept rows are contiguous (the usual case: nothing dropped)."""
    idx = np.flatnonzero(mask)
    if idx.size and idx[-1] - idx[0] + 1 == idx.size:
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _check_rows(
    h: SubbandHeader,
    rows: slice | npt.NDArray[np.int64],
    key: tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]],
) -> None:
    times, a1, a2 = h.time[rows], h.ant1[rows], h.ant2[rows]
    if times.size != key[0].size:
        raise h.fault(
            f"{times.size} baseline-times after dropping antennas, reference has {key[0].size}"
        )
    if not (np.array_equal(a1, key[1]) and np.array_equal(a2, key[2])):
        raise h.fault("antennas of its baselines disagree with the other subbands")
    if np.max(np.abs(times - key[0]), initial=0.0) > TIME_TOL_DAYS:
        raise h.fault("integration times disagree with the other subbands")


def _channel_grid(
    headers: Sequence[SubbandHeader], partial: bool
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], list[slice]]:
    """The ascending channel grid of the set and each file's slot in it."""
    nchan = headers[0].nfreqs
    lows = np.array([h.freq.min() for h in headers])
    order = np.argsort(lows)
    span = nchan * CHANNEL_WIDTH_HZ
    base = float(lows[order[0]])
    if partial:
        base = _band_bottom(headers, base, span)
    slot_index = np.rint((lows - base) / span).astype(int)
    for h, s, low in zip(headers, slot_index, lows, strict=True):
        if abs(low - (base + s * span)) > FREQ_TOL_HZ:
            raise h.fault(f"channels at {low} Hz are off the {CHANNEL_WIDTH_HZ} Hz subband grid")
    if len(set(slot_index.tolist())) != len(headers):
        dup = next(
            h for h, s in zip(headers, slot_index, strict=True) if list(slot_index).count(s) > 1
        )
        raise dup.fault("frequencies overlap another subband of the set")
    nslots = SUBBANDS_PER_SET if partial else int(slot_index.max()) + 1
    if not partial and nslots != len(headers):
        raise ConversionError(
            f"{headers[0].path.parent}: subbands missing from the frequency coverage; "
            "convert with partial=True to flag them"
        )
    if partial and int(slot_index.max()) >= nslots:
        raise headers[int(order[-1])].fault("frequencies lie beyond the 16-subband band")
    grid = base + np.arange(nslots * nchan) * CHANNEL_WIDTH_HZ
    for h, s in zip(headers, slot_index, strict=True):
        exact = np.sort(h.freq)
        grid[s * nchan : (s + 1) * nchan] = exact  # keep the files' own values bit for bit
    widths = np.full(grid.size, CHANNEL_WIDTH_HZ)
    slots = [slice(int(s) * nchan, (int(s) + 1) * nchan) for s in slot_index]
    return grid, widths, slots


def _band_bottom(headers: Sequence[SubbandHeader], lowest: float, span: float) -> float:
    """Lowest frequency of sb15 (the band's bottom), from any file's subband index."""
    for h in headers:
        if h.subband is not None:
            return float(h.freq.min()) - (SUBBANDS_PER_SET - 1 - h.subband) * span
    raise headers[0].fault("partial sets need sbNN in the file names to place missing subbands")


def _missing_subbands(headers: Sequence[SubbandHeader], partial: bool) -> tuple[int, ...]:
    if not partial:
        return ()
    present = {h.subband for h in headers}
    return tuple(sb for sb in range(SUBBANDS_PER_SET) if sb not in present)


def _runs(mask: npt.NDArray[np.bool_]) -> tuple[slice, ...]:
    """Contiguous runs of True as slices."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return tuple(slice(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True))


def convert_set(
    files: Sequence[Path],
    out: Path,
    partial: bool = False,
    block_rows: int = BLOCK_ROWS,
) -> ConvertResult:
    """Convert one subband set into the MS ``out`` (atomically; an existing complete MS is
    returned as it is). Raises InputFileError for bad input, ConversionError otherwise."""
    started = time.monotonic()
    out = Path(out)
    if is_complete_dir(out):
        return _existing_result(out, started)
    headers = [read_header(Path(f)) for f in files]
    layout = plan_set(headers, partial)
    try:
        with atomic_dir(out) as temp:
            centre = _write_ms(layout, temp, block_rows)
    except DSA110Error:
        raise
    except OSError as exc:
        raise ConversionError(f"{out}: {_os_reason(exc)}") from exc
    except RuntimeError as exc:  # casacore reports its I/O failures as RuntimeError
        raise ConversionError(f"{out}: casacore failed ({str(exc).splitlines()[0]})") from exc
    ref = layout.reference
    return ConvertResult(
        ms=out,
        reused=False,
        n_rows=layout.nrows,
        n_times=int(np.unique(ref.time[layout.keep]).size),
        n_baselines=int(np.unique(ref.ant1[layout.keep] * 100_000 + ref.ant2[layout.keep]).size),
        n_antennas=int(np.union1d(ref.ant1[layout.keep], ref.ant2[layout.keep]).size),
        n_channels=int(layout.freq_hz.size),
        n_pols=ref.npols,
        subbands=tuple(sorted(h.subband for h in headers if h.subband is not None)),
        missing_subbands=layout.missing,
        dropped_antennas=layout.dropped_antennas,
        phase_ra_rad=centre.ra,
        phase_dec_rad=centre.dec,
        seconds=time.monotonic() - started,
    )


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device while writing the Measurement Set"
    return f"{exc.strerror or exc} ({exc.filename or 'output'})"


def _write_ms(layout: SetLayout, path: Path, block_rows: int) -> PhaseCentre:
    """Write the whole MS into ``path`` (a fresh directory); returns its phase centre."""
    ref = layout.reference
    keep = layout.keep
    times = ref.time[keep]
    ant1, ant2 = ref.ant1[keep], ref.ant2[keep]
    loc = telescope_location(ref.latitude_deg, ref.longitude_deg, ref.altitude_m)
    lsts = ref.lst[keep] if ref.lst is not None else lsts_for(times, loc)
    centre = meridian_centre(times, loc, ref.phase_center_dec)
    geometry = phased_geometry(
        times_jd=times,
        lsts=lsts,
        ant1=ant1,
        ant2=ant2,
        antenna_numbers=ref.antenna_numbers,
        antenna_positions=ref.antenna_positions,
        location=loc,
        centre=centre,
    )
    shape = msio.MainShape(nrows=layout.nrows, nchan=layout.freq_hz.size, npol=ref.npols)
    shutil.rmtree(path)  # casacore creates the MS directory itself
    table = msio.create_main(path, shape)
    try:
        _write_metadata_columns(table, layout, times, ant1, ant2, -geometry.uvw)
        _stream_blocks(table, layout, geometry.uvw[:, 2], block_rows)
        msio.write_main_keywords(table, ref.vis_units)
    finally:
        table.close()
    msio.write_subtables(path, _metadata(layout, loc, centre, times))
    return centre


def _write_metadata_columns(
    table: tables.table,
    layout: SetLayout,
    times: npt.NDArray[np.float64],
    ant1: npt.NDArray[np.int64],
    ant2: npt.NDArray[np.int64],
    ms_uvw: npt.NDArray[np.float64],
) -> None:
    """Per-row columns, written whole (a few MB even at real scale)."""
    n = layout.nrows
    mjd_s = msio.mjd_seconds(times)
    interval = layout.reference.integration_time[layout.keep]
    zeros = np.zeros(n, dtype=np.int32)
    table.putcol("UVW", ms_uvw)
    table.putcol("ANTENNA1", ant1.astype(np.int32))
    table.putcol("ANTENNA2", ant2.astype(np.int32))
    table.putcol("TIME", mjd_s)
    table.putcol("TIME_CENTROID", mjd_s)
    table.putcol("INTERVAL", interval)
    table.putcol("EXPOSURE", interval)
    table.putcol("SCAN_NUMBER", np.ones(n, dtype=np.int32))
    for col in ("DATA_DESC_ID", "FIELD_ID", "ARRAY_ID", "OBSERVATION_ID", "PROCESSOR_ID"):
        table.putcol(col, zeros)
    for col in ("STATE_ID", "FEED1", "FEED2"):
        table.putcol(col, zeros)


class _Block:
    """The preallocated work arrays of one block of rows: reused for every block, so the
    memory of a conversion is fixed by the block size, not by the number of integrations."""

    def __init__(self, nrows: int, layout: SetLayout) -> None:
        nchan, npol = layout.freq_hz.size, layout.reference.npols
        self.vis = np.empty((nrows, nchan, npol), dtype=np.complex64)
        self.flags = np.empty(self.vis.shape, dtype=bool)
        self.nsamples = np.empty(self.vis.shape, dtype=np.float32)
        self.cycles = np.empty((nrows, nchan), dtype=np.float64)
        self.turns = np.empty((nrows, nchan), dtype=np.float64)
        self.angle = np.empty((nrows, nchan), dtype=np.float32)
        self.phasor = np.empty((nrows, nchan), dtype=np.complex64)
        sub = layout.reference
        self.subband = RowBuffers.allocate(nrows, sub.nfreqs, sub.npols)


def _stream_blocks(
    table: tables.table, layout: SetLayout, w: npt.NDArray[np.float64], block_rows: int
) -> None:
    """Read, place, phase and write the visibilities one block of rows at a time."""
    n = layout.nrows
    block_rows = max(msio.TILE_ROWS, block_rows - block_rows % msio.TILE_ROWS)
    block = _Block(min(block_rows, n), layout)
    freq_over_c = layout.freq_hz / SPEED_OF_LIGHT_M_S
    with ExitStack() as stack:
        files = [stack.enter_context(_open(p.header)) for p in layout.placements]
        for start in range(0, n, block_rows):
            stop = min(start + block_rows, n)
            m = stop - start
            v, fl, ns = block.vis[:m], block.flags[:m], block.nsamples[:m]
            for f, p in zip(files, layout.placements, strict=True):
                _read_block(f, p, start, stop, block)
            for gap in layout.missing_channels:
                v[:, gap] = 0
                fl[:, gap] = True
                ns[:, gap] = 0
            np.conjugate(v, out=v)
            phasor = conj_w_phasor(
                w[start:stop],
                freq_over_c,
                (block.cycles[:m], block.turns[:m], block.angle[:m]),
                block.phasor[:m],
            )
            v *= phasor[:, :, None]
            weight = band_weight(ns)
            sigma = np.zeros_like(weight)
            np.power(weight, -0.5, where=weight > 0, out=sigma)
            table.putcol("DATA", v, startrow=start, nrow=m)
            table.putcol("FLAG", fl, startrow=start, nrow=m)
            table.putcol("WEIGHT_SPECTRUM", ns, startrow=start, nrow=m)
            table.putcol("WEIGHT", weight, startrow=start, nrow=m)
            table.putcol("SIGMA", sigma, startrow=start, nrow=m)
            table.putcol("FLAG_ROW", fl.reshape(m, -1).all(axis=1), startrow=start, nrow=m)


def band_weight(nsamples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """WEIGHT: the median over channels of each row's nsamples per polarisation (as pyuvdata
    writes it). Rows whose nsamples are all equal (the usual case) skip the median."""
    m = nsamples.shape[0]
    flat = nsamples.reshape(m, -1)
    uniform = np.all(flat == flat[:, :1], axis=1)
    weight = np.repeat(flat[:, :1], nsamples.shape[2], axis=1)
    if not uniform.all():
        weight[~uniform] = np.median(nsamples[~uniform], axis=1)
    return weight


def _open(header: SubbandHeader) -> h5py.File:
    try:
        return h5py.File(header.path, "r")
    except OSError as exc:
        raise InputFileError(f"{header.path}: cannot open ({exc})") from exc


def _read_block(f: h5py.File, p: Placement, start: int, stop: int, block: _Block) -> None:
    """Copy one subband's rows [start, stop) of the set into its channels of the block."""
    rows: slice | npt.NDArray[np.int64]
    if isinstance(p.rows, slice):
        first = p.rows.start or 0
        rows = slice(first + start, first + stop)
    else:
        rows = p.rows[start:stop]
    try:
        m = read_rows(f, p.header, rows, block.subband)
    except (OSError, ValueError, TypeError) as exc:
        raise InputFileError(f"{p.header.path}: cannot read rows {start}..{stop} ({exc})") from exc
    step = -1 if p.descending else 1
    sub = block.subband
    # Move whole (pol) cells per channel: viewing the Npols axis as one wider item makes the
    # channel-reversing copy run over channels instead of over 2-element rows (~6x faster).
    for src, dst in (
        (sub.vis, block.vis),
        (sub.flags, block.flags),
        (sub.nsamples, block.nsamples),
    ):
        _cells(dst[:m, p.channels])[:] = _cells(src[:m])[:, ::step]


_CELL_TYPES = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64, 16: np.complex128}
"""Plain types of 1-16 bytes: numpy copies these much faster than opaque void items."""


def _cells(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """View (rows, chans, pols) as (rows, chans) of one item per (pols) cell."""
    size = a.dtype.itemsize * a.shape[2]
    cell = np.dtype(_CELL_TYPES.get(size, np.dtype((np.void, size))))
    return a.view(cell).reshape(a.shape[:2])


def _metadata(
    layout: SetLayout, loc: object, centre: PhaseCentre, times: npt.NDArray[np.float64]
) -> msio.SetMetadata:
    ref = layout.reference
    from astropy.coordinates import EarthLocation

    assert isinstance(loc, EarthLocation)
    xyz = np.array([loc.x.to_value("m"), loc.y.to_value("m"), loc.z.to_value("m")])
    diameters = (
        ref.antenna_diameters
        if ref.antenna_diameters is not None
        else np.full(ref.antenna_numbers.size, DISH_DIAMETER_M)
    )
    unique = np.unique(times)
    files = ", ".join(p.header.path.name for p in layout.placements)
    history = (
        f"{ref.history}\nConverted by dsa110d from {files}; phased to the meridian at "
        f"the set's mid-time (ICRS J2000)."
    ).strip()
    return msio.SetMetadata(
        telescope_name=ref.telescope_name,
        telescope_xyz=xyz,
        antenna_numbers=ref.antenna_numbers,
        antenna_names=ref.antenna_names,
        antenna_positions=ref.antenna_positions,
        antenna_diameters=diameters,
        freq_hz=layout.freq_hz,
        channel_width_hz=layout.channel_width_hz,
        polarizations=ref.polarizations,
        centre=centre,
        mid_time_jd=float(0.5 * (unique[0] + unique[-1])),
        history=history,
        vis_units=ref.vis_units,
    )


def _existing_result(out: Path, started: float) -> ConvertResult:
    """Describe an MS a previous conversion already published."""
    try:
        with tables.table(str(out), ack=False) as t:
            ant1, ant2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
            n_times = int(np.unique(t.getcol("TIME")).size)
            nchan, npol = t.getcell("DATA", 0).shape if t.nrows() else (0, 0)
            nrows = t.nrows()
        with tables.table(f"{out}::FIELD", ack=False) as field:
            ra, dec = (float(x) for x in field.getcol("PHASE_DIR")[0, 0])
    except RuntimeError as exc:
        raise ConversionError(f"{out}: marked complete but unreadable ({exc})") from exc
    return ConvertResult(
        ms=out,
        reused=True,
        n_rows=nrows,
        n_times=n_times,
        n_baselines=int(np.unique(ant1.astype(np.int64) * 100_000 + ant2).size),
        n_antennas=int(np.union1d(ant1, ant2).size),
        n_channels=int(nchan),
        n_pols=int(npol),
        subbands=(),
        missing_subbands=(),
        dropped_antennas=(),
        phase_ra_rad=ra,
        phase_dec_rad=dec,
        seconds=time.monotonic() - started,
    )
