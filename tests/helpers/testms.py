"""Synthetic drift-scan Measurement Sets of known point sources, for tests and benchmarks.

Independent of the simulator and the converter: visibilities are computed here directly
(complex128, one exponential per source, row and channel) with the measurement equation
``V = sum_s S_s g_s(t, nu) exp(+2 pi i (u l + v m + w (n - 1)) nu / c) + noise``, UVW from
antenna positions (ant1 - ant2: the MS convention that pyuvdata's ``write_ms`` and our
converter write) for a phase centre on the meridian at the chunk's mid-time, and g the
primary beam of :mod:`dsa110d.science.beam` about the meridian at the pointing declination.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import TETE, EarthLocation, SkyCoord
from astropy.time import Time
from casacore import tables
from numpy.typing import NDArray

from dsa110d.science.astrometry import use_offline_iers
from dsa110d.science.beam import DEFAULT_BEAM, BeamModel, angular_offset_rad, primary_beam
from dsa110d.science.catalog import Catalog, write_catalog
from dsa110d.science.constants import (
    BAND_BOTTOM_FREQ_HZ,
    INTEGRATION_TIME_S,
    OVRO_HEIGHT_M,
    OVRO_LAT_RAD,
    OVRO_LON_RAD,
    SB00_TOP_FREQ_HZ,
    SECONDS_PER_DAY,
    SIDEREAL_DAY_S,
    SPEED_OF_LIGHT_M_S,
    TELESCOPE_NAME,
    UNIX_EPOCH_MJD_S,
)
from dsa110d.science.pipeline.blocks import Block
from dsa110d.science.pipeline.stage import BlockJob

SIDEREAL_RATE_RAD_S = 2.0 * math.pi / SIDEREAL_DAY_S
"""Rate at which the meridian moves in RA, rad/s."""

ARRAY_HALF_EXTENT_M = (1200.0, 600.0)
"""Random antenna positions span +/- these (east, north), metres: DSA-110's ~2.5 km T."""


@dataclass(frozen=True)
class SkyModel:
    """Point sources: ICRS RA/Dec (deg) and flux (Jy)."""

    ra_deg: NDArray[np.float64]
    dec_deg: NDArray[np.float64]
    flux_jy: NDArray[np.float64]


def antenna_enu(n_ant: int, seed: int) -> NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    east = rng.uniform(-ARRAY_HALF_EXTENT_M[0], ARRAY_HALF_EXTENT_M[0], n_ant)
    north = rng.uniform(-ARRAY_HALF_EXTENT_M[1], ARRAY_HALF_EXTENT_M[1], n_ant)
    return np.stack([east, north, np.zeros(n_ant)], axis=1)


def band(n_chan: int) -> NDArray[np.float64]:
    """``n_chan`` uniform channels across the real band, descending like the correlator's."""
    return np.linspace(SB00_TOP_FREQ_HZ, BAND_BOTTOM_FREQ_HZ, n_chan)


def uvw_for(
    enu: NDArray[np.float64], ant1: NDArray[np.intp], ant2: NDArray[np.intp],
    hour_angle: NDArray[np.float64], dec0: float,
) -> NDArray[np.float64]:  # fmt: skip
    """uvw (m) of baselines ant2 - ant1 towards hour angle / declination (rad)."""
    b = enu[ant2] - enu[ant1]
    east, north, up = b[:, 0], b[:, 1], b[:, 2]
    x = -math.sin(OVRO_LAT_RAD) * north + math.cos(OVRO_LAT_RAD) * up
    y = east
    z = math.cos(OVRO_LAT_RAD) * north + math.sin(OVRO_LAT_RAD) * up
    sh, ch = np.sin(hour_angle), np.cos(hour_angle)
    sd, cd = math.sin(dec0), math.cos(dec0)
    u = sh * x + ch * y
    v = -sd * ch * x + sd * sh * y + cd * z
    w = cd * ch * x - cd * sh * y + sd * z
    return np.stack([u, v, w], axis=1)


