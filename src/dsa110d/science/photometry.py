"""The ``photometry`` stage: forced photometry in the visibility domain at catalog positions.

For every catalog source inside the primary beam during a block, the cross-correlations are
phase-rotated to the source, weighted by the primary beam and summed over baselines (short ones
excluded), channels, both polarisations (Stokes I = (XX + YY) / 2 for an unpolarised source)
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
phasor times a Dirichlet kernel (:func:`_add_pairs`), so the pair terms cost pairs x rows x
channel blocks. Fitted are, at each integration, the JOINT_FIT_MAX_SOURCES brightest (catalog
flux x gain) sources with gain >= JOINT_FIT_GAIN_MIN, which includes the beam's flank: their
sidelobes reach the sources in the beam too. Sources closer together than the fit can separate
(JOINT_FIT_MAX_CORRELATION, JOINT_FIT_MIN_EIGENVALUE) are measured alone and flagged
``blended``; sources beyond the cap are measured alone (as before the joint fit).

Cost: per integration, one rotation per source in the beam or fitted (the flank sources add
rotations, up to the cap), plus the pair terms of the fitted ones, ~K^2 x rows x channel blocks
(at real scale and K = 30, ~75 ms per integration on one core against ~5 ms per rotation).
A partly flagged channel block is summed as if all its channels had its largest weight, less
the flagged channels taken one by one (:func:`_deficit_gram`): the flagger leaves a few scattered
channels in most rows, and summing those rows' blocks channel by channel was ~10x the rest of
photometry at real scale. The pair sums are kept per slot (a source fitted at some integration
of the block): slots^2 x JACKKNIFE_GROUPS float64, 128 MB for a pathological 1,000 fitted
sources in one block; the final solve is one slots x slots system plus one per baseline group.

What the error means: the larger of
(a) the thermal error ``sigma sqrt((A^-1)_jj)``, with ``sigma^2`` the power per unit weight of
the imaginary parts of each row's beam-weighted rotated sum (a point source at the rotation
centre puts nothing there) *after subtracting the imaginary part that the other fitted sources
put there*, at the fluxes of the running joint solution (the sums up to and including that
integration; :func:`_running_fluxes`). Not the catalog fluxes: a catalog flux that is off (a
variable, a catalog at another epoch or frequency) would leave that source's sidelobes in its
neighbours' noise estimate (in the demo, a flaring source tripled its neighbours' errors), and
not the final fluxes, which are known only after the residual has been summed over the rows;
(b) the jackknife error over JACKKNIFE_GROUPS groups of baselines, on the joint solution
(``S^(-g) = (A - A^g)^-1 (b - b^g)``), which catches what the model lacks (sources not in the
catalog, a wrong beam). Both describe the noise of the data, which is what repeated
measurements of a constant source scatter by; systematic errors that repeat at the same LST
(beam model, uncatalogued sidelobes) are only partly in them.

Flags: ``partial_transit`` when the block's best band-centre gain for the source is below
PARTIAL_TRANSIT_GAIN_FRACTION of its gain at transit (the block is far from the transit; the
variability analysis skips those rows), ``blended``, ``missing_chunks``, ``no_data``.

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
atomically, columns :data:`SCHEMA` (the processor writes it into a staging directory and
publishes it as ``<block_id>.v<version>.t<fencing token>.parquet``). Memory is bounded: the
MS is read ``ROWS_PER_READ`` rows at a time.
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
SIDEREAL_RATE_RAD_S = 2.0 * math.pi / SIDEREAL_DAY_S
"""Rate at which the meridian moves in RA, rad/s."""
SECONDS_PER_DAY = 86400.0
MJD_TO_JD = 2400000.5
JACKKNIFE_GROUPS = 16
"""Baselines are dealt into this many groups; the scatter of the leave-one-group-out joint
solutions measures the error including what the model lacks (sidelobes of sources missing from
the catalog or beyond the cap), which the thermal estimate misses."""
JOINT_FIT_MAX_SOURCES = 32
"""At each integration at most this many in-beam sources, the brightest by catalog flux x beam
gain, are fitted jointly (their mutual sidelobes modelled). Fainter ones at that integration
are treated as isolated, as before the joint fit: their pair terms are left out, so their
sidelobes stay in the others' data (and in the others' noise estimate, which grows to match)
and the others' sidelobes stay in theirs. The cost of the pair terms grows as the square of
this number; a pathological catalog of 1,000 sources in the beam costs what 32 do."""
JOINT_FIT_MAX_CORRELATION = 0.95
"""Two sources whose normalised coupling A_jk / sqrt(A_jj A_kk) exceeds this (closer than about
a synthesized beam) cannot be separated usefully (the joint error would be > 3x the isolated
one): the fainter is measured alone, its flux includes the brighter's, and it is flagged
``blended``."""
JOINT_FIT_MIN_EIGENVALUE = 1e-3
"""If the normalised joint matrix still has an eigenvalue below this (several sources jointly
degenerate), the most entangled source is taken out of the fit (flagged ``blended``) until not."""
PARTIAL_TRANSIT_GAIN_FRACTION = 0.8
"""A row is flagged ``partial_transit`` when the source's best beam gain in the block is below
this fraction of its gain at transit (its offset then being |apparent dec - pointing dec|).
The beam correction makes every block's flux unbiased, but away from transit the error grows
and the flux leans on the beam model's flank (a pointing error of 0.05 deg is a 3% flux error
at 0.8 of the transit gain, ~0.8 deg from transit at 1.4 GHz, and grows linearly beyond): the
one or two blocks nearest transit each day are kept."""
RUNNING_FIT_RIDGE = 1e-3
"""Ridge added to the normalised matrix of the running joint solution (:func:`_running_fluxes`)
so that an unseparable pair cannot make its model fluxes blow up."""
_PAIR_ROWS = 1024
"""Rows per step of the pair terms (bounds their (rows, sources, sources) work arrays)."""
_DIRICHLET_EPS = 1e-6
"""Below this |sin(x / 2)| the within-block channel sum takes its limit (the channel count)."""
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
    "flux_err_jy": "float64: 1-sigma error of the joint fit (thermal or jackknife), Jy",
    "n_vis": "int64: unflagged single-polarisation visibilities (row x channel x pol) used",
    "beam_gain": "float64: effective primary-beam gain, sum(g^2 w) / sum(g w)",
    "flags": "string: comma-separated flags (missing_chunks, partial_transit, no_data, blended)",
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
    geometry: MsGeometry, app_ra: NDArray[np.float64], app_dec: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Offsets (rad) of apparent directions (:func:`apparent_positions` at the MS's mid-time:
    they change by < 0.1 arcsec over a chunk) from the pointing, (sources, integrations)."""
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


