"""The ``photometry`` stage: forced photometry in the visibility domain at catalog positions.

For every catalog source inside the primary beam during a block, the cross-correlations are
phase-rotated to the source, weighted by the primary beam (``settings.beam``, the tapered
DSA-110 model by default: :mod:`dsa110d.science.beam`) and summed over baselines (within the
uv range in wavelengths, :mod:`~dsa110d.science.photometry.settings`), channels, both
polarisations (Stokes I = (XX + YY) / 2 for an unpolarised source)
and the integrations of its transit: ``b_j = sum g_j Re z_j`` with ``z_j`` the visibilities
rotated to source j and g_j its beam gain at that time and frequency.

Why a joint fit. Measured alone (``S_j = b_j / sum g_j^2 w``, the beam correction), a source
also collects the sidelobes of every other source in the beam. With a sparse array these are
~0.1-0.4 Jy for Jy-level neighbours, far above the thermal noise (~1-5 mJy at small scale),
and the baseline jackknife that measured them made every error confusion-sized; but they are
the same at the same LST every day (same uv coverage), so constant sources scattered far less
than their errors and real variables looked constant. So the catalog sources in the beam are
fitted together: the normal equations ``A S = b`` with
``A_jk = sum over rows, channels, pols of w g_j g_k Re exp(2 pi i f (d_k - d_j))``,
``d = uvw . (l, m, n - 1) / c`` (A_jj the single-source weight). A is additive over MSs,
slabs and integrations and only pairs of sources both fitted at an integration contribute; with
gain constant over a block of uniformly spaced channels the channel sum is the block-centre
phasor times a Dirichlet kernel (:func:`pairs.add_pairs`), so the pair terms cost pairs x rows x
channel blocks. Fitted are, at each integration, the JOINT_FIT_MAX_SOURCES brightest (catalog
flux x gain) sources with gain >= JOINT_FIT_GAIN_MIN, which includes the beam's flank: their
sidelobes reach the sources in the beam too. Sources closer together than the fit can separate
(JOINT_FIT_MAX_CORRELATION, JOINT_FIT_MIN_EIGENVALUE) are measured alone and flagged
``blended``; sources beyond the cap are measured alone (as before the joint fit).

Cost: per integration, one rotation per source in the beam or fitted (the flank sources add
rotations, up to the cap), plus the pair terms of the fitted ones, ~K^2 x rows x channel blocks
(at real scale and K = 30, ~75 ms per integration on one core against ~5 ms per rotation).
A partly flagged channel block is summed as if all its channels had its largest weight, less the
flagged channels taken one by one (:func:`pairs._deficit_gram`): the flagger leaves a few
scattered channels in most rows, and summing those rows' blocks channel by channel was ~10x the
rest of photometry at real scale. The pair sums are kept per slot (a source fitted at some
integration of the block): slots^2 x JACKKNIFE_GROUPS float64, 128 MB for a pathological 1,000
fitted sources in one block; the final solve is one slots x slots system plus one per baseline
group.

What the error means: (a), unless (b) exceeds it by ``solve.JACKKNIFE_EXCESS`` (1.43, the
99th percentile of a 15-degree-of-freedom jackknife's ratio to a correct thermal error), plus
the configured systematic fraction of the flux in quadrature (``stage.measure_block``):
(a) the thermal error ``sigma sqrt((A^-1)_jj)``, with ``sigma^2`` the power per unit weight of
the imaginary parts of each row's beam-weighted rotated sum (a point source at the rotation
centre puts nothing there) *after subtracting the imaginary part that the other fitted sources
put there*, at the fluxes of the running joint solution (the sums up to and including that
integration; :func:`pairs.running_fluxes`). Not the catalog fluxes: a catalog flux that is off (a
variable, a catalog at another epoch or frequency) would leave that source's sidelobes in its
neighbours' noise estimate (in the demo, a flaring source tripled its neighbours' errors), and
not the final fluxes, which are known only after the residual has been summed over the rows;
(b) the jackknife error over JACKKNIFE_GROUPS groups of baselines, on the joint solution
(``S^(-g) = (A - A^g)^-1 (b - b^g)``), which catches what the model lacks (sources not in the
catalog, a wrong beam). Taking the larger of the two, as earlier versions did, made errors
0-35 % larger than the scatter over noise realisations (the jackknife scatters ~18 % about the
truth); the thermal error alone gives pulls of unit scatter (tests/unit/science/photometry/
test_photometry_errors.py). Both describe the noise of the data, which is what repeated
measurements of a constant source scatter by; systematic errors that repeat at the same LST
(beam model, uncatalogued sidelobes) are only partly in them.

Flags: ``partial_transit`` when the block's best band-centre gain for the source is below
PARTIAL_TRANSIT_GAIN_FRACTION of its gain at transit (the block is far from the transit; the
variability analysis skips those rows), ``transit_elsewhere`` when another (overlapping) block
owns the source's transit (``stage.TRANSIT_OWNERSHIP``; skipped too), ``blended``,
``missing_chunks``, ``no_data``.

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
atomically, columns :data:`stage.SCHEMA` (the processor writes it into a staging directory and
publishes it as ``<block_id>.v<version>.t<fencing token>.parquet``). Memory is bounded: the MS
is read ``ROWS_PER_READ`` rows at a time.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from casacore import tables
from numpy.typing import NDArray

from dsa110d.errors import InputFileError
from dsa110d.science.beam import primary_beam
from dsa110d.science.catalog import Catalog
from dsa110d.science.constants import SPEED_OF_LIGHT_M_S
from dsa110d.science.photometry.geometry import (
    SIDEREAL_RATE_RAD_S,
    ChannelBlocks,
    apparent_positions,
    beam_offsets,
    direction_cosines,
    read_geometry,
)
from dsa110d.science.photometry.pairs import add_pairs, running_fluxes
from dsa110d.science.photometry.settings import PhotometrySettings
from dsa110d.science.photometry.sums import JACKKNIFE_GROUPS, Integration, Sums, integrations
from dsa110d.science.pipeline.calstatus import CORRECTED, STATUS_OK, calibration_status

log = logging.getLogger(__name__)

BEAM_GAIN_MIN = 0.2
"""A source is in the beam at an integration when its band-centre gain is at least this; its
integrations in the beam are always used, and sources never reaching it during a block are not
reported."""

JOINT_FIT_GAIN_MIN = 0.02
"""Sources on the beam's flank (band-centre gain between this and BEAM_GAIN_MIN) are fitted
too, when among the JOINT_FIT_MAX_SOURCES brightest (catalog flux x gain) at an integration:
their sidelobes are in the data (a 5 Jy source at gain 0.1 is 0.5 Jy) and left unmodelled they
double the errors. This is nearly the whole main lobe (the first sidelobe peaks at 0.0175)."""

ROWS_PER_READ = 8192
"""Main-table rows read at once (~100 MB of DATA at 768 channels x 2 polarisations)."""

JOINT_FIT_MAX_SOURCES = 32
"""At each integration at most this many in-beam sources, the brightest by catalog flux x beam
gain, are fitted jointly (their mutual sidelobes modelled). Fainter ones at that integration
are treated as isolated, as before the joint fit: their pair terms are left out, so their
sidelobes stay in the others' data (and in the others' noise estimate, which grows to match)
and the others' sidelobes stay in theirs. The cost of the pair terms grows as the square of
this number; a pathological catalog of 1,000 sources in the beam costs what 32 do."""


def _accumulate_slab(
    sums: Sums,
    sources: NDArray[np.intp],
    lmn: NDArray[np.float64],
    gains: NDArray[np.float32],
    centre_gain: NDArray[np.float64],
    integrations: list[Integration],
    uvw: NDArray[np.float64],
    vis: NDArray[np.complex64],
    channels: ChannelBlocks,
    times: NDArray[np.float64],
    catalog_flux: NDArray[np.float64],
    wavenumber: float,
) -> None:
    """Add one slab of time-sorted usable rows to the sums of every source in the beam.

    ``wavenumber`` (2 pi f / c at the band centre, rad/m) scales uv for the position sums.

    At each integration the JOINT_FIT_MAX_SOURCES brightest sources (catalog flux x band-centre
    gain ``centre_gain``, (sources, integrations)) with gain >= JOINT_FIT_GAIN_MIN are fitted
    jointly; the other sources in the beam (gain >= BEAM_GAIN_MIN) are measured alone.
    """
    for it in integrations:
        uvw_t, vis_t = uvw[it.rows], vis[it.rows]
        gain_t = centre_gain[sources, it.index]
        flank = sources[gain_t >= JOINT_FIT_GAIN_MIN]
        brightest = np.argsort(-catalog_flux[flank] * gain_t[gain_t >= JOINT_FIT_GAIN_MIN])
        fitted = flank[brightest[:JOINT_FIT_MAX_SOURCES]]
        here = np.union1d(sources[gain_t >= BEAM_GAIN_MIN], fitted)
        if here.size == 0:
            continue
        delays = (uvw_t @ lmn[here].T) / SPEED_OF_LIGHT_M_S  # d = uvw.lmn / c, (rows, sources)
        imag = np.empty(delays.shape, dtype=np.float32)
        for i, s in enumerate(here):
            g = gains[s, it.index]
            r = channels.rotated_sums(vis_t, -delays[:, i], g)  # undoes exp(+2 pi i f d)
            sums.signal[s] += np.bincount(it.group, weights=r.real, minlength=JACKKNIFE_GROUPS)
            imag[:, i] = r.imag
            g2w = it.weight @ (g * g)
            sums.weight[s] += g2w
            sums.gain_weight[s] += float((it.weight @ g).sum())
            sums.time_weight[s] += float(g2w.sum()) * times[it.index]
            sums.n_vis[s] += int(it.weight.sum())
        joint = np.flatnonzero(np.isin(here, fitted))
        if joint.size > 1:
            coupling = add_pairs(
                sums, here[joint], delays[:, joint], gains[here[joint], it.index], it, channels
            )
            model = running_fluxes(sums, here[joint], catalog_flux).astype(np.float32)
            imag[:, joint] -= coupling @ model
        sums.noise_sq[here] += np.square(imag, dtype=np.float64).sum(axis=0)
        _add_position_sums(sums, here, imag, gains[:, it.index], it, uvw_t[:, :2] * wavenumber)


def _add_position_sums(
    sums: Sums, here: NDArray[np.intp], imag: NDArray[np.float32], gains: NDArray[np.float32],
    it: Integration, k_uv: NDArray[np.float64],
) -> None:  # fmt: skip
    """The sums that estimate each source's offset from its catalog position: a source at
    (dl, dm) from where it is rotated to leaves Im r = S sum g^2 w k (u dl + v dm) per row
    (k = 2 pi f / c), so y = sum Im r k (u, v) and Q = sum g^2 w k^2 (u, v)(u, v)^T give
    (dl, dm) = Q^-1 y / S (:func:`solve.position_offsets`)."""
    g2w = it.row_weight @ (gains[here] * gains[here]).T  # (rows, sources)
    sums.pos_y[here] += imag.astype(np.float64).T @ k_uv
    kk = np.stack([k_uv[:, 0] ** 2, k_uv[:, 0] * k_uv[:, 1], k_uv[:, 1] ** 2], axis=1)
    sums.pos_q[here] += g2w.astype(np.float64).T @ kk


def measure_ms(
    path: Path,
    catalog: Catalog,
    sums: Sums,
    settings: PhotometrySettings | None = None,
) -> bool:
    """Add one MS's contribution for every catalog source to ``sums``; returns whether its
    data were used.

    The data are CORRECTED_DATA when the ``calibrate`` stage applied a valid solution to the
    MS, else DATA; with ``settings.require_calibration`` an MS without a valid solution is refused
    (only its geometry counts: the sources it saw are reported, flagged ``uncalibrated``)."""
    settings = settings or PhotometrySettings()
    try:
        ms = tables.table(str(path), ack=False)
    except RuntimeError as exc:
        raise InputFileError(f"{path}: cannot open Measurement Set: {exc}") from None
    with ms:
        calibrated = calibration_status(ms) == STATUS_OK
        column = CORRECTED if calibrated else "DATA"
        use_data = calibrated or not settings.require_calibration
        geometry = read_geometry(ms, path)
        channels = ChannelBlocks.of(geometry.freq_hz)
        ra, dec = np.radians(catalog.ra_deg), np.radians(catalog.dec_deg)
        app_ra, app_dec = apparent_positions(ra, dec, geometry.mid_time)
        offsets = beam_offsets(geometry, app_ra, app_dec)
        band_centre = np.mean(geometry.freq_hz)
        centre_gain = primary_beam(offsets, band_centre, model=settings.beam)
        _note_transit(
            sums, geometry.pointing_ra, geometry.mid_time, app_ra, centre_gain.max(axis=1)
        )
        sums.peak_gain = np.fmax(sums.peak_gain, centre_gain.max(axis=1))
        sums.min_offset = np.fmin(sums.min_offset, offsets.min(axis=1))
        sums.pointing_dec = geometry.phase_dec  # ICRS, as the FIELD table states it
        transit = primary_beam(
            np.abs(app_dec - geometry.pointing_dec), band_centre, model=settings.beam
        )
        sums.transit_gain = np.fmax(sums.transit_gain, transit)
        sources = np.flatnonzero(centre_gain.max(axis=1) >= JOINT_FIT_GAIN_MIN)
        if sources.size == 0 or not use_data:
            return use_data
        # Gain per source, integration and channel block, for the sources seen in this MS.
        gains = np.zeros((ra.size, geometry.times.size, channels.centre_hz.size), np.float32)
        gains[sources] = primary_beam(
            offsets[sources, :, None], channels.centre_hz[None, None, :], model=settings.beam
        )
        metres_to_lambda = band_centre / SPEED_OF_LIGHT_M_S
        wavenumber = 2 * np.pi * float(metres_to_lambda)  # rad per metre at the band centre
        l_, m_, n_ = direction_cosines(ra, dec, geometry.phase_ra, geometry.phase_dec)
        lmn = np.stack([l_, m_, n_ - 1.0], axis=1)
        for start in range(0, ms.nrows(), ROWS_PER_READ):
            n = min(ROWS_PER_READ, ms.nrows() - start)
            uvw = ms.getcol("UVW", start, n)
            ant1, ant2 = ms.getcol("ANTENNA1", start, n), ms.getcol("ANTENNA2", start, n)
            uv_lambda = np.hypot(uvw[:, 0], uvw[:, 1]) * metres_to_lambda
            usable = (ant1 != ant2) & (uv_lambda >= settings.uv_min_lambda)
            usable &= uv_lambda <= settings.uv_max_lambda
            if not usable.any():
                continue
            t_all = np.searchsorted(geometry.times, ms.getcol("TIME", start, n))
            rows = np.flatnonzero(usable)
            rows = rows[np.argsort(t_all[rows], kind="stable")]  # a no-op for time-major MSs
            vis, weight = _stokes_sum(
                ms.getcol(column, start, n), ms.getcol("FLAG", start, n), rows
            )
            t_index = t_all[rows]
            group = (ant1 * 7919 + ant2)[rows] % JACKKNIFE_GROUPS
            slab = integrations(t_index, group, weight, channels.split)
            _accumulate_slab(
                sums, sources, lmn, gains, centre_gain, slab, uvw[rows], vis, channels,
                geometry.times, catalog.flux_jy, wavenumber,
            )  # fmt: skip
    return True


def _note_transit(
    sums: Sums, pointing_ra: float, mid_time: float, app_ra: NDArray[np.float64],
    best_gain: NDArray[np.float64],
) -> None:  # fmt: skip
    """The time (MJD s) each source crosses the meridian the dishes point at, from the MS in
    which it is nearest the beam centre so far: the pointing's apparent RA is ``pointing_ra``
    at ``mid_time`` (the source positions are apparent too) and advances at the sidereal rate
    (as in :func:`geometry.beam_offsets`), so the transit is extrapolated when it lies outside
    the MS, or the block."""
    hour_angle = np.angle(np.exp(1j * (pointing_ra - app_ra)))  # wrapped to (-pi, pi]
    nearer = best_gain > sums.peak_gain
    sums.transit_time[nearer] = mid_time - hour_angle[nearer] / SIDEREAL_RATE_RAD_S


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
    weight = good[:, :, 0].astype(np.float32)  # plane by plane: 10x faster than sum(axis=2)
    for pol in range(1, data.shape[2]):
        vis += np.where(good[:, :, pol], picked[:, :, pol], 0)
        weight += good[:, :, pol]
    return vis.astype(np.complex64, copy=False), weight
