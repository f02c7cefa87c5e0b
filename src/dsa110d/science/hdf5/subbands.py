"""Subband file names: which names are subbands, what a name says, and a set's id.

Pure functions for the HDF5 watcher (DESIGN section 2):

- ``parse_subband_name`` / ``ignore_reason``: which names are subbands, which to skip
  (``*_incomplete.hdf5`` being written, rsync temporaries ``.NAME.XXXXXX``, names not
  matching the configured glob);
- ``set_id_from_time``: a set's id is derived from ``Header/time_array[0]`` alone (the UTC
  second it falls in), so every watcher, whatever order it sees files in, derives the same id.

Whether a file is a whole subband is :mod:`~dsa110d.science.hdf5.probe`; grouping subbands
into sets is :mod:`~dsa110d.science.hdf5.sets`.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dsa110d.science.constants import (
    NAME_TIME_FORMAT,
    SECONDS_PER_DAY,
    SUBBAND_NAME_REGEX,
    UNIX_EPOCH_JD,
)

SUBBAND_NAME = re.compile(SUBBAND_NAME_REGEX, re.ASCII)
INCOMPLETE_SUFFIX = "_incomplete.hdf5"
"""Suffix of a subband still being written by the correlator (renamed when done)."""
RSYNC_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9]{6}$")
"""rsync's temporary name for a file in transfer: ``.NAME.XXXXXX``."""
DEFAULT_FILE_PATTERN = "20*T*.hdf5"
"""The watcher's default ``file_pattern`` glob (config ``services.hdf5_watcher``)."""
NAMES_CACHED = 65536
"""File names whose parse is remembered (the watcher looks at each name several times)."""


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
