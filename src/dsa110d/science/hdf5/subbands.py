"""Subband files: their names, whether a file is a complete subband, and grouping into sets.

Pure functions for the HDF5 watcher (DESIGN section 2):

- ``parse_subband_name`` / ``ignore_reason``: which names are subbands, which to skip
  (``*_incomplete.hdf5`` being written, rsync temporaries ``.NAME.XXXXXX``, names not
  matching the configured glob);
- ``probe_subband``: open a file read-only and check it is a whole UVH5 subband; any fault
  (zero bytes, truncated, corrupt, wrong shape, unreadable, a directory) raises
  ``InputFileError`` with one line naming the file and the reason;
- ``group_subbands`` / ``set_id_from_time``: subbands join a set by their bit-identical
  ``Header/time_array[0]``; files without a readable time fall back to their name timestamp
  within a tolerance. A set's id is derived from ``time_array[0]`` alone (the UTC second it
  falls in), so every watcher, whatever order it sees files in, derives the same id.
"""

from __future__ import annotations

import fnmatch
import functools
import math
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
    SECONDS_PER_DAY,
    SUBBAND_NAME_REGEX,
    UNIX_EPOCH_JD,
)
from dsa110d.science.hdf5.schema import DATA_DATASETS, PROBE_HEADER

SUBBAND_NAME = re.compile(SUBBAND_NAME_REGEX, re.ASCII)
INCOMPLETE_SUFFIX = "_incomplete.hdf5"
"""Suffix of a subband still being written by the correlator (renamed when done)."""
RSYNC_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9]{6}$")
"""rsync's temporary name for a file in transfer: ``.NAME.XXXXXX``."""
DEFAULT_FILE_PATTERN = "20*T*.hdf5"
"""The watcher's default ``file_pattern`` glob (config ``services.hdf5_watcher``)."""
DEFAULT_GROUP_TOLERANCE_SEC = 60.0
"""Name timestamps of one set's subbands differ by up to this, seconds (real code: 60-120)."""
NAMES_CACHED = 65536
"""File names whose parse is remembered (the watcher looks at each name several times)."""
"""``Data/`` datasets, each of shape (Nblts, 1, Nfreqs, Npols) (or without the spw axis)."""


@dataclass(frozen=True)
class SubbandName:
    """What a subband file name says."""

    timestamp: datetime
    """The correlator node's wall-clock time in the name, UTC."""
    subband: int


def subband_file_name(moment: datetime, subband: int, *, incomplete: bool = False) -> str:
    """``YYYY-MM-DDTHH:MM:SS_sbNN.hdf5`` (or ``..._sbNN_incomplete.hdf5``)."""
    stem = f"{moment.strftime(NAME_TIME_FORMAT)}_sb{subband:02d}"
    return stem + (INCOMPLETE_SUFFIX if incomplete else ".hdf5")


def parse_subband_name(name: str | os.PathLike[str]) -> SubbandName | None:
    """The timestamp and subband of a subband file name, or None if it is not one."""
    return _parse_base(os.path.basename(os.fspath(name)))


@functools.lru_cache(maxsize=NAMES_CACHED)
def _parse_base(base: str) -> SubbandName | None:
    match = SUBBAND_NAME.fullmatch(base)
    if match is None:
        return None
    try:
        moment = datetime.strptime(match.group(1), NAME_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None  # e.g. 2026-13-45T99:00:00 matches the regex but is no time
    return SubbandName(moment, int(match.group(2)))


def ignore_reason(name: str | os.PathLike[str], pattern: str = DEFAULT_FILE_PATTERN) -> str | None:
    """Why the watcher should skip this name, or None when it is a subband file to look at."""
    base = os.path.basename(os.fspath(name))
    if base.endswith(INCOMPLETE_SUFFIX):
        return "still being written (_incomplete)"
    if RSYNC_TEMPORARY.match(base):
        return "rsync temporary"
    if not fnmatch.fnmatchcase(base, pattern):
        return f"does not match {pattern}"
    if parse_subband_name(base) is None:
        return "not a subband file name (YYYY-MM-DDTHH:MM:SS_sbNN.hdf5)"
    return None


def set_id_from_time(time0_jd: float, integration_s: float = 0.0) -> str:
    """The set id for ``Header/time_array[0]`` (the centre of the first integration) and
    ``Header/integration_time[0]``: the set's start, rounded to the second, in ISO format.

    A pure function of header values shared bit for bit by all subbands of a set, so any
    watcher, seeing the files in any order, derives the same id.
    """
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
        seconds=round(start_unix(time0_jd, integration_s))
    )
    return moment.strftime(NAME_TIME_FORMAT)


def start_unix(time0_jd: float, integration_s: float) -> float:
    """A set's start in Unix seconds from the centre of its first integration."""
    return (time0_jd - UNIX_EPOCH_JD) * SECONDS_PER_DAY - integration_s / 2.0


@dataclass(frozen=True)
class SubbandProbe:
    """What a quick read-only look at a complete subband file found."""

    path: Path
    size_bytes: int
    name_time: datetime | None
    subband: int | None
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


def _read_probe(path: Path, fid: Any, size: int) -> dict[str, Any]:
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
    return {
        "time0_jd": time0,
        "integration_s": integration,
        "n_blts": n_blts,
        "n_freqs": n_freqs,
        "n_pols": n_pols,
        "n_ants_data": n_ants,
        "freq_min_hz": float(freq.min()),
        "freq_max_hz": float(freq.max()),
        "phase_center_dec_rad": dec,
    }


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
        _check_name_time(path, parsed, fields["time0_jd"], fields["integration_s"])
    return SubbandProbe(
        path=path,
        size_bytes=size,
        name_time=parsed.timestamp if parsed else None,
        subband=parsed.subband if parsed else None,
        **fields,
    )


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


