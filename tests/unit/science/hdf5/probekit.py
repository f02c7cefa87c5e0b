"""Minimal subband files written directly with h5py (about a millisecond each): what the
probe's tests and its fuzz suite mutate. The values are the instrument's (constants), the
sizes tiny."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dsa110d.science import constants as k
from dsa110d.science.constants import SECONDS_PER_DAY, UNIX_EPOCH_JD
from dsa110d.science.hdf5.subbands import subband_file_name

START = datetime(2026, 3, 20, 6, 0, 0, tzinfo=UTC)
"""The name time of the files built here (the start of the first integration)."""
N_BLTS, N_FREQS, N_POLS, N_ANTS = 4, 2, 2, 2


def jd(moment: datetime) -> float:
    """Julian date of a UTC moment."""
    return moment.timestamp() / SECONDS_PER_DAY + UNIX_EPOCH_JD


def header(moment: datetime = START) -> dict[str, Any]:
    """``Header/*`` of a valid subband whose first integration starts at ``moment``."""
    time0 = jd(moment) + k.INTEGRATION_TIME_S / 2 / 86400.0
    return {
        "time_array": np.full(N_BLTS, time0),
        "integration_time": np.full(N_BLTS, k.INTEGRATION_TIME_S),
        "ant_1_array": np.zeros(N_BLTS, np.int64),
        "ant_2_array": np.ones(N_BLTS, np.int64),
        "uvw_array": np.zeros((N_BLTS, 3), np.float32),
        "freq_array": k.SB00_TOP_FREQ_HZ - np.arange(N_FREQS) * k.CHANNEL_WIDTH_HZ,
        "polarization_array": np.array(k.POLARIZATION_ARRAY, np.int64),
        "Nblts": np.int64(N_BLTS),
        "Nfreqs": np.int64(N_FREQS),
        "Npols": np.int64(N_POLS),
        "Nants_data": np.int64(N_ANTS),
        "extra_keywords/phase_center_dec": np.float64(k.OVRO_LAT_RAD),
    }


def data() -> dict[str, Any]:
    """``Data/*`` of a valid subband."""
    shape = (N_BLTS, 1, N_FREQS, N_POLS)
    return {
        "visdata": np.ones(shape, np.complex64),
        "flags": np.zeros(shape, bool),
        "nsamples": np.ones(shape, np.float32),
    }


def write_subband(
    directory: Path, moment: datetime = START, subband: int = 0, name: str | None = None
) -> Path:
    """A valid subband file named for ``moment`` (or ``name``) in ``directory``."""
    path = directory / (name or subband_file_name(moment, subband))
    with h5py.File(path, "w") as f:
        for key, value in header(moment).items():
            f[f"Header/{key}"] = value
        for key, value in data().items():
            f[f"Data/{key}"] = value
    return path


def replace(path: Path, dataset: str, value: Any = None, **create: Any) -> None:
    """Replace ``dataset`` (e.g. ``Header/time_array``) by ``value``, or by a dataset made with
    ``create`` (``shape``, ``dtype``, ``chunks``... as ``h5py.Group.create_dataset``)."""
    with h5py.File(path, "r+") as f:
        del f[dataset]
        if create:
            f.create_dataset(dataset, **create)
        else:
            f[dataset] = value
