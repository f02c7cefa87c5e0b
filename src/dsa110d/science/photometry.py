"""The ``photometry`` stage: forced photometry in the visibility domain at catalog positions.

For every catalog source inside the primary beam during a block, the cross-correlations are
phase-rotated to the source, weighted by the primary beam and averaged over baselines
(short ones excluded), channels, both polarisations (Stokes I = (XX + YY) / 2 for an
unpolarised source) and the integrations of its transit. With rotated visibilities
``z = g S + noise`` (g the beam gain at that time and frequency) the least-squares flux is
``S = sum(g Re z) / sum(g^2)``: this is the beam correction. Its error is the larger of
(a) the thermal error ``sigma / sqrt(sum(g^2))``, ``sigma`` measured from the scatter of the
imaginary parts of each row's beam-weighted rotated sum (they carry no signal of the source),
and (b) the jackknife error over JACKKNIFE_GROUPS groups of baselines, which also captures the
sidelobes of other sources (confusion), which do not average down like noise.

Visibility convention (the Measurement Set's as pyuvdata's ``write_ms`` and our converter
write it, and pyuvdata's own): a point source of flux S at direction cosines (l, m, n)
relative to the phase centre contributes ``S g exp(+2 pi i (u l + v m + w (n - 1)) / lambda)``
with (u, v, w) the UVW column; rotating to the source multiplies by the conjugate phase.

Geometry of the drift scan: the dishes point at the apparent meridian at the declination of
the MS's phase centre; the converter phases each chunk to the ICRS position whose RA is the
apparent LST at its mid-time, so the pointing's apparent RA at time t is the phase centre's
RA + the sidereal rate * (t - mid-time). The beam gain is computed from the sources' apparent
positions (precession since J2000 moves them ~0.4 deg); the phase rotation uses their ICRS
positions relative to the ICRS phase centre, the frame of the UVW column.

Output: ``results/photometry/<block_id>.parquet``, one row per source per block, published
atomically, columns :data:`SCHEMA`. Memory is bounded: the MS is read ``ROWS_PER_READ`` rows
at a time.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from casacore import tables
from numpy.typing import NDArray
from pyuvdata.utils.phasing import transform_icrs_to_app

from dsa110d.config import Config
from dsa110d.errors import InputFileError
from dsa110d.science.astrometry import use_offline_iers
from dsa110d.science.atomic import atomic_file
from dsa110d.science.beam import SPEED_OF_LIGHT_M_S, angular_offset_rad, primary_beam
from dsa110d.science.catalog import Catalog, read_catalog
from dsa110d.science.constants import OVRO_HEIGHT_M, OVRO_LAT_RAD, OVRO_LON_RAD, SIDEREAL_DAY_S
from dsa110d.science.stages import BlockJob, StageResult

log = logging.getLogger(__name__)

MIN_BASELINE_M = 20.0
"""Baselines shorter than this (m) are excluded: they see extended emission and cross-talk."""
BEAM_GAIN_MIN = 0.2
"""A source is in the beam at an integration when its band-centre gain is at least this; only
such integrations are used, and sources never reaching it during a block are not reported."""
ROWS_PER_READ = 8192
"""Main-table rows read at once (~100 MB of DATA at 768 channels x 2 polarisations)."""
SIDEREAL_RATE_RAD_S = 2.0 * math.pi / SIDEREAL_DAY_S
"""Rate at which the meridian moves in RA, rad/s."""
SECONDS_PER_DAY = 86400.0
MJD_TO_JD = 2400000.5
JACKKNIFE_GROUPS = 16
"""Baselines are dealt into this many groups; the scatter of the leave-one-group-out fluxes
measures the error including confusion from other sources' sidelobes, which the per-visibility
noise misses (it does not average down as 1/sqrt(N))."""
_CHANNEL_SPLIT = 32
"""Phasors over channels are built as an outer product of two short factors of this size."""
_UNIFORM_TOL_HZ = 1e-3
"""Channel frequencies closer than this (Hz) to a uniform grid use the factored phasors."""

SCHEMA: dict[str, str] = {
    "source_id": "string: the catalog's id",
    "ra_deg": "float64: catalog RA, ICRS deg",
    "dec_deg": "float64: catalog Dec, ICRS deg",
    "block_id": "string: the block (UTC start of its own hour), dsa110d.science.blocks",
    "mjd": "float64: beam-weighted mean time of the source's data, MJD (UTC)",
    "flux_jy": "float64: beam-corrected Stokes I flux density, Jy (NaN when no data)",
    "flux_err_jy": "float64: 1-sigma error from the visibility noise, Jy",
    "n_vis": "int64: unflagged single-polarisation visibilities (row x channel x pol) used",
    "beam_gain": "float64: effective primary-beam gain, sum(g^2 w) / sum(g w)",
    "flags": "string: comma-separated quality flags (missing_chunks, partial_transit, no_data)",
    "version": "int64: run of the block; a higher version supersedes a lower one",
}


@dataclass(frozen=True)
class MsGeometry:
    """What photometry needs from one MS's subtables and time column."""

    freq_hz: NDArray[np.float64]
    phase_ra: float
    phase_dec: float
    mid_time: float
    times: NDArray[np.float64]
    """Unique integration times, MJD seconds."""


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
    return MsGeometry(
        freq_hz=freq,
        phase_ra=float(phase_dir[0, 0, 0]),
        phase_dec=float(phase_dir[0, 0, 1]),
        mid_time=0.5 * float(times[0] + times[-1]),
        times=times,
    )


