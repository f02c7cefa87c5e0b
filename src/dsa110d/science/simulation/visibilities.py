"""Simulated visibilities: drift-scan geometry, a point-source sky through the primary beam,
and thermal noise. Vectorised over baselines and channels; chunked over integrations.

Conventions are pyuvdata's: ``uvw = x(ant_2) - x(ant_1)`` and
``V = sum_s A_s exp(+2 pi i (u l + v m + w (n - 1)) nu / c)`` (checked by phasing simulated
data to a source with ``UVData.phase``: the phases vanish to 1e-8 rad).
The phase centre of drift data is the meridian at the pointing declination at each
integration (apparent coordinates: RA = LST), so the uvw of every baseline is that of hour angle 0.
The data are fringe-stopped there, as the DSA-110 correlator's are: pyuvdata, which reads
"drift" files as not fringe-stopped (w = 0), phases them right only for a zenith pointing;
the converter phases by ``w_new - w_drift`` (``science.phasing``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pyuvdata.utils.phasing import calc_uvw, transform_icrs_to_app
from pyuvdata.utils.times import get_lst_for_time

from dsa110d.science import constants as k
from dsa110d.science.beam import DEFAULT_BEAM, BeamModel, angular_offset_rad, primary_beam
from dsa110d.science.catalog import Catalog, spectra
from dsa110d.science.fluxmodels import band_centre_hz

APPARENT_FLUX_FLOOR_JY = 1e-3
"""Sources fainter than this through the beam (at their brightest in a set) are left out."""
SPECTRUM_RANK_TOL = 1e-6
"""Singular components of a source's apparent spectrum below this fraction are dropped."""
PRESELECT_RADIUS_RAD = math.radians(20.0)
"""Sources farther than this from the pointing at mid-set are not considered (beam < 1e-3)."""
BASELINE_BLOCK = 1024
"""Baselines per block of the sky model: bounds its temporaries to tens of MB."""


@dataclass(frozen=True)
class Geometry:
    """Times and baselines of one set: everything but the sky."""

    time_jd: NDArray[np.float64]
    """Centre of each integration, JD UTC, shape (Ntimes,)."""
    lst_rad: NDArray[np.float64]
    """Apparent local sidereal time of each integration, shape (Ntimes,)."""
    uvw_m: NDArray[np.float64]
    """uvw of every baseline-time, metres, shape (Ntimes * Nbls, 3), time-major."""
    ant_1: NDArray[np.int64]
    ant_2: NDArray[np.int64]
    dec_rad: float
    """Pointing (phase centre) declination, apparent, radians."""


def telescope_lla() -> tuple[float, float, float]:
    return (k.OVRO_LAT_RAD, k.OVRO_LON_RAD, k.OVRO_HEIGHT_M)


def lst_for(time_jd: NDArray[np.float64]) -> NDArray[np.float64]:
    """Apparent LST at OVRO for ``time_jd`` (pyuvdata's own computation, so a reader's check
    of lst_array against time_array agrees exactly)."""
    return np.asarray(
        get_lst_for_time(
            time_jd, latitude=k.OVRO_LAT_DEG, longitude=k.OVRO_LON_DEG, altitude=k.OVRO_HEIGHT_M
        ),
        dtype=np.float64,
    )


def drift_geometry(
    time_jd: NDArray[np.float64],
    dec_rad: float,
    ant_1: NDArray[np.int64],
    ant_2: NDArray[np.int64],
    antenna_numbers: NDArray[np.int64],
    antenna_positions: NDArray[np.float64],
) -> Geometry:
    """uvw for the meridian at ``dec_rad`` at each integration, vectorised over baselines."""
    lst = lst_for(time_jd)
    n_bls = len(ant_1)
    lst_blt = np.repeat(lst, n_bls)
    uvw = calc_uvw(
        app_ra=lst_blt,
        app_dec=np.full_like(lst_blt, dec_rad),
        frame_pa=np.zeros_like(lst_blt),
        lst_array=lst_blt,
        use_ant_pos=True,
        antenna_positions=antenna_positions,
        antenna_numbers=antenna_numbers,
        ant_1_array=np.tile(ant_1, len(time_jd)),
        ant_2_array=np.tile(ant_2, len(time_jd)),
        telescope_lat=k.OVRO_LAT_RAD,
        telescope_lon=k.OVRO_LON_RAD,
    )
    return Geometry(time_jd, lst, np.asarray(uvw), ant_1, ant_2, dec_rad)


@dataclass(frozen=True)
class SkyInView:
    """The sources that matter in one set, per integration."""

    lmn: NDArray[np.float64]
    """Direction cosines relative to the phase centre, shape (Ntimes, Nsrc, 3)."""
    amplitude_jy: NDArray[np.float64]
    """Apparent flux (true flux x beam), shape (Ntimes, Nsrc, Nsubbands, Nchannels)."""