class _Sums:
    """Per-source running sums over a block, and the joint fit's pair sums.

    Sources fitted jointly at some integration get a *slot*; ``pair[i, k, g]`` holds A_jk for
    the sources in slots i and k (j != k) over baseline group g (its diagonal is unused: the
    diagonal is ``weight``). Every sum is additive over MSs, slabs and integrations.
    """

    def __init__(self, n: int) -> None:
        self.signal = np.zeros((n, JACKKNIFE_GROUPS))  # b: sum g Re z, per baseline group
        self.weight = np.zeros((n, JACKKNIFE_GROUPS))  # A_jj: sum g^2 w, per baseline group
        self.gain_weight = np.zeros(n)  # sum g w
        self.noise_sq = np.zeros(n)  # sum over rows of (Im sum_c g z - running model)^2
        self.n_vis = np.zeros(n, dtype=np.int64)  # sum w
        self.time_weight = np.zeros(n)  # sum t g^2 w
        self.peak_gain = np.zeros(n)
        self.transit_gain = np.zeros(n)  # band-centre gain at transit
        self.slot_of = np.full(n, -1, dtype=np.intp)
        self.slots: list[int] = []  # catalog index of each slot
        self.pair = np.zeros((0, 0, JACKKNIFE_GROUPS))

    def slots_for(self, sources: NDArray[np.intp]) -> NDArray[np.intp]:
        """The slots of ``sources``, giving new ones a slot (and growing ``pair``)."""
        new = sources[self.slot_of[sources] < 0]
        if new.size:
            self.slot_of[new] = len(self.slots) + np.arange(new.size)
            self.slots.extend(int(s) for s in new)
            held = self.pair.shape[0]
            if len(self.slots) > held:
                size = max(len(self.slots), 2 * held)
                grown = np.zeros((size, size, JACKKNIFE_GROUPS))
                grown[:held, :held] = self.pair
                self.pair = grown
        return self.slot_of[sources]


