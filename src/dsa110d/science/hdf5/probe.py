"""Whether a file is a whole UVH5 subband: a quick read-only look (``probe_subband``).

Any fault (zero bytes, truncated, corrupt, wrong shape, unreadable, a directory, values out of
their physical range, a declared size the file cannot hold) raises ``InputFileError`` with one
line naming the file and the reason.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias

import h5py
import numpy as np
from numpy.typing import NDArray

from dsa110d.errors import InputFileError, describe
from dsa110d.science.constants import (
    DEFLATE_MAX_RATIO,
    ERA_END_JD,
    ERA_START_JD,
    MAX_INTEGRATION_S,
    NAME_TIME_FORMAT,
    NAME_TIME_TOLERANCE_S,
    RADIO_FREQ_MAX_HZ,
    RADIO_FREQ_MIN_HZ,
)
from dsa110d.science.hdf5.schema import DATA_DATASETS, PROBE_HEADER
from dsa110d.science.hdf5.sets import SubbandFile
from dsa110d.science.hdf5.subbands import (
    SubbandName,
    parse_subband_name,
    set_id_from_time,
    start_unix,
)


@dataclass(frozen=True)
class SubbandHeader:
    """What :func:`_read_probe` read and checked of a file's header."""

    time0_jd: float
    """``Header/time_array[0]``: the bit-identical key of the set."""
    integration_s: float
    """``Header/integration_time[0]``, seconds."""
    n_blts: int
    n_freqs: int
    n_pols: int
    n_ants_data: int
    freq_min_hz: float
    freq_max_hz: float
    phase_center_dec_rad: float | None


@dataclass(frozen=True, kw_only=True)
class SubbandProbe(SubbandHeader):
    """What a quick read-only look at a complete subband file found: its header, and the
    file's path, size and name."""

    path: Path
    size_bytes: int
    name_time: datetime | None
    subband: int | None

    @property
    def set_id(self) -> str:
        return set_id_from_time(self.time0_jd, self.integration_s)

    def as_file(self) -> SubbandFile | None:
        """This probe as a grouping member (None when the name is not a subband name)."""
        if self.name_time is None or self.subband is None:
            return None
        return SubbandFile(
            str(self.path), self.name_time, self.subband, self.time0_jd, self.integration_s
        )


def _fail(path: Path, reason: str) -> InputFileError:
    return InputFileError(f"{path}: {reason}")


def _check_openable(path: Path) -> int:
    """The file's size; raises unless it is a non-empty regular file we may read."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except OSError as exc:
        raise _fail(path, f"cannot stat: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise _fail(path, "is a directory, not a subband file")
    if not stat.S_ISREG(info.st_mode):
        raise _fail(path, "is not a regular file (FIFO, socket or device)")
    if info.st_size == 0:
        raise _fail(path, "zero-byte file")
    if not os.access(path, os.R_OK):
        raise _fail(path, "no read permission")
    return info.st_size


# The watcher probes every file, and h5py's per-access overhead (not I/O) was most of a
# probe's cost: the file is opened and its datasets read through the low-level API, each
# dataset opened once by its full path (no group objects, no listing of the groups' members:
# those are looked at only to name what is missing when an open fails).
Dataset: TypeAlias = Any
"""An ``h5py.h5d.DatasetID`` (h5py's low-level API is untyped)."""
_HEADER_PATHS = {n: f"Header/{n}".encode() for n in PROBE_HEADER}
_DATA_PATHS = {n: f"Data/{n}".encode() for n in DATA_DATASETS}
_DEC_PATH = b"Header/extra_keywords/phase_center_dec"
_file_access: list[Any] = []
"""The probe's file access property list (made on first use, once per process)."""


def _read_only_access() -> Any:
    """File access as ``h5py.File(path, "r", locking=False)`` sets it up: earliest..latest
    format versions, and no file lock (a probe must not block, or be blocked by, a writer)."""
    if not _file_access:
        plist = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        plist.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)
        plist.set_file_locking(False, ignore_when_disabled=False)
        _file_access.append(plist)
    return _file_access[0]


def _read(
    path: Path, ds: Dataset, name: str, dtype: Any, limit: int, first: int | None = None
) -> NDArray[Any]:
    """The whole dataset, or only row ``first`` (of its first axis), converted to dtype.

    What would be allocated is bounded by ``limit`` (the file's size) before anything is: a
    hostile header may declare a dataset of petabytes (stored as unallocated chunks)."""
    shape = ds.shape
    if shape is None:
        raise _fail(path, f"{name} holds no data (null dataspace)")
    if first is not None and not shape:
        raise _fail(path, f"{name} is a scalar, not an array")
    row = shape if first is None else (1, *shape[1:])
    need = math.prod(row) * np.dtype(dtype).itemsize  # Python ints: no overflow
    if need > limit:
        raise _fail(path, f"{name} declares {need} bytes to read, more than the file's {limit}")
    out: NDArray[Any] = np.empty(row, dtype=dtype)
    if first is None:
        ds.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
        return out
    file_space = ds.get_space()
    file_space.select_hyperslab((first, *([0] * (len(row) - 1))), row)
    ds.read(h5py.h5s.create_simple(row), file_space, out)
    return out


