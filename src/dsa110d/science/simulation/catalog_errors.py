"""Catalog position errors: the catalog the pipeline reads is not the sky the simulator makes.

A real catalog (NVSS, FIRST, the survey's own) places each source within its astrometric
error of where it is: ~1 arcsec for bright NVSS sources, several for faint ones. Forced
photometry at a catalog position that is off by dtheta sees each baseline's fringe rotated by
2 pi u . dtheta, so the real part it sums is S cos(2 pi u . dtheta): a flux loss that grows with
baseline length (docs/photometry.md measures it). The simulator therefore keeps the true
positions for the sky it observes and writes, for the pipeline, the same catalog with each
position moved by an independent Gaussian error of ``sigma_arcsec`` per coordinate (on the sky:
the RA error is divided by cos(dec)). The offset's length then follows a Rayleigh distribution:
mean 1.25 sigma, so sigma = 1.2 arcsec gives the 1-2 arcsec errors of a real catalog.

The errors are drawn from their own random stream, so a seed's sky, variability and noise are
the same with or without them; the truth file records both positions of each source.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from dsa110d.science.catalog import Catalog

ARCSEC_PER_DEG = 3600.0


def with_position_errors(
    catalog: Catalog, sigma_arcsec: float, rng: np.random.Generator
) -> Catalog:
    """``catalog`` with each position moved by N(0, sigma_arcsec) per coordinate on the sky."""
    if sigma_arcsec < 0 or not math.isfinite(sigma_arcsec):
        raise ValueError(f"catalog position error must be >= 0, not {sigma_arcsec}")
    n = len(catalog)
    if sigma_arcsec == 0 or n == 0:
        return catalog
    d_dec = rng.normal(0.0, sigma_arcsec, n) / ARCSEC_PER_DEG
    d_ra_sky = rng.normal(0.0, sigma_arcsec, n) / ARCSEC_PER_DEG
    dec = np.clip(catalog.dec_deg + d_dec, -90.0, 90.0)
    ra = (catalog.ra_deg + d_ra_sky / np.cos(np.radians(catalog.dec_deg))) % 360.0
    return replace(catalog, ra_deg=ra, dec_deg=dec)


def offsets_arcsec(true: Catalog, listed: Catalog) -> np.ndarray:
    """Angular distance (arcsec) between each source's true and listed position."""
    from dsa110d.science.beam import angular_offset_rad

    sep = angular_offset_rad(
        np.radians(true.ra_deg), np.radians(true.dec_deg),
        np.radians(listed.ra_deg), np.radians(listed.dec_deg),
    )  # fmt: skip
    return np.asarray(np.degrees(sep) * ARCSEC_PER_DEG, dtype=np.float64)
