"""Science fixtures: simulated subband sets, built once per session and copied per test."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

import h5py
import numpy as np
from astropy import units as u
from astropy.coordinates import EarthLocation
from pyuvdata.utils import ECEF_from_ENU
from pyuvdata.utils.times import get_lst_for_time

from dsa110d.science import constants as k

SetFactory = Callable[[], list[Path]]


def _copier(source: list[Path], tmp_path: Path) -> SetFactory:
    def copy() -> list[Path]:
        dest = tmp_path / "incoming"
        dest.mkdir(exist_ok=True)
        return [Path(shutil.copy2(p, dest / p.name)) for p in source]

    return copy


@pytest.fixture(scope="session")
def tiny_set_master(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A tiny set (few antennas, channels and integrations), all 16 subbands."""
    return make_set(tmp_path_factory.mktemp("tiny"), scale="tiny")


@pytest.fixture(scope="session")
def small_set_master(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A small set, all 16 subbands."""
    return make_set(tmp_path_factory.mktemp("small"), scale="small")


@pytest.fixture
def tiny_set(tiny_set_master: list[Path], tmp_path: Path) -> list[Path]:
    """A private copy of the tiny set's files (tests may alter them)."""
    return _copier(tiny_set_master, tmp_path)()


@pytest.fixture
def small_set(small_set_master: list[Path], tmp_path: Path) -> list[Path]:
    """A private copy of the small set's files."""
    return _copier(small_set_master, tmp_path)()


# --- Interim set maker (until the simulator lands on this branch) ---------------------------
SCALES = {"tiny": (6, 4, 2), "small": (24, 12, 6)}  # antennas with data, channels, integrations


def make_set(outdir: Path, scale: str, seed: int = 0) -> list[Path]:
    """A set of 16 subband files laid out like the correlator's (DESIGN section 2)."""
    nant, nchan, ntimes = SCALES[scale]
    rng = np.random.default_rng(seed)
    width = k.CHANNEL_WIDTH_HZ * (k.CHANNELS_PER_SUBBAND // nchan)
    loc = EarthLocation.from_geodetic(
        lon=k.OVRO_LON_DEG * u.deg, lat=k.OVRO_LAT_DEG * u.deg, height=k.OVRO_HEIGHT_M * u.m
    )
    numbers = np.arange(k.N_ANTENNAS_TELESCOPE)
    enu = np.zeros((numbers.size, 3))
    enu[:, :2] = rng.uniform(-1200, 1200, (numbers.size, 2))
    xyz0 = np.array([loc.x.value, loc.y.value, loc.z.value])
    pos = ECEF_from_ENU(enu, center_loc=loc) - xyz0
    a1, a2 = np.triu_indices(nant)
    nbl = a1.size
    times = 2460000.5 + np.arange(ntimes) * k.INTEGRATION_TIME_S / 86400
    t = np.repeat(times, nbl)
    lst = np.repeat(get_lst_for_time(jd_array=times, telescope_loc=loc), nbl)
    ant1, ant2 = np.tile(a1, ntimes), np.tile(a2, ntimes)
    paths = []
    for sb in range(k.N_SUBBANDS):
        top = k.SB00_TOP_FREQ_HZ - sb * nchan * width
        path = outdir / f"2023-02-24T12:00:0{sb % 4}_sb{sb:02d}.hdf5"
        with h5py.File(path, "w") as f:
            h = f.create_group("Header")
            for key, val in {
                "Nants_data": nant, "Nants_telescope": numbers.size, "Nbls": nbl,
                "Nblts": nbl * ntimes, "Nfreqs": nchan, "Npols": 2, "Nspws": 1, "Ntimes": ntimes,
                "ant_1_array": ant1, "ant_2_array": ant2,
                "antenna_names": np.array([str(n + 1) for n in numbers], dtype="S"),
                "antenna_numbers": numbers, "antenna_positions": pos,
                "antenna_diameters": np.full(numbers.size, k.DISH_DIAMETER_M),
                "channel_width": np.full(nchan, width),
                "freq_array": (top - np.arange(nchan) * width)[None, :],
                "spw_array": np.array([0]), "flex_spw_id_array": np.zeros(nchan, int),
                "history": np.bytes_("interim"), "instrument": np.bytes_("DSA"),
                "object_name": np.bytes_("drift"),
                "integration_time": np.full(nbl * ntimes, k.INTEGRATION_TIME_S),
                "latitude": k.OVRO_LAT_DEG, "longitude": k.OVRO_LON_DEG,
                "altitude": k.OVRO_HEIGHT_M, "phase_type": np.bytes_("drift"),
                "polarization_array": np.array(k.POLARIZATION_ARRAY),
                "telescope_name": np.bytes_(k.TELESCOPE_NAME), "time_array": t,
                "lst_array": lst, "uvw_array": (pos[ant2] - pos[ant1]).astype(np.float32),
                "vis_units": np.bytes_("Jy"), "version": np.bytes_("1.0"),
            }.items():
                h[key] = val
            h.create_group("extra_keywords")["phase_center_dec"] = 0.71
            d = f.create_group("Data")
            shape = (nbl * ntimes, 1, nchan, 2)
            d["visdata"] = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(
                np.complex64
            )
            d["flags"] = rng.random(shape) < 0.05
            d["nsamples"] = np.ones(shape, np.float32)
        paths.append(path)
    return paths