@dataclass(frozen=True)
class _Integration:
    """The usable rows of one integration within a slab, and their weight per group/block."""

    index: int
    rows: slice
    group: NDArray[np.intp]
    weight: NDArray[np.float32]
    """(JACKKNIFE_GROUPS, n_blocks): unflagged visibilities per baseline group and block."""
    row_weight: NDArray[np.float32]
    """(rows, n_blocks): unflagged visibilities per row and channel block."""
    channel_weight: NDArray[np.float32]
    """(rows, channels): unflagged polarisations per row and channel."""
    uneven: NDArray[np.bool_]
    """(rows, n_blocks): the block's channels differ in weight (partly flagged)."""
    block_max: NDArray[np.float32]
    """(rows, n_blocks): the largest weight of a channel of the block."""


def _integrations(
    t_index: NDArray[np.intp], group: NDArray[np.intp], weight: NDArray[np.float32], split: int
) -> list[_Integration]:
    """Cut time-sorted rows into integrations, with their per-group, per-block weights."""
    bounds = np.flatnonzero(np.r_[True, t_index[1:] != t_index[:-1], True])
    by_block = weight.reshape(weight.shape[0], -1, split)
    per_block = by_block.sum(axis=2)
    block_max = by_block.max(axis=2)
    uneven = by_block.min(axis=2) != block_max
    found = []
    for lo, hi in itertools.pairwise(bounds):
        onehot = (group[lo:hi][None, :] == np.arange(JACKKNIFE_GROUPS)[:, None]).astype(np.float32)
        found.append(
            _Integration(
                int(t_index[lo]), slice(lo, hi), group[lo:hi], onehot @ per_block[lo:hi],
                row_weight=per_block[lo:hi], channel_weight=weight[lo:hi],
                uneven=uneven[lo:hi], block_max=block_max[lo:hi],
            )
        )  # fmt: skip
    return found


