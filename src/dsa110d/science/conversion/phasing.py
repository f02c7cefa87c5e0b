"""Phasing a drift scan to one ICRS phase centre.

The geometry (apparent coordinates, frame position angle, uvw) comes from pyuvdata's own
utility functions, called once per set on the unique integration times, so our uvw agree
with ``UVData.phase`` to well under a millimetre. The per-visibility work (the w-term phase
over all baselines and channels) is vectorised numpy here.

The DSA-110 correlator fringe-stops its "drift" data on the meridian (hour angle 0) at the
pointing declination (``extra_keywords/phase_center_dec``); the files' ``uvw_array`` is that
geometry. Phasing to a new centre therefore applies the w difference ``w_new - w_drift``, as
the instrument's own converter (dsacalib's ``uvh5_to_ms``) does. pyuvdata reads such files as
"unprojected" (not fringe-stopped: w_drift = 0), which is only right at the zenith.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt
from astropy import units
from astropy.coordinates import EarthLocation
from pyuvdata.utils import phasing as uvphase
from pyuvdata.utils.times import get_lst_for_time

PHASE_FRAME = "icrs"
PHASE_EPOCH = "J2000"  # the epoch pyuvdata's UVData.phase is called with for the reference

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PhaseCentre:
    """An ICRS (J2000) phase centre, radians."""

    ra: float
    dec: float


def telescope_location(lat_deg: float, lon_deg: float, alt_m: float) -> EarthLocation:
    """The array centre from the UVH5 header's geodetic latitude, longitude and altitude."""
    return EarthLocation.from_geodetic(
        lon=lon_deg * units.deg, lat=lat_deg * units.deg, height=alt_m * units.m
    )


def lsts_for(times_jd: FloatArray, location: EarthLocation) -> FloatArray:
    """Apparent local sidereal time (rad) at each JD, computed once per unique time."""
    unique, inverse = np.unique(times_jd, return_inverse=True)
    lst = np.asarray(get_lst_for_time(jd_array=unique, telescope_loc=location), dtype=float)
    return lst[inverse]


def mid_time(times_jd: FloatArray) -> float:
    """The set's mid-time (JD): halfway between its first and last integration."""
    unique = np.unique(times_jd)
    return float(0.5 * (unique[0] + unique[-1]))


def meridian_centre(times_jd: FloatArray, location: EarthLocation, dec: float) -> PhaseCentre:
    """The ICRS (J2000) direction of the meridian at the set's mid-time.

    The drift data point (and are fringe-stopped) at apparent coordinates of date: RA = the
    apparent LST, Dec = the header's pointing declination. CASA and wsclean read the FIELD
    table's PHASE_DIR as J2000, so the centre is that apparent direction carried back to
    ICRS (precession, nutation, aberration: ~0.4 deg at dec 60 in 2026), the inverse of the
    transform pyuvdata's ``calc_app_coords`` applies when phasing.
    """
    mid = mid_time(times_jd)
    lst = float(get_lst_for_time(jd_array=np.array([mid]), telescope_loc=location)[0])
    ra, dec_icrs = apparent_to_icrs(np.array([lst]), np.array([dec]), np.array([mid]), location)
    return PhaseCentre(ra=float(ra[0]), dec=float(dec_icrs[0]))