def pointing_ra(geometry: MsGeometry, times: NDArray[np.float64]) -> NDArray[np.float64]:
    """RA (rad) of the meridian at ``times`` (MJD s): where the dishes point."""
    return geometry.phase_ra + SIDEREAL_RATE_RAD_S * (times - geometry.mid_time)


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
    geometry: MsGeometry, ra: NDArray[np.float64], dec: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Offsets (rad) of ICRS directions from the pointing, (sources, integrations)."""
    # Apparent places change by < 0.1 arcsec over a chunk: one transform at mid-time.
    app_ra, app_dec = apparent_positions(ra, dec, geometry.mid_time)
    pointing = pointing_ra(geometry, geometry.times)
    return angular_offset_rad(
        pointing[None, :], geometry.phase_dec, app_ra[:, None], app_dec[:, None]
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
    """exp(2 pi i delay (first + k step)) for k < n, (rows, n), by a running product."""
    terms = np.empty((delay_s.size, n), dtype=np.complex128)
    terms[:, 0] = np.exp(2j * np.pi * delay_s * first_hz)
    if n > 1:
        terms[:, 1:] = np.exp(2j * np.pi * delay_s * step_hz)[:, None]
        np.cumprod(terms, axis=1, out=terms)
    return terms.astype(np.complex64)


class _Sums:
    """Per-source running sums over a block."""

    def __init__(self, n: int) -> None:
        self.signal = np.zeros((n, JACKKNIFE_GROUPS))  # sum g Re z, per baseline group
        self.weight = np.zeros((n, JACKKNIFE_GROUPS))  # sum g^2 w, per baseline group
        self.gain_weight = np.zeros(n)  # sum g w
        self.imag_sq = np.zeros(n)  # sum over rows of (Im sum_c g z)^2
        self.n_vis = np.zeros(n, dtype=np.int64)  # sum w
        self.time_weight = np.zeros(n)  # sum t g^2 w
        self.peak_gain = np.zeros(n)
        self.peak_time = np.zeros(n)
        self.first_time = math.inf
        self.last_time = -math.inf


@dataclass(frozen=True)
class _Integration:
    """The usable rows of one integration within a slab, and their weight per group/block."""

    index: int
    rows: slice
    group: NDArray[np.intp]
    weight: NDArray[np.float32]
    """(JACKKNIFE_GROUPS, n_blocks): unflagged visibilities per baseline group and block."""


def _integrations(
    t_index: NDArray[np.intp], group: NDArray[np.intp], weight: NDArray[np.float32], split: int
) -> list[_Integration]:
    """Cut time-sorted rows into integrations, with their per-group, per-block weights."""
    bounds = np.flatnonzero(np.r_[True, t_index[1:] != t_index[:-1], True])
    per_block = weight.reshape(weight.shape[0], -1, split).sum(axis=2)
    found = []
    for lo, hi in itertools.pairwise(bounds):
        onehot = (group[lo:hi][None, :] == np.arange(JACKKNIFE_GROUPS)[:, None]).astype(np.float32)
        found.append(
            _Integration(int(t_index[lo]), slice(lo, hi), group[lo:hi], onehot @ per_block[lo:hi])
        )
    return found


def _accumulate_slab(
    sums: _Sums,
    sources: NDArray[np.intp],
    lmn: NDArray[np.float64],
    gains: NDArray[np.float32],
    active: NDArray[np.bool_],
    integrations: list[_Integration],
    uvw: NDArray[np.float64],
    vis: NDArray[np.complex64],
    channels: ChannelBlocks,
    times: NDArray[np.float64],
) -> None:
    """Add one slab of time-sorted usable rows to the sums of every source in the beam."""
    for it in integrations:
        uvw_t, vis_t = uvw[it.rows], vis[it.rows]
        for s in sources[active[sources, it.index]]:
            g = gains[s, it.index]
            delay = -(uvw_t @ lmn[s]) / SPEED_OF_LIGHT_M_S  # undoes exp(+2 pi i uvw.lmn)
            r = channels.rotated_sums(vis_t, delay, g)
            sums.signal[s] += np.bincount(it.group, weights=r.real, minlength=JACKKNIFE_GROUPS)
            sums.imag_sq[s] += float(np.dot(r.imag, r.imag))
            g2w = it.weight @ (g * g)
            sums.weight[s] += g2w
            sums.gain_weight[s] += float((it.weight @ g).sum())
            sums.time_weight[s] += float(g2w.sum()) * times[it.index]
            sums.n_vis[s] += int(it.weight.sum())


def measure_ms(path: Path, catalog: Catalog, sums: _Sums) -> None:
    """Add one MS's contribution for every catalog source to ``sums``."""
    try:
        ms = tables.table(str(path), ack=False)
    except RuntimeError as exc:
        raise InputFileError(f"{path}: cannot open Measurement Set: {exc}") from None
    with ms:
        geometry = read_geometry(ms, path)
        channels = ChannelBlocks.of(geometry.freq_hz)
        ra, dec = np.radians(catalog.ra_deg), np.radians(catalog.dec_deg)
        offsets = beam_offsets(geometry, ra, dec)
        centre_gain = primary_beam(offsets, np.mean(geometry.freq_hz))
        active = centre_gain >= BEAM_GAIN_MIN
        _note_peaks(sums, centre_gain, geometry.times)
        sources = np.flatnonzero(active.any(axis=1))
        if sources.size == 0:
            return
        # Gain per source, integration and channel block, for the sources seen in this MS.
        gains = np.zeros((ra.size, geometry.times.size, channels.centre_hz.size), np.float32)
        gains[sources] = primary_beam(offsets[sources, :, None], channels.centre_hz[None, None, :])
        l_, m_, n_ = direction_cosines(ra, dec, geometry.phase_ra, geometry.phase_dec)
        lmn = np.stack([l_, m_, n_ - 1.0], axis=1)
        for start in range(0, ms.nrows(), ROWS_PER_READ):
            n = min(ROWS_PER_READ, ms.nrows() - start)
            uvw = ms.getcol("UVW", start, n)
            ant1, ant2 = ms.getcol("ANTENNA1", start, n), ms.getcol("ANTENNA2", start, n)
            usable = (ant1 != ant2) & (np.linalg.norm(uvw, axis=1) >= MIN_BASELINE_M)
            if not usable.any():
                continue
            t_all = np.searchsorted(geometry.times, ms.getcol("TIME", start, n))
            rows = np.flatnonzero(usable)
            rows = rows[np.argsort(t_all[rows], kind="stable")]  # a no-op for time-major MSs
            vis, weight = _stokes_sum(
                ms.getcol("DATA", start, n), ms.getcol("FLAG", start, n), rows
            )
            t_index = t_all[rows]
            group = (ant1 * 7919 + ant2)[rows] % JACKKNIFE_GROUPS
            slab = _integrations(t_index, group, weight, channels.split)
            _accumulate_slab(
                sums, sources, lmn, gains, active, slab, uvw[rows], vis, channels,
                geometry.times,
            )  # fmt: skip


