"""Blind source finding on a mosaic (Aegean) and matching to the reference catalog.

Aegean (Hancock et al. 2012, 2018; ``aegeantools``) finds islands above ``detect_sigma`` times
the mosaic's own noise map (seeded at ``detect_sigma``, grown to ``grow_sigma``) and fits each
with elliptical Gaussians of at least the restoring beam. Each detection is matched to the
nearest catalog source within ``match_radius``; an unmatched detection at or above
``new_sigma`` is a **new source**: something the catalog does not know, unless it lies near
the edge or a bright catalog source (``EDGE_BEAMS``, ``SIDELOBE_*``) or is fitted narrower
than the restoring beam (``MIN_MINOR_BEAM_FRACTION``).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from dsa110d.science.catalog import Catalog
from dsa110d.science.imaging.chunk import wcs_of
from dsa110d.science.imaging.mosaic import Mosaic

log = logging.getLogger(__name__)

DETECT_SIGMA = 5.0
GROW_SIGMA = 4.0
NEW_SOURCE_SIGMA = 9.0
"""An unmatched detection at least this many sigma (peak / local noise) is a new source."""
EDGE_BEAMS = 2.0
"""A detection this close (restoring-beam major axes) to the mosaic's edge or a blank region
may be a source beyond it, cut and misplaced: never a new source."""
MATCH_RADIUS_BEAMS = 1.0
"""A detection within this many restoring-beam FWHM (the major axis) of a catalog source is it."""
SIDELOBE_RATIO = 3.0
SIDELOBE_RADIUS_ARCMIN = 10.0
"""An unmatched detection with a catalog source ``SIDELOBE_RATIO`` times brighter within
``SIDELOBE_RADIUS_ARCMIN`` may be that source's sidelobe (a 5-minute snapshot's PSF has
sidelobes of ~10-30 %, which cleaning leaves in part): not a new source, as TraP and VAST
veto candidates near bright sources."""

MIN_MINOR_BEAM_FRACTION = 0.85
"""A component fitted narrower than this fraction of the restoring beam's minor axis is not a
point source in a restored image (every true one is at least the beam; noise and errors
narrow it by a few percent at 10 sigma): a noise spike or a clean artefact, never a new
source. Measured at 4 arcsec pixels: the false new sources of six blocks had 18.6 arcsec
minor axes against a 23 arcsec beam; true detections 21-30."""

SOURCE_COLUMNS = {
    "block_id": "str", "version": "int64", "source": "int64 (Aegean's island.component)",
    "ra_deg": "float64, ICRS", "dec_deg": "float64", "err_ra_arcsec": "float64",
    "err_dec_arcsec": "float64", "peak_jy": "float64 (per beam, beam-corrected)",
    "err_peak_jy": "float64", "int_flux_jy": "float64", "err_int_flux_jy": "float64",
    "a_arcsec": "float64 (fitted FWHM major)", "b_arcsec": "float64", "pa_deg": "float64",
    "local_rms_jy": "float64", "snr": "float64 (peak / local rms)",
    "pb_response": "float64",
    "near_edge": "bool (within EDGE_BEAMS of the mosaic's edge: its island may be cut)",
    "catalog_id": "str ('' when unmatched)",
    "separation_arcsec": "float64 (to the match; NaN when unmatched)",
    "near_bright": "bool (a catalog source SIDELOBE_RATIO x brighter within SIDELOBE_RADIUS)",
    "new_source": "bool",
}  # fmt: skip


@dataclass(frozen=True)
class FinderParams:
    detect_sigma: float = DETECT_SIGMA
    grow_sigma: float = GROW_SIGMA
    new_sigma: float = NEW_SOURCE_SIGMA
    match_radius_beams: float = MATCH_RADIUS_BEAMS
    sidelobe_ratio: float = SIDELOBE_RATIO
    sidelobe_radius_arcmin: float = SIDELOBE_RADIUS_ARCMIN


def find_sources(mosaic: Mosaic, scratch: Path, params: FinderParams) -> pd.DataFrame:
    """Aegean's components in the mosaic, one row each (columns of SOURCE_COLUMNS without
    the catalog match)."""
    from AegeanTools.source_finder import SourceFinder

    image, rms = scratch / "mosaic-image.fits", scratch / "mosaic-rms.fits"
    bkg = scratch / "mosaic-bkg.fits"
    fits.PrimaryHDU(mosaic.image.astype(np.float32), mosaic.header).writeto(image, overwrite=True)
    fits.PrimaryHDU(mosaic.noise.astype(np.float32), mosaic.header).writeto(rms, overwrite=True)
    zero = np.where(np.isfinite(mosaic.image), 0.0, np.nan).astype(np.float32)
    fits.PrimaryHDU(zero, mosaic.header).writeto(bkg, overwrite=True)
    finder = SourceFinder(log=logging.getLogger("AegeanTools"))
    with warnings.catch_warnings():
        # Aegean 2.3 touches numpy.linalg.linalg (deprecated) and fits with lmfit, which
        # warns on islands it cannot fit: neither is ours to fix or an error here.
        warnings.simplefilter("ignore")
        found = finder.find_sources_in_image(
            str(image), rmsin=str(rms), bkgin=str(bkg), innerclip=params.detect_sigma,
            outerclip=params.grow_sigma, cores=1, nonegative=True, progress=False,
        )  # fmt: skip
    rows = []
    for s in found:
        rows.append(
            {
                "source": int(s.island) * 1000 + int(s.source),
                "ra_deg": float(s.ra),
                "dec_deg": float(s.dec),
                "err_ra_arcsec": _arcsec(s.err_ra),
                "err_dec_arcsec": _arcsec(s.err_dec),
                "peak_jy": float(s.peak_flux),
                "err_peak_jy": _finite(s.err_peak_flux),
                "int_flux_jy": float(s.int_flux),
                "err_int_flux_jy": _finite(s.err_int_flux),
                "a_arcsec": float(s.a),
                "b_arcsec": float(s.b),
                "pa_deg": float(s.pa),
                "local_rms_jy": float(s.local_rms),
                "snr": float(s.peak_flux) / float(s.local_rms) if s.local_rms > 0 else math.nan,
            }
        )
    frame = pd.DataFrame(rows, columns=[c for c in SOURCE_COLUMNS if c not in _LATER])
    frame["pb_response"] = _response_at(mosaic, frame)
    frame["near_edge"] = _near_edge(mosaic, frame)
    return frame


def _near_edge(mosaic: Mosaic, frame: pd.DataFrame) -> np.ndarray:
    from scipy.ndimage import distance_transform_edt

    if frame.empty:
        return np.zeros(0, dtype=bool)
    covered = np.pad(np.isfinite(mosaic.image), 1, constant_values=False)
    distance = distance_transform_edt(covered)[1:-1, 1:-1]  # pixels to the nearest blank
    margin = EDGE_BEAMS * float(mosaic.header["BMAJ"]) / abs(float(mosaic.header["CDELT2"]))
    ix, iy = _pixels(mosaic, frame)
    return np.asarray(distance[iy, ix] < margin, dtype=bool)


def _pixels(mosaic: Mosaic, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    x, y = wcs_of(mosaic.header).world_to_pixel_values(
        frame.ra_deg.to_numpy(), frame.dec_deg.to_numpy()
    )
    ix = np.clip(np.rint(x).astype(int), 0, mosaic.response.shape[1] - 1)
    iy = np.clip(np.rint(y).astype(int), 0, mosaic.response.shape[0] - 1)
    return ix, iy


_LATER = (
    "block_id", "version", "pb_response", "near_edge", "catalog_id", "separation_arcsec",
    "near_bright", "new_source",
)  # fmt: skip


def _arcsec(err_deg: float) -> float:
    return float(err_deg) * 3600.0 if err_deg is not None and err_deg >= 0 else math.nan


def _finite(value: float) -> float:
    return float(value) if value is not None and value >= 0 else math.nan


def _response_at(mosaic: Mosaic, frame: pd.DataFrame) -> np.ndarray:
    if frame.empty:
        return np.zeros(0)
    ix, iy = _pixels(mosaic, frame)
    return np.asarray(mosaic.response[iy, ix], dtype=np.float64)


def match_catalog(
    frame: pd.DataFrame,
    catalog: Catalog,
    beam_fwhm_deg: float,
    params: FinderParams,
    beam_minor_deg: float = 0.0,
) -> pd.DataFrame:
    """Add catalog_id / separation_arcsec / new_source (see the module docstring)."""
    out = frame.copy()
    radius = params.match_radius_beams * beam_fwhm_deg * 3600.0
    ids = np.array([""] * len(out), dtype=object)
    sep = np.full(len(out), math.nan)
    if len(out) and len(catalog.ids):
        from astropy.coordinates import SkyCoord

        found = SkyCoord(out.ra_deg.to_numpy(), out.dec_deg.to_numpy(), unit="deg")
        known = SkyCoord(catalog.ra_deg, catalog.dec_deg, unit="deg")
        index, separation, _ = found.match_to_catalog_sky(known)
        arcsec = separation.arcsec
        near = arcsec <= radius
        ids[near] = np.asarray(catalog.ids, dtype=object)[index[near]]
        sep[near] = arcsec[near]
    out["catalog_id"] = ids.astype(str)
    out["separation_arcsec"] = sep
    out["near_bright"] = _near_bright(out, catalog, params)
    narrow = out["b_arcsec"] < MIN_MINOR_BEAM_FRACTION * beam_minor_deg * 3600.0
    out["new_source"] = (
        (out["catalog_id"] == "")
        & (out["snr"] >= params.new_sigma)
        & ~out["near_edge"]
        & ~out["near_bright"]
        & ~narrow
    )
    return out


def _near_bright(frame: pd.DataFrame, catalog: Catalog, params: FinderParams) -> np.ndarray:
    """Whether a catalog source ``sidelobe_ratio`` times brighter lies within
    ``sidelobe_radius_arcmin`` of each detection (inside the mosaic or just beyond it, where
    its sidelobes cannot be cleaned)."""
    out = np.zeros(len(frame), dtype=bool)
    if frame.empty or len(catalog) == 0:
        return out
    from astropy.coordinates import SkyCoord

    here = SkyCoord(frame.ra_deg.to_numpy(), frame.dec_deg.to_numpy(), unit="deg")
    known = SkyCoord(catalog.ra_deg, catalog.dec_deg, unit="deg")
    peak = frame.peak_jy.to_numpy()
    for i in range(len(frame)):
        near = here[i].separation(known).arcmin <= params.sidelobe_radius_arcmin
        out[i] = bool(np.any(near & (catalog.flux_jy >= params.sidelobe_ratio * peak[i])))
    return out
