"""Reading DSA-110 subband files (UVH5) with h5py: validated headers and row blocks of data.

A subband file holds ``Header/*`` (UVH5 metadata) and ``Data/visdata`` (complex64),
``Data/flags`` (bool) and ``Data/nsamples`` (float32), each shaped (Nblts, 1, Nfreqs, Npols)
(or (Nblts, Nfreqs, Npols) in newer UVH5). Every fault is an :class:`InputFileError` whose
message is one line naming the file and what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
from h5py import h5s

from dsa110d.errors import InputFileError
from dsa110d.science.hdf5.schema import DATA_DATASETS, READ_HEADER

SUBBAND_NAME = re.compile(r"_sb([0-9]{2})(?:_incomplete)?\.hdf5\Z", re.ASCII)
"""The subband index in a file name (DESIGN.md section 2): ASCII digits only (``\\d`` takes
any Unicode digit, which ``int`` reads), at the very end of the name."""


FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SubbandHeader:
    """The metadata of one subband file, as read and checked."""

    path: Path
    subband: int | None
    nblts: int
    nfreqs: int
    npols: int
    has_spw_axis: bool
    time: FloatArray  # JD (UTC), per row
    lst: FloatArray | None  # rad, per row, when the file stores it
    integration_time: FloatArray  # s, per row
    ant1: IntArray
    ant2: IntArray
    freq: FloatArray  # Hz, per channel, as stored (descending on DSA-110)
    channel_width: FloatArray  # Hz, per channel
    polarizations: IntArray
    antenna_numbers: IntArray
    antenna_names: tuple[str, ...]
    antenna_positions: FloatArray  # m, ECEF relative to the array centre
    antenna_diameters: FloatArray | None  # m
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    telescope_name: str
    phase_center_dec: float  # rad
    vis_units: str
    history: str

    def fault(self, what: str) -> InputFileError:
        """A one-line error about this file."""
        return InputFileError(f"{self.path}: {what}")


def subband_index(path: Path) -> int | None:
    """The ``sbNN`` index in a file name, or None when the name carries none."""
    match = SUBBAND_NAME.search(path.name)
    return int(match.group(1)) if match else None


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value.item())
    return str(value)


def _floats(dset: h5py.Dataset) -> FloatArray:
    return np.asarray(dset[()], dtype=np.float64).reshape(-1)


def _ints(dset: h5py.Dataset) -> IntArray:
    return np.asarray(dset[()], dtype=np.int64).reshape(-1)


def read_header(path: Path) -> SubbandHeader:
    """Read and check one subband file's header and data shapes (no visibilities)."""
    try:
        with h5py.File(path, "r") as f:
            return _read_header(path, f)
    except InputFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise InputFileError(f"{path}: unreadable UVH5 file ({exc})") from exc


def _antennas(
    path: Path, h: h5py.Group, ant1: IntArray, ant2: IntArray
) -> tuple[IntArray, tuple[str, ...], FloatArray]:
    """The antenna numbers, names and positions, checked against each other and the baselines."""
    numbers = _ints(h["antenna_numbers"])
    names = tuple(_text(n) for n in np.asarray(h["antenna_names"][()]).reshape(-1))
    positions = np.asarray(h["antenna_positions"][()], dtype=float)
    if positions.shape != (numbers.size, 3) or len(names) != numbers.size:
        raise InputFileError(
            f"{path}: antenna_positions {positions.shape} or antenna_names ({len(names)}) "
            f"disagree with {numbers.size} antenna_numbers"
        )
    missing = np.setdiff1d(np.union1d(ant1, ant2), numbers)
    if missing.size:
        raise InputFileError(
            f"{path}: baselines use antennas {missing.tolist()} not in antenna_numbers"
        )
    return numbers, names, positions


