"""Fast alerts: a bright new source searched for in one chunk's image, as soon as it exists.

The block mosaic (``science.pipeline.imaging``) finds new sources at the end of a block, up to
an hour after the first of its chunks landed. A bright transient should be heard of minutes
after its set landed: so each chunk is imaged on its own as soon as it is converted (the same
wsclean call as the block's, ``chunk.image_chunk``, without the baselines shorter than
``imaging.fast_min_uv_lambda``: one snapshot cannot clean resolved emission, whose sidelobes
would bury the point sources sought), primary-beam corrected as a one-chunk
mosaic (``mosaic.build_mosaic``), searched by the same finder (Aegean) and matched to the
reference catalog by the same rule (``finder.match_catalog``) at its own threshold:
``imaging.fast_alert_snr`` times the chunk's noise. Each unmatched detection at or above it,
away from the edge, from bright catalog sources and from brighter detections in the same
image (:func:`near_brighter`: a transient's own sidelobes), is a **fast alert**.

When the block's mosaic has been searched, each of its chunks' fast alerts is settled
(:func:`settle`): **confirmed** when the mosaic found a new source within the match radius
(``imaging.match_radius_beams`` restoring beams), **retracted** otherwise (the mosaic, with
every chunk's data, saw nothing new there: a noise peak, a sidelobe, or a catalog source).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dsa110d.config import Config
from dsa110d.science.atomic import atomic_file
from dsa110d.science.catalog import read_catalog
from dsa110d.science.imaging.candidates import _name
from dsa110d.science.imaging.finder import FinderParams, find_sources, match_catalog
from dsa110d.science.imaging.mosaic import build_mosaic
from dsa110d.science.imaging.reuse import cache_dir, image_chunk_once
from dsa110d.science.imaging.settings import finder_params, imaging_params

FAST_DIR = "fast"
"""Chunk images searched for fast alerts go to ``<results_dir>/fast/<chunk id>.fits``."""
PENDING, CONFIRMED, RETRACTED = "pending", "confirmed", "retracted"


def search_chunk(ms: Path, chunk_id: str, config: Config, scratch: Path) -> list[dict[str, Any]]:
    """Image one chunk, search it, publish its image; one record per fast alert in it."""
    threshold = config.imaging.fast_alert_snr
    if threshold is None:
        return []
    scratch.mkdir(parents=True, exist_ok=True)
    cut = config.imaging.fast_min_uv_lambda
    params = replace(imaging_params(config.imaging), min_uv_lambda=cut)
    cache = cache_dir(config.paths.results_dir)  # the block stage's, when the params agree
    chunk = image_chunk_once(ms, params, cache, scratch / "chunk").chunk
    image = build_mosaic([chunk])
    finder = finder_params(config.imaging)
    finder = type(finder)(
        detect_sigma=min(finder.detect_sigma, threshold),
        grow_sigma=min(finder.grow_sigma, threshold - 1.0),
        new_sigma=threshold,
        match_radius_beams=finder.match_radius_beams,
    )
    found = find_sources(image, scratch, finder)
    catalog_path = config.paths.catalog
    if catalog_path is None:
        # Nothing to match against: every significant detection would be "new". An alert
        # stream of every known source is no alert: search only with a catalog.
        return []
    found = match_catalog(found, read_catalog(catalog_path), float(image.header["BMAJ"]), finder)
    found["new_source"] &= ~near_brighter(found, finder)
    published = config.paths.results_dir / FAST_DIR / f"{chunk_id}.fits"
    with atomic_file(published) as temp:
        shutil.copyfile(chunk.path, temp)
    bmaj, bmin, bpa = (float(image.header[k]) for k in ("BMAJ", "BMIN", "BPA"))
    now = time.time()
    records = []
    for row in found[found["new_source"]].to_dict("records"):
        name = _name(float(row["ra_deg"]), float(row["dec_deg"]))
        records.append(
            {
                "alert_id": f"{chunk_id}/{name}",
                "name": name,
                "chunk_id": chunk_id,
                "ra_deg": float(row["ra_deg"]),
                "dec_deg": float(row["dec_deg"]),
                "err_ra_arcsec": _json(row["err_ra_arcsec"]),
                "err_dec_arcsec": _json(row["err_dec_arcsec"]),
                "peak_jy": float(row["peak_jy"]),
                "snr": float(row["snr"]),
                "local_rms_jy": float(row["local_rms_jy"]),
                "beam_arcsec": [bmaj * 3600.0, bmin * 3600.0],
                "beam_pa_deg": bpa,
                "threshold_snr": threshold,
                "image": str(published),
                "detected_at": now,
                "status": PENDING,
            }
        )
    return records


def near_brighter(found: pd.DataFrame, params: FinderParams) -> NDArray[np.bool_]:
    """Whether a detection in the same image ``sidelobe_ratio`` times brighter lies within
    ``sidelobe_radius_arcmin``: a snapshot's sidelobes of a bright source the catalog does not
    know (a transient) are not vetoed by the catalog, and cleaning leaves them in part."""
    if len(found) < 2:
        return np.zeros(len(found), dtype=bool)
    from astropy.coordinates import SkyCoord

    where = SkyCoord(found.ra_deg.to_numpy(), found.dec_deg.to_numpy(), unit="deg")
    sep = where[:, None].separation(where[None, :]).arcmin
    peak = found.peak_jy.to_numpy()
    brighter = peak[None, :] >= params.sidelobe_ratio * peak[:, None]
    return np.asarray(np.any((sep <= params.sidelobe_radius_arcmin) & brighter, axis=1))


def settle(
    alerts: list[dict[str, Any]], sources: pd.DataFrame, match_radius_beams: float
) -> list[dict[str, Any]]:
    """Each alert confirmed (a new source in the block's mosaic within ``match_radius_beams``
    of the alert's chunk beam) or retracted, with what the mosaic saw there."""
    from astropy.coordinates import SkyCoord

    out = []
    new = sources[sources["new_source"]] if len(sources) else sources
    for alert in alerts:
        radius = match_radius_beams * float(alert["beam_arcsec"][0])
        here = SkyCoord(alert["ra_deg"], alert["dec_deg"], unit="deg")
        verdict: dict[str, Any] = {"status": RETRACTED, "mosaic_separation_arcsec": None}
        for frame, status in ((new, CONFIRMED), (sources, RETRACTED)):
            if not len(frame):
                continue
            there = SkyCoord(frame.ra_deg.to_numpy(), frame.dec_deg.to_numpy(), unit="deg")
            sep = here.separation(there).arcsec
            nearest = int(np.argmin(sep))
            if sep[nearest] <= radius:
                hit = frame.iloc[nearest]
                verdict = {
                    "status": status,
                    "mosaic_separation_arcsec": float(sep[nearest]),
                    "mosaic_peak_jy": float(hit.peak_jy),
                    "mosaic_snr": float(hit.snr),
                    "mosaic_catalog_id": str(hit.get("catalog_id", "")),
                }
                break
        out.append({**alert, **verdict})
    return out


def _json(value: float) -> float | None:
    return float(value) if math.isfinite(float(value)) else None
