"""Converting one subband set (UVH5 files, one per subband) into one Measurement Set.

``convert_set`` is what the processor calls in a worker process and what
``dsa110d convert`` runs. It reads every header first and refuses bad input with one line
naming the file; then it streams over blocks of rows: each block reads every subband's
rows once, places the channels in ascending frequency, applies the w-term phase from the
files' own fringe-stopping centre (the meridian at the pointing declination, at each
integration) to the meridian at the set's mid-time (``science.phasing``), conjugates for
the MS convention and writes the block with ``putcol`` at its start row. The MS is built
in a temporary sibling and renamed into place with a completion marker (``science.atomic``).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.coordinates import EarthLocation
from casacore import tables

from dsa110d.errors import ConversionError, DSA110Error
from dsa110d.science.astrometry import use_offline_iers
from dsa110d.science.atomic import TEMP_PREFIX, atomic_dir, is_complete_dir
from dsa110d.science.constants import DISH_DIAMETER_M
from dsa110d.science.conversion import msio
from dsa110d.science.conversion.layout import SetLayout, plan_set
from dsa110d.science.conversion.phasing import (
    Geometry,
    PhaseCentre,
    lsts_for,
    meridian_centre,
    meridian_pointing,
    phased_geometry,
    telescope_location,
)
from dsa110d.science.conversion.streaming import stream_blocks
from dsa110d.science.hdf5.reader import SubbandHeader, read_header
from dsa110d.science.isolate import run_forked

log = logging.getLogger(__name__)

BLOCK_ROWS = 8192  # rows per streamed block: ~100 MB of DATA at 768 channels x 2 pols


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


def convert_set(
    files: Sequence[Path],
    out: Path,
    partial: bool = False,
    block_rows: int = BLOCK_ROWS,
    isolate: bool = True,
) -> ConvertResult:
    """Convert one subband set (its UVH5 files, any order) into the Measurement Set ``out``.

    The MS appears under ``out`` only when complete; an existing complete MS is returned as
    it is (``reused=True``), a half-written one is replaced. ``partial`` converts a set with
    subbands missing (their channels present and flagged). ``block_rows`` bounds memory.
    ``isolate`` writes in a forked child so that casacore aborting on a full disk cannot
    take the caller down, with the blocks prepared by a second forked process beside it
    (turn it off only to trace memory in tests: everything then runs in the caller).

    Raises InputFileError (naming the file) for bad input and ConversionError otherwise.
    """
    started = time.monotonic()
    use_offline_iers()  # a worker must never stall on an IERS download
    out = Path(out)
    if is_complete_dir(out):
        return _existing_result(out, started)
    headers = [read_header(Path(f)) for f in files]
    layout = plan_set(headers, partial)
    geometry, centre = _geometry(layout)
    _check_space(layout, out)

    def write() -> dict[str, Any]:
        try:
            with atomic_dir(out) as temp:
                _write_ms(layout, geometry, centre, temp, block_rows, pipelined=isolate)
        except DSA110Error:
            raise
        except OSError as exc:
            raise ConversionError(f"{out}: {_os_reason(exc)}") from exc
        except RuntimeError as exc:  # casacore reports its I/O failures as RuntimeError
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConversionError(f"{out}: casacore failed ({first})") from exc
        return {}

    if isolate:
        try:
            run_forked(str(out), write)
        except ConversionError:
            _remove_leftovers(out)  # a writer killed outright could not clean up itself
            raise
    else:
        write()
    ref = layout.reference
    kept = layout.keep
    return ConvertResult(
        ms=out,
        reused=False,
        n_rows=layout.nrows,
        n_times=int(np.unique(ref.time[kept]).size),
        n_baselines=int(np.unique(ref.ant1[kept] * 100_000 + ref.ant2[kept]).size),
        n_antennas=int(np.union1d(ref.ant1[kept], ref.ant2[kept]).size),
        n_channels=int(layout.freq_hz.size),
        n_pols=ref.npols,
        subbands=tuple(sorted(h.subband for h in headers if h.subband is not None)),
        missing_subbands=layout.missing,
        dropped_antennas=layout.dropped_antennas,
        phase_ra_rad=centre.ra,
        phase_dec_rad=centre.dec,
        seconds=time.monotonic() - started,
    )


def _remove_leftovers(out: Path) -> None:
    """Temporary siblings of ``out`` a dead writer child could not remove itself (the set's
    lease means no other conversion of the same ``out`` is running)."""
    if out.parent.is_dir():
        for path in out.parent.glob(f"{TEMP_PREFIX}{out.name}.*"):
            shutil.rmtree(path, ignore_errors=True)


def estimated_bytes(layout: SetLayout) -> int:
    """Largest size of the MS on disk: DATA (8 B), WEIGHT_SPECTRUM (4 B, when written) and
    FLAG (1 bit) per visibility, plus ~100 B of per-row columns."""
    cells = layout.nrows * layout.freq_hz.size * layout.reference.npols
    return int(cells * (8 + 4 + 0.125) + layout.nrows * 100)


def _check_space(layout: SetLayout, out: Path) -> None:
    """Refuse up front when the MS cannot fit (a full disk found half-way wastes the work)."""
    parent = out.parent if out.parent.exists() else Path(os.path.abspath(out)).parent
    while not parent.exists():
        parent = parent.parent
    need, free = estimated_bytes(layout), shutil.disk_usage(parent).free
    if need > free:
        raise ConversionError(
            f"{out}: needs {need / 1e9:.2f} GB but only {free / 1e9:.2f} GB is free on {parent}"
        )


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device while writing the Measurement Set"
    return f"{exc.strerror or exc} ({exc.filename or 'output'})"


def _geometry(layout: SetLayout) -> tuple[Geometry, PhaseCentre]:
    """The phase centre and every kept row's uvw towards it (in the caller's process, so a
    worker loads the astropy IERS tables once, not once per set)."""
    ref = layout.reference
    keep = layout.keep
    times = ref.time[keep]
    loc = _location(ref)
    lsts = ref.lst[keep] if ref.lst is not None else lsts_for(times, loc)
    centre = meridian_centre(times, loc, ref.phase_center_dec)
    geometry = phased_geometry(
        times_jd=times,
        lsts=lsts,
        ant1=ref.ant1[keep],
        ant2=ref.ant2[keep],
        antenna_numbers=ref.antenna_numbers,
        antenna_positions=ref.antenna_positions,
        location=loc,
        centre=centre,
        pointing_dec=ref.phase_center_dec,
    )
    return geometry, centre


def _location(ref: SubbandHeader) -> EarthLocation:
    return telescope_location(ref.latitude_deg, ref.longitude_deg, ref.altitude_m)


def _write_ms(
    layout: SetLayout,
    geometry: Geometry,
    centre: PhaseCentre,
    path: Path,
    block_rows: int,
    pipelined: bool,
) -> None:
    """Write the whole MS into ``path`` (a fresh directory)."""
    ref = layout.reference
    keep = layout.keep
    times = ref.time[keep]
    shape = msio.MainShape(nrows=layout.nrows, nchan=layout.freq_hz.size, npol=ref.npols)
    shutil.rmtree(path)  # casacore creates the MS directory itself
    table = msio.create_main(path, shape)
    ant1, ant2 = ref.ant1[keep], ref.ant2[keep]
    flip = _flipped(ant1, ant2)
    ms_uvw = -geometry.uvw  # the MS convention pyuvdata writes (flip_conj): -uvw, conj(data)
    if flip is not None:
        ms_uvw[flip] *= -1
        ant1, ant2 = np.where(flip, ant2, ant1), np.where(flip, ant1, ant2)
    try:
        _write_metadata_columns(table, layout, times, ant1, ant2, ms_uvw)
        # The files are fringe-stopped on the meridian at the pointing dec: phase by the
        # w difference from there (not from w = 0, which holds only at the zenith).
        delta_w = geometry.uvw[:, 2] - geometry.drift_w
        stream_blocks(table, layout, delta_w, block_rows, flip, pipelined)
        msio.write_main_keywords(table, ref.vis_units)
    finally:
        table.close()
    msio.write_subtables(path, _metadata(layout, _location(ref), centre, times))


def _flipped(
    ant1: npt.NDArray[np.int64], ant2: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_] | None:
    """Rows to conjugate so that every baseline is ant1 <= ant2, as pyuvdata's write_ms does
    when the conjugation is mixed (None when it is not: the usual case)."""
    if np.any(ant1 < ant2) and np.any(ant1 > ant2):
        return ant1 > ant2
    return None


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


def _metadata(
    layout: SetLayout, loc: EarthLocation, centre: PhaseCentre, times: npt.NDArray[np.float64]
) -> msio.SetMetadata:
    ref = layout.reference
    xyz = np.array([loc.x.to_value("m"), loc.y.to_value("m"), loc.z.to_value("m")])
    diameters = (
        ref.antenna_diameters
        if ref.antenna_diameters is not None
        else np.full(ref.antenna_numbers.size, DISH_DIAMETER_M)
    )
    unique = np.unique(times)
    files = ", ".join(p.header.path.name for p in layout.placements)
    history = (
        f"{ref.history}\nConverted by dsa110d from {files}; phased to the apparent meridian "
        f"at the set's mid-time, stated as ICRS J2000."
    ).strip()
    point_t, point_ra, point_dec = meridian_pointing(times, loc, ref.phase_center_dec)
    interval = layout.reference.integration_time[layout.keep]
    point_interval = interval[np.unique(times, return_index=True)[1]]
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
        pointing=msio.Pointing(point_t, point_interval, point_ra, point_dec),
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