def _read_header(path: Path, f: h5py.File) -> SubbandHeader:
    if "Header" not in f or "Data" not in f:
        raise InputFileError(f"{path}: not a UVH5 file (no Header or Data group)")
    h = f["Header"]
    for key in READ_HEADER:
        if key not in h:
            raise InputFileError(f"{path}: missing header key Header/{key}")
    nblts, nfreqs, npols = (int(h[k][()]) for k in ("Nblts", "Nfreqs", "Npols"))
    per_row = {k: _floats(h[k]) for k in ("time_array", "integration_time")}
    ant1 = _ints(h["ant_1_array"])
    ant2 = _ints(h["ant_2_array"])
    lst = _floats(h["lst_array"]) if "lst_array" in h else None
    rows = {**per_row, "ant_1_array": ant1, "ant_2_array": ant2}
    for key, arr in (*rows.items(), *([("lst_array", lst)] if lst is not None else [])):
        if arr.size != nblts:
            raise InputFileError(f"{path}: Header/{key} has {arr.size} entries, Nblts is {nblts}")
    freq = _floats(h["freq_array"])
    width = _floats(h["channel_width"])
    if width.size == 1:
        width = np.full(nfreqs, width[0])
    if freq.size != nfreqs or width.size != nfreqs:
        raise InputFileError(
            f"{path}: Header/freq_array has {freq.size} channels, Nfreqs is {nfreqs}"
        )
    pols = _ints(h["polarization_array"])
    if pols.size != npols:
        raise InputFileError(
            f"{path}: Header/polarization_array has {pols.size} entries, Npols is {npols}"
        )
    numbers, names, positions = _antennas(path, h, ant1, ant2)
    diameters = _floats(h["antenna_diameters"]) if "antenna_diameters" in h else None
    has_spw_axis = _check_data_shapes(path, f["Data"], nblts, nfreqs, npols)
    return SubbandHeader(
        path=path,
        subband=subband_index(path),
        nblts=nblts,
        nfreqs=nfreqs,
        npols=npols,
        has_spw_axis=has_spw_axis,
        time=per_row["time_array"],
        lst=lst,
        integration_time=per_row["integration_time"],
        ant1=ant1,
        ant2=ant2,
        freq=freq,
        channel_width=width,
        polarizations=pols,
        antenna_numbers=numbers,
        antenna_names=names,
        antenna_positions=positions,
        antenna_diameters=diameters,
        latitude_deg=float(h["latitude"][()]),
        longitude_deg=float(h["longitude"][()]),
        altitude_m=float(h["altitude"][()]),
        telescope_name=_text(h["telescope_name"][()]),
        phase_center_dec=float(h["extra_keywords/phase_center_dec"][()]),
        vis_units=_text(h["vis_units"][()]) if "vis_units" in h else "uncalib",
        history=_text(h["history"][()]) if "history" in h else "",
    )


def _check_data_shapes(path: Path, data: h5py.Group, nblts: int, nfreqs: int, npols: int) -> bool:
    """Check visdata/flags/nsamples shapes; True when they carry the old length-1 spw axis."""
    with_spw, without_spw = (nblts, 1, nfreqs, npols), (nblts, nfreqs, npols)
    for key in DATA_DATASETS:
        if key not in data:
            raise InputFileError(f"{path}: missing dataset Data/{key}")
        shape = data[key].shape
        if shape not in (with_spw, without_spw):
            raise InputFileError(
                f"{path}: Data/{key} has shape {shape}, expected {with_spw} from the header"
            )
    shapes = {data[key].shape for key in DATA_DATASETS}
    if len(shapes) != 1:
        raise InputFileError(f"{path}: Data/visdata, flags and nsamples have different shapes")
    return len(shapes.pop()) == 4


@dataclass
class RowBuffers:
    """Reusable (rows, Nfreqs, Npols) arrays one subband's block of rows is read into."""

    vis: npt.NDArray[np.complex64]
    flags: npt.NDArray[np.bool_]
    nsamples: npt.NDArray[np.float32]

    @classmethod
    def allocate(cls, nrows: int, nfreqs: int, npols: int) -> RowBuffers:
        shape = (nrows, nfreqs, npols)
        return cls(
            vis=np.empty(shape, np.complex64),
            flags=np.empty(shape, bool),
            nsamples=np.empty(shape, np.float32),
        )


def read_rows(f: h5py.File, header: SubbandHeader, rows: slice | IntArray, out: RowBuffers) -> int:
    """Read visdata, flags and nsamples of the chosen rows into ``out``; returns the count.

    A slice of rows goes straight into the buffers (``read_direct``, no temporaries); an
    index array (rows left after dropping antennas) takes h5py's fancy-index path.
    """
    data = f["Data"]
    if isinstance(rows, slice):
        n = int(rows.stop - rows.start)
        source = np.s_[rows.start : rows.stop, 0] if header.has_spw_axis else np.s_[rows]
        targets = (("visdata", out.vis), ("flags", out.flags), ("nsamples", out.nsamples))
        for key, buf in targets:
            dset = data[key]
            if dset.dtype == buf.dtype:
                _read_slab(dset, int(rows.start), n, buf)
            else:
                buf[:n] = _as(dset[source], buf.dtype)
        return n
    sel = (rows, 0) if header.has_spw_axis else (rows,)
    n = int(rows.size)
    out.vis[:n] = _as(data["visdata"][sel], out.vis.dtype)
    out.flags[:n] = data["flags"][sel]
    out.nsamples[:n] = data["nsamples"][sel]
    return n


def _read_slab(dset: h5py.Dataset, start: int, n: int, buf: npt.NDArray[Any]) -> None:
    """Rows [start, start + n) of ``dset`` into ``buf[:n]`` (same type), straight from HDF5:
    the same read as ``read_direct`` without its per-call selection parsing (~4x the cost
    of this at a block's ~50 reads of one subband each)."""
    file_space = dset.id.get_space()
    file_space.select_hyperslab((start,) + (0,) * (dset.ndim - 1), (n, *dset.shape[1:]))
    memory_space = h5s.create_simple(buf.shape)
    memory_space.select_hyperslab((0,) * buf.ndim, (n, *buf.shape[1:]))
    dset.id.read(memory_space, file_space, buf)


def _as(values: npt.NDArray[Any], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """Convert, including integer visibilities stored as a compound (r, i)."""
    if values.dtype.names:
        vis: npt.NDArray[Any] = values["r"].astype(np.float32) + 1j * values["i"].astype(np.float32)
        return vis
    return values.astype(dtype, copy=False)
