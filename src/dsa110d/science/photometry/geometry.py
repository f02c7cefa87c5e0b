"""Where the sources are, as seen by one Measurement Set of a drift scan.

The MS's frequencies, phase centre and integration times; the pointing (the meridian at the
phase centre's declination); the sources' apparent positions for the beam gain and their
direction cosines for the phase rotation; and phasors over channels cut into uniform blocks
(:class:`ChannelBlocks`). See :mod:`dsa110d.science.photometry.accumulation` for the method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from casacore import tables
from numpy.typing import NDArray
from pyuvdata.utils.phasing import transform_icrs_to_app

from dsa110d.errors import InputFileError
from dsa110d.science.astrometry import use_offline_iers
from dsa110d.science.beam import angular_offset_rad
from dsa110d.science.constants import (
    MJD_TO_JD,
    OVRO_HEIGHT_M,
    OVRO_LAT_RAD,
    OVRO_LON_RAD,
    SECONDS_PER_DAY,
    SIDEREAL_DAY_S,
)

SIDEREAL_RATE_RAD_S = 2.0 * math.pi / SIDEREAL_DAY_S
"""Rate at which the meridian moves in RA, rad/s."""

_CHANNEL_SPLIT = 32
"""Phasors over channels are built as an outer product of two short factors of this size."""

_UNIFORM_TOL_HZ = 1e-3
"""Channel frequencies closer than this (Hz) to a uniform grid use the factored phasors."""


@dataclass(frozen=True)
class MsGeometry:
    """What photometry needs from one MS's subtables and time column."""

    freq_hz: NDArray[np.float64]
    phase_ra: float
    phase_dec: float
    mid_time: float
    times: NDArray[np.float64]
    """Unique integration times, MJD seconds."""
    pointing_ra: float = math.nan
    """Apparent RA (rad, of date) of the pointing at ``mid_time``: the meridian there."""
    pointing_dec: float = math.nan
    """Apparent Dec (rad, of date) of the pointing: the header's pointing declination."""


def read_geometry(ms: tables.table, path: Path) -> MsGeometry:
    spw = tables.table(f"{path}::SPECTRAL_WINDOW", ack=False)
    field = tables.table(f"{path}::FIELD", ack=False)
    with spw, field:
        freq = np.asarray(spw.getcol("CHAN_FREQ")[0], dtype=np.float64)
        phase_dir = field.getcol("PHASE_DIR")
    if phase_dir.shape[0] != 1:
        raise InputFileError(
            f"{path}: photometry needs one phase centre, found {phase_dir.shape[0]}"
        )
    times = np.unique(ms.getcol("TIME"))
    mid = 0.5 * float(times[0] + times[-1])
    phase_ra, phase_dec = float(phase_dir[0, 0, 0]), float(phase_dir[0, 0, 1])
    # The converter phases to the apparent meridian at mid-time, stated in ICRS: the
    # pointing is that centre carried back to apparent coordinates of date.
    app_ra, app_dec = apparent_positions(np.array([phase_ra]), np.array([phase_dec]), mid)
    return MsGeometry(
        freq_hz=freq,
        phase_ra=phase_ra,
        phase_dec=phase_dec,
        mid_time=mid,
        times=times,
        pointing_ra=float(app_ra[0]),
        pointing_dec=float(app_dec[0]),
    )


def pointing_ra(geometry: MsGeometry, times: NDArray[np.float64]) -> NDArray[np.float64]:
    """Apparent RA (rad) of the meridian at ``times`` (MJD s): where the dishes point."""
    return geometry.pointing_ra + SIDEREAL_RATE_RAD_S * (times - geometry.mid_time)