def make_ms(
    path: Path,
    sky: SkyModel,
    *,
    mid_time_mjd_s: float,
    phase_ra_deg: float,
    dec_deg: float,
    n_ant: int = 24,
    n_chan: int = 64,
    n_times: int = 24,
    noise_jy: float = 5.0,
    seed: int = 0,
    beam: BeamModel = DEFAULT_BEAM,
) -> Path:
    """Write one chunk's MS with the sky's visibilities plus Gaussian noise (Jy per visibility
    per real/imaginary part); the phase centre is (phase_ra_deg, dec_deg) at the mid-time."""
    rng = np.random.default_rng(seed)
    enu = antenna_enu(n_ant, 1)  # the same array for every chunk
    ant1, ant2 = (np.asarray(a, dtype=np.intp) for a in np.triu_indices(n_ant))
    n_base = ant1.size
    times = np.asarray(
        mid_time_mjd_s + INTEGRATION_TIME_S * (np.arange(n_times) - (n_times - 1) / 2), np.float64
    )
    hour_angle = np.repeat(SIDEREAL_RATE_RAD_S * (times - mid_time_mjd_s), n_base)
    ra0, dec0 = math.radians(phase_ra_deg), math.radians(dec_deg)
    # The MS's UVW is pyuvdata's negated (ant1 - ant2), as write_ms and the converter write it.
    uvw = -uvw_for(enu, np.tile(ant1, n_times), np.tile(ant2, n_times), hour_angle, dec0)
    freq = band(n_chan)
    data = _visibilities(
        sky, uvw, np.repeat(np.arange(n_times), n_base), times, freq, ra0, dec0, mid_time_mjd_s,
        beam,
    )  # fmt: skip
    data += noise_jy * (rng.standard_normal(data.shape) + 1j * rng.standard_normal(data.shape))
    autos = np.tile(ant1 == ant2, n_times)
    data[autos] = np.abs(data[autos])  # autocorrelations are real
    _write(path, data.astype(np.complex64), uvw, times, n_base, ant1, ant2, freq, ra0, dec0, enu)
    return path