def sky_in_view(
    geometry: Geometry,
    catalog: Catalog,
    flux_jy: NDArray[np.float64],
    freq_hz: NDArray[np.float64],
    beam: BeamModel = DEFAULT_BEAM,
) -> SkyInView:
    """Apparent positions, direction cosines and beam-weighted fluxes (through ``beam``) of the
    sources that matter; ``freq_hz`` has shape (Nsubbands, Nchannels)."""
    n_t = len(geometry.time_jd)
    ra, dec = np.radians(catalog.ra_deg), np.radians(catalog.dec_deg)
    mid_lst = float(geometry.lst_rad[n_t // 2])
    near = angular_offset_rad(ra, dec, mid_lst, geometry.dec_rad) < PRESELECT_RADIUS_RAD
    near &= flux_jy > 0
    ra, dec, flux = ra[near], dec[near], flux_jy[near]
    shape = spectra(catalog.subset(near), freq_hz, band_centre_hz())  # (Nsrc, Nsb, Nch)
    if len(ra) == 0:
        return _empty_sky(n_t, freq_hz)
    n_s = len(ra)
    app_ra, app_dec = transform_icrs_to_app(
        time_array=np.repeat(geometry.time_jd, n_s),
        ra=np.tile(ra, n_t),
        dec=np.tile(dec, n_t),
        telescope_loc=telescope_lla(),
    )
    app_ra = np.asarray(app_ra).reshape(n_t, n_s)
    app_dec = np.asarray(app_dec).reshape(n_t, n_s)
    lst = geometry.lst_rad[:, None]
    offset = angular_offset_rad(app_ra, app_dec, lst, geometry.dec_rad)
    gain = primary_beam(offset[:, :, None, None], freq_hz[None, None, :, :], model=beam)
    amplitude = flux[None, :, None, None] * gain * shape[None]
    keep = amplitude.max(axis=(0, 2, 3)) > APPARENT_FLUX_FLOOR_JY
    lmn = _direction_cosines(app_ra - lst, app_dec, geometry.dec_rad)
    return SkyInView(lmn[:, keep], amplitude[:, keep])


def _empty_sky(n_t: int, freq_hz: NDArray[np.float64]) -> SkyInView:
    return SkyInView(np.zeros((n_t, 0, 3)), np.zeros((n_t, 0, *freq_hz.shape)))


def _direction_cosines(
    d_ra: NDArray[np.float64], dec: NDArray[np.float64], dec0: float
) -> NDArray[np.float64]:
    """(l, m, n) of directions at RA offset ``d_ra`` and ``dec`` from a centre at ``dec0``."""
    l_ = np.cos(dec) * np.sin(d_ra)
    m_ = np.sin(dec) * math.cos(dec0) - np.cos(dec) * math.sin(dec0) * np.cos(d_ra)
    n_ = np.sin(dec) * math.sin(dec0) + np.cos(dec) * math.cos(dec0) * np.cos(d_ra)
    return np.stack([l_, m_, n_], axis=-1)


def sky_visibilities(
    uvw_m: NDArray[np.float64],
    lmn: NDArray[np.float64],
    amplitude_jy: NDArray[np.float64],
    freq_hz: NDArray[np.float64],
) -> NDArray[np.complex64]:
    """Visibilities of point sources for one integration, shape (Nbls, Nsubbands, Nchannels).

    The phase of a channel factors as exp(2 pi i tau f_sb0) exp(2 pi i tau (f - f_sb0)): one
    exponential per baseline, source and subband times one per baseline, source and channel
    offset (the same in every subband). Each source's apparent spectrum (Nsubbands x
    Nchannels) is split into its few significant singular components, so the sum over
    sources becomes one batched matrix product per baseline.
    """
    n_bls = uvw_m.shape[0]
    out = np.zeros((n_bls, *freq_hz.shape), dtype=np.complex64)
    if lmn.shape[0] == 0:
        return out
    left, right = _spectral_factors(amplitude_jy)  # (Nsrc, Nsb, R), (Nsrc, R, Nch)
    for start in range(0, n_bls, BASELINE_BLOCK):  # blocks bound the temporaries' memory
        block = slice(start, min(n_bls, start + BASELINE_BLOCK))
        out[block] = _block_visibilities(uvw_m[block], lmn, left, right, freq_hz)
    return out


def _block_visibilities(
    uvw_m: NDArray[np.float64],
    lmn: NDArray[np.float64],
    left: NDArray[np.complex64],
    right: NDArray[np.complex64],
    freq_hz: NDArray[np.float64],
) -> NDArray[np.complex64]:
    n_bls = uvw_m.shape[0]
    delay_s = (uvw_m @ (lmn - np.array([0.0, 0.0, 1.0])).T) / k.SPEED_OF_LIGHT_M_S  # (Nbls, Nsrc)
    sb0 = freq_hz[:, 0]
    chan_offset = freq_hz[0] - freq_hz[0, 0]
    per_sb = _phasor(delay_s[:, None, :] * sb0[None, :, None])  # (Nbls, Nsb, Nsrc)
    per_ch = _phasor(delay_s[:, :, None] * chan_offset)  # (Nbls, Nsrc, Nch)
    n_src, _, rank = left.shape
    # x[b, sb, (s, r)] = per_sb[b, sb, s] left[s, sb, r]; y[b, (s, r), ch] likewise: both
    # built in matmul layout, so the reshapes are free.
    x = (per_sb[..., None] * left.transpose(1, 0, 2)[None]).reshape(n_bls, -1, n_src * rank)
    y = (per_ch[:, :, None, :] * right[None]).reshape(n_bls, n_src * rank, -1)
    return np.asarray(np.matmul(x, y), dtype=np.complex64)


def _phasor(cycles: NDArray[np.float64]) -> NDArray[np.complex64]:
    """exp(2 pi i cycles) in complex64: the turns are reduced in float64 first, so float32
    sine and cosine (several times faster than a complex128 exp) lose nothing."""
    turns = cycles - np.rint(cycles)
    turns *= 2 * np.pi
    angle = turns.astype(np.float32)
    out = np.empty(angle.shape, dtype=np.complex64)
    out.real = np.cos(angle)
    out.imag = np.sin(angle)
    return out


def _spectral_factors(
    amplitude_jy: NDArray[np.float64],
) -> tuple[NDArray[np.complex64], NDArray[np.complex64]]:
    """Low-rank factors of each source's (Nsubbands, Nchannels) apparent spectrum: exact to
    ``SPECTRUM_RANK_TOL`` of its largest singular value (rank 1-2 for a smooth beam)."""
    u, sv, vt = np.linalg.svd(amplitude_jy, full_matrices=False)
    keep = sv > SPECTRUM_RANK_TOL * sv[:, :1]
    rank = max(1, int(keep.sum(axis=1).max()))
    left = u[:, :, :rank] * sv[:, None, :rank]
    return left.astype(np.complex64), vt[:, :rank, :].astype(np.complex64)


def noise_sigma_jy(channel_width_hz: float, integration_s: float, sefd_jy: float) -> float:
    """Thermal noise of one cross-correlation, per real and per imaginary part, Jy."""
    return sefd_jy / math.sqrt(2.0 * channel_width_hz * integration_s)


def visibility_chunks(
    geometry: Geometry,
    sky: SkyInView,
    freq_hz: NDArray[np.float64],
    *,
    channel_width_hz: float,
    integration_s: float,
    sefd_jy: float,
    rng: np.random.Generator,
    chunk_integrations: int = 2,
) -> Iterator[tuple[int, NDArray[np.complex64]]]:
    """Yield ``(first_integration, vis)`` with vis of shape (nt, Nbls, Nsubbands, Nchan, 2):
    sky plus noise for XX and YY, autocorrelations real and offset by the SEFD.

    ``vis`` is one buffer reused from chunk to chunk (fresh pages for every chunk cost as
    much as the noise): consume or copy it before asking for the next chunk.
    """
    n_t, n_bls = len(geometry.time_jd), len(geometry.ant_1)
    auto = geometry.ant_1 == geometry.ant_2
    sigma = noise_sigma_jy(channel_width_hz, integration_s, sefd_jy)
    buffer = np.empty((chunk_integrations, n_bls, *freq_hz.shape, 2), dtype=np.complex64)
    for t0 in range(0, n_t, chunk_integrations):
        t1 = min(n_t, t0 + chunk_integrations)
        vis = buffer[: t1 - t0]
        parts = vis.view(np.float32)  # real and imaginary parts side by side, no copy
        rng.standard_normal(out=parts, dtype=np.float32)
        parts *= np.float32(sigma)
        for i, t in enumerate(range(t0, t1)):
            uvw = geometry.uvw_m[t * n_bls : (t + 1) * n_bls]
            model = sky_visibilities(uvw, sky.lmn[t], sky.amplitude_jy[t], freq_hz)
            vis[i] += model[..., None]
        # Autocorrelations are real power: SEFD + sky, with sqrt(2) the cross noise.
        autos = vis[:, auto]
        autos.real = autos.real * np.float32(math.sqrt(2.0)) + np.float32(sefd_jy)
        autos.imag = 0.0
        vis[:, auto] = autos
        yield t0, vis