def apparent_positions(
    ra: NDArray[np.float64], dec: NDArray[np.float64], time_mjd_s: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Apparent (of date, topocentric) RA/Dec (rad) of ICRS directions at one instant."""
    use_offline_iers()
    jd = np.full(ra.size, time_mjd_s / SECONDS_PER_DAY + MJD_TO_JD)
    app_ra, app_dec = transform_icrs_to_app(
        time_array=jd, ra=ra, dec=dec, telescope_loc=(OVRO_LAT_RAD, OVRO_LON_RAD, OVRO_HEIGHT_M)
    )
    return np.asarray(app_ra, dtype=np.float64), np.asarray(app_dec, dtype=np.float64)


def beam_offsets(
    geometry: MsGeometry, app_ra: NDArray[np.float64], app_dec: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Offsets (rad) of apparent directions (:func:`apparent_positions` at the MS's mid-time:
    they change by < 0.1 arcsec over a chunk) from the pointing, (sources, integrations)."""
    pointing = pointing_ra(geometry, geometry.times)
    return angular_offset_rad(
        pointing[None, :], geometry.pointing_dec, app_ra[:, None], app_dec[:, None]
    )


def direction_cosines(
    ra: NDArray[np.float64], dec: NDArray[np.float64], ra0: float, dec0: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(l, m, n) of directions (rad) relative to the phase centre (ra0, dec0)."""
    dra = ra - ra0
    l_ = np.cos(dec) * np.sin(dra)
    m_ = np.sin(dec) * np.cos(dec0) - np.cos(dec) * np.sin(dec0) * np.cos(dra)
    n_ = np.sqrt(np.clip(1.0 - l_ * l_ - m_ * m_, 0.0, 1.0))
    return l_, m_, n_


def phasors(delay_s: NDArray[np.float64], freq_hz: NDArray[np.float64]) -> NDArray[np.complex64]:
    """exp(2 pi i delay * freq) for every row and channel, (rows, channels) complex64.

    For uniformly spaced channels the phasor is the outer product of two short factors
    (channel k = a * SPLIT + b), so only rows * (n_chan / SPLIT + SPLIT) exponentials are taken.
    """
    n_chan = freq_hz.size
    step = float(freq_hz[1] - freq_hz[0]) if n_chan > 1 else 0.0
    uniform = np.allclose(
        freq_hz, freq_hz[0] + step * np.arange(n_chan), rtol=0, atol=_UNIFORM_TOL_HZ
    )
    turns = 2j * np.pi * delay_s[:, None]
    if not uniform or n_chan <= _CHANNEL_SPLIT:
        return np.asarray(np.exp(turns * freq_hz[None, :]), dtype=np.complex64)
    n_outer = -(-n_chan // _CHANNEL_SPLIT)
    outer = np.exp(turns * (freq_hz[0] + step * _CHANNEL_SPLIT * np.arange(n_outer))).astype(
        np.complex64
    )
    inner = np.exp(turns * (step * np.arange(_CHANNEL_SPLIT))).astype(np.complex64)
    product = outer[:, :, None] * inner[:, None, :]
    return np.asarray(product.reshape(delay_s.size, -1)[:, :n_chan], dtype=np.complex64)


@dataclass(frozen=True)
class ChannelBlocks:
    """Channels cut into equal blocks of ``split`` uniformly spaced channels.

    The phasor of channel a*split + b factors as exp(2 pi i tau f_a) exp(2 pi i tau b df), so a
    row's rotated sum needs only n_blocks + split exponentials; the beam gain is taken at each
    block's centre (it changes by < 0.2% across a block of ~8 MHz). Non-uniform channels fall
    back to blocks of one channel (exact, slower).
    """

    split: int
    first_hz: NDArray[np.float64]
    """Frequency of each block's first channel."""
    centre_hz: NDArray[np.float64]
    step_hz: float

    @classmethod
    def of(cls, freq_hz: NDArray[np.float64]) -> ChannelBlocks:
        n_chan = freq_hz.size
        step = float(freq_hz[1] - freq_hz[0]) if n_chan > 1 else 0.0
        uniform = np.allclose(
            freq_hz, freq_hz[0] + step * np.arange(n_chan), rtol=0, atol=_UNIFORM_TOL_HZ
        )
        split = _CHANNEL_SPLIT if uniform and n_chan % _CHANNEL_SPLIT == 0 else 1
        blocks = freq_hz.reshape(-1, split)
        return cls(split, blocks[:, 0].copy(), blocks.mean(axis=1), step)

    def rotated_sums(
        self, vis: NDArray[np.complex64], delay_s: NDArray[np.float64], gain: NDArray[np.float32]
    ) -> NDArray[np.complex64]:
        """sum over channels of gain * vis * exp(2 pi i delay freq), per row."""
        if self.split == 1:
            outer = np.exp(2j * np.pi * delay_s[:, None] * self.first_hz[None, :])
            return np.asarray((vis * outer.astype(np.complex64)) @ gain, dtype=np.complex64)
        # Uniform channels: both factors are geometric series, built by running products
        # from three exponentials per row (complex128, so 32 steps lose < 1e-13 in phase).
        outer = _geometric(delay_s, self.first_hz[0], self.split * self.step_hz, self.first_hz.size)
        fine = _geometric(delay_s, 0.0, self.step_hz, self.split)
        inner = np.matmul(vis.reshape(vis.shape[0], -1, self.split), fine[:, :, None])[..., 0]
        return np.asarray((inner * outer) @ gain.astype(np.complex64), dtype=np.complex64)


def _geometric(
    delay_s: NDArray[np.float64], first_hz: float, step_hz: float, n: int
) -> NDArray[np.complex64]:
    """exp(2 pi i delay (first + k step)) for k < n, (rows, n), by a running product (each
    step one multiply over every row: the same products as np.cumprod along the short axis,
    which is ~2x slower)."""
    by_k = np.empty((n, delay_s.size), dtype=np.complex128)
    by_k[0] = np.exp(2j * np.pi * delay_s * first_hz)
    if n > 1:
        step = np.exp(2j * np.pi * delay_s * step_hz)
        for k in range(1, n):
            np.multiply(by_k[k - 1], step, out=by_k[k])
    return by_k.T.astype(np.complex64, order="C")
