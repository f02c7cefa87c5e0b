"""What the simulated sky holds that the catalog does not list.

- A **faint population** below the catalog's limit, drawn from Euclidean source counts
  (N(>S) proportional to S^-1.5, normalised to ``FAINT_COUNT_NORM_PER_DEG2`` above
  ``FAINT_COUNT_NORM_JY``, about the 1.4 GHz counts) between ``FAINT_FLUX_RANGE_JY``, around the
  observed strip. ``faint_per_deg2`` in the spec scales it (0: none).
- **Transients**: point sources that are on between ``on_mjd`` and ``off_mjd`` (appear, vanish
  or both within the run), placed along the pointing track (in ICRS) so they pass through the
  beam; flux drawn log-uniform in ``transient_flux_range_jy``.

Every one of them goes to the truth file under ``"uncatalogued"`` with its true flux per set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dsa110d.science.catalog import Catalog

FAINT_COUNT_NORM_JY = 0.02
FAINT_COUNT_NORM_PER_DEG2 = 8.0
"""~8 sources per square degree above 20 mJy at 1.4 GHz (NVSS)."""
FAINT_FLUX_RANGE_JY = (0.002, 0.02)
"""The faint population spans these fluxes: below the catalog's 20 mJy limit."""
STRIP_HALFWIDTH_DEG = 1.5
"""Faint sources fill the observed strip to this many degrees either side of the track."""
TRANSIENT_FLUX_RANGE_JY = (0.02, 0.2)
TRANSIENT_DEC_HALFWIDTH_DEG = 0.3
"""Transients lie within this of the track in Dec (beam response > ~0.9 at 1.4 GHz)."""
TRANSIENT_KINDS = ("appear", "vanish", "on")
"""appear: off before a time in the run; vanish: off after one; on: on for the whole run
(and absent from every earlier run's sky: new to the catalog all the same)."""


@dataclass(frozen=True)
class Uncatalogued:
    """The sources the catalog lacks: positions, flux, and when each shines."""

    catalog: Catalog
    kind: tuple[str, ...]
    on_mjd: NDArray[np.float64]
    off_mjd: NDArray[np.float64]

    def fluxes(self, mjd: float) -> NDArray[np.float64]:
        on = (self.on_mjd <= mjd) & (mjd < self.off_mjd)
        return np.where(on, self.catalog.flux_jy, 0.0)

    def truth(self, per_set: list[NDArray[np.float64]]) -> list[dict[str, Any]]:
        fluxes = np.stack(per_set, axis=1) if per_set else np.zeros((len(self.catalog), 0))
        return [
            {
                "id": self.catalog.ids[i],
                "kind": self.kind[i],
                "ra_deg": float(self.catalog.ra_deg[i]),
                "dec_deg": float(self.catalog.dec_deg[i]),
                "flux_jy": float(self.catalog.flux_jy[i]),
                "on_mjd": _json_float(self.on_mjd[i]),
                "off_mjd": _json_float(self.off_mjd[i]),
                "flux_per_set_jy": [float(f) for f in fluxes[i]],
            }
            for i in range(len(self.catalog))
        ]


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def draw_uncatalogued(
    rng: np.random.Generator,
    *,
    track_ra_deg: NDArray[np.float64],
    track_dec_deg: NDArray[np.float64],
    track_mjd: NDArray[np.float64],
    faint_per_deg2: float,
    n_transients: int,
    transient_flux_range_jy: tuple[float, float] = TRANSIENT_FLUX_RANGE_JY,
) -> Uncatalogued:
    """The faint population and the transients along the pointing track (ICRS degrees at
    the times ``track_mjd``: the sets' mid-times)."""
    ids: list[str] = []
    ra: list[float] = []
    dec: list[float] = []
    flux: list[float] = []
    kind: list[str] = []
    on: list[float] = []
    off: list[float] = []
    ra_lo, ra_hi = float(track_ra_deg.min()), float(track_ra_deg.max())
    dec0 = float(np.mean(track_dec_deg))
    if faint_per_deg2 > 0:
        lo, hi = FAINT_FLUX_RANGE_JY
        span_ra = ra_hi - ra_lo + 2 * STRIP_HALFWIDTH_DEG / math.cos(math.radians(dec0))
        area = span_ra * math.cos(math.radians(dec0)) * 2 * STRIP_HALFWIDTH_DEG
        per_deg2 = FAINT_COUNT_NORM_PER_DEG2 * ((lo / FAINT_COUNT_NORM_JY) ** -1.5 - 1.0)
        n = int(rng.poisson(faint_per_deg2 * per_deg2 * area))
        # Inverse CDF of N(>S) ~ S^-1.5 truncated to [lo, hi].
        u = rng.uniform(0.0, 1.0, n)
        s = (lo**-1.5 - u * (lo**-1.5 - hi**-1.5)) ** (-1.0 / 1.5)
        centre_ra = 0.5 * (ra_lo + ra_hi)
        for j in range(n):
            ids.append(f"FAINT{j:05d}")
            ra.append(centre_ra + rng.uniform(-0.5, 0.5) * span_ra)
            dec.append(dec0 + rng.uniform(-STRIP_HALFWIDTH_DEG, STRIP_HALFWIDTH_DEG))
            flux.append(float(s[j]))
            kind.append("faint")
            on.append(-math.inf)
            off.append(math.inf)
    t_lo, t_hi = float(track_mjd.min()), float(track_mjd.max())
    f_lo, f_hi = transient_flux_range_jy
    for j in range(n_transients):
        where = rng.uniform(0.0, 1.0)
        ids.append(f"TRANS{j:04d}")
        ra.append(float(np.interp(where, np.linspace(0, 1, track_ra_deg.size), track_ra_deg)))
        dec.append(dec0 + rng.uniform(-TRANSIENT_DEC_HALFWIDTH_DEG, TRANSIENT_DEC_HALFWIDTH_DEG))
        flux.append(float(math.exp(rng.uniform(math.log(f_lo), math.log(f_hi)))))
        what = TRANSIENT_KINDS[int(rng.integers(len(TRANSIENT_KINDS)))]
        edge = t_lo + rng.uniform(0.0, 1.0) * (t_hi - t_lo + 1.0 / 24)
        kind.append(what)
        on.append(edge if what == "appear" else (t_lo - 1.0 if what == "on" else -math.inf))
        off.append(edge if what == "vanish" else math.inf)
    catalog = Catalog(tuple(ids), np.array(ra), np.array(dec), np.array(flux))
    return Uncatalogued(catalog, tuple(kind), np.array(on), np.array(off))


def combined(known: Catalog, hidden: Catalog) -> Catalog:
    """The catalog's sources then the uncatalogued ones, as one sky."""
    return Catalog(
        known.ids + hidden.ids,
        np.concatenate([known.ra_deg, hidden.ra_deg]),
        np.concatenate([known.dec_deg, hidden.dec_deg]),
        np.concatenate([known.flux_jy, hidden.flux_jy]),
    )