def _number(path: Path, ds: Dataset, name: str, dtype: type, limit: int) -> Any:
    values = _read(path, ds, name, dtype, limit).reshape(-1)
    if values.size != 1:
        raise _fail(path, f"{name} holds {values.size} values, not one")
    return values[0]


def _missing(path: Path, fid: Any) -> InputFileError | None:
    """Why a required dataset could not be opened (no group, or the missing names), or None."""
    handle = h5py.File(fid)
    header, data = handle.get("Header"), handle.get("Data")
    if not isinstance(header, h5py.Group) or not isinstance(data, h5py.Group):
        return _fail(path, "not a UVH5 file (no Header or Data group)")
    missing = [n for n in PROBE_HEADER if not isinstance(header.get(n), h5py.Dataset)]
    missing += [f"Data/{n}" for n in DATA_DATASETS if not isinstance(data.get(n), h5py.Dataset)]
    return _fail(path, f"missing {', '.join(missing)}") if missing else None


def _read_probe(path: Path, fid: Any, size: int) -> SubbandHeader:
    try:
        h = {n: h5py.h5d.open(fid, p) for n, p in _HEADER_PATHS.items()}
        d = {n: h5py.h5d.open(fid, p) for n, p in _DATA_PATHS.items()}
    except KeyError:
        raise _missing(path, fid) or _fail(path, "a required dataset cannot be opened") from None
    _check_own(path, fid, {f"Header/{n}": ds for n, ds in h.items()})
    _check_own(path, fid, {f"Data/{n}": ds for n, ds in d.items()})
    n_blts = int(_number(path, h["Nblts"], "Header/Nblts", np.int64, size))
    n_freqs = int(_number(path, h["Nfreqs"], "Header/Nfreqs", np.int64, size))
    n_pols = int(_number(path, h["Npols"], "Header/Npols", np.int64, size))
    _check_shapes(path, h, d, n_blts, n_freqs, n_pols)
    _check_declared_data(path, d, size)
    freq = _read(path, h["freq_array"], "Header/freq_array", np.float64, size)
    time0 = float(_read(path, h["time_array"], "Header/time_array", np.float64, size, 0)[0])
    integration = float(
        _read(path, h["integration_time"], "Header/integration_time", np.float64, size, 0)[0]
    )
    n_ants = int(_number(path, h["Nants_data"], "Header/Nants_data", np.int64, size))
    try:
        dec_ds = h5py.h5d.open(fid, _DEC_PATH)
    except KeyError:  # optional
        dec = None
    else:
        name = "Header/extra_keywords/phase_center_dec"
        _check_own(path, fid, {name: dec_ds})
        dec = float(_number(path, dec_ds, name, np.float64, size))
    _check_values(path, time0, integration, freq, dec, n_ants)
    # Touch the last row of the visibilities: a truncated file fails here, not later.
    visdata = d["visdata"]
    if visdata.dtype.kind not in _NUMERIC_KINDS:
        raise _fail(path, f"Data/visdata is not numeric ({visdata.dtype})")
    _read(path, visdata, "Data/visdata", visdata.dtype, size, first=n_blts - 1)
    return SubbandHeader(
        time0_jd=time0,
        integration_s=integration,
        n_blts=n_blts,
        n_freqs=n_freqs,
        n_pols=n_pols,
        n_ants_data=n_ants,
        freq_min_hz=float(freq.min()),
        freq_max_hz=float(freq.max()),
        phase_center_dec_rad=dec,
    )


def _check_own(path: Path, fid: Any, datasets: dict[str, Dataset]) -> None:
    """Every dataset is in the file itself: an external link would have the watcher (and the
    converter after it) read another file, anywhere, as if it were this one."""
    for name, ds in datasets.items():
        if ds.fileno != fid.fileno:
            raise _fail(path, f"{name} is an external link (a subband holds its own datasets)")


_NUMERIC_KINDS = "biufc"
"""numpy dtype kinds of numbers (bool, integers, floats, complex)."""


def _check_declared_data(path: Path, data: dict[str, Dataset], size: int) -> None:
    """No ``Data/`` dataset declares more bytes than the file could hold, even compressed
    (the shapes were checked against the header's counts, so this bounds those too)."""
    bound = size * DEFLATE_MAX_RATIO
    for name, ds in data.items():
        declared = math.prod(ds.shape) * ds.dtype.itemsize
        if declared > bound:
            raise _fail(
                path,
                f"Data/{name} declares {declared} bytes, more than a {size}-byte file can hold",
            )


