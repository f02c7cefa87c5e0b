"""The DSA-110 simulator: subband sets laid out as the real correlator writes them.

``simulate(SimulationSpec(...))`` writes ``sets`` consecutive ~309 s sets starting at
``start``, repeated on ``days`` consecutive sidereal days, into ``out``; each set is
``n_subbands`` files ``YYYY-MM-DDTHH:MM:SS_sbNN.hdf5`` whose name timestamps carry a few
seconds of per-node clock jitter while ``Header/time_array[0]`` is bit-identical. Every file
is written as ``..._sbNN_incomplete.hdf5`` and renamed into place, as the correlator does; in
``live`` mode the subbands land seconds apart and one set every 309 s / ``speed``.
The truth (catalog, per-set true fluxes, which sources vary and how) goes to a JSON file
(:mod:`~dsa110d.science.simulation.truth`); the options are
:class:`~dsa110d.science.simulation.spec.SimulationSpec`.

Sky model: point sources with flat spectra (the catalog flux at every frequency), constant
within a set at their true flux at mid-set, seen through ``beam.primary_beam`` (the model
``beam``: the instrument's tapered one by default; the pipeline's is configured on its own, so
a test can observe with one and measure with another) at the pointing (meridian, ``dec_deg``),
plus thermal noise for ``sefd_jy``. With ``catalog_error_arcsec`` > 0 the catalog the pipeline
is to read (written to ``catalog_out``) lists the sources with position errors
(:mod:`~dsa110d.science.simulation.catalog_errors`); the sky keeps their true positions.
Without a catalog file a random one covers the observed LST range around the pointing
declination. ``small`` and ``tiny`` scales are the real data averaged in frequency and time
on fewer antennas (``simlayout``): noise follows their wider channels and longer integrations.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from astropy.time import Time
from numpy.typing import NDArray

from dsa110d.science import constants as k
from dsa110d.science.astrometry import use_offline_iers
from dsa110d.science.beam import BEAM_KINDS, beam_model
from dsa110d.science.catalog import (
    DEFAULT_DEC_HALFWIDTH_DEG,
    DEFAULT_FLUX_RANGE_JY,
    Catalog,
    random_catalog,
    read_catalog,
    write_catalog,
)
from dsa110d.science.hdf5.subbands import INCOMPLETE_SUFFIX, set_id_from_time, subband_file_name
from dsa110d.science.hdf5.writer import SubbandHeader, SubbandWriter
from dsa110d.science.simulation import corruptions, diffuse, layout, uncatalogued
from dsa110d.science.simulation.catalog_errors import with_position_errors
from dsa110d.science.simulation.sky import Variability, draw_variability, true_fluxes
from dsa110d.science.simulation.spec import (
    CALIBRATOR_ID,
    DEFAULT_DEC_DEG,
    MAX_NAME_JITTER_S,
    SetPlan,
    SimulationResult,
    SimulationSpec,
    plan_sets,
    utc,
)
from dsa110d.science.simulation.truth import write_truth
from dsa110d.science.simulation.visibilities import (
    drift_geometry,
    lst_for,
    sky_in_view,
    visibility_chunks,
)

__all__ = [
    "CALIBRATOR_ID",
    "DEFAULT_DEC_DEG",
    "GENERATED_RA_MARGIN_DEG",
    "MAX_NAME_JITTER_S",
    "SimulationResult",
    "SimulationSpec",
    "simulate",
    "sky_catalog",
    "with_calibrator",
]
"""The simulator's entry points (the spec's types and constants live in ``spec``)."""

log = logging.getLogger(__name__)

LIVE_SUBBAND_GAP_S = 2.0
"""In live mode, the (unscaled) gap between two subbands of a set landing, seconds."""
GENERATED_SOURCE_DENSITY_PER_DEG2 = 0.5
"""Sources per square degree in a generated catalog (the real sky has ~8 above 20 mJy at
1.4 GHz: this is its brightest part, enough to fill the beam at a bounded cost)."""
GENERATED_RA_MARGIN_DEG = 10.0
"""A generated catalog covers the observed LST range widened by this on each side, so the
sources entering and leaving the beam are there too."""
UNCATALOGUED_STREAM = 0x5C
"""The uncatalogued sky draws from its own stream too (a seed's catalog sky is unchanged)."""
DIFFUSE_STREAM = 0xD1
"""The extended emission draws from its own stream too."""
CALIBRATOR_MODEL = "PB17:3C286"
"""The calibrator's (``CALIBRATOR_ID``) spectrum: 3C286's Perley-Butler 2017 polynomial (~15 Jy
at the band centre)."""
CORRUPTION_STREAM = 0xC0
"""The corruptions draw from their own random stream (seeded from the run's seed and this), so
switching them on leaves the sky, the variability and the noise of a seed unchanged."""
CATALOG_ERROR_STREAM = 0xCA
"""Catalog position errors draw from their own stream too (seeded from the seed and this)."""


def _catalog_for(
    spec: SimulationSpec,
    scale: layout.Scale,
    flux_range_jy: tuple[float, float] | None = None,
    ra_margin_deg: float = GENERATED_RA_MARGIN_DEG,
    dec_halfwidth_deg: float = DEFAULT_DEC_HALFWIDTH_DEG,
) -> Catalog:
    """The catalog file, or a random sky around the pointing over the RA range observed."""
    if spec.catalog is not None:
        return read_catalog(spec.catalog)
    generated = _random_sky(spec, scale, flux_range_jy, ra_margin_deg, dec_halfwidth_deg)
    wanted = spec.calibrator
    if wanted is None:
        wanted = corruptions.resolve_level(spec.corrupt, spec.scale) != "none"
    if not wanted:
        return generated
    return with_calibrator(generated, spec, scale)


def with_calibrator(catalog: Catalog, spec: SimulationSpec, scale: layout.Scale) -> Catalog:
    """``catalog`` plus a calibrator transiting in the first set of each day.

    Corrupted data need one (a bandpass is solved on its transit, as the telescope's is on a
    bright calibrator's every day). It is a simulated source, not the real 3C286: it has
    3C286's Perley-Butler 2017 spectrum (:data:`CALIBRATOR_MODEL`) but sits on the meridian
    at the pointing declination in the middle of each day's first set, so every simulated
    day sees its transit, and sees it first (a pipeline processing the sets as they land
    has the day's bandpass before the other chunks). The catalog marks it (``calibrator`` = 1)
    and names its flux model (``flux_model``); ``flux_jy`` is the model at the band centre.
    """
    from astropy import units as u
    from astropy.coordinates import FK5, SkyCoord

    from dsa110d.science.catalog import CALIBRATOR_COLUMN, FLUX_MODEL_COLUMN
    from dsa110d.science.fluxmodels import band_centre_hz, model_flux_jy

    first = _times_jd(utc(spec.start), scale)[0]
    mid_jd = first + k.FILE_DURATION_S / 2 / k.SECONDS_PER_DAY
    app_ra = math.degrees(float(lst_for(np.array([mid_jd]))[0]))
    epoch = Time(mid_jd, format="jd", scale="utc")
    icrs = SkyCoord(app_ra * u.deg, spec.dec_deg * u.deg, frame=FK5(equinox=epoch)).icrs
    n = len(catalog)
    calibrators = catalog.extra.get(CALIBRATOR_COLUMN, ("",) * n)
    models = catalog.extra.get(FLUX_MODEL_COLUMN, ("",) * n)
    extra = {
        name: (*values, "") for name, values in catalog.extra.items()
        if name not in (CALIBRATOR_COLUMN, FLUX_MODEL_COLUMN)
    }  # fmt: skip
    extra[CALIBRATOR_COLUMN] = (*calibrators, "1")
    extra[FLUX_MODEL_COLUMN] = (*models, CALIBRATOR_MODEL)
    flux = float(model_flux_jy(CALIBRATOR_MODEL, band_centre_hz()))
    return Catalog(
        ids=(*catalog.ids, CALIBRATOR_ID),
        ra_deg=np.r_[catalog.ra_deg, float(icrs.ra.deg) % 360.0],
        dec_deg=np.r_[catalog.dec_deg, float(icrs.dec.deg)],
        flux_jy=np.r_[catalog.flux_jy, flux],
        extra=extra,
    )


def _random_sky(
    spec: SimulationSpec,
    scale: layout.Scale,
    flux_range_jy: tuple[float, float] | None,
    ra_margin_deg: float,
    dec_halfwidth_deg: float,
) -> Catalog:
    first = _times_jd(utc(spec.start), scale)[0]
    lst_start = math.degrees(float(lst_for(np.array([first]))[0]))
    span = spec.sets * k.FILE_DURATION_S * 360.0 / k.SIDEREAL_DAY_S + 2 * ra_margin_deg
    span = min(max(span, 0.1), 360.0)
    ra_range = (
        (lst_start - ra_margin_deg) % 360.0,
        (lst_start - ra_margin_deg + span) % 360.0,
    )
    halfwidth = dec_halfwidth_deg
    area = span * 2 * halfwidth * math.cos(math.radians(spec.dec_deg))
    n_sources = spec.n_sources
    if n_sources is None:
        n_sources = max(1, round(GENERATED_SOURCE_DENSITY_PER_DEG2 * area))
    return random_catalog(
        spec.dec_deg,
        n_sources,
        seed=spec.seed,
        ra_range_deg=ra_range,
        flux_range_jy=flux_range_jy or DEFAULT_FLUX_RANGE_JY,
        dec_halfwidth_deg=halfwidth,
    )


def sky_catalog(
    spec: SimulationSpec,
    flux_range_jy: tuple[float, float] | None = None,
    ra_margin_deg: float = GENERATED_RA_MARGIN_DEG,
    dec_halfwidth_deg: float = DEFAULT_DEC_HALFWIDTH_DEG,
) -> Catalog:
    """The catalog ``simulate(spec)`` would generate over the observed sky (optionally with
    its own flux range, RA margin beyond the observed LST range, which may be negative, and
    declination half-width), to be written to a file and given to both the simulator and the
    pipeline before the first set lands (``dsa110d demo``)."""
    if spec.scale not in layout.SCALES:
        raise ValueError(f"unknown scale {spec.scale!r}; choose {', '.join(layout.SCALES)}")
    scale = layout.SCALES[spec.scale]
    return _catalog_for(spec, scale, flux_range_jy, ra_margin_deg, dec_halfwidth_deg)


def _times_jd(set_start: datetime, scale: layout.Scale) -> NDArray[np.float64]:
    t0 = Time(set_start.replace(tzinfo=None), scale="utc").jd
    centres_s = (np.arange(scale.integrations) + 0.5) * scale.integration_time_s
    return np.asarray(t0 + centres_s / k.SECONDS_PER_DAY, dtype=np.float64)


def _mjd(moment: datetime) -> float:
    return float(Time(moment.replace(tzinfo=None), scale="utc").mjd)


class _Simulation:
    """The state one run shares across sets."""

    def __init__(self, spec: SimulationSpec) -> None:
        if spec.scale not in layout.SCALES:
            raise ValueError(f"unknown scale {spec.scale!r}; choose {', '.join(layout.SCALES)}")
        if not 1 <= spec.n_subbands <= k.N_SUBBANDS:
            raise ValueError(f"subbands must be 1..{k.N_SUBBANDS}, not {spec.n_subbands}")
        if spec.sets < 1 or spec.days < 1 or spec.speed <= 0:
            raise ValueError("sets and days must be >= 1 and speed > 0")
        if not 0.0 <= spec.variable_fraction <= 1.0:
            raise ValueError(f"variable fraction must be in [0, 1], not {spec.variable_fraction}")
        if spec.beam not in BEAM_KINDS:
            raise ValueError(f"unknown beam {spec.beam!r}; choose {', '.join(BEAM_KINDS)}")
        self.beam = beam_model(spec.beam)
        self.spec = spec
        self.scale = layout.SCALES[spec.scale]
        self.rng = np.random.default_rng(spec.seed)
        self.catalog = _catalog_for(spec, self.scale)
        self.listed = with_position_errors(
            self.catalog,
            spec.catalog_error_arcsec,
            np.random.default_rng([spec.seed, CATALOG_ERROR_STREAM]),
        )
        self.plans = plan_sets(spec, self.rng)
        first = self.plans[0]
        start_mjd = _mjd(first.start)
        start_lst = float(lst_for(np.array([_times_jd(first.start, self.scale)[0]]))[0])
        # The calibrator (appended last) does not vary: the draws are those of the catalog
        # without it, so a seed's variable sky is the same with or without it.
        steady = [i for i, name in enumerate(self.catalog.ids) if name != CALIBRATOR_ID]
        self.variable: dict[int, Variability] = draw_variability(
            self.catalog.subset(np.array(steady, dtype=np.intp)),
            spec.variable_fraction,
            self.rng,
            start_mjd=start_mjd,
            start_lst_rad=start_lst,
            days=spec.days,
        )
        self.ant_1, self.ant_2 = layout.baselines(self.scale)
        self.positions = layout.antenna_positions_ecef_rel_m()
        self.numbers = layout.antenna_numbers()
        self.freq_hz = layout.band_frequencies_hz(self.scale, spec.n_subbands)
        self.dec_rad = math.radians(spec.dec_deg)
        self.set_fluxes: list[NDArray[np.float64]] = []
        self.hidden = uncatalogued.draw_uncatalogued(
            np.random.default_rng([spec.seed, UNCATALOGUED_STREAM]),
            **_track(self.plans, self.scale, spec.dec_deg),
            faint_per_deg2=spec.faint_per_deg2,
            n_transients=spec.transients,
            transient_flux_range_jy=spec.transient_flux_range_jy,
        )
        self.sky = uncatalogued.combined(self.catalog, self.hidden.catalog)
        track = _track(self.plans, self.scale, spec.dec_deg)
        hidden_sky = spec.faint_per_deg2 > 0 or spec.transients > 0
        on = spec.diffuse if spec.diffuse is not None else hidden_sky
        self.diffuse = diffuse.draw_diffuse(
            np.random.default_rng([spec.seed, DIFFUSE_STREAM]), track["track_ra_deg"],
            track["track_dec_deg"], diffuse.PER_DEG2 if on else 0.0,
        )  # fmt: skip
        self.hidden_fluxes: list[NDArray[np.float64]] = []
        self.set_ids: list[str] = []
        self.corrupt = corruptions.resolve_level(spec.corrupt, spec.scale)
        last = self.plans[-1]
        self.corruptions = corruptions.build(
            self.corrupt,
            corruptions.InstrumentContext(
                antenna_numbers=layout.data_antennas(self.scale),
                freq_hz=self.freq_hz,
                start_jd=float(_times_jd(first.start, self.scale)[0]),
                end_jd=float(_times_jd(last.start, self.scale)[-1]),
                integration_s=self.scale.integration_time_s,
                sefd_jy=spec.sefd_jy,
                rng=np.random.default_rng([spec.seed, CORRUPTION_STREAM]),
            ),
        )


def _track(plans: list[SetPlan], scale: layout.Scale, dec_deg: float) -> dict[str, Any]:
    """The pointing at each set's mid-time in ICRS degrees (the apparent meridian carried
    back to J2000, as the converter's phase centres), and those times (MJD)."""
    from dsa110d.science.conversion.phasing import apparent_to_icrs, telescope_location

    mids = np.array([float(np.median(_times_jd(p.start, scale))) for p in plans])
    loc = telescope_location(k.OVRO_LAT_DEG, k.OVRO_LON_DEG, k.OVRO_HEIGHT_M)
    lst = lst_for(mids)
    ra, dec = apparent_to_icrs(lst, np.full(mids.size, math.radians(dec_deg)), mids, loc)
    return {
        "track_ra_deg": np.degrees(np.unwrap(ra)),
        "track_dec_deg": np.degrees(dec),
        "track_mjd": mids - k.MJD_TO_JD,
    }


def _write_set(sim: _Simulation, plan: SetPlan, land: Callable[[int, Path], None]) -> int:
    """Write one set's subband files under their incomplete names, then ``land`` each."""
    spec, scale = sim.spec, sim.scale
    times = _times_jd(plan.start, scale)
    geometry = drift_geometry(times, sim.dec_rad, sim.ant_1, sim.ant_2, sim.numbers, sim.positions)
    mid_mjd = float(Time(times[len(times) // 2], format="jd", scale="utc").mjd)
    flux = true_fluxes(sim.catalog, sim.variable, mid_mjd)
    sim.set_fluxes.append(flux)
    hidden = sim.hidden.fluxes(mid_mjd)
    sim.hidden_fluxes.append(hidden)
    sim.set_ids.append(set_id_from_time(float(times[0]), scale.integration_time_s))
    sky = sky_in_view(geometry, sim.sky, np.concatenate([flux, hidden]), sim.freq_hz, beam=sim.beam)
    extended = diffuse.in_view(geometry, sim.diffuse, sim.freq_hz, sim.beam)
    n_bls = len(sim.ant_1)
    writers: list[SubbandWriter] = []
    try:
        for sb in range(spec.n_subbands):
            header = SubbandHeader(
                time_jd=np.repeat(times, n_bls),
                lst_rad=np.repeat(geometry.lst_rad, n_bls),
                uvw_m=geometry.uvw_m,
                ant_1=np.tile(sim.ant_1, len(times)),
                ant_2=np.tile(sim.ant_2, len(times)),
                freq_hz=sim.freq_hz[sb],
                channel_width_hz=scale.channel_width_hz,
                integration_s=scale.integration_time_s,
                n_times=len(times),
                n_bls=n_bls,
                antenna_names=layout.antenna_names(),
                antenna_numbers=sim.numbers,
                antenna_positions_m=sim.positions,
                phase_center_dec_rad=sim.dec_rad,
            )
            path = spec.out / subband_file_name(plan.name_times[sb], sb, incomplete=True)
            writers.append(SubbandWriter(path, header))
        for t0, vis in visibility_chunks(
            geometry,
            sky,
            sim.freq_hz,
            channel_width_hz=scale.channel_width_hz,
            integration_s=scale.integration_time_s,
            sefd_jy=spec.sefd_jy,
            rng=sim.rng,
        ):
            chunk = corruptions.ChunkContext(
                set_index=plan.index,
                first_integration=t0,
                time_jd=times[t0 : t0 + len(vis)],
                ant_1=sim.ant_1,
                ant_2=sim.ant_2,
                freq_hz=sim.freq_hz,
                sefd_jy=spec.sefd_jy,
            )
            diffuse.add_to(vis, t0, geometry, extended, sim.freq_hz)
            for corruption in sim.corruptions:
                corruption.apply(vis, chunk)
            for sb, writer in enumerate(writers):
                writer.write(t0, vis[:, :, sb])
    finally:
        for writer in writers:
            writer.close()
    written = 0
    for sb, writer in enumerate(writers):
        written += writer.path.stat().st_size
        land(sb, writer.path)
    return written


def _final_path(incomplete: Path) -> Path:
    return incomplete.with_name(incomplete.name.replace(INCOMPLETE_SUFFIX, ".hdf5"))


def simulate(
    spec: SimulationSpec, *, sleep: Callable[[float], None] = time.sleep
) -> SimulationResult:
    """Write the simulated sets and the truth file; see the module docstring."""
    use_offline_iers()
    began = time.perf_counter()
    spec.out.mkdir(parents=True, exist_ok=True)
    sim = _Simulation(spec)
    result = SimulationResult()
    wall0 = time.monotonic()

    def land(sb: int, incomplete: Path) -> None:
        if spec.live and sb > 0:
            sleep(LIVE_SUBBAND_GAP_S / spec.speed)
        final = _final_path(incomplete)
        os.replace(incomplete, final)
        result.files.append(final)

    for plan in sim.plans:
        if spec.live:
            due = wall0 + plan.index * k.FILE_DURATION_S / spec.speed
            sleep(max(0.0, due - time.monotonic()))
        result.bytes_written += _write_set(sim, plan, land)
        log.info("simulated set %s (%d subbands)", sim.set_ids[-1], spec.n_subbands)
    result.set_ids = sim.set_ids
    result.truth_path = spec.truth or spec.out / "truth.json"
    if spec.catalog_error_arcsec > 0 or spec.catalog_out is not None:
        result.catalog_path = spec.catalog_out or spec.out / "catalog.csv"
        write_catalog(result.catalog_path, sim.listed)
    write_truth(result.truth_path, sim)
    result.seconds = time.perf_counter() - began
    return result
