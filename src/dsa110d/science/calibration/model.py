"""The sky model a calibration solves against: catalog point sources through the primary beam.

For one MS, the model visibility of row r (antennas i, j; time t) at frequency f is

    M(r, f) = sum_s S_s spectrum_s(f) P(offset_s(t), f) exp(+2 pi i f uvw_r . (l, m, n - 1)_s / c)

(the photometry's convention, :mod:`dsa110d.science.photometry.accumulation`), over the
catalog sources whose band-centre beam gain reaches ``MODEL_GAIN_MIN`` during the MS; the
brightest ``MODEL_MAX_SOURCES`` (flux x gain) only. ``spectrum_s`` is the row's flux model
(:mod:`dsa110d.science.fluxmodels`: Perley-Butler 2017 for a standard calibrator, flat
otherwise); P is :func:`dsa110d.science.beam.primary_beam`. XX and YY are both the Stokes I
model (unpolarised sources).

Factorised per antenna (:func:`integration_model`): a baseline's uvw is the difference of its
antennas' ``w_j - w_i`` (one integration, the phase centre's frame), so the phasor splits as
``conj(a_is) a_js`` with ``a_is = exp(2 pi i f w_i . lmn_s / c)``, and the model of every
baseline of an integration is, per channel, one matrix product
``M = conj(P) diag(S B) P^T`` over the sources (P: antennas x sources): Nant x Nsrc exponentials
and a BLAS product per channel instead of a phasor per baseline, source and channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dsa110d.science.beam import primary_beam
from dsa110d.science.catalog import Catalog, calibrator_rows, spectra
from dsa110d.science.constants import SPEED_OF_LIGHT_M_S
from dsa110d.science.fluxmodels import band_centre_hz
from dsa110d.science.photometry.geometry import (
    MsGeometry,
    apparent_positions,
    beam_offsets,
    direction_cosines,
    phasors,
)

MODEL_GAIN_MIN = 0.02
"""Sources whose band-centre beam gain reaches this during the MS are in the model (the main
lobe down to where the first sidelobe peaks, as in the photometry's joint fit)."""
MODEL_MAX_SOURCES = 30
"""At most this many sources, the brightest by catalog flux x peak gain."""


@dataclass(frozen=True)
class SkyModel:
    """The model sources of one MS and their beam gains."""

    rows: NDArray[np.intp]
    """Catalog rows in the model."""
    lmn: NDArray[np.float64]
    """(Nsrc, 3): l, m, n - 1 relative to the phase centre."""
    flux_jy: NDArray[np.float64]
    spectrum: NDArray[np.float64]
    """(Nsrc, Nchan): flux model over catalog flux."""
    gain: NDArray[np.float64]
    """(Nsrc, Ntimes, Nchan): primary-beam gain."""
    peak_gain: NDArray[np.float64]
    """(Ncatalog,): every catalog source's best band-centre gain during the MS."""
    times: NDArray[np.float64]
    freq_hz: NDArray[np.float64]
    apparent_flux_jy: float
    """Sum of the model's beam-weighted fluxes at the band centre, at its brightest."""

    @property
    def amplitude_jy(self) -> NDArray[np.float32]:
        """(Nsrc, Ntimes, Nchan): flux x spectrum x beam, the model's apparent fluxes."""
        cached: NDArray[np.float32] | None = self.__dict__.get("_amplitude")
        if cached is None:
            full = self.flux_jy[:, None, None] * self.spectrum[:, None, :] * self.gain
            cached = full.astype(np.float32)
            object.__setattr__(self, "_amplitude", cached)
        return cached


def sky_model(geometry: MsGeometry, catalog: Catalog) -> SkyModel:
    """The in-beam catalog sources of one MS (see the module docstring)."""
    ra, dec = np.radians(catalog.ra_deg), np.radians(catalog.dec_deg)
    app_ra, app_dec = apparent_positions(ra, dec, geometry.mid_time)
    offsets = beam_offsets(geometry, app_ra, app_dec)  # (Ncat, Nt)
    centre = primary_beam(offsets, band_centre_hz())
    peak = centre.max(axis=1)
    candidates = np.flatnonzero(peak >= MODEL_GAIN_MIN)
    order = np.argsort(-catalog.flux_jy[candidates] * peak[candidates], kind="stable")
    rows = candidates[order[:MODEL_MAX_SOURCES]]
    l_, m_, n_ = direction_cosines(ra[rows], dec[rows], geometry.phase_ra, geometry.phase_dec)
    lmn = np.stack([l_, m_, n_ - 1.0], axis=1)
    gain = primary_beam(offsets[rows, :, None], geometry.freq_hz[None, None, :])
    shape = spectra(catalog.subset(rows), geometry.freq_hz, band_centre_hz())
    apparent = float((catalog.flux_jy[rows, None] * centre[rows]).sum(axis=0).max(initial=0.0))
    return SkyModel(
        rows,
        lmn,
        catalog.flux_jy[rows],
        shape,
        gain,
        peak,
        geometry.times,
        geometry.freq_hz,
        apparent,
    )


def model_visibilities(
    model: SkyModel, uvw_m: NDArray[np.float64], time_index: NDArray[np.intp]
) -> NDArray[np.complex64]:
    """The model at rows with ``uvw_m`` (rows, 3) and integration index ``time_index``, shape
    (rows, Nchan)."""
    out = np.zeros((uvw_m.shape[0], model.freq_hz.size), dtype=np.complex64)
    delays = uvw_m @ model.lmn.T / SPEED_OF_LIGHT_M_S  # (rows, Nsrc)
    amplitude = model.amplitude_jy
    for s in range(model.rows.size):  # a few tens of sources, each vectorised over rows x chans
        term = phasors(delays[:, s], model.freq_hz)
        term *= amplitude[s][time_index]
        out += term
    return out


UVW_FACTOR_TOL_M = 1e-3
"""The per-antenna w reproduce every row's UVW to this (1 mm: a phase error below 0.1 degree
for an in-beam source at 1.5 GHz), else :func:`integration_model` computes per baseline."""


def antenna_uvw(
    uvw_m: NDArray[np.float64], ant_1: NDArray[np.intp], ant_2: NDArray[np.intp], n_ant: int
) -> NDArray[np.float64] | None:
    """Per-antenna w (n_ant, 3) of one integration with ``uvw_ij = w_j - w_i`` (antenna indices
    0..n_ant-1, the first antenna's w zero), or None when the rows do not determine them (a
    missing baseline to the first antenna) or do not follow from them within UVW_FACTOR_TOL_M."""
    w = np.full((n_ant, 3), np.nan)
    first = int(min(ant_1.min(), ant_2.min()))
    w[first] = 0.0
    from_first = ant_1 == first
    w[ant_2[from_first]] = uvw_m[from_first]
    to_first = (ant_2 == first) & (ant_1 != first)
    w[ant_1[to_first]] = -uvw_m[to_first]
    used = np.unique(np.r_[ant_1, ant_2])
    if not np.isfinite(w[used]).all():
        return None
    if np.abs(w[ant_2] - w[ant_1] - uvw_m).max(initial=0.0) > UVW_FACTOR_TOL_M:
        return None
    return np.asarray(np.nan_to_num(w), dtype=np.float64)


def integration_model(
    model: SkyModel,
    uvw_m: NDArray[np.float64],
    ant_1: NDArray[np.intp],
    ant_2: NDArray[np.intp],
    time_index: int,
    n_ant: int,
) -> NDArray[np.complex64]:
    """The model (rows, Nchan) of the rows of ONE integration (``time_index``), antennas
    0..n_ant-1, factorised per antenna (see the module docstring)."""
    w = antenna_uvw(uvw_m, ant_1, ant_2, n_ant)
    if w is None or model.rows.size == 0:
        return model_visibilities(model, uvw_m, np.full(uvw_m.shape[0], time_index, np.intp))
    n_src, n_chan = model.rows.size, model.freq_hz.size
    delays = (w @ model.lmn.T / SPEED_OF_LIGHT_M_S).reshape(-1)  # (Nant * Nsrc,)
    p = phasors(delays, model.freq_hz).reshape(n_ant, n_src, n_chan).transpose(2, 0, 1)
    p = np.ascontiguousarray(p)  # (Nchan, Nant, Nsrc)
    weighted = np.conj(p) * model.amplitude_jy[:, time_index, :].T[:, None, :]
    full = np.matmul(weighted, p.transpose(0, 2, 1))  # (Nchan, Nant, Nant): M_ij
    picked = np.take(full.reshape(n_chan, n_ant * n_ant), ant_1 * n_ant + ant_2, axis=1)
    return np.ascontiguousarray(picked.T)


def calibrator_peak_gain(model: SkyModel, catalog: Catalog) -> tuple[int | None, float]:
    """The catalog's brightest calibrator seen by this MS (row) and its best beam gain."""
    cal = calibrator_rows(catalog)
    if cal.size == 0:
        return None, 0.0
    best = int(cal[np.argmax(model.peak_gain[cal] * catalog.flux_jy[cal])])
    return best, float(model.peak_gain[best])
