"""The simulator's variable sky: which sources vary, how, and their true flux at any time.

A fraction of the catalog varies, each source with one of three kinds, timed so the change
is visible in a drift scan (a source is only in the beam near its daily transit):

- ``flare``: a Gaussian brightening peaking near one of its transits (``peak_mjd``),
  lasting minutes to an hour (``width_s``), ``amplitude`` times the base flux at peak, so
  it changes from set to set;
- ``step``: the flux is multiplied by ``factor`` from ``step_mjd`` on (between two transits),
  so it changes from day to day;
- ``sinusoid``: flux x (1 + ``amplitude`` sin(2 pi (t - t0) / ``period_days`` + ``phase``)),
  a slow day-to-day modulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dsa110d.science.catalog import Catalog
from dsa110d.science.constants import SECONDS_PER_DAY, SIDEREAL_DAY_S

"""SI seconds in a day (MJD unit)."""
VARIABILITY_KINDS = ("flare", "step", "sinusoid")
"""The kinds of variability the simulator draws, in equal shares."""
FLARE_AMPLITUDE_RANGE = (1.0, 4.0)
"""Peak flare brightening, in units of the base flux."""
FLARE_WIDTH_RANGE_S = (300.0, 1800.0)
"""Gaussian sigma of a flare, seconds: about one to six sets."""
STEP_FACTOR_RANGE = (0.3, 3.0)
"""Multiplier of a step (drawn log-uniform), excluding 0.7..1.4 so a step is visible."""
SINUSOID_AMPLITUDE_RANGE = (0.2, 0.6)
"""Fractional amplitude of a slow sinusoid."""
SINUSOID_PERIOD_RANGE_DAYS = (1.5, 6.0)
"""Period of a slow sinusoid, days."""


@dataclass(frozen=True)
class Variability:
    """How one source varies: its kind and the parameters of that kind."""

    kind: str
    params: dict[str, float] = field(default_factory=dict)

    def factor(self, mjd: NDArray[np.float64]) -> NDArray[np.float64]:
        """Flux multiplier (>= 0) at times ``mjd``."""
        p = self.params
        if self.kind == "flare":
            dt_s = (mjd - p["peak_mjd"]) * SECONDS_PER_DAY
            return np.asarray(1.0 + p["amplitude"] * np.exp(-0.5 * (dt_s / p["width_s"]) ** 2))
        if self.kind == "step":
            return np.where(mjd >= p["step_mjd"], p["factor"], 1.0).astype(np.float64)
        if self.kind == "sinusoid":
            days = mjd - p["t0_mjd"]
            angle = 2 * np.pi * days / p["period_days"] + p["phase"]
            return np.asarray(1.0 + p["amplitude"] * np.sin(angle))
        raise ValueError(f"unknown variability kind {self.kind!r}")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.params}


def transit_mjd(ra_deg: float, start_mjd: float, start_lst_rad: float) -> float:
    """The first time at or after ``start_mjd`` when RA ``ra_deg`` crosses the meridian."""
    hour_angle_to_go = (math.radians(ra_deg) - start_lst_rad) % (2 * math.pi)
    return start_mjd + hour_angle_to_go / (2 * math.pi) * SIDEREAL_DAY_S / SECONDS_PER_DAY


def draw_variability(
    catalog: Catalog,
    fraction: float,
    rng: np.random.Generator,
    *,
    start_mjd: float,
    start_lst_rad: float,
    days: int,
) -> dict[int, Variability]:
    """Pick ``fraction`` of the catalog (by row) to vary and draw how; keyed by row index."""
    n_var = round(fraction * len(catalog))
    rows: list[int] = sorted(rng.choice(len(catalog), size=n_var, replace=False).tolist())
    chosen: dict[int, Variability] = {}
    sidereal_day = SIDEREAL_DAY_S / SECONDS_PER_DAY
    for row in rows:
        kind = VARIABILITY_KINDS[int(rng.integers(len(VARIABILITY_KINDS)))]
        first = transit_mjd(float(catalog.ra_deg[row]), start_mjd, start_lst_rad)
        # A step needs a look before it: put it before the transit of day 1.. when there is one.
        low_day = 1 if kind == "step" and days > 1 else 0
        day = int(rng.integers(low_day, max(days, 1)))
        chosen[row] = _draw_kind(kind, rng, first + day * sidereal_day, start_mjd, days)
    return chosen


def _draw_kind(
    kind: str, rng: np.random.Generator, transit: float, start_mjd: float, days: int
) -> Variability:
    sidereal_day = SIDEREAL_DAY_S / SECONDS_PER_DAY
    if kind == "flare":
        width = float(rng.uniform(*FLARE_WIDTH_RANGE_S))
        offset = float(rng.uniform(-1.0, 1.0)) * width / SECONDS_PER_DAY
        return Variability(
            "flare",
            {
                "peak_mjd": transit + offset,
                "width_s": width,
                "amplitude": float(rng.uniform(*FLARE_AMPLITUDE_RANGE)),
            },
        )
    if kind == "step":
        low, high = STEP_FACTOR_RANGE
        factor = math.exp(float(rng.uniform(math.log(low), math.log(0.7))))
        if rng.uniform() < 0.5:
            factor = math.exp(float(rng.uniform(math.log(1.4), math.log(high))))
        # Half a day before a transit: the change falls between two looks at the source.
        step = transit - 0.5 * sidereal_day if days > 1 else transit
        return Variability("step", {"step_mjd": step, "factor": factor})
    return Variability(
        "sinusoid",
        {
            "t0_mjd": start_mjd,
            "period_days": float(rng.uniform(*SINUSOID_PERIOD_RANGE_DAYS)),
            "amplitude": float(rng.uniform(*SINUSOID_AMPLITUDE_RANGE)),
            "phase": float(rng.uniform(0.0, 2 * np.pi)),
        },
    )


def true_fluxes(
    catalog: Catalog, variable: dict[int, Variability], mjd: float
) -> NDArray[np.float64]:
    """Every source's true flux density at time ``mjd``, Jy."""
    flux = catalog.flux_jy.copy()
    at = np.array([mjd], dtype=np.float64)
    for row, var in variable.items():
        flux[row] *= float(var.factor(at)[0])
    return flux