def _accumulate_slab(
    sums: _Sums,
    sources: NDArray[np.intp],
    lmn: NDArray[np.float64],
    gains: NDArray[np.float32],
    centre_gain: NDArray[np.float64],
    integrations: list[_Integration],
    uvw: NDArray[np.float64],
    vis: NDArray[np.complex64],
    channels: ChannelBlocks,
    times: NDArray[np.float64],
    catalog_flux: NDArray[np.float64],
) -> None:
    """Add one slab of time-sorted usable rows to the sums of every source in the beam.

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
            coupling = _add_pairs(
                sums, here[joint], delays[:, joint], gains[here[joint], it.index], it, channels
            )
            model = _running_fluxes(sums, here[joint], catalog_flux).astype(np.float32)
            imag[:, joint] -= coupling @ model
        sums.noise_sq[here] += np.square(imag, dtype=np.float64).sum(axis=0)


def _add_pairs(
    sums: _Sums,
    joint: NDArray[np.intp],
    delays: NDArray[np.float64],
    gains: NDArray[np.float32],
    it: _Integration,
    channels: ChannelBlocks,
) -> NDArray[np.float32]:
    """Add the pair terms of the ``joint`` sources at one integration to ``sums.pair``; return
    their imaginary parts per row, (rows, j, k): what source k of unit flux puts into the
    imaginary part of source j's rotated sum.

    Per row, with gain constant over a channel block of n uniformly spaced channels, the sum
    over the block of exp(2 pi i f (d_k - d_j)) is exp(2 pi i f_c (d_k - d_j)) D_n(x) with
    f_c the block's centre frequency, x = 2 pi df (d_k - d_j) and D_n(x) = sin(n x / 2) /
    sin(x / 2) the Dirichlet kernel: so the pair sums cost rows x pairs x blocks (a Gram
    matrix of the block-centre phasors per row), not x channels. A partly flagged block
    (channels of unequal weight) is summed at its largest channel weight, less the
    difference at each lighter channel, taken channel by channel (:func:`_deficit_gram`).
    """
    n_rows, n_src = delays.shape
    pair = np.zeros((JACKKNIFE_GROUPS, n_src, n_src), dtype=np.float64)
    coupling = np.empty((n_rows, n_src, n_src), dtype=np.float32)
    uneven = it.uneven.any(axis=1)
    steps = []  # (group, rows, exact): each step's rows are of one baseline group
    for group in range(JACKKNIFE_GROUPS):
        mine = it.group == group
        steps += [(group, r, False) for r in _steps(np.flatnonzero(mine & ~uneven), _PAIR_ROWS)]
        partly = np.flatnonzero(mine & uneven)
        steps += [(group, r, True) for r in _steps(partly, _PAIR_ROWS // channels.split)]
    for group, rows, exact in steps:
        d = delays[rows]
        if exact:  # partly flagged blocks: as if unflagged, less their flagged channels
            full = it.block_max[rows]
            t = _block_gram(d, gains, full * np.float32(channels.split), channels)
            t -= _deficit_gram(d, gains, full, it.channel_weight[rows], channels)
        else:
            t = _block_gram(d, gains, it.row_weight[rows], channels)
        pair[group] += t.real.sum(axis=0)
        coupling[rows] = t.imag
    slots = sums.slots_for(joint)
    sums.pair[np.ix_(slots, slots)] += pair.transpose(1, 2, 0)
    return coupling


def _running_fluxes(
    sums: _Sums, joint: NDArray[np.intp], catalog_flux: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The joint solution for ``joint`` from the sums so far (their catalog fluxes where it
    is not finite): the model whose sidelobes the thermal estimate subtracts."""
    slots = sums.slot_of[joint]
    a = sums.pair[np.ix_(slots, slots)].sum(axis=2)
    diag = sums.weight[joint].sum(axis=1)
    a[np.diag_indices_from(a)] = diag
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = 1.0 / np.sqrt(diag)
        normal = a * np.outer(scale, scale) + RUNNING_FIT_RIDGE * np.eye(joint.size)
        normal = np.where(np.isfinite(normal), normal, 0.0)
    normal[np.diag_indices_from(normal)] = np.where(diag > 0, normal.diagonal(), 1.0)
    rhs = np.where(diag > 0, sums.signal[joint].sum(axis=1) * scale, 0.0)
    flux = scale * np.linalg.solve(normal, rhs)
    return np.where(np.isfinite(flux) & (diag > 0), flux, catalog_flux[joint])


def _steps(rows: NDArray[np.intp], size: int) -> list[NDArray[np.intp]]:
    return [rows[lo : lo + size] for lo in range(0, rows.size, size)]