def _stokes_sum(
    data: NDArray[np.complex64], flag: NDArray[np.bool_], rows: NDArray[np.intp]
) -> tuple[NDArray[np.complex64], NDArray[np.float32]]:
    """XX + YY of the unflagged polarisations at ``rows``, and how many were unflagged."""
    if not flag.any():
        n_pol = data.shape[2]
        vis = data[rows, :, 0] if n_pol == 1 else data[rows, :, 0] + data[rows, :, 1]
        return vis.astype(np.complex64, copy=False), np.full(vis.shape, n_pol, np.float32)
    good = ~flag[rows]
    picked = data[rows]
    vis = np.where(good[:, :, 0], picked[:, :, 0], 0)
    for pol in range(1, data.shape[2]):
        vis += np.where(good[:, :, pol], picked[:, :, pol], 0)
    return vis.astype(np.complex64, copy=False), good.sum(axis=2, dtype=np.float32)


def _note_peaks(sums: _Sums, centre_gain: NDArray[np.float64], times: NDArray[np.float64]) -> None:
    """Track each source's peak gain and when it happened, and the span of the block's data."""
    peak = centre_gain.max(axis=1)
    higher = peak > sums.peak_gain
    sums.peak_gain = np.where(higher, peak, sums.peak_gain)
    sums.peak_time = np.where(higher, times[centre_gain.argmax(axis=1)], sums.peak_time)
    sums.first_time = min(sums.first_time, float(times[0]))
    sums.last_time = max(sums.last_time, float(times[-1]))