def _apparent(
    ra: NDArray[np.float64], dec: NDArray[np.float64], time_mjd_s: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Apparent RA/Dec (rad, true equator and equinox of date at the site) of ICRS directions,
    by astropy's TETE frame: not the photometry's own path (pyuvdata's transform), so the data
    this makes do not share the code they are meant to check."""
    use_offline_iers()
    site = EarthLocation.from_geodetic(
        lon=OVRO_LON_RAD * u.rad, lat=OVRO_LAT_RAD * u.rad, height=OVRO_HEIGHT_M * u.m
    )
    when = Time(time_mjd_s / SECONDS_PER_DAY, format="mjd", scale="utc")
    icrs = SkyCoord(ra=ra * u.rad, dec=dec * u.rad, frame="icrs")
    apparent = icrs.transform_to(TETE(obstime=when, location=site))
    return (
        np.asarray(apparent.ra.rad, dtype=np.float64),
        np.asarray(apparent.dec.rad, dtype=np.float64),
    )


def _visibilities(
    sky: SkyModel, uvw: NDArray[np.float64], t_index: NDArray[np.intp],
    times: NDArray[np.float64], freq: NDArray[np.float64], ra0: float, dec0: float, mid: float,
    beam: BeamModel,
) -> NDArray[np.complex128]:  # fmt: skip
    ra, dec = np.radians(sky.ra_deg), np.radians(sky.dec_deg)
    # The phase centre (ra0, dec0) is ICRS, as the converter writes FIELD: the apparent
    # meridian at mid-time carried back to J2000. The dishes point at the apparent meridian;
    # sources move there by precession since J2000.
    centre_ra, centre_dec = _apparent(np.array([ra0]), np.array([dec0]), mid)
    pointing = float(centre_ra[0]) + SIDEREAL_RATE_RAD_S * (times - mid)
    app_ra, app_dec = _apparent(ra, dec, mid)
    offsets = angular_offset_rad(
        pointing[None, :], float(centre_dec[0]), app_ra[:, None], app_dec[:, None]
    )
    data = np.zeros((uvw.shape[0], freq.size, 2), dtype=np.complex128)
    for s in range(ra.size):
        gain = primary_beam(offsets[s][:, None], freq[None, :], model=beam)  # (time, chan)
        if gain.max() < 1e-4:
            continue
        dra = ra[s] - ra0
        l_ = math.cos(dec[s]) * math.sin(dra)
        m_ = math.sin(dec[s]) * math.cos(dec0) - math.cos(dec[s]) * math.sin(dec0) * math.cos(dra)
        n_ = math.sqrt(1 - l_ * l_ - m_ * m_)
        delay = (uvw @ np.array([l_, m_, n_ - 1.0])) / SPEED_OF_LIGHT_M_S
        vis = sky.flux_jy[s] * gain[t_index] * np.exp(2j * np.pi * delay[:, None] * freq[None, :])
        data += vis[:, :, None]
    return data


def _write(
    path: Path, data: NDArray[np.complex64], uvw: NDArray[np.float64], times: NDArray[np.float64],
    n_base: int, ant1: NDArray[np.intp], ant2: NDArray[np.intp], freq: NDArray[np.float64],
    ra0: float, dec0: float, enu: NDArray[np.float64],
) -> None:  # fmt: skip
    desc = tables.maketabdesc(
        [tables.makearrcoldesc("DATA", 0j, ndim=2, shape=list(data.shape[1:]), valuetype="complex")]
    )
    ms = tables.default_ms(str(path), desc)
    with ms:
        ms.addrows(data.shape[0])
        n_times = times.size
        ms.putcol("TIME", np.repeat(times, n_base))
        ms.putcol("TIME_CENTROID", np.repeat(times, n_base))
        ms.putcol("INTERVAL", np.full(data.shape[0], INTEGRATION_TIME_S))
        ms.putcol("EXPOSURE", np.full(data.shape[0], INTEGRATION_TIME_S))
        ms.putcol("ANTENNA1", np.tile(ant1, n_times).astype(np.int32))
        ms.putcol("ANTENNA2", np.tile(ant2, n_times).astype(np.int32))
        ms.putcol("UVW", uvw)
        ms.putcol("DATA", data)
        ms.putcol("FLAG", np.zeros(data.shape, dtype=bool))
        ms.putcol("WEIGHT", np.ones((data.shape[0], 2), dtype=np.float32))
        ms.putcol("SIGMA", np.ones((data.shape[0], 2), dtype=np.float32))
    _subtables(path, freq, ra0, dec0, enu)


def _subtables(
    path: Path, freq: NDArray[np.float64], ra0: float, dec0: float, enu: NDArray[np.float64]
) -> None:
    with tables.table(f"{path}::SPECTRAL_WINDOW", readonly=False, ack=False) as spw:
        spw.addrows(1)
        spw.putcell("CHAN_FREQ", 0, freq)
        width = np.full(freq.size, freq[1] - freq[0])
        for column in ("CHAN_WIDTH", "EFFECTIVE_BW", "RESOLUTION"):
            spw.putcell(column, 0, np.abs(width))
        spw.putcell("NUM_CHAN", 0, freq.size)
        spw.putcell("REF_FREQUENCY", 0, float(freq[freq.size // 2]))
        spw.putcell("TOTAL_BANDWIDTH", 0, float(abs(freq[-1] - freq[0])))
    with tables.table(f"{path}::FIELD", readonly=False, ack=False) as field:
        field.addrows(1)
        direction = np.array([[ra0, dec0]])
        for column in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
            field.putcell(column, 0, direction)
        field.putcell("NAME", 0, "meridian")
    with tables.table(f"{path}::POLARIZATION", readonly=False, ack=False) as pol:
        pol.addrows(1)
        pol.putcell("CORR_TYPE", 0, np.array([9, 12], dtype=np.int32))  # XX, YY
        pol.putcell("CORR_PRODUCT", 0, np.array([[0, 0], [1, 1]], dtype=np.int32))
        pol.putcell("NUM_CORR", 0, 2)
    with tables.table(f"{path}::DATA_DESCRIPTION", readonly=False, ack=False) as dd:
        dd.addrows(1)
    with tables.table(f"{path}::OBSERVATION", readonly=False, ack=False) as obs:
        obs.addrows(1)
        obs.putcell("TELESCOPE_NAME", 0, TELESCOPE_NAME)
    with tables.table(f"{path}::ANTENNA", readonly=False, ack=False) as ant:
        ant.addrows(enu.shape[0])
        ant.putcol("NAME", [str(i + 1) for i in range(enu.shape[0])])
        ant.putcol("DISH_DIAMETER", np.full(enu.shape[0], 4.65))
        ant.putcol("POSITION", _itrf(enu))
        ant.putcol("TYPE", ["GROUND-BASED"] * enu.shape[0])
        ant.putcol("MOUNT", ["ALT-AZ"] * enu.shape[0])


def _itrf(enu: NDArray[np.float64]) -> NDArray[np.float64]:
    """Approximate ITRF positions (m) of local ENU offsets about OVRO (for imaging only)."""
    radius = 6378137.0 + OVRO_HEIGHT_M
    lat, lon = OVRO_LAT_RAD, OVRO_LON_RAD
    centre = radius * np.array(
        [math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)]
    )
    east = np.array([-math.sin(lon), math.cos(lon), 0.0])
    north = np.array(
        [-math.sin(lat) * math.cos(lon), -math.sin(lat) * math.sin(lon), math.cos(lat)]
    )
    up = centre / np.linalg.norm(centre)
    return np.asarray(centre + enu[:, :1] * east + enu[:, 1:2] * north + enu[:, 2:3] * up)


# --- A small block of known sources, shared by the science tests ----------------------------
POINTING_DEC_DEG = 30.0
START_RA_DEG = 100.0
START_MJD_S = 61000 * 86400.0
CHUNK_SEC = 309.24
N_CHUNKS = 5
NOISE_JY = 20.0
N_IN_STRIP = 16


@dataclass(frozen=True)
class SimBlock:
    """Chunks of one block, the catalog of what they contain, and which sources are outside."""

    ms_paths: list[Path]
    catalog: Catalog
    catalog_path: Path
    outside_ids: set[str]


def _sky() -> tuple[Catalog, set[str]]:
    rng = np.random.default_rng(7)
    # Sources whose transit lies inside the chunks, spread so that they do not blend.
    ra = START_RA_DEG + np.linspace(1.0, 5.5, N_IN_STRIP) + rng.uniform(-0.05, 0.05, N_IN_STRIP)
    dec = POINTING_DEC_DEG + rng.uniform(-2.0, 2.0, N_IN_STRIP)
    flux = rng.uniform(0.5, 2.0, N_IN_STRIP)
    # Outside the beam: far in declination, and far in RA (transit hours away).
    ra = np.r_[ra, START_RA_DEG + 3.0, START_RA_DEG + 40.0]
    dec = np.r_[dec, POINTING_DEC_DEG + 12.0, POINTING_DEC_DEG]
    flux = np.r_[flux, 3.0, 3.0]
    ids = tuple(f"T{i:03d}" for i in range(ra.size))
    return Catalog(ids, ra, dec, flux), {ids[-2], ids[-1]}


def build_sim_block(root: Path) -> SimBlock:
    """Write N_CHUNKS consecutive chunks (~309 s each) of the test sky under ``root``."""
    catalog, outside = _sky()
    sky = SkyModel(catalog.ra_deg, catalog.dec_deg, catalog.flux_jy)
    paths = []
    for i in range(N_CHUNKS):
        mid = START_MJD_S + i * CHUNK_SEC
        phase_ra = START_RA_DEG + math.degrees(SIDEREAL_RATE_RAD_S * (mid - START_MJD_S))
        paths.append(
            make_ms(
                root / f"chunk{i}.ms", sky, mid_time_mjd_s=mid, phase_ra_deg=phase_ra,
                dec_deg=POINTING_DEC_DEG, noise_jy=NOISE_JY, seed=100 + i,
            )
        )  # fmt: skip
    catalog_path = root / "catalog.csv"
    write_catalog(catalog_path, catalog)
    return SimBlock(paths, catalog, catalog_path, outside)


def copy_sim_block(sim: SimBlock, root: Path) -> SimBlock:
    """A private copy of the MSs (stages write flags into them)."""
    copies = [Path(shutil.copytree(p, root / p.name)) for p in sim.ms_paths]
    return SimBlock(copies, sim.catalog, sim.catalog_path, sim.outside_ids)


def job_around(mid_mjd_s: float, version: int = 1, own_slots: int = 12) -> BlockJob:
    """A block whose own slots (5 min each, one hour by default, plus a 5 min overlap before)
    are centred on ``mid_mjd_s``: every transit within half an hour of it is its own."""
    slot = 300.0
    first_own = round((mid_mjd_s - UNIX_EPOCH_MJD_S) / slot) - own_slots // 2
    return BlockJob(Block(0, first_own - 1, first_own, first_own + own_slots - 1, slot), version)


def noise_realisation(model_ms: Path, out: Path, noise_jy: float, seed: int) -> Path:
    """A copy of ``model_ms`` (made with ``noise_jy=0``) with fresh Gaussian noise (Jy per
    visibility and part) on its cross-correlations: many realisations of one sky and uv
    coverage for the cost of one ``make_ms``."""
    shutil.copytree(model_ms, out)
    rng = np.random.default_rng(seed)
    with tables.table(str(out), readonly=False, ack=False) as ms:
        data = ms.getcol("DATA")
        cross = ms.getcol("ANTENNA1") != ms.getcol("ANTENNA2")
        noise = rng.standard_normal(data.shape) + 1j * rng.standard_normal(data.shape)
        data[cross] += (noise_jy * noise[cross]).astype(np.complex64)
        ms.putcol("DATA", data)
    return out