def meridian_pointing(
    times_jd: FloatArray, location: EarthLocation, dec: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(unique times JD, ICRS RA, ICRS Dec) of where the dishes point at each integration:
    the apparent meridian at the pointing declination, as J2000 for the POINTING table."""
    unique = np.unique(times_jd)
    lst = np.asarray(get_lst_for_time(jd_array=unique, telescope_loc=location), dtype=float)
    ra, dec_icrs = apparent_to_icrs(lst, np.full_like(lst, dec), unique, location)
    return unique, ra, dec_icrs


def apparent_to_icrs(
    app_ra: FloatArray, app_dec: FloatArray, time_jd: FloatArray, location: EarthLocation
) -> tuple[FloatArray, FloatArray]:
    """ICRS RA/Dec (rad) of apparent (of date, topocentric) RA/Dec at each time."""
    ra, dec = uvphase.transform_app_to_icrs(
        time_array=time_jd, app_ra=app_ra, app_dec=app_dec, telescope_loc=location
    )
    return np.atleast_1d(np.asarray(ra, dtype=float)), np.atleast_1d(np.asarray(dec, dtype=float))


def icrs_to_apparent(
    ra: FloatArray, dec: FloatArray, time_jd: FloatArray, location: EarthLocation
) -> tuple[FloatArray, FloatArray]:
    """Apparent (of date, topocentric) RA/Dec (rad) of ICRS directions at each time."""
    app_ra, app_dec = uvphase.transform_icrs_to_app(
        time_array=time_jd, ra=ra, dec=dec, telescope_loc=location
    )
    return np.asarray(app_ra, dtype=float), np.asarray(app_dec, dtype=float)


@dataclass(frozen=True)
class Geometry:
    """Per-row uvw (m, pyuvdata's convention) for the new phase centre."""

    uvw: FloatArray  # (Nrows, 3)
    drift_w: FloatArray  # per row, m: w towards the meridian at the pointing declination
    app_ra: FloatArray  # per row, rad
    app_dec: FloatArray
    frame_pa: FloatArray


def phased_geometry(
    *,
    times_jd: FloatArray,
    lsts: FloatArray,
    ant1: npt.NDArray[np.int64],
    ant2: npt.NDArray[np.int64],
    antenna_numbers: npt.NDArray[np.int64],
    antenna_positions: FloatArray,
    location: EarthLocation,
    centre: PhaseCentre,
    pointing_dec: float,
) -> Geometry:
    """uvw of every row towards ``centre``, as ``UVData.phase(..., use_ant_pos=True)`` does,
    and the w of the drift data's own centre (the meridian at ``pointing_dec``, apparent)."""
    unique, first, inverse = np.unique(times_jd, return_index=True, return_inverse=True)
    app_ra, app_dec = uvphase.calc_app_coords(
        lon_coord=centre.ra,
        lat_coord=centre.dec,
        coord_frame=PHASE_FRAME,
        coord_epoch=2000.0,
        coord_type="sidereal",
        time_array=unique,
        lst_array=lsts[first],
        telescope_loc=location,
    )
    frame_pa = uvphase.calc_frame_pos_angle(
        time_array=unique,
        app_ra=app_ra,
        app_dec=app_dec,
        telescope_loc=location,
        ref_frame=PHASE_FRAME,
        ref_epoch=PHASE_EPOCH,
    )
    app_ra, app_dec, frame_pa = app_ra[inverse], app_dec[inverse], frame_pa[inverse]
    uvw_towards = partial(  # the array and its rows; the direction varies
        uvphase.calc_uvw,
        lst_array=lsts,
        use_ant_pos=True,
        antenna_positions=antenna_positions,
        antenna_numbers=antenna_numbers,
        ant_1_array=ant1,
        ant_2_array=ant2,
        telescope_lat=location.lat.rad,
        telescope_lon=location.lon.rad,
    )
    uvw = uvw_towards(app_ra=app_ra, app_dec=app_dec, frame_pa=frame_pa)
    drift_uvw = uvw_towards(
        app_ra=lsts, app_dec=np.full_like(lsts, pointing_dec), frame_pa=np.zeros_like(lsts)
    )
    return Geometry(
        uvw=np.asarray(uvw, dtype=float),
        drift_w=np.asarray(drift_uvw[:, 2], dtype=float),
        app_ra=np.asarray(app_ra, dtype=float),
        app_dec=np.asarray(app_dec, dtype=float),
        frame_pa=np.asarray(frame_pa, dtype=float),
    )


def conj_w_phasor(
    w: FloatArray,
    freq_over_c: FloatArray,
    work: tuple[FloatArray, FloatArray, npt.NDArray[np.float32]],
    out: npt.NDArray[np.complex64],
) -> npt.NDArray[np.complex64]:
    """conj(exp(-2 pi i w f / c)) per (row, channel), into ``out``: the drift-to-phased
    factor for ``w = w_new - w_drift``, conjugated for the MS convention (pyuvdata writes
    conj(data) and -uvw).

    ``freq_over_c`` is f/c (1/m) per channel; ``work`` holds two float64 and one float32
    (rows, channels) arrays, reused between blocks (fresh large temporaries cost more in page
    faults than the arithmetic). The turn count is formed in float64 and reduced to a
    fraction of a turn before the float32 trigonometry, so the phase error stays ~1e-7 rad
    even for ~1e4 turns.
    """
    cycles, whole, angle = work
    np.multiply.outer(w, freq_over_c, out=cycles)
    np.rint(cycles, out=whole)
    cycles -= whole
    np.multiply(cycles, 2.0 * np.pi, out=angle, casting="same_kind")  # float64 product, stored
    np.cos(angle, out=out.real)
    np.sin(angle, out=out.imag)
    return out


SPLIT_TOL_TURNS = 1e-9  # turns: the most phase the split of SubbandPhasors may leave out


class SubbandPhasors:
    """``conj_w_phasor`` over each subband's channels (in the file's own order), block by
    block of rows.

    When every subband's channels step evenly by one spacing (DSA-110's always do), a
    subband's phasor is its first channel's times its offsets':
    exp(2 pi i w (f0 + j df) / c) = exp(2 pi i w f0 / c) exp(2 pi i w j df / c). The
    offsets' (and their conjugates, for subbands whose channels descend) are formed once per
    block, so each subband costs one complex multiply instead of the float64 turn reduction
    and the trigonometry (~3x less arithmetic in all). Each factor keeps conj_w_phasor's
    ~1e-7 rad; the product stays within ~5e-7 rad. Other channel layouts get every subband's
    phasor in full.
    """

    def __init__(self, freq_over_c: list[FloatArray], w: FloatArray, nrows: int) -> None:
        self.freq_over_c = freq_over_c  # f/c (1/m) per channel of each subband, file order
        nchan = freq_over_c[0].size
        self.w: FloatArray = w[:0]
        self.phasor = np.empty((nrows, nchan), dtype=np.complex64)
        self._work = _phasor_work(nrows, nchan)
        self.split = _even_split(freq_over_c, float(np.max(np.abs(w), initial=0.0)))
        if self.split is not None:
            nsub = len(freq_over_c)
            self._first_work = _phasor_work(nrows, nsub)
            self.first = np.empty((nrows, nsub), dtype=np.complex64)
            self.offsets = np.empty((nrows, nchan), dtype=np.complex64)
            self.offsets_conj = np.empty((nrows, nchan), dtype=np.complex64)

    def block(self, w: FloatArray) -> None:
        """Start a block of rows (``w`` per row, m; w_new - w_drift)."""
        self.w = w
        if self.split is None:
            return
        m = w.size
        firsts, offsets, _ = self.split
        conj_w_phasor(w, firsts, _rows(self._first_work, m), self.first[:m])
        conj_w_phasor(w, offsets, _rows(self._work, m), self.offsets[:m])
        np.conjugate(self.offsets[:m], out=self.offsets_conj[:m])

    def subband(self, index: int) -> npt.NDArray[np.complex64]:
        """The phasor (rows, channels) of subband ``index`` for the current block."""
        m = self.w.size
        out = self.phasor[:m]
        if self.split is None:
            return conj_w_phasor(self.w, self.freq_over_c[index], _rows(self._work, m), out)
        descending = self.split[2][index]
        offsets = self.offsets_conj[:m] if descending else self.offsets[:m]
        return np.multiply(self.first[:m, index, None], offsets, out=out)


PhasorWork = tuple[FloatArray, FloatArray, npt.NDArray[np.float32]]


def _phasor_work(nrows: int, ncols: int) -> PhasorWork:
    shape = (nrows, ncols)
    return np.empty(shape), np.empty(shape), np.empty(shape, dtype=np.float32)


def _rows(work: PhasorWork, m: int) -> PhasorWork:
    return work[0][:m], work[1][:m], work[2][:m]


def _even_split(
    freq_over_c: list[FloatArray], w_max: float
) -> tuple[FloatArray, FloatArray, list[bool]] | None:
    """(first f/c of each subband, offsets j * step, whether each descends) when every
    subband's f/c is its first plus or minus j * one step, to within SPLIT_TOL_TURNS at the
    largest |w|; None otherwise."""
    nchan = freq_over_c[0].size
    if nchan < 2 or any(k.size != nchan for k in freq_over_c):
        return None
    step = abs(float(freq_over_c[0][-1] - freq_over_c[0][0])) / (nchan - 1)
    offsets: FloatArray = np.arange(nchan, dtype=np.float64) * step
    descending = [bool(k[-1] < k[0]) for k in freq_over_c]
    for k, down in zip(freq_over_c, descending, strict=True):
        expected = k[0] - offsets if down else k[0] + offsets
        if float(np.max(np.abs(k - expected))) * w_max > SPLIT_TOL_TURNS:
            return None
    firsts: FloatArray = np.array([float(k[0]) for k in freq_over_c], dtype=np.float64)
    return firsts, offsets, descending