def _jackknife_error(
    signal: NDArray[np.float64], weight: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Leave-one-group-out error of signal / weight, per source (rows)."""
    total_s, total_w = signal.sum(axis=1, keepdims=True), weight.sum(axis=1, keepdims=True)
    used = weight > 0
    k = used.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        loo = (total_s - signal) / (total_w - weight)
        loo = np.where(used, loo, 0.0)
        mean = loo.sum(axis=1, keepdims=True) / k[:, None]
        spread = np.where(used, (loo - mean) ** 2, 0.0).sum(axis=1)
        return np.asarray(np.sqrt((k - 1) / k * spread), dtype=np.float64)


def measure_block(job: BlockJob, ms_paths: Sequence[Path], catalog: Catalog) -> pd.DataFrame:
    """One row per catalog source inside the beam during the block (see :data:`SCHEMA`)."""
    sums = _Sums(len(catalog))
    for path in sorted(ms_paths):
        measure_ms(Path(path), catalog, sums)
    seen = np.flatnonzero(sums.peak_gain >= BEAM_GAIN_MIN)
    with np.errstate(invalid="ignore", divide="ignore"):
        signal, weight = sums.signal.sum(axis=1), sums.weight.sum(axis=1)
        flux = signal / weight
        thermal = np.sqrt(sums.imag_sq / sums.n_vis / weight)
        error = np.fmax(thermal, _jackknife_error(sums.signal, sums.weight))
        gain = weight / sums.gain_weight
        mjd = sums.time_weight / weight / SECONDS_PER_DAY
    rows = []
    for s in seen:
        flags = ["missing_chunks"] if job.missing_slots else []
        if sums.peak_time[s] in (sums.first_time, sums.last_time):  # transit not covered
            flags.append("partial_transit")
        if sums.n_vis[s] == 0:
            flags.append("no_data")
        rows.append(
            {
                "source_id": catalog.ids[s],
                "ra_deg": float(catalog.ra_deg[s]),
                "dec_deg": float(catalog.dec_deg[s]),
                "block_id": job.block_id,
                "mjd": float(mjd[s]),
                "flux_jy": float(flux[s]),
                "flux_err_jy": float(error[s]),
                "n_vis": int(sums.n_vis[s]),
                "beam_gain": float(gain[s]),
                "flags": ",".join(flags),
                "version": job.version,
            }
        )
    frame = pd.DataFrame(rows, columns=list(SCHEMA))
    return frame.astype(
        {
            "source_id": "string",
            "block_id": "string",
            "flags": "string",
            "n_vis": "int64",
            "version": "int64",
        }
    )


def photometry_path(config: Config, block_id: str) -> Path:
    return config.paths.results_dir / "photometry" / f"{block_id}.parquet"


def write_photometry(frame: pd.DataFrame, final: Path) -> None:
    """Publish a block's photometry atomically (readers never see a partial file)."""
    with atomic_file(final) as temp:
        frame.to_parquet(temp, index=False)


def photometry_stage(
    job: BlockJob, ms_paths: Sequence[Path], config: Config, scratch: Path
) -> StageResult:
    """Forced photometry of the catalog sources in the beam; writes the block's Parquet file."""
    if config.paths.catalog is None:
        return StageResult("photometry", "skipped", message="paths.catalog is not configured")
    catalog = read_catalog(config.paths.catalog)
    frame = measure_block(job, ms_paths, catalog)
    final = photometry_path(config, job.block_id)
    write_photometry(frame, final)
    return StageResult(
        "photometry",
        "ok",
        outputs={"photometry": str(final)},
        summary={"sources": len(frame), "version": job.version},
    )
