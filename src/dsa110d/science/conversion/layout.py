"""Planning a subband set: do the files belong together, and where does each one go?

``plan_set`` checks the headers against each other (polarisations, antennas, telescope,
channel grid, baselines and times) and decides the set's shape: the rows kept (antennas
absent from any subband are dropped everywhere), the ascending channel grid, each file's
channels in it, and for a partial set the missing subbands' channels (present, flagged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dsa110d.errors import ConversionError
from dsa110d.science.constants import CHANNEL_WIDTH_HZ, SECONDS_PER_DAY
from dsa110d.science.constants import N_SUBBANDS as SUBBANDS_PER_SET
from dsa110d.science.hdf5.reader import SubbandHeader

TIME_TOL_DAYS = 1e-3 / SECONDS_PER_DAY  # 1 ms: subbands of one set share their integration times
FREQ_TOL_HZ = 1.0  # channel centres agree with the grid to well under a channel


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
    width = _width(ref)
    if h.nfreqs != ref.nfreqs or not np.allclose(np.abs(h.channel_width), width, rtol=0, atol=1e-3):
        raise h.fault(
            f"{h.nfreqs} channels of {np.abs(h.channel_width[0])} Hz, expected "
            f"{ref.nfreqs} of {width} Hz like {ref.path.name}"
        )


def _width(h: SubbandHeader) -> float:
    """The file's channel width (Hz): the real correlator's CHANNEL_WIDTH_HZ, or a multiple
    of it in the simulator's reduced scales; uniform across the file."""
    width = float(np.abs(h.channel_width[0]))
    steps = np.abs(np.diff(h.freq))
    if (
        width <= 0
        or not np.allclose(np.abs(h.channel_width), width, rtol=0, atol=1e-3)
        or (steps.size and not np.allclose(steps, width, rtol=0, atol=FREQ_TOL_HZ))
    ):
        raise h.fault("channels are not evenly spaced at their channel_width")
    if abs(width / CHANNEL_WIDTH_HZ - round(width / CHANNEL_WIDTH_HZ)) > 1e-9:
        raise h.fault(f"channel width {width} Hz is not a multiple of {CHANNEL_WIDTH_HZ} Hz")
    return width


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
    width = _width(headers[0])
    lows = np.array([h.freq.min() for h in headers])
    order = np.argsort(lows)
    span = nchan * width
    base = float(lows[order[0]])
    if partial:
        base = _band_bottom(headers, base, span)
    slot_index = np.rint((lows - base) / span).astype(int)
    for h, s, low in zip(headers, slot_index, lows, strict=True):
        if abs(low - (base + s * span)) > FREQ_TOL_HZ:
            raise h.fault(f"channels from {low} Hz are off the set's {width} Hz channel grid")
    seen: dict[int, SubbandHeader] = {}
    for h, s in zip(headers, slot_index.tolist(), strict=True):
        if s in seen:
            raise h.fault(f"frequencies overlap those of {seen[s].path}")
        seen[s] = h
    nslots = SUBBANDS_PER_SET if partial else int(slot_index.max()) + 1
    if not partial and nslots != len(headers):
        raise ConversionError(
            f"{headers[0].path.parent}: subbands missing from the frequency coverage; "
            "convert with partial=True to flag them"
        )
    if partial and int(slot_index.max()) >= nslots:
        raise headers[int(order[-1])].fault("frequencies lie beyond the 16-subband band")
    grid: npt.NDArray[np.float64] = base + np.arange(nslots * nchan, dtype=np.float64) * width
    for h, s in zip(headers, slot_index, strict=True):
        exact = np.sort(h.freq)
        grid[s * nchan : (s + 1) * nchan] = exact  # keep the files' own values bit for bit
    widths = np.full(grid.size, width, dtype=np.float64)
    slots: list[slice] = [slice(int(s) * nchan, (int(s) + 1) * nchan) for s in slot_index]
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