# --- Grouping ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SubbandFile:
    """One subband file as the grouping sees it."""

    path: str
    name_time: datetime
    subband: int
    time0_jd: float | None = None
    """``Header/time_array[0]`` when the file could be read, else None."""
    integration_s: float = 0.0
    """``Header/integration_time[0]`` (for the set id), seconds."""


@dataclass(frozen=True)
class SubbandGroup:
    """One set's files as grouped: by subband, with any second file for a subband apart."""

    set_id: str
    time0_jd: float | None
    """The set's bit-identical key; None for a group formed by name timestamps alone."""
    files: tuple[SubbandFile, ...]
    """One file per subband, ordered by subband."""
    duplicates: tuple[SubbandFile, ...] = ()
    """Further files for a subband already present (reported, never dropped silently)."""

    @property
    def subbands(self) -> tuple[int, ...]:
        return tuple(f.subband for f in self.files)

    def is_complete(self, expected_subbands: int) -> bool:
        return set(self.subbands) >= set(range(expected_subbands))


def _build_group(set_id: str, time0: float | None, members: Sequence[SubbandFile]) -> SubbandGroup:
    chosen: dict[int, SubbandFile] = {}
    extra: list[SubbandFile] = []
    # First by name time then path: the same input set always keeps the same file.
    for f in sorted(members, key=lambda f: (f.subband, f.name_time, f.path)):
        if f.subband in chosen:
            extra.append(f)
        else:
            chosen[f.subband] = f
    return SubbandGroup(set_id, time0, tuple(chosen[s] for s in sorted(chosen)), tuple(extra))


def group_subbands(
    files: Iterable[SubbandFile], tolerance_sec: float = DEFAULT_GROUP_TOLERANCE_SEC
) -> list[SubbandGroup]:
    """Group subband files into sets; the result does not depend on the input's order.

    Files with a ``time0_jd`` group by exact equality of it. A file without one joins the
    timed group whose name timestamps are nearest, if within ``tolerance_sec``; the rest
    cluster by name timestamp (a cluster spans at most ``tolerance_sec`` from its earliest
    file) and take the earliest name timestamp as their id. Groups are returned by time.
    """
    items = sorted(set(files), key=lambda f: (f.name_time, f.subband, f.path))
    timed: dict[float, list[SubbandFile]] = {}
    untimed: list[SubbandFile] = []
    for f in items:
        if f.time0_jd is None:
            untimed.append(f)
        else:
            timed.setdefault(f.time0_jd, []).append(f)
    leftovers: list[SubbandFile] = []
    for f in untimed:
        key = _nearest_timed(f, timed, tolerance_sec)
        if key is None:
            leftovers.append(f)
        else:
            timed[key].append(f)
    groups = [_build_group(set_id_from_time(t0, _integration(m)), t0, m) for t0, m in timed.items()]
    groups += [
        _build_group(m[0].name_time.strftime(NAME_TIME_FORMAT), None, m)
        for m in _cluster_by_name(leftovers, tolerance_sec)
    ]
    return sorted(groups, key=lambda g: (g.files[0].name_time, g.set_id))


def _integration(members: Sequence[SubbandFile]) -> float:
    """The integration time of a timed group (the smallest, should its files disagree)."""
    return min(m.integration_s for m in members if m.time0_jd is not None)


def _nearest_timed(
    f: SubbandFile, timed: dict[float, list[SubbandFile]], tolerance_sec: float
) -> float | None:
    best: tuple[float, float] | None = None
    for t0, members in timed.items():
        gap = min(
            abs((m.name_time - f.name_time).total_seconds())
            for m in members
            if m.time0_jd is not None
        )
        if gap <= tolerance_sec and (best is None or (gap, t0) < best):
            best = (gap, t0)
    return None if best is None else best[1]


def _cluster_by_name(files: Sequence[SubbandFile], tolerance_sec: float) -> list[list[SubbandFile]]:
    clusters: list[list[SubbandFile]] = []
    for f in sorted(files, key=lambda f: (f.name_time, f.subband, f.path)):
        if clusters and (f.name_time - clusters[-1][0].name_time).total_seconds() <= tolerance_sec:
            clusters[-1].append(f)
        else:
            clusters.append([f])
    return clusters


def time_disagreement(
    f: SubbandFile, group: SubbandGroup, tolerance_sec: float = DEFAULT_GROUP_TOLERANCE_SEC
) -> str | None:
    """Why ``f`` looks like a member of ``group`` by name yet disagrees on time, or None.

    A file whose name timestamp is within ``tolerance_sec`` of the set's files but whose
    ``time_array[0]`` differs from the set's is suspect (a node clock or header fault): the
    watcher records it against the set instead of silently starting a new one.
    """
    if f.time0_jd is None or group.time0_jd is None or f.time0_jd == group.time0_jd:
        return None
    near = any(
        abs((m.name_time - f.name_time).total_seconds()) <= tolerance_sec for m in group.files
    )
    if not near:
        return None
    delta_s = (f.time0_jd - group.time0_jd) * SECONDS_PER_DAY
    return (
        f"{f.path}: time_array[0] differs by {delta_s:+.3f} s from set {group.set_id} "
        f"whose files are named within {tolerance_sec:g} s of it"
    )
