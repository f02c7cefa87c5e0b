"""pyuvdata's own path from a subband set to an MS: the baseline our converter is checked
and benchmarked against (tests and ``bench/bench_convert.py``), not used in production.

Read every subband file, concatenate along frequency, phase to the same ICRS centre with
``UVData.phase(ra, dec, epoch='J2000', cat_name=...)``, order the channels by frequency and
``write_ms``. The real files store ``uvw_array`` as float32, which pyuvdata's checks refuse,
so each file is read unchecked and its uvw promoted to float64 (what the real pipeline does).

pyuvdata reads the drift files as "unprojected" (w = 0 before phasing), while the correlator
fringe-stops them on the meridian at the pointing declination (``science.phasing``): the two
agree only when that is the zenith (pointing dec = latitude, as in the sets this is run on).
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import ICRS, TETE, EarthLocation, SkyCoord
from astropy.time import Time
from pyuvdata import UVData

from dsa110d.science.constants import OVRO_HEIGHT_M, OVRO_LAT_RAD, OVRO_LON_RAD
from dsa110d.science.conversion.msio import FIELD_NAME

# How closely our MS must agree with pyuvdata's (issue #6), column by column.
DATA_RTOL = 1e-5  # relative, DATA
UVW_TOL_M = 1e-3  # m, UVW
TIME_TOL_S = 1e-6  # s, TIME
ANTENNA_POSITION_TOL_M = 1e-3  # m, ANTENNA::POSITION
PHASE_CENTRE_TOL_ARCSEC = 0.1  # arcsec, FIELD::PHASE_DIR


def read_set(files: Sequence[Path]) -> UVData:
    """All subbands of a set in one UVData (drift scan, channels as the files hold them)."""
    parts = []
    for path in files:
        uv = UVData()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyuvdata's notes on unknown telescopes etc.
            uv.read(str(path), file_type="uvh5", run_check=False)
        uv.uvw_array = np.asarray(uv.uvw_array, dtype=np.float64)
        parts.append(uv)
    first = parts[0]
    if len(parts) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            first.fast_concat(parts[1:], "freq", inplace=True, run_check=False)
    return first


def pyuvdata_convert(files: Sequence[Path], out: Path, ra: float, dec: float) -> UVData:
    """pyuvdata's conversion of the set into ``out``; returns the phased object."""
    uv = read_set(files)
    if out.exists():
        shutil.rmtree(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv.phase(ra=ra, dec=dec, epoch="J2000", cat_name=FIELD_NAME)
        uv.reorder_freqs(channel_order="freq")
        uv.write_ms(str(out), run_check=False)
    return uv


OVRO = EarthLocation.from_geodetic(
    lon=OVRO_LON_RAD * u.rad, lat=OVRO_LAT_RAD * u.rad, height=OVRO_HEIGHT_M * u.m
)


def icrs_of_apparent_meridian(time_jd: float, dec_deg: float) -> tuple[float, float]:
    """ICRS RA/Dec (deg) of hour angle 0 at apparent declination ``dec_deg`` (the drift
    data's pointing), by astropy (independent of pyuvdata's transforms): TETE's RA on the
    meridian is the apparent sidereal time."""
    t = Time(time_jd, format="jd", scale="utc", location=OVRO)
    lst = t.sidereal_time("apparent").deg
    here = SkyCoord(lst * u.deg, dec_deg * u.deg, frame=TETE(obstime=t, location=OVRO))
    icrs = here.transform_to(ICRS())
    return float(icrs.ra.deg), float(icrs.dec.deg)