def _check_values(
    path: Path,
    time0: float,
    integration: float,
    freq: NDArray[np.float64],
    dec: float | None,
    n_ants: int,
) -> None:
    """Physical ranges: a value outside them is a header fault, not something to compute with."""
    if not ERA_START_JD <= time0 <= ERA_END_JD:  # False for NaN too
        raise _fail(
            path,
            f"Header/time_array[0] = {time0!r} is not a time of the instrument's era "
            f"(JD {ERA_START_JD}..{ERA_END_JD})",
        )
    if not 0.0 < integration <= MAX_INTEGRATION_S:
        raise _fail(
            path,
            f"Header/integration_time[0] = {integration!r} s is not in "
            f"(0, {MAX_INTEGRATION_S:g}] s",
        )
    outside = ~((freq >= RADIO_FREQ_MIN_HZ) & (freq <= RADIO_FREQ_MAX_HZ))  # NaN too
    if outside.any():
        bad = float(freq[outside][0])
        raise _fail(
            path,
            f"Header/freq_array holds {bad!r} Hz, outside the radio band "
            f"({RADIO_FREQ_MIN_HZ:g}..{RADIO_FREQ_MAX_HZ:g} Hz)",
        )
    if dec is not None and not abs(dec) <= math.pi / 2:
        raise _fail(
            path,
            f"Header/extra_keywords/phase_center_dec = {dec!r} rad is not a declination "
            "(finite, -pi/2..pi/2)",
        )
    if n_ants < 1:
        raise _fail(path, f"Header/Nants_data = {n_ants} (no antennas)")


def _check_name_time(path: Path, name: SubbandName, time0: float, integration: float) -> None:
    """The name's timestamp agrees with the file's own start within NAME_TIME_TOLERANCE_S."""
    delta = name.timestamp.timestamp() - start_unix(time0, integration)
    if not abs(delta) <= NAME_TIME_TOLERANCE_S:
        raise _fail(
            path,
            f"the name's time {name.timestamp.strftime(NAME_TIME_FORMAT)} is {delta:+.0f} s "
            f"from the file's own start (Header/time_array[0] = {time0!r}), more than "
            f"{NAME_TIME_TOLERANCE_S:g} s",
        )


def _check_shapes(
    path: Path,
    header: dict[str, Dataset],
    data: dict[str, Dataset],
    n_blts: int,
    n_freqs: int,
    n_pols: int,
) -> None:
    if min(n_blts, n_freqs, n_pols) < 1:
        raise _fail(path, f"empty data (Nblts={n_blts}, Nfreqs={n_freqs}, Npols={n_pols})")
    for name in ("time_array", "integration_time", "ant_1_array", "ant_2_array"):
        shape = header[name].shape
        if shape != (n_blts,):
            raise _fail(path, f"wrong shape: Header/{name} {shape} != ({n_blts},)")
    if (shape := header["uvw_array"].shape) != (n_blts, 3):
        raise _fail(path, f"wrong shape: Header/uvw_array {shape}")
    if int(np.prod(shape := header["freq_array"].shape)) != n_freqs:
        raise _fail(path, f"wrong shape: Header/freq_array {shape}")
    allowed = {(n_blts, 1, n_freqs, n_pols), (n_blts, n_freqs, n_pols)}
    for name in DATA_DATASETS:
        if (shape := data[name].shape) not in allowed:
            raise _fail(
                path,
                f"wrong shape: Data/{name} {shape}, expected ({n_blts}, 1, {n_freqs}, {n_pols})",
            )


def probe_subband(
    path: str | os.PathLike[str], name: str | os.PathLike[str] | None = None
) -> SubbandProbe:
    """Open ``path`` read-only and check it is a whole subband file; never modifies it.

    ``name``: the path the file arrived under, when ``path`` is where a symlink led (default
    ``path``); its subband name's timestamp must agree with the file's own time.
    Raises ``InputFileError`` (one line, naming the file) when it is missing, a directory or
    other non-regular file, zero bytes, unreadable, not HDF5, truncated or corrupt, missing a
    header dataset, shaped inconsistently, declaring more data than the file could hold, or
    holding values outside their physical range (time outside the instrument's era,
    non-finite or impossible declination, frequencies outside the radio band).
    """
    path = Path(path)
    size = _check_openable(path)
    try:
        fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY, fapl=_read_only_access())
    except PermissionError:
        raise _fail(path, "no read permission") from None
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise _fail(path, f"truncated or corrupt HDF5 ({_short(exc)})") from None
    try:
        fields = _read_probe(path, fid, size)
    except InputFileError:
        raise
    except PermissionError:
        raise _fail(path, "no read permission") from None
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise _fail(path, f"truncated or corrupt HDF5 ({_short(exc)})") from None
    except Exception as exc:  # MemoryError, OverflowError...: this file's fault, one line
        raise _fail(path, f"unreadable header ({describe(exc)})") from None
    finally:  # as h5py.File.close: every object of the file, then the file
        fid._close_open_objects(h5py.h5f.OBJ_LOCAL | ~h5py.h5f.OBJ_FILE)
        fid.close()
    parsed = parse_subband_name(path if name is None else name)
    if parsed is not None:
        _check_name_time(path, parsed, fields.time0_jd, fields.integration_s)
    return SubbandProbe(
        path=path,
        size_bytes=size,
        name_time=parsed.timestamp if parsed else None,
        subband=parsed.subband if parsed else None,
        **vars(fields),
    )


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