def _block_gram(
    delays: NDArray[np.float64], gains: NDArray[np.float32], block_weight: NDArray[np.float32],
    channels: ChannelBlocks,
) -> NDArray[np.complex64]:  # fmt: skip
    """sum over channels of w g_j g_k exp(2 pi i f (d_k - d_j)), (rows, j, k), for rows whose
    blocks are evenly weighted: block-centre Gram matrix x Dirichlet kernel."""
    n = channels.split
    amp = np.sqrt(block_weight / n)[:, None, :] * gains[None, :, :]
    q = _block_phasors(delays, channels) * amp.astype(np.float32, copy=False)
    t = np.asarray(np.matmul(q.conj(), q.transpose(0, 2, 1)), dtype=np.complex64)
    if n > 1:
        t *= _dirichlet(delays, channels.step_hz, n)
    return t


def _deficit_gram(
    delays: NDArray[np.float64], gains: NDArray[np.float32], block_max: NDArray[np.float32],
    weight: NDArray[np.float32], channels: ChannelBlocks,
) -> NDArray[np.complex64]:  # fmt: skip
    """The sum of :func:`_block_gram` over the channels whose weight is below their block's
    largest (``block_max``), weighted by the difference, (rows, j, k): what a block summed at
    its largest weight has too much. The flagged channels are few, so each is taken exactly;
    the cost is flagged (row, channel)s x pairs, not rows x channels x pairs."""
    split = channels.split
    deficit = np.repeat(block_max, split, axis=1) - weight
    row, chan = np.nonzero(deficit > 0)
    n_rows, n_src = delays.shape
    counts = np.bincount(row, minlength=n_rows)
    if row.size == 0:
        return np.zeros((n_rows, n_src, n_src), dtype=np.complex64)
    block = chan // split
    freq = channels.first_hz[block] + channels.step_hz * (chan % split)
    phase = np.exp(2j * np.pi * delays[row] * freq[:, None])
    amp = np.sqrt(deficit[row, chan])[:, None] * gains[:, block].T
    padded = np.zeros((n_rows, int(counts.max()), n_src), dtype=np.complex64)
    padded[row, np.arange(row.size) - np.repeat(np.cumsum(counts) - counts, counts)] = phase * amp
    return np.asarray(np.matmul(padded.conj().transpose(0, 2, 1), padded), dtype=np.complex64)


def _block_phasors(delays: NDArray[np.float64], channels: ChannelBlocks) -> NDArray[np.complex64]:
    """exp(2 pi i d f_c) at each channel block's centre, (rows, sources, blocks)."""
    flat = delays.ravel()
    if channels.split > 1:
        # A running product over the blocks, each step one vectorised multiply over every
        # (row, source) in complex64 (~24 steps lose < 1e-6 in phase; the phases start in
        # float64); np.cumprod along the short axis is ~3x slower.
        n_blocks = channels.centre_hz.size
        by_block = np.empty((n_blocks, flat.size), dtype=np.complex64)
        by_block[0] = np.exp(2j * np.pi * flat * channels.centre_hz[0])
        step = np.exp(2j * np.pi * flat * (channels.split * channels.step_hz))
        step = step.astype(np.complex64)
        for a in range(1, n_blocks):
            np.multiply(by_block[a - 1], step, out=by_block[a])
        terms = np.ascontiguousarray(by_block.T)
    else:
        terms = np.exp(2j * np.pi * flat[:, None] * channels.centre_hz[None, :]).astype(
            np.complex64
        )
    return terms.reshape(*delays.shape, -1)


