"""A little extended and diffuse emission, seen on the short baselines only.

The physical model: resolved emission (HII regions, supernova-remnant shells, radio-galaxy
lobes, the brightest knots of the Galactic synchrotron foreground) as circular Gaussian
components of ``FWHM_ARCMIN`` across and ``FLUX_RANGE_JY`` in total (flat spectra, as the
point sources), ``PER_DEG2`` per square degree within ``DEC_HALFWIDTH_DEG`` of the pointing
track. A Gaussian of FWHM theta has the visibility

    V(u) = S exp(-pi^2 theta^2 |u|^2 / (4 ln 2)) x (the point source's phase at its centre)

with |u| the projected baseline in wavelengths: a 6 arcmin component keeps 1/e of its flux at
~300 lambda (~60 m at 21 cm) and nothing past ~1000 lambda, so it is bright on DSA-110's
short spacings and absent from the long ones: what forced photometry's
``photometry.uv_min_lambda`` is for, and what the blind search must not call a new source.
Each component is seen through the primary beam at its centre (its size is a few percent of
the ~3 deg beam). The truth file lists them under ``"diffuse"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dsa110d.science import constants as k
from dsa110d.science.beam import BeamModel
from dsa110d.science.catalog import Catalog
from dsa110d.science.simulation.visibilities import (
    Geometry,
    SkyInView,
    sky_in_view,
    sky_visibilities,
)

PER_DEG2 = 1.0
"""Components per square degree along the track: "a little"."""
FWHM_ARCMIN = (4.0, 12.0)
FLUX_RANGE_JY = (0.05, 0.3)
DEC_HALFWIDTH_DEG = 0.4
"""Components lie within this of the track in Dec (in the imaged strip, well inside the beam)."""
TAPER_FLOOR = 1e-4
"""Baselines where a component's visibility is below this fraction of its flux are skipped."""


@dataclass(frozen=True)
class Diffuse:
    """The extended components: centres and total fluxes (as a catalog) and sizes."""

    catalog: Catalog
    fwhm_rad: NDArray[np.float64]

    def truth(self) -> list[dict[str, Any]]:
        return [
            {
                "id": self.catalog.ids[i],
                "ra_deg": float(self.catalog.ra_deg[i]),
                "dec_deg": float(self.catalog.dec_deg[i]),
                "flux_jy": float(self.catalog.flux_jy[i]),
                "fwhm_arcmin": math.degrees(float(self.fwhm_rad[i])) * 60.0,
                "model": "circular Gaussian, flat spectrum",
            }
            for i in range(len(self.catalog))
        ]


def draw_diffuse(
    rng: np.random.Generator,
    track_ra_deg: NDArray[np.float64],
    track_dec_deg: NDArray[np.float64],
    per_deg2: float = PER_DEG2,
) -> Diffuse:
    """Components along the track (ICRS degrees of the sets' pointings)."""
    dec0 = float(np.mean(track_dec_deg))
    ra_lo, ra_hi = float(track_ra_deg.min()), float(track_ra_deg.max())
    area = max(ra_hi - ra_lo, 1.0) * math.cos(math.radians(dec0)) * 2 * DEC_HALFWIDTH_DEG
    # At least one when on: a run asked to carry extended emission carries some.
    n = max(1, int(rng.poisson(per_deg2 * area))) if per_deg2 > 0 else 0
    ra = rng.uniform(ra_lo, ra_hi, n)
    dec = dec0 + rng.uniform(-DEC_HALFWIDTH_DEG, DEC_HALFWIDTH_DEG, n)
    lo, hi = FLUX_RANGE_JY
    flux = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    fwhm = np.radians(rng.uniform(FWHM_ARCMIN[0], FWHM_ARCMIN[1], n) / 60.0)
    ids = tuple(f"DIFFUSE{j:03d}" for j in range(n))
    return Diffuse(Catalog(ids, ra, dec, flux), fwhm)


def taper(
    uvw_m: NDArray[np.float64], freq_hz: NDArray[np.float64], fwhm_rad: float
) -> NDArray[np.float64]:
    """The Gaussian's visibility relative to its flux per baseline and channel:
    (Nbls, Nsubbands, Nchannels)."""
    uv_m = np.hypot(uvw_m[:, 0], uvw_m[:, 1])
    uv_lambda = uv_m[:, None, None] * freq_hz[None] / k.SPEED_OF_LIGHT_M_S
    return np.exp(-((math.pi * fwhm_rad * uv_lambda) ** 2) / (4.0 * math.log(2.0)))


def short_baselines(
    uvw_m: NDArray[np.float64], fwhm_rad: float, max_freq_hz: float
) -> NDArray[np.intp]:
    """The baselines on which the component keeps more than TAPER_FLOOR of its flux."""
    uv_max_lambda = math.sqrt(-4.0 * math.log(2.0) * math.log(TAPER_FLOOR)) / (math.pi * fwhm_rad)
    uv_lambda = np.hypot(uvw_m[:, 0], uvw_m[:, 1]) * max_freq_hz / k.SPEED_OF_LIGHT_M_S
    return np.flatnonzero(uv_lambda <= uv_max_lambda)


def in_view(
    geometry: Geometry, diffuse: Diffuse, freq_hz: NDArray[np.float64], beam: BeamModel
) -> list[tuple[SkyInView, float]]:
    """Each component seen in one set (through the beam at its centre), with its FWHM."""
    parts = []
    for i in range(len(diffuse.catalog)):
        one = diffuse.catalog.subset(np.array([i], dtype=np.intp))
        seen = sky_in_view(geometry, one, one.flux_jy, freq_hz, beam=beam)
        if seen.lmn.shape[1]:
            parts.append((seen, float(diffuse.fwhm_rad[i])))
    return parts


def add_to(
    vis: NDArray[np.complex64],
    first_integration: int,
    geometry: Geometry,
    parts: list[tuple[SkyInView, float]],
    freq_hz: NDArray[np.float64],
) -> None:
    """Add the components to a chunk of visibilities (nt, Nbls, Nsubbands, Nchan, 2) in place,
    on the baselines short enough to see them."""
    n_bls = len(geometry.ant_1)
    for i in range(vis.shape[0]):
        t = first_integration + i
        uvw = geometry.uvw_m[t * n_bls : (t + 1) * n_bls]
        for seen, fwhm in parts:
            rows = short_baselines(uvw, fwhm, float(freq_hz.max()))
            if rows.size == 0:
                continue
            model = sky_visibilities(uvw[rows], seen.lmn[t], seen.amplitude_jy[t], freq_hz)
            model *= taper(uvw[rows], freq_hz, fwhm).astype(np.float32)
            vis[i, rows] += model[..., None]
