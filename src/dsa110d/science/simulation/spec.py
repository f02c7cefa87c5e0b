"""What the simulator is asked for (:class:`SimulationSpec`, the ``dsa110d simulate`` options),
when each set starts and what its files are called (:func:`plan_sets`), and what a run wrote
(:class:`SimulationResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from dsa110d.science import constants as k
from dsa110d.science.simulation import uncatalogued

MAX_NAME_JITTER_S = 4
"""Per-subband name timestamps lag the set start by 0..this many whole seconds."""
DEFAULT_VARIABLE_FRACTION = 0.1
"""Share of the catalog that varies, when not given."""
DEFAULT_DEC_DEG = k.OVRO_LAT_DEG
"""Pointing declination when not given: the zenith."""
CALIBRATOR_ID = "SIMCAL"
"""Id of the calibrator a generated catalog gains when the data are corrupted."""


@dataclass(frozen=True)
class SimulationSpec:
    """What to simulate (the ``dsa110d simulate`` options)."""

    out: Path
    start: datetime
    """UTC start of the first set (naive datetimes are taken as UTC)."""
    sets: int
    days: int = 1
    scale: str = "small"
    n_subbands: int = k.N_SUBBANDS
    seed: int = 0
    catalog: Path | None = None
    variable_fraction: float = DEFAULT_VARIABLE_FRACTION
    truth: Path | None = None
    live: bool = False
    speed: float = 1.0
    dec_deg: float = DEFAULT_DEC_DEG
    sefd_jy: float = k.SEFD_JY
    n_sources: int | None = None
    """Sources in a generated catalog; None: ``GENERATED_SOURCE_DENSITY_PER_DEG2``."""
    corrupt: str | None = None
    """Corruption level (``corruptions.LEVELS``); None: the scale's default."""
    beam: str = "tapered"
    """The truth beam: the model (``beam.BEAM_KINDS``) the sky is observed through."""
    catalog_error_arcsec: float = 0.0
    """Position error (Gaussian sigma per coordinate, arcsec) of the catalog the pipeline reads."""
    catalog_out: Path | None = None
    """Where to write the pipeline's catalog (default OUT/catalog.csv, written only when
    ``catalog_error_arcsec`` > 0 or this is given)."""
    faint_per_deg2: float = 0.0
    """Scale of the uncatalogued faint population (1: the real counts; 0: none)."""
    transients: int = 0
    """Uncatalogued transients along the track (``uncatalogued``)."""
    transient_flux_range_jy: tuple[float, float] = uncatalogued.TRANSIENT_FLUX_RANGE_JY
    diffuse: bool | None = None
    """Extended emission on short baselines (``diffuse``); None: with the uncatalogued sky
    (when ``faint_per_deg2`` > 0 or ``transients`` > 0)."""
    calibrator: bool | None = None
    """Add a calibrator to a generated catalog (``simulate.with_calibrator``); None: when the data
    are corrupted (they need calibrating)."""


@dataclass(frozen=True)
class SetPlan:
    """One set: when it starts and what its files are called."""

    index: int
    day: int
    start: datetime
    name_times: tuple[datetime, ...]
    """The timestamp in each subband's file name, by subband."""


@dataclass
class SimulationResult:
    """What ``simulate`` wrote."""

    files: list[Path] = field(default_factory=list)
    truth_path: Path | None = None
    catalog_path: Path | None = None
    """The catalog written for the pipeline (with position errors), when one was."""
    set_ids: list[str] = field(default_factory=list)
    bytes_written: int = 0
    seconds: float = 0.0


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def plan_sets(spec: SimulationSpec, rng: np.random.Generator) -> list[SetPlan]:
    """Start times and file-name timestamps of every set, day by day."""
    plans: list[SetPlan] = []
    start = utc(spec.start)
    for day in range(spec.days):
        for i in range(spec.sets):
            offset = day * k.SIDEREAL_DAY_S + i * k.FILE_DURATION_S
            set_start = start + timedelta(seconds=offset)
            base = set_start.replace(microsecond=0)
            jitter = rng.integers(0, MAX_NAME_JITTER_S + 1, spec.n_subbands)
            names = tuple(base + timedelta(seconds=int(j)) for j in jitter)
            plans.append(SetPlan(len(plans), day, set_start, names))
    return plans