def _dirichlet(delays: NDArray[np.float64], step_hz: float, n: int) -> NDArray[np.float32]:
    """D_n(2 pi df (d_k - d_j)) for every row and pair, (rows, sources, sources).

    In float32 (2-3x faster than float64): the half-angles pi df d are < 3 rad inside the
    beam, so their differences are good to ~3e-7 rad, and D is smooth in them (|dD/dh| <
    n^2): D is good to ~1e-4 of its peak n."""
    half = (np.pi * step_hz * delays).astype(np.float32)
    pairs = half[:, None, :] - half[:, :, None]
    den = np.sin(pairs)
    dirichlet = np.full(pairs.shape, n, dtype=np.float32)
    pairs *= np.float32(n)
    np.divide(np.sin(pairs), den, out=dirichlet, where=np.abs(den) >= _DIRICHLET_EPS)
    return dirichlet


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
        app_ra, app_dec = apparent_positions(ra, dec, geometry.mid_time)
        offsets = beam_offsets(geometry, app_ra, app_dec)
        band_centre = np.mean(geometry.freq_hz)
        centre_gain = primary_beam(offsets, band_centre)
        sums.peak_gain = np.fmax(sums.peak_gain, centre_gain.max(axis=1))
        transit = primary_beam(np.abs(app_dec - geometry.phase_dec), band_centre)
        sums.transit_gain = np.fmax(sums.transit_gain, transit)
        sources = np.flatnonzero(centre_gain.max(axis=1) >= JOINT_FIT_GAIN_MIN)
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
                sums, sources, lmn, gains, centre_gain, slab, uvw[rows], vis, channels,
                geometry.times, catalog.flux_jy,
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
    weight = good[:, :, 0].astype(np.float32)  # plane by plane: 10x faster than sum(axis=2)
    for pol in range(1, data.shape[2]):
        vis += np.where(good[:, :, pol], picked[:, :, pol], 0)
        weight += good[:, :, pol]
    return vis.astype(np.complex64, copy=False), weight


