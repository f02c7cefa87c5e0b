"""New-source candidates across blocks: each one's first detection and the earlier limits.

A new source (``finder``: unmatched, significant, away from edges and bright sources) seen in
one block or several becomes one candidate: detections within ``match_radius_arcsec`` of each
other are the same candidate. The candidate carries the block it was first detected in and,
for every earlier block whose mosaic covered its position, the upper limit there
(``UPPER_LIMIT_SIGMA`` times that mosaic's noise at the position) and, when the block's
mosaic is at hand, that mosaic's value there (``flux_jy``: the pixel nearest the position,
Jy/beam, beam-corrected: the finder's peak convention, so a point source's flux) with its
noise (``rms_jy``): the light curve's non-detections before it appeared, as TraP's
monitoring gives them, measured on the mosaics (which are kept) even when the earlier
blocks' Measurement Sets are gone and forced photometry cannot re-run there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from dsa110d.science.imaging.chunk import wcs_of

UPPER_LIMIT_SIGMA = 5.0


@dataclass(frozen=True)
class BlockSources:
    """One block's source list and its mosaic's noise map, in time order with the others."""

    block_id: str
    sources: pd.DataFrame
    rms_fits: Path
    mosaic_fits: Path | None = None


def noise_at(rms_fits: Path, ra_deg: float, dec_deg: float) -> float:
    """The noise map's value (Jy/beam) at a direction; NaN outside it or where blank."""
    return pixel_at(rms_fits, ra_deg, dec_deg)


def pixel_at(image_fits: Path, ra_deg: float, dec_deg: float) -> float:
    """A map's value at the pixel nearest a direction; NaN outside it or where blank."""
    with fits.open(image_fits) as hdus:
        data = np.asarray(hdus[0].data, dtype=np.float64)
        header = hdus[0].header
        x, y = wcs_of(header).world_to_pixel_values(ra_deg, dec_deg)
    ix, iy = round(float(x)), round(float(y))
    if not (0 <= iy < data.shape[0] and 0 <= ix < data.shape[1]):
        return math.nan
    return float(data[iy, ix])


@dataclass
class _Candidate:
    ra_deg: float
    dec_deg: float
    first_block: str
    first_index: int
    detections: int
    peak_jy: float


def candidates(blocks: Sequence[BlockSources], match_radius_arcsec: float) -> pd.DataFrame:
    """One row per candidate: position (its first detection's), first block, detections,
    brightest peak, and the earlier blocks' upper limits (a JSON-able list of dicts)."""
    from astropy.coordinates import SkyCoord

    found: list[_Candidate] = []
    for order, block in enumerate(blocks):
        new = block.sources[block.sources["new_source"]]
        for ra, dec, peak in zip(new.ra_deg, new.dec_deg, new.peak_jy, strict=True):
            here = SkyCoord(ra, dec, unit="deg")
            same = [
                c for c in found
                if here.separation(SkyCoord(c.ra_deg, c.dec_deg, unit="deg")).arcsec
                <= match_radius_arcsec
            ]  # fmt: skip
            if same:
                same[0].detections += 1
                same[0].peak_jy = max(same[0].peak_jy, float(peak))
            else:
                found.append(
                    _Candidate(float(ra), float(dec), block.block_id, order, 1, float(peak))
                )
    rows = []
    for c in found:
        limits = []
        for block in blocks[: c.first_index]:
            noise = noise_at(block.rms_fits, c.ra_deg, c.dec_deg)
            if not math.isfinite(noise):
                continue
            limit: dict[str, str | float | None] = {
                "block_id": block.block_id, "limit_jy": UPPER_LIMIT_SIGMA * noise,
                "rms_jy": noise, "flux_jy": None,
            }  # fmt: skip
            if block.mosaic_fits is not None and block.mosaic_fits.exists():
                value = pixel_at(block.mosaic_fits, c.ra_deg, c.dec_deg)
                limit["flux_jy"] = value if math.isfinite(value) else None
            limits.append(limit)
        rows.append(
            {"candidate_id": _name(c.ra_deg, c.dec_deg), "ra_deg": c.ra_deg,
             "dec_deg": c.dec_deg, "first_block": c.first_block, "detections": c.detections,
             "peak_jy": c.peak_jy, "earlier_upper_limits": limits}
        )  # fmt: skip
    columns = ["candidate_id", "ra_deg", "dec_deg", "first_block", "detections", "peak_jy",
               "earlier_upper_limits"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _name(ra_deg: float, dec_deg: float) -> str:
    """An IAU-style name from the position: DSA Jhhmmss.s+ddmmss."""
    from astropy.coordinates import SkyCoord

    c = SkyCoord(ra_deg, dec_deg, unit="deg")
    ra = c.ra.to_string(unit="hour", sep="", precision=1, pad=True)
    dec = c.dec.to_string(sep="", precision=0, alwayssign=True, pad=True)
    return f"DSA J{ra}{dec}"