def _jackknife_spread(loo: NDArray[np.float64], used: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Jackknife error from leave-one-group-out values (sources, groups), over used groups."""
    k = used.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        loo = np.where(used, loo, 0.0)
        mean = loo.sum(axis=1, keepdims=True) / k[:, None]
        spread = np.where(used, (loo - mean) ** 2, 0.0).sum(axis=1)
        return np.asarray(np.sqrt((k - 1) / k * spread), dtype=np.float64)


def _jackknife_error(
    signal: NDArray[np.float64], weight: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Leave-one-group-out error of signal / weight, per source (rows)."""
    total_s, total_w = signal.sum(axis=1, keepdims=True), weight.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        loo = (total_s - signal) / (total_w - weight)
    return _jackknife_spread(loo, weight > 0)


@dataclass
class _Solution:
    """Fluxes and errors of every catalog source (NaN where it has no data)."""

    flux: NDArray[np.float64]
    error: NDArray[np.float64]
    blended: NDArray[np.bool_]


def _separable(
    a: NDArray[np.float64], brightness: NDArray[np.float64]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Which sources of the joint matrix ``a`` can be fitted together (see
    JOINT_FIT_MAX_CORRELATION, JOINT_FIT_MIN_EIGENVALUE; the brighter are kept first), and
    which are blended: too close to another catalog source, or left out as degenerate."""
    scale = 1.0 / np.sqrt(np.diag(a))
    corr = a * scale[:, None] * scale[None, :]
    close = np.abs(corr) > JOINT_FIT_MAX_CORRELATION
    np.fill_diagonal(close, False)
    keep = np.zeros(a.shape[0], dtype=bool)
    for j in np.argsort(-brightness, kind="stable"):
        keep[j] = not close[j, keep].any()
    while keep.sum() > 1:
        kept = np.flatnonzero(keep)
        sub = corr[np.ix_(kept, kept)]
        if np.linalg.eigvalsh(sub)[0] >= JOINT_FIT_MIN_EIGENVALUE:
            break
        keep[kept[int(np.argmax(np.abs(sub).sum(axis=1)))]] = False
    return keep, ~keep | close.any(axis=1)


def _solve(sums: _Sums, catalog_flux: NDArray[np.float64]) -> _Solution:
    """Fluxes and errors: sources never fitted jointly by signal / weight, the others by the
    normal equations A S = b over the slots, each with its jackknife (leave one baseline group
    out of both A and b) and thermal error (sigma sqrt((A^-1)_jj), sigma^2 the residual
    imaginary power per unit weight)."""
    signal, weight = sums.signal.sum(axis=1), sums.weight.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = signal / weight
        thermal = np.sqrt(sums.noise_sq) / weight
    jackknife = _jackknife_error(sums.signal, sums.weight)
    blended = np.zeros(signal.size, dtype=bool)
    slots = np.asarray(sums.slots, dtype=np.intp)
    with_data = weight[slots] > 0
    if with_data.sum() > 1:
        pick = np.flatnonzero(with_data)
        a_g = sums.pair[np.ix_(pick, pick)]  # (m, m, groups), zero diagonal
        a_g[np.arange(pick.size), np.arange(pick.size)] = sums.weight[slots[pick]]
        keep, close = _separable(
            a_g.sum(axis=2), catalog_flux[slots[pick]] * sums.peak_gain[slots[pick]]
        )
        blended[slots[pick[close]]] = True
        joint = slots[pick[keep]]
        a_g = a_g[np.ix_(keep, keep)]
        b_g = sums.signal[joint]
        a, b = a_g.sum(axis=2), b_g.sum(axis=1)
        inverse = np.linalg.inv(a)
        flux[joint] = inverse @ b
        thermal[joint] = np.sqrt(sums.noise_sq[joint] / np.diag(a) * np.diag(inverse))
        jackknife[joint] = _joint_jackknife(a, b, a_g, b_g)
    return _Solution(flux, np.fmax(thermal, jackknife), blended)


def _joint_jackknife(
    a: NDArray[np.float64], b: NDArray[np.float64], a_g: NDArray[np.float64],
    b_g: NDArray[np.float64],
) -> NDArray[np.float64]:  # fmt: skip
    """Jackknife error of the joint solution: S^(-g) = (A - A^g)^-1 (b - b^g) per group g."""
    loo_a = a[None] - np.moveaxis(a_g, 2, 0)  # (groups, m, m)
    loo_b = b[None] - b_g.T
    diag = np.diagonal(loo_a, axis1=1, axis2=2)
    empty = diag <= 0  # a source with data in this group only: left out of that solve
    loo_a = np.where(empty[:, :, None] | empty[:, None, :], 0.0, loo_a)
    loo_a += np.eye(a.shape[0])[None] * empty[:, None, :]
    loo_b = np.where(empty, 0.0, loo_b)
    loo = np.linalg.solve(loo_a, loo_b[..., None])[..., 0]
    used = (np.diagonal(a_g, axis1=0, axis2=1) > 0) & ~empty  # (groups, m)
    return _jackknife_spread(np.asarray(loo.T, dtype=np.float64), used.T)


def measure_block(job: BlockJob, ms_paths: Sequence[Path], catalog: Catalog) -> pd.DataFrame:
    """One row per catalog source inside the beam during the block (see :data:`SCHEMA`)."""
    sums = _Sums(len(catalog))
    for path in sorted(ms_paths):
        measure_ms(Path(path), catalog, sums)
    seen = np.flatnonzero(sums.peak_gain >= BEAM_GAIN_MIN)
    solution = _solve(sums, catalog.flux_jy)
    weight = sums.weight.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = weight / sums.gain_weight
        mjd = sums.time_weight / weight / SECONDS_PER_DAY
    far = sums.peak_gain < PARTIAL_TRANSIT_GAIN_FRACTION * sums.transit_gain
    rows = []
    for s in seen:
        flags = ["missing_chunks"] if job.missing_slots else []
        if far[s]:  # the block does not reach near the source's transit
            flags.append("partial_transit")
        if sums.n_vis[s] == 0:
            flags.append("no_data")
        if solution.blended[s]:
            flags.append("blended")
        rows.append(
            {
                "source_id": catalog.ids[s],
                "ra_deg": float(catalog.ra_deg[s]),
                "dec_deg": float(catalog.dec_deg[s]),
                "block_id": job.block_id,
                "mjd": float(mjd[s]),
                "flux_jy": float(solution.flux[s]),
                "flux_err_jy": float(solution.error[s]),
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
